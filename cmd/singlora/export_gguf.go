package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/singlora/singlora/gguf"
	"github.com/singlora/singlora/gguf/llamacpp"
)

// ggufExport holds export's flags for --format gguf.
type ggufExport struct {
	adapter, base, model, dtype, out string
	merge                            bool
}

// runExportGGUF writes a llama.cpp LoRA adapter GGUF (--adapter --base) or a whole-model GGUF
// (--model, optionally --adapter --merge).
func runExportGGUF(w io.Writer, e ggufExport) error {
	if e.out == "" {
		return fmt.Errorf("--out is required: the .gguf file to write")
	}
	if !strings.HasSuffix(e.out, ".gguf") {
		return fmt.Errorf("--out %s: give a file name ending in .gguf", e.out)
	}
	switch {
	case e.model != "" && e.base != "":
		return fmt.Errorf("--model and --base together: --model HF_DIR writes the whole model (add --adapter DIR --merge to merge an adapter), --adapter DIR --base HF_DIR writes the adapter alone")
	case e.model != "":
		if e.adapter != "" && !e.merge {
			return fmt.Errorf("--model with --adapter: add --merge to merge the adapter into the model, or write the adapter alone with --adapter %s --base %s", e.adapter, e.model)
		}
		if e.merge && e.adapter == "" {
			return fmt.Errorf("--merge needs --adapter DIR, the adapter to merge")
		}
		t, err := ggufType(e.dtype, gguf.F16)
		if err != nil {
			return err
		}
		rep, err := llamacpp.WriteModel(e.out, e.model, llamacpp.ModelOptions{Type: t, Adapter: e.adapter})
		if err != nil {
			return err
		}
		merged := ""
		if e.adapter != "" {
			merged = fmt.Sprintf(", %s merged into %d modules", e.adapter, rep.Merged)
		}
		fmt.Fprintf(w, "exported %s as a llama.cpp %s model GGUF (%d tensors, %d params, %s%s) → %s\n", e.model, rep.Arch, rep.Tensors, rep.Params, strings.ToLower(rep.Type.String()), merged, e.out)
		return nil
	case e.adapter != "":
		if e.merge {
			return fmt.Errorf("--merge merges into a whole model: give --model HF_DIR instead of --base")
		}
		if e.base == "" {
			return fmt.Errorf("--base HF_DIR is required for a GGUF adapter: the base model's config.json gives the architecture, head counts and module shapes")
		}
		t, err := ggufType(e.dtype, gguf.F32)
		if err != nil {
			return err
		}
		rep, err := llamacpp.WriteAdapter(e.out, e.adapter, e.base, t)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "exported %d %s modules (%d params) as a llama.cpp %s LoRA adapter GGUF (alpha %g) → %s\n", rep.Modules, rep.Method, rep.Params, rep.Arch, rep.Alpha, e.out)
		return nil
	}
	return fmt.Errorf("--format gguf needs --adapter DIR --base HF_DIR (an adapter) or --model HF_DIR (a whole model)")
}

// ggufType parses --dtype (f32, f16, bf16), def when empty.
func ggufType(s string, def gguf.TensorType) (gguf.TensorType, error) {
	if s == "" {
		return def, nil
	}
	switch strings.ToLower(s) {
	case "f32", "f16", "bf16":
		return gguf.ParseTensorType(s)
	}
	return 0, fmt.Errorf("--dtype %q: want f32, f16 or bf16", s)
}
