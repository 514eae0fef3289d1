package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

func init() {
	register(&command{
		Name:    "inspect",
		Summary: "describe an adapter folder, a model folder or a safetensors file",
		Details: `With --json the description is one JSON object on stdout whose "kind" is "adapter", "model" or
"safetensors".`,
		Usage: `singlora inspect ADAPTER_DIR
singlora inspect MODEL_DIR (or use)
singlora inspect model.safetensors --json`,
		Run: func(args []string) error { return runInspect(args, os.Stdout) },
	})
}

func runInspect(args []string, w io.Writer) error {
	fs := newFlags("inspect")
	jsonOut := fs.Bool("json", false, `print the description as one JSON object ("kind": adapter, model or safetensors)`)
	cache := cacheFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 1, 1, "one adapter folder, model folder (or a built-in model's name) or .safetensors file"); err != nil {
		return err
	}
	if err := useCache(fs, *cache); err != nil { // for the built-in model (use)
		return err
	}
	p := pos[0]
	var d interface{ text(io.Writer) }
	switch st, serr := os.Stat(p); {
	case isModel(p):
		d, err = describeModel(p)
	case serr != nil:
		return serr
	case !st.IsDir():
		d, err = describeFile(p)
	default:
		d, err = describeAdapter(p)
	}
	if err != nil {
		return err
	}
	if *jsonOut {
		return printJSON(w, d)
	}
	d.text(w)
	return nil
}

// tensorInfo is one tensor of a safetensors file.
type tensorInfo struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
}

