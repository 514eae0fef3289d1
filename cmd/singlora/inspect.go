package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/safetensors"
)

func init() {
	register(&command{
		Name:    "inspect",
		Summary: "describe an adapter folder, a model folder or a safetensors file",
		Usage:   "singlora inspect ADAPTER_DIR\nsinglora inspect MODEL_DIR (or use)\nsinglora inspect model.safetensors",
		Run:     func(args []string) error { return runInspect(args, os.Stdout) },
	})
}

func runInspect(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("give one adapter folder, model folder or .safetensors file")
	}
	p := fs.Arg(0)
	if isModel(p) {
		return inspectModel(p, w)
	}
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		f, err := safetensors.Read(p)
		if err != nil {
			return err
		}
		printTensors(w, f)
		return nil
	}
	a, err := adapterio.Load(p)
	if errors.Is(err, adapterio.ErrNoModuleShape) {
		return fmt.Errorf("%w\ninspect has no base checkpoint to read each module's [out, in] from: add \"module_shapes\": {\"<module>\": [out, in], ...} to the adapter's %s (merge --base does not need it)", err, adapterio.ConfigFile)
	}
	if err != nil {
		return err
	}
	c := a.Config
	fmt.Fprintf(w, "adapter:      %s\n", p)
	fmt.Fprintf(w, "method:       %s (peft_type %s)\n", a.Method(), c.PeftType)
	fmt.Fprintf(w, "rank:         %d\n", c.R)
	fmt.Fprintf(w, "alpha:        %g\n", c.LoraAlpha)
	mode := "alpha/r"
	if c.UseRSLoRA {
		mode = "alpha/sqrt(r) (rsLoRA)"
	}
	fmt.Fprintf(w, "scaling:      %g (%s)\n", c.Scale(), mode)
	fmt.Fprintf(w, "targets:      %s\n", strings.Join(c.TargetModules, ", "))
	if c.BaseModel != "" {
		fmt.Fprintf(w, "base model:   %s\n", c.BaseModel)
	}
	if c.PeftType == adapterio.TypeSingLoRA {
		fmt.Fprintf(w, "init:         %s\n", c.Init)
		fmt.Fprintf(w, "trained steps: %d, ramp T = %d, u = %g\n", c.TrainedSteps, c.RampUpSteps, c.Ramp())
	} else if c.TrainedSteps > 0 {
		fmt.Fprintf(w, "trained steps: %d\n", c.TrainedSteps)
	}
	if c.LoraPlusRatio > 0 {
		fmt.Fprintf(w, "lora+ ratio:  %g\n", c.LoraPlusRatio)
	}
	if len(c.ModulesToSave) > 0 {
		fmt.Fprintf(w, "modules_to_save: %s\n", strings.Join(c.ModulesToSave, ", "))
	}
	fmt.Fprintf(w, "\n%-50s %7s %7s %10s %10s\n", "module", "in", "out", "adapter", "base")
	base := 0
	for _, m := range a.Modules {
		fmt.Fprintf(w, "%-50s %7d %7d %10d %10d\n", m.Path, m.In, m.Out, m.Params(), m.In*m.Out)
		base += m.In * m.Out
	}
	saved := 0
	for _, s := range a.Saved {
		saved += len(s.Data)
	}
	fmt.Fprintf(w, "adapter params: %d in %d modules (adapted base weights: %d)", a.Params(), len(a.Modules), base)
	if saved > 0 {
		fmt.Fprintf(w, ", modules_to_save params: %d", saved)
	}
	fmt.Fprintln(w)
	f, err := safetensors.Read(filepath.Join(p, adapterio.WeightsFile))
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	printTensors(w, f)
	return nil
}

func printTensors(w io.Writer, f *safetensors.File) {
	total := 0
	for _, t := range f.Tensors {
		dims := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			dims[i] = fmt.Sprint(d)
		}
		fmt.Fprintf(w, "%-70s %-8s [%s]\n", t.Name, t.DType, strings.Join(dims, ", "))
		total += t.NumElements()
	}
	fmt.Fprintf(w, "%d tensors, %d params\n", len(f.Tensors), total)
	if len(f.Metadata) > 0 {
		fmt.Fprintf(w, "metadata: %v\n", f.Metadata)
	}
}
