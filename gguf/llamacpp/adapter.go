package llamacpp

import (
	"fmt"
	"math"
	"strings"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/gguf"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/peft"
)

// Adapter GGUF keys (gguf-py's Keys.General.TYPE and Keys.Adapter).
const (
	KeyArchitecture = "general.architecture"
	KeyType         = "general.type"
	KeyName         = "general.name"
	KeyAdapterType  = "adapter.type"
	KeyLoRAAlpha    = "adapter.lora.alpha"
)

// AdapterReport says what WriteAdapter wrote.
type AdapterReport struct {
	Arch    string
	Method  peft.Method
	Modules int
	Params  int     // values in the lora_a and lora_b tensors
	Alpha   float64 // adapter.lora.alpha
}

// rowHeads returns the number of heads whose rows PermuteRows permutes for HF module path (a
// q_proj or k_proj of an architecture that permutes), or 0.
func rowHeads(arch Arch, c *llama.Config, module string) int {
	if !arch.PermuteQK {
		return 0
	}
	switch {
	case strings.HasSuffix(module, ".self_attn.q_proj"):
		return c.Heads
	case strings.HasSuffix(module, ".self_attn.k_proj"):
		return c.KVHeads
	}
	return 0
}

// AdapterTensors converts adapter a, which adapts the Llama-family base whose config is c, into
// llama.cpp LoRA tensors and key-values, as convert_lora_to_gguf.py writes them:
//
//	blk.N.<proj>.weight.lora_a: lora_A [r, in]   (ggml dims [in, r])
//	blk.N.<proj>.weight.lora_b: lora_B' [out, r] (ggml dims [r, out])
//	adapter.lora.alpha = α, so that llama.cpp's y = W0·x + (α/r)·lora_B'·lora_A·x
//
// SingLoRA goes through its exact LoRA form (adapterio.ExportLoRA: lora_A = A[:in]ᵀ, lora_B =
// s·u·A[:out], α = r). Each module's own scale s_m (alpha_pattern, rank_pattern, rsLoRA) is
// folded into lora_B' = lora_B·s_m·r_m/α, so (α/r_m)·lora_B'·lora_A = ΔW exactly as singlora
// computes it; for a plain LoRA adapter the factor is 1 and lora_B is written as it is. The rows
// of lora_B' of q_proj and k_proj are permuted when the architecture permutes (PermuteRows).
// DoRA, biases, modules_to_save and modules llama.cpp does not adapt are refused with the reason.
func AdapterTensors(a *adapterio.Adapter, c *llama.Config, dtype gguf.TensorType) ([]gguf.KV, []gguf.Tensor, *AdapterReport, error) {
	arch, err := ArchFor(c.ModelType)
	if err != nil {
		return nil, nil, nil, err
	}
	method := a.Method()
	switch method {
	case peft.SingLoRA, peft.LoRA, peft.LoRAPlus:
	case peft.DoRA:
		return nil, nil, nil, fmt.Errorf("a DoRA adapter has no llama.cpp LoRA form: DoRA rescales each output row of W0 + s·B·A to a learned magnitude, and llama.cpp's LoRA only adds (α/r)·B·A·x; merge it into the model instead (singlora export --format gguf --model BASE --adapter DIR --merge)")
	default:
		return nil, nil, nil, fmt.Errorf("adapter method %q has no llama.cpp export (supported: singlora, lora, loraplus; dora through --merge)", method)
	}
	if b := a.Config.Bias; b != "" && b != "none" {
		return nil, nil, nil, fmt.Errorf("the adapter trains biases (bias %q), which a llama.cpp LoRA adapter cannot carry; merge it into the model instead (--merge)", b)
	}
	if len(a.Saved) > 0 || len(a.Config.ModulesToSave) > 0 {
		return nil, nil, nil, fmt.Errorf("the adapter saves whole modules (modules_to_save %v), which a llama.cpp LoRA adapter cannot carry; merge it into the model instead (--merge)", a.Config.ModulesToSave)
	}
	specs := map[string]peft.LinearSpec{}
	for _, s := range llama.Linears(c) {
		specs[s.Path] = s
	}
	e, err := adapterio.ExportLoRA(a)
	if err != nil {
		return nil, nil, nil, err
	}
	alpha := e.Config.LoraAlpha
	if !(alpha > 0) || math.IsInf(alpha, 0) {
		return nil, nil, nil, fmt.Errorf("lora_alpha %g: llama.cpp's adapter.lora.alpha must be a positive number", alpha)
	}
	kvs := []gguf.KV{
		kv(KeyArchitecture, arch.Name), kv(KeyType, "adapter"), kv(KeyAdapterType, "lora"), kv(KeyLoRAAlpha, float32(alpha)),
	}
	rep := &AdapterReport{Arch: arch.Name, Method: method, Alpha: alpha}
	var tensors []gguf.Tensor
	for _, s := range llama.Linears(c) { // llama.cpp's order: layer by layer, q k v o gate up down
		m := e.Module(s.Path)
		if m == nil {
			continue
		}
		la, lb := m.Tensors[peft.NameLoRAA], m.Tensors[peft.NameLoRAB]
		if la == nil || lb == nil || len(la.Shape) != 2 || len(lb.Shape) != 2 {
			return nil, nil, nil, fmt.Errorf("module %s: no lora_A [r, in] and lora_B [out, r] in the exported adapter", s.Path)
		}
		r := la.Shape[0]
		if la.Shape[1] != s.In || lb.Shape[0] != s.Out || lb.Shape[1] != r {
			return nil, nil, nil, fmt.Errorf("module %s: lora_A %v and lora_B %v do not fit the base's [out, in] = [%d, %d] (from its config.json)", s.Path, la.Shape, lb.Shape, s.Out, s.In)
		}
		b := lb.Data
		if f := e.Config.ModuleScale(s.Path) * float64(r) / alpha; f != 1 {
			b = make([]float32, len(lb.Data))
			for i, v := range lb.Data {
				b[i] = float32(float64(v) * f)
			}
		}
		if h := rowHeads(arch, c, s.Path); h > 0 {
			if b, err = PermuteRows(b, s.Out, r, h); err != nil {
				return nil, nil, nil, fmt.Errorf("module %s: %w", s.Path, err)
			}
		}
		name, err := TensorName(s.Path + ".weight")
		if err != nil {
			return nil, nil, nil, err
		}
		for _, t := range []struct {
			suffix string
			dims   []uint64
			vals   []float32
		}{{".lora_a", []uint64{uint64(s.In), uint64(r)}, la.Data}, {".lora_b", []uint64{uint64(r), uint64(s.Out)}, b}} {
			data, err := gguf.Encode(dtype, t.vals)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("module %s%s: %w", s.Path, t.suffix, err)
			}
			tensors = append(tensors, gguf.Tensor{TensorInfo: gguf.TensorInfo{Name: name + t.suffix, Type: dtype, Dims: t.dims}, Data: data})
			rep.Params += len(t.vals)
		}
		rep.Modules++
	}
	if rep.Modules != len(a.Modules) {
		var extra []string
		for _, m := range a.Modules {
			if _, ok := specs[m.Path]; !ok {
				extra = append(extra, m.Path)
			}
		}
		return nil, nil, nil, fmt.Errorf("the adapter adapts %s, which llama.cpp's LoRA cannot apply to this %s model (its adaptable modules are model.layers.N.self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj, N < %d)", strings.Join(extra, ", "), c.ModelType, c.Layers)
	}
	if rep.Modules == 0 {
		return nil, nil, nil, fmt.Errorf("the adapter has no modules")
	}
	return kvs, tensors, rep, nil
}

// WriteAdapter writes the adapter folder adapterDir, for the HF base model folder baseDir (its
// config.json gives the architecture, head counts and every module's [out, in]), as a llama.cpp
// LoRA adapter GGUF at path (see AdapterTensors), atomically.
func WriteAdapter(path, adapterDir, baseDir string, dtype gguf.TensorType) (*AdapterReport, error) {
	c, err := llama.LoadConfig(baseDir)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	a, err := adapterio.LoadWith(adapterDir, adapterio.ModelShapes(llama.Linears(c)))
	if err != nil {
		return nil, err
	}
	kvs, tensors, rep, err := AdapterTensors(a, c, dtype)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", adapterDir, err)
	}
	return rep, gguf.WriteFile(path, kvs, tensors)
}
