package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/singlora/singlora/adapterio"
)

func init() {
	register(&command{
		Name:    "export",
		Summary: "export a SingLoRA adapter as a plain PEFT LoRA adapter",
		Usage:   "singlora export --format lora --adapter ADAPTER_DIR --out LORA_DIR",
		Run:     func(args []string) error { return runExport(args, os.Stdout) },
	})
}

func runExport(args []string, w io.Writer) error {
	fs := newFlags("export")
	format := fs.String("format", "lora", "output format (only \"lora\": lora_A = A[:in]ᵀ, lora_B = s·u·A[:out], lora_alpha = r)")
	adapter := fs.String("adapter", "", "source adapter folder")
	out := fs.String("out", "", "the output adapter folder (not the --adapter folder; its parent folder must exist)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return err
	}
	if *format != "lora" {
		return fmt.Errorf("unknown --format %q (supported: lora)", *format)
	}
	if err := required(map[string]string{"adapter": *adapter, "out": *out}, "adapter", "out"); err != nil {
		return err
	}
	if same, err := adapterio.SamePath(*adapter, *out); err != nil {
		return err
	} else if same {
		return fmt.Errorf("--out %s is the --adapter folder %s: exporting there would replace the SingLoRA adapter with its LoRA export; give --out a new folder", *out, *adapter)
	}
	e, err := adapterio.ExportLoRAFolder(*adapter, *out)
	if errors.Is(err, adapterio.ErrNoModuleShape) {
		return fmt.Errorf("%w\nexport has no base checkpoint to read each module's [out, in] from, and needs it to split A into lora_A = A[:in]ᵀ and lora_B = s·u·A[:out]: add \"module_shapes\": {\"<module>\": [out, in], ...} to the adapter's %s", err, adapterio.ConfigFile)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "exported %d modules (%d params) as PEFT LoRA r=%d → %s\n", len(e.Modules), e.Params(), e.Config.R, *out)
	return nil
}