// fileInfo describes a safetensors file (inspect FILE, and an adapter's weights).
type fileInfo struct {
	Kind     string            `json:"kind,omitempty"` // "safetensors" at the top level
	Path     string            `json:"path"`
	Tensors  []tensorInfo      `json:"tensors"`
	Params   int               `json:"params"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func describeFile(p string) (*fileInfo, error) {
	f, err := safetensors.Read(p)
	if err != nil {
		return nil, err
	}
	d := &fileInfo{Kind: "safetensors", Path: p, Tensors: []tensorInfo{}, Metadata: f.Metadata}
	for _, t := range f.Tensors {
		d.Tensors = append(d.Tensors, tensorInfo{t.Name, t.DType, append([]int{}, t.Shape...)})
		d.Params += t.NumElements()
	}
	return d, nil
}

func (d *fileInfo) text(w io.Writer) {
	for _, t := range d.Tensors {
		dims := make([]string, len(t.Shape))
		for i, n := range t.Shape {
			dims[i] = fmt.Sprint(n)
		}
		fmt.Fprintf(w, "%-70s %-8s [%s]\n", t.Name, t.DType, strings.Join(dims, ", "))
	}
	fmt.Fprintf(w, "%d tensors, %d params\n", len(d.Tensors), d.Params)
	if len(d.Metadata) > 0 {
		fmt.Fprintf(w, "metadata: %v\n", d.Metadata)
	}
}

// moduleInfo is one adapted module of an adapter.
type moduleInfo struct {
	Path          string  `json:"path"`
	In            int     `json:"in"`
	Out           int     `json:"out"`
	Rank          int     `json:"r"`          // rank_pattern resolved
	Alpha         float64 `json:"lora_alpha"` // alpha_pattern resolved
	Scaling       float64 `json:"scaling"`
	AdapterParams int     `json:"adapter_params"`
	BaseParams    int     `json:"base_params"`
}

// adapterInfo describes an adapter folder; the JSON keys follow adapter_config.json's where it
// has them.
type adapterInfo struct {
	Kind                string                `json:"kind"` // "adapter"
	Path                string                `json:"path"`
	Method              string                `json:"method"`
	PeftType            string                `json:"peft_type"`
	Rank                int                   `json:"r"`
	Alpha               float64               `json:"lora_alpha"`
	Scaling             float64               `json:"scaling"`
	RSLoRA              bool                  `json:"use_rslora"`
	Targets             []string              `json:"target_modules"`
	ExcludeModules      []string              `json:"exclude_modules,omitempty"`
	LayersToTransform   []int                 `json:"layers_to_transform,omitempty"`
	LayersPattern       []string              `json:"layers_pattern,omitempty"`
	RankPattern         peft.Pattern[int]     `json:"rank_pattern,omitempty"`
	AlphaPattern        peft.Pattern[float64] `json:"alpha_pattern,omitempty"`
	Bias                string                `json:"bias"`
	BaseModel           string                `json:"base_model_name_or_path,omitempty"`
	Init                string                `json:"init,omitempty"`
	TrainedSteps        int64                 `json:"trained_steps"`
	RampUpSteps         int64                 `json:"ramp_up_steps,omitempty"`
	Ramp                float64               `json:"u"` // u = min(trained_steps/T, 1); 1 for the LoRA family
	LoraPlusRatio       float64               `json:"loraplus_lr_ratio,omitempty"`
	ModulesToSave       []string              `json:"modules_to_save,omitempty"`
	Modules             []moduleInfo          `json:"modules"`
	AdapterParams       int                   `json:"adapter_params"`
	BaseParams          int                   `json:"adapted_base_params"`
	ModulesToSaveParams int                   `json:"modules_to_save_params"`
	Weights             *fileInfo             `json:"weights"`

	singlora bool
}

func describeAdapter(p string) (*adapterInfo, error) {
	a, err := adapterio.Load(p)
	if errors.Is(err, adapterio.ErrNoModuleShape) {
		return nil, fmt.Errorf("%w\ninspect has no base checkpoint to read each module's [out, in] from: add \"module_shapes\": {\"<module>\": [out, in], ...} to the adapter's %s (merge --base does not need it)", err, adapterio.ConfigFile)
	}
	if err != nil {
		return nil, err
	}
	c := a.Config
	d := &adapterInfo{Kind: "adapter", Path: p, Method: string(a.Method()), PeftType: c.PeftType, Rank: c.R, Alpha: c.LoraAlpha,
		Scaling: c.Scale(), RSLoRA: c.UseRSLoRA, Targets: c.TargetModules, BaseModel: c.BaseModel, TrainedSteps: c.TrainedSteps,
		Ramp: c.Ramp(), LoraPlusRatio: c.LoraPlusRatio, ModulesToSave: c.ModulesToSave, AdapterParams: a.Params(),
		Modules: []moduleInfo{}, singlora: c.PeftType == adapterio.TypeSingLoRA}
	if d.singlora {
		d.Init, d.RampUpSteps = c.Init, c.RampUpSteps
	}
	d.ExcludeModules, d.LayersToTransform, d.LayersPattern = c.ExcludeModules, c.LayersToTransform, c.LayersPattern
	d.RankPattern, d.AlphaPattern, d.Bias = c.RankPattern, c.AlphaPattern, c.Bias
	if d.Bias == "" {
		d.Bias = adapterio.BiasNone
	}
	for _, m := range a.Modules {
		d.Modules = append(d.Modules, moduleInfo{m.Path, m.In, m.Out, c.ModuleRank(m.Path), c.ModuleAlpha(m.Path), c.ModuleScale(m.Path), m.Params(), m.In * m.Out})
		d.BaseParams += m.In * m.Out
	}
	for _, s := range a.Saved {
		d.ModulesToSaveParams += len(s.Data)
	}
	if d.Weights, err = describeFile(filepath.Join(p, adapterio.WeightsFile)); err != nil {
		return nil, err
	}
	d.Weights.Kind = ""
	return d, nil
}

func (d *adapterInfo) text(w io.Writer) {
	fmt.Fprintf(w, "adapter:      %s\n", d.Path)
	fmt.Fprintf(w, "method:       %s (peft_type %s)\n", d.Method, d.PeftType)
	fmt.Fprintf(w, "rank:         %d\n", d.Rank)
	fmt.Fprintf(w, "alpha:        %g\n", d.Alpha)
	mode := "alpha/r"
	if d.RSLoRA {
		mode = "alpha/sqrt(r) (rsLoRA)"
	}
	fmt.Fprintf(w, "scaling:      %g (%s)\n", d.Scaling, mode)
	if len(d.RankPattern) > 0 {
		fmt.Fprintf(w, "rank_pattern: %s\n", d.RankPattern)
	}
	if len(d.AlphaPattern) > 0 {
		fmt.Fprintf(w, "alpha_pattern: %s\n", d.AlphaPattern)
	}
	fmt.Fprintf(w, "targets:      %s\n", strings.Join(d.Targets, ", "))
	if d.Bias != adapterio.BiasNone {
		fmt.Fprintf(w, "bias:         %s (trained biases saved with the adapter)\n", d.Bias)
	}
	if len(d.ExcludeModules) > 0 {
		fmt.Fprintf(w, "excluded:     %s\n", strings.Join(d.ExcludeModules, ", "))
	}
	if len(d.LayersToTransform) > 0 {
		pat := "any name.number"
		if len(d.LayersPattern) > 0 {
			pat = strings.Join(d.LayersPattern, ", ")
		}
		fmt.Fprintf(w, "layers:       %v (layers_pattern: %s)\n", d.LayersToTransform, pat)
	}
	if d.BaseModel != "" {
		fmt.Fprintf(w, "base model:   %s\n", d.BaseModel)
	}
	if d.singlora {
		fmt.Fprintf(w, "init:         %s\n", d.Init)
		fmt.Fprintf(w, "trained steps: %d, ramp T = %d, u = %g\n", d.TrainedSteps, d.RampUpSteps, d.Ramp)
	} else if d.TrainedSteps > 0 {
		fmt.Fprintf(w, "trained steps: %d\n", d.TrainedSteps)
	}
	if d.LoraPlusRatio > 0 {
		fmt.Fprintf(w, "lora+ ratio:  %g\n", d.LoraPlusRatio)
	}
	if len(d.ModulesToSave) > 0 {
		fmt.Fprintf(w, "modules_to_save: %s\n", strings.Join(d.ModulesToSave, ", "))
	}
	perModule := len(d.RankPattern) > 0 || len(d.AlphaPattern) > 0
	if perModule {
		fmt.Fprintf(w, "\n%-50s %7s %7s %5s %7s %8s %10s %10s\n", "module", "in", "out", "r", "alpha", "scaling", "adapter", "base")
	} else {
		fmt.Fprintf(w, "\n%-50s %7s %7s %10s %10s\n", "module", "in", "out", "adapter", "base")
	}
	for _, m := range d.Modules {
		if perModule {
			fmt.Fprintf(w, "%-50s %7d %7d %5d %7g %8.4g %10d %10d\n", m.Path, m.In, m.Out, m.Rank, m.Alpha, m.Scaling, m.AdapterParams, m.BaseParams)
			continue
		}
		fmt.Fprintf(w, "%-50s %7d %7d %10d %10d\n", m.Path, m.In, m.Out, m.AdapterParams, m.BaseParams)
	}
	fmt.Fprintf(w, "adapter params: %d in %d modules (adapted base weights: %d)", d.AdapterParams, len(d.Modules), d.BaseParams)
	if d.ModulesToSaveParams > 0 {
		fmt.Fprintf(w, ", modules_to_save params: %d", d.ModulesToSaveParams)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	d.Weights.text(w)
}
