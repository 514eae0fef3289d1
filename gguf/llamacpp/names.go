// Package llamacpp converts Hugging Face Llama-family checkpoints and singlora adapters into the
// GGUF files llama.cpp serves, as llama.cpp's own convert_hf_to_gguf.py and
// convert_lora_to_gguf.py write them:
//
//   - WriteAdapter: a LoRA adapter GGUF (general.type "adapter", adapter.type "lora",
//     adapter.lora.alpha; tensors blk.N.attn_q.weight.lora_a [in, r] and .lora_b [r, out] in
//     ggml's dim order) for a SingLoRA adapter (through its exact LoRA form, lora_A = A[:in]ᵀ,
//     lora_B = s·u·A[:out]), a LoRA or a LoRA+ adapter.
//   - WriteModel: a whole model (llama.* hyperparameters, a byte-level BPE tokenizer as
//     tokenizer.ggml.model "gpt2", every weight), optionally with an adapter merged.
//
// llama.cpp's "llama" architecture applies RoPE to interleaved pairs (x[2i], x[2i+1]) where
// Hugging Face rotates halves (x[i], x[i+d/2]), so its converter permutes the rows of q_proj
// (per attention head) and k_proj (per key-value head) — PermuteRows. An adapter's ΔW = s·B·A is
// permuted the same way by permuting the rows of lora_B; lora_A is untouched. Qwen2 is served by
// llama.cpp's "qwen2" architecture, which rotates halves as HF does, so nothing is permuted.
package llamacpp

import (
	"fmt"
	"github.com/singlora/singlora/gguf"
	"strconv"
	"strings"
)

// Arch is how llama.cpp serves a Hugging Face model type.
type Arch struct {
	// Name is the general.architecture value and the prefix of the hyperparameter keys.
	Name string
	// PermuteQK: the rows of q_proj and k_proj (and of their biases and lora_B) are permuted
	// (PermuteRows) because llama.cpp rotates interleaved pairs for this architecture.
	PermuteQK bool
}

// ArchFor returns the llama.cpp architecture of an HF config's model_type: llama and mistral are
// "llama" (as convert_hf_to_gguf.py's LlamaModel writes them), qwen2 is "qwen2".
func ArchFor(modelType string) (Arch, error) {
	switch modelType {
	case "llama", "mistral":
		return Arch{Name: "llama", PermuteQK: true}, nil
	case "qwen2":
		return Arch{Name: "qwen2"}, nil
	}
	return Arch{}, fmt.Errorf("model_type %q has no llama.cpp export here (supported: llama, mistral, qwen2)", modelType)
}

// projections maps the Llama family's per-layer HF module names to llama.cpp's tensor names.
var projections = []struct{ hf, gguf string }{
	{"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
	{"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
	{"mlp.down_proj", "ffn_down"},
	{"input_layernorm", "attn_norm"}, {"post_attention_layernorm", "ffn_norm"},
}

// TensorName returns llama.cpp's name for an HF tensor or module name: model.embed_tokens →
// token_embd, model.norm → output_norm, lm_head → output, model.layers.N.self_attn.q_proj →
// blk.N.attn_q (k_proj attn_k, v_proj attn_v, o_proj attn_output, mlp.gate_proj ffn_gate, up_proj
// ffn_up, down_proj ffn_down, input_layernorm attn_norm, post_attention_layernorm ffn_norm); a
// ".weight" or ".bias" suffix is kept.
func TensorName(hf string) (string, error) {
	base, suffix := hf, ""
	for _, s := range []string{".weight", ".bias"} {
		if b, ok := strings.CutSuffix(hf, s); ok {
			base, suffix = b, s
		}
	}
	switch base {
	case "model.embed_tokens":
		return "token_embd" + suffix, nil
	case "model.norm":
		return "output_norm" + suffix, nil
	case "lm_head":
		return "output" + suffix, nil
	}
	if rest, ok := strings.CutPrefix(base, "model.layers."); ok {
		if n, mod, ok := strings.Cut(rest, "."); ok {
			if _, err := strconv.ParseUint(n, 10, 32); err == nil {
				for _, p := range projections {
					if mod == p.hf {
						return "blk." + n + "." + p.gguf + suffix, nil
					}
				}
			}
		}
	}
	var known []string
	for _, p := range projections {
		known = append(known, "model.layers.N."+p.hf)
	}
	return "", fmt.Errorf("%s has no llama.cpp tensor name (known: model.embed_tokens, model.norm, lm_head, %s)", hf, strings.Join(known, ", "))
}

// PermuteRows returns the rows×cols row-major matrix w with its rows permuted as llama.cpp's
// convert_hf_to_gguf.py permutes q_proj (heads = num_attention_heads) and k_proj (heads =
// num_key_value_heads): within each head of d = rows/heads rows, row h·d + 2j + k of the result
// is row h·d + k·d/2 + j of w (j < d/2, k ∈ {0, 1}) — numpy's
// w.reshape(heads, 2, d/2, cols).swapaxes(1, 2).reshape(rows, cols). A bias is cols = 1.
func PermuteRows(w []float32, rows, cols, heads int) ([]float32, error) {
	if heads <= 0 || rows%(2*heads) != 0 {
		return nil, fmt.Errorf("cannot permute %d rows into %d heads of pairs (rows must be a multiple of 2·heads)", rows, heads)
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("permute: %d values, want %d×%d", len(w), rows, cols)
	}
	d := rows / heads
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for j := 0; j < d/2; j++ {
			for k := 0; k < 2; k++ {
				src, dst := h*d+k*d/2+j, h*d+2*j+k
				copy(out[dst*cols:(dst+1)*cols], w[src*cols:(src+1)*cols])
			}
		}
	}
	return out, nil
}

// kv is a gguf.KV.
func kv(key string, value any) gguf.KV { return gguf.KV{Key: key, Value: value} }
