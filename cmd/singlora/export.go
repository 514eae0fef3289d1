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
		Summary: "export an adapter as a plain PEFT LoRA adapter, or as llama.cpp GGUF (adapter or whole model)",
		Usage: "singlora export --format lora --adapter ADAPTER_DIR --out LORA_DIR\n" +
			"singlora export --format gguf --adapter ADAPTER_DIR --base HF_DIR --out adapter.gguf\n" +
			"singlora export --format gguf --model HF_DIR [--adapter ADAPTER_DIR --merge] --dtype f16 --out model.gguf",
		Run: func(args []string) error { return runExport(args, os.Stdout) },
	})
}

func runExport(args []string, w io.Writer) error {
	fs := newFlags("export")
	format := fs.String("format", "lora", "output format: \"lora\" (a PEFT LoRA folder: lora_A = A[:in]ᵀ, lora_B = s·u·A[:out], lora_alpha = r) or \"gguf\" (llama.cpp: an adapter with --adapter --base, a whole model with --model)")
	adapter := fs.String("adapter", "", "source adapter folder")
	base := fs.String("base", "", "gguf adapter export: the HF base model folder the adapter was trained on (its config.json)")
	modelDir := fs.String("model", "", "gguf model export: the HF Llama-family model folder (config.json, safetensors, tokenizer.json)")
	merge := fs.Bool("merge", false, "gguf model export: merge --adapter into the weights")
	dtype := fs.String("dtype", "", "gguf: type of the matrices, f32, f16 or bf16 (default: f32 for an adapter, f16 for a model)")
	out := fs.String("out", "", "lora: the output adapter folder (not the --adapter folder; its parent folder must exist); gguf: the output .gguf file")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return err
	}
	switch *format {
	case "lora":
		if *base != "" || *modelDir != "" || *merge || *dtype != "" {
			return fmt.Errorf("--base, --model, --merge and --dtype are for --format gguf")
		}
	case "gguf":
		return runExportGGUF(w, ggufExport{adapter: *adapter, base: *base, model: *modelDir, merge: *merge, dtype: *dtype, out: *out})
	default:
		return fmt.Errorf("unknown --format %q (supported: lora, gguf)", *format)
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
