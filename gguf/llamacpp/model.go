package llamacpp

import (
	"fmt"
	"path/filepath"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/gguf"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/llama"
)

// ModelReport says what WriteModel wrote.
type ModelReport struct {
	Arch    string
	Tensors int
	Params  int
	Merged  int // modules with the adapter merged in
	Type    gguf.TensorType
}

// fileType is general.file_type for a model whose matrices are t (llama_ftype: ALL_F32 0,
// MOSTLY_F16 1, MOSTLY_BF16 32).
func fileType(t gguf.TensorType) uint32 {
	switch t {
	case gguf.F16:
		return 1
	case gguf.BF16:
		return 32
	}
	return 0
}

// modelTensor is one tensor of the plan: its HF name and shape, its GGUF info, and the heads
// PermuteRows permutes its rows in (0: none).
type modelTensor struct {
	hf    string
	shape []int
	info  gguf.TensorInfo
	heads int
}

// plan lists the model's tensors in llama.cpp's names and ggml dims: matrices in dtype, norms and
// biases in F32 (as convert_hf_to_gguf.py keeps 1-D tensors).
func plan(c *llama.Config, arch Arch, w *hf.Weights, dtype gguf.TensorType) ([]modelTensor, error) {
	var out []modelTensor
	add := func(hfName string, heads int, shape ...int) error {
		name, err := TensorName(hfName)
		if err != nil {
			return err
		}
		t := dtype
		if len(shape) == 1 {
			t = gguf.F32
		}
		dims := make([]uint64, len(shape))
		for i, d := range shape {
			dims[len(shape)-1-i] = uint64(d)
		}
		out = append(out, modelTensor{hf: hfName, shape: shape, info: gguf.TensorInfo{Name: name, Type: t, Dims: dims}, heads: heads})
		return nil
	}
	if err := add("model.embed_tokens.weight", 0, c.VocabSize, c.Hidden); err != nil {
		return nil, err
	}
	specs := llama.Linears(c)
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		if err := add(p+"input_layernorm.weight", 0, c.Hidden); err != nil {
			return nil, err
		}
		for _, s := range specs[7*i : 7*i+7] {
			h := rowHeads(arch, c, s.Path)
			if err := add(s.Path+".weight", h, s.Out, s.In); err != nil {
				return nil, err
			}
			if s.Bias {
				if err := add(s.Path+".bias", h, s.Out); err != nil {
					return nil, err
				}
			}
		}
		if err := add(p+"post_attention_layernorm.weight", 0, c.Hidden); err != nil {
			return nil, err
		}
	}
	if err := add("model.norm.weight", 0, c.Hidden); err != nil {
		return nil, err
	}
	if w.Has("lm_head.weight") && !c.TieEmbeddings {
		if err := add("lm_head.weight", 0, c.VocabSize, c.Hidden); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hparams returns the <arch>.* hyperparameter key-values llama.cpp reads for a Llama-family model.
func hparams(c *llama.Config, arch Arch) []gguf.KV {
	k := func(s string) string { return arch.Name + "." + s }
	return []gguf.KV{
		kv(k("vocab_size"), uint32(c.VocabSize)),
		kv(k("context_length"), uint32(c.MaxPositions)),
		kv(k("embedding_length"), uint32(c.Hidden)),
		kv(k("block_count"), uint32(c.Layers)),
		kv(k("feed_forward_length"), uint32(c.Intermediate)),
		kv(k("attention.head_count"), uint32(c.Heads)),
		kv(k("attention.head_count_kv"), uint32(c.KVHeads)),
		kv(k("attention.key_length"), uint32(c.HeadDim)),
		kv(k("attention.value_length"), uint32(c.HeadDim)),
		kv(k("rope.dimension_count"), uint32(c.HeadDim)),
		kv(k("rope.freq_base"), float32(c.RopeTheta)),
		kv(k("attention.layer_norm_rms_epsilon"), float32(c.RMSNormEps)),
	}
}

// ModelOptions are WriteModel's options.
type ModelOptions struct {
	// Type of the matrices (F32, F16 or BF16); norms and biases are always F32.
	Type gguf.TensorType
	// Adapter, when set, is an adapter folder merged into the weights (adapterio.MergeWeight:
	// W0 + ΔW, or DoRA's rescaled weight) before the q/k permutation.
	Adapter string
}

// WriteModel writes the Llama-family HF model folder dir (config.json, safetensors weights,
// a byte-level BPE tokenizer.json) as a whole-model llama.cpp GGUF at path, atomically: general.*
// and <arch>.* hyperparameters (hparams), the tokenizer (VocabKVs), and every weight under
// llama.cpp's name (TensorName), q_proj/k_proj rows permuted for the "llama" architecture
// (PermuteRows). Tensors are read, converted and written one at a time.
func WriteModel(path, dir string, opts ModelOptions) (*ModelReport, error) {
	c, err := llama.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	arch, err := ArchFor(c.ModelType)
	if err != nil {
		return nil, err
	}
	if opts.Type != gguf.F32 && opts.Type != gguf.F16 && opts.Type != gguf.BF16 {
		return nil, fmt.Errorf("--dtype %s: a model is written as f32, f16 or bf16", opts.Type)
	}
	var a *adapterio.Adapter
	if opts.Adapter != "" {
		if a, err = adapterio.LoadWith(opts.Adapter, adapterio.ModelShapes(llama.Linears(c))); err != nil {
			return nil, err
		}
		if len(a.Saved) > 0 {
			return nil, fmt.Errorf("%s: the adapter saves whole modules (modules_to_save %v), which the merge into a llama.cpp model does not carry", opts.Adapter, a.Config.ModulesToSave)
		}
		if b := a.Config.Bias; b != "" && b != "none" {
			return nil, fmt.Errorf("%s: the adapter trains biases (bias %q), which the merge into a llama.cpp model does not carry", opts.Adapter, b)
		}
		specs := map[string]bool{}
		for _, s := range llama.Linears(c) {
			specs[s.Path] = true
		}
		for _, m := range a.Modules {
			if !specs[m.Path] {
				return nil, fmt.Errorf("%s: the adapter adapts %s, which is not one of the model's projections", opts.Adapter, m.Path)
			}
		}
	}
	w, err := hf.OpenWeights(dir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	tensors, err := plan(c, arch, w, opts.Type)
	if err != nil {
		return nil, err
	}
	vocab, err := VocabKVs(dir, c.VocabSize, c.BOS, c.EOS)
	if err != nil {
		return nil, err
	}
	kvs := []gguf.KV{
		kv(KeyArchitecture, arch.Name), kv(KeyType, "model"), kv(KeyName, filepath.Base(filepath.Clean(dir))),
		kv("general.file_type", fileType(opts.Type)),
	}
	kvs = append(append(kvs, hparams(c, arch)...), vocab...)
	infos := make([]gguf.TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.info
	}
	gw, err := gguf.Create(path, kvs, infos)
	if err != nil {
		return nil, err
	}
	rep := &ModelReport{Arch: arch.Name, Tensors: len(tensors), Type: opts.Type}
	for _, t := range tensors {
		data, merged, err := tensorData(w, a, t)
		if err != nil {
			gw.Abort()
			return nil, err
		}
		if err := gw.WriteTensor(t.info.Name, data); err != nil {
			return nil, err
		}
		rep.Params += int(t.info.Elements())
		if merged {
			rep.Merged++
		}
	}
	if a != nil && rep.Merged != len(a.Modules) {
		gw.Abort()
		return nil, fmt.Errorf("merged %d of the adapter's %d modules", rep.Merged, len(a.Modules))
	}
	return rep, gw.Close()
}

// tensorData reads one planned tensor, merges the adapter's module into it (a weight the adapter
// adapts), permutes its rows and encodes it.
func tensorData(w *hf.Weights, a *adapterio.Adapter, t modelTensor) ([]byte, bool, error) {
	vals, err := w.Float32s(t.hf, t.shape...)
	if err != nil {
		return nil, false, err
	}
	merged := false
	if a != nil && len(t.shape) == 2 {
		if m := a.Module(t.hf[:len(t.hf)-len(".weight")]); m != nil {
			w0 := make([]float64, len(vals))
			for i, v := range vals {
				w0[i] = float64(v)
			}
			wm, err := adapterio.MergeWeight(a, m, w0, false)
			if err != nil {
				return nil, false, err
			}
			for i, v := range wm {
				vals[i] = float32(v)
			}
			merged = true
		}
	}
	if t.heads > 0 {
		cols := 1
		if len(t.shape) == 2 {
			cols = t.shape[1]
		}
		if vals, err = PermuteRows(vals, t.shape[0], cols, t.heads); err != nil {
			return nil, false, fmt.Errorf("%s: %w", t.hf, err)
		}
	}
	data, err := gguf.Encode(t.info.Type, vals)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", t.hf, err)
	}
	return data, merged, nil
}
