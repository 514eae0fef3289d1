package pretrain

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// hfConfig is the config.json of the written folder, in transformers' LlamaConfig names.
func hfConfig(c Config) map[string]any {
	return map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"vocab_size":              c.VocabSize,
		"hidden_size":             c.Hidden,
		"intermediate_size":       c.Intermediate,
		"num_hidden_layers":       c.Layers,
		"num_attention_heads":     c.Heads,
		"num_key_value_heads":     c.KVHeads,
		"head_dim":                c.HeadDim(),
		"max_position_embeddings": c.Seq,
		"hidden_act":              "silu",
		"rms_norm_eps":            c.RMSNormEps,
		"rope_theta":              c.RopeTheta,
		"attention_bias":          false,
		"mlp_bias":                false,
		"tie_word_embeddings":     true,
		"initializer_range":       c.InitStd,
		"bos_token_id":            0,
		"eos_token_id":            1,
		"pad_token_id":            2,
		"torch_dtype":             "float32",
		"use_cache":               true,
	}
}

// llamaConfig is the models/llama view of c (for the tensor list).
func llamaConfig(c Config) *llama.Config {
	return &llama.Config{VocabSize: c.VocabSize, Hidden: c.Hidden, Intermediate: c.Intermediate, Layers: c.Layers,
		Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim(), TieEmbeddings: true}
}

// tensorSpec is one checkpoint tensor: name, shape, and whether it is an RMSNorm weight (ones).
type tensorSpec struct {
	name  string
	shape []int
	norm  bool
}

// tensors lists the checkpoint's tensors in a fixed order: the embedding, each layer's seven
// projections (llama.Linears) and two norms, the final norm. The head is tied: no lm_head.
func tensorList(c Config) []tensorSpec {
	lc := llamaConfig(c)
	out := []tensorSpec{{name: "model.embed_tokens.weight", shape: []int{c.VocabSize, c.Hidden}}}
	for _, s := range llama.Linears(lc) {
		out = append(out, tensorSpec{name: s.Path + ".weight", shape: []int{s.Out, s.In}})
	}
	for i := 0; i < c.Layers; i++ {
		for _, n := range []string{"input_layernorm", "post_attention_layernorm"} {
			out = append(out, tensorSpec{name: fmt.Sprintf("model.layers.%d.%s.weight", i, n), shape: []int{c.Hidden}, norm: true})
		}
	}
	return append(out, tensorSpec{name: "model.norm.weight", shape: []int{c.Hidden}, norm: true})
}

// initTensors draws the initial weights: every matrix N(0, InitStd²) from one PCG stream of the
// seed, in tensorList order; norms 1.
func initTensors(c Config) ([]safetensors.Tensor, error) {
	rng := rand.New(rand.NewPCG(c.Seed, 0x1a3a))
	var out []safetensors.Tensor
	for _, s := range tensorList(c) {
		n := 1
		for _, d := range s.shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			if s.norm {
				v[i] = 1
			} else {
				v[i] = float32(c.InitStd * rng.NormFloat64())
			}
		}
		t, err := safetensors.FromFloat32s(s.name, safetensors.F32, s.shape, v)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// storeTensors reads the checkpoint tensors of c from store (as loaded by models/llama).
func storeTensors(c Config, store *model.Store) ([]safetensors.Tensor, error) {
	var out []safetensors.Tensor
	for _, s := range tensorList(c) {
		v := store.GetVariable(hf.VariablePath(s.name))
		if v == nil {
			return nil, fmt.Errorf("the trained model has no variable %s", hf.VariablePath(s.name))
		}
		vals, err := peft.Float32Values(v)
		if err != nil {
			return nil, err
		}
		t, err := safetensors.FromFloat32s(s.name, safetensors.F32, s.shape, vals)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// writeFolder writes a complete Hugging Face folder to dst atomically (built in a sibling
// temporary folder, then renamed): config.json, model.safetensors (ts), tokenizer.json,
// tokenizer_config.json, generation_config.json, and extra files (name → content).
func writeFolder(dst string, c Config, ts []safetensors.Tensor, tokJSON []byte, extra map[string][]byte) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := atomicfile.TempDir(dst)
	if err != nil {
		return err
	}
	err = func() error {
		files := map[string][]byte{"tokenizer.json": tokJSON}
		for name, v := range map[string]any{
			"config.json": hfConfig(c),
			"tokenizer_config.json": map[string]any{
				"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
				"add_bos_token": true, "add_eos_token": false, "model_max_length": c.Seq, "clean_up_tokenization_spaces": false,
			},
			"generation_config.json": map[string]any{"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2, "do_sample": false},
		} {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return err
			}
			files[name] = append(b, '\n')
		}
		for name, b := range extra {
			files[name] = b
		}
		for name, b := range files {
			if err := atomicfile.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
				return err
			}
		}
		return safetensors.Write(filepath.Join(tmp, "model.safetensors"), ts, map[string]string{"format": "pt"})
	}()
	if err == nil {
		err = atomicfile.ReplaceDir(tmp, dst)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return nil
}
