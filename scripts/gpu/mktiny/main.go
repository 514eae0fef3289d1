// Command mktiny writes the tiny material scripts/gpu/check.sh trains on, so that a machine
// without network (the GPU machine) needs nothing but the carried binaries: a random Llama
// checkpoint in the Hugging Face layout (config.json, model.safetensors in float32, a
// WordPiece tokenizer.json; transformers and singlora both read it) and prompt/completion
// data (train.jsonl, val.jsonl). The same seed writes the same bytes.
//
//	mktiny -out DIR   # DIR/tiny-llama/, DIR/train.jsonl, DIR/val.jsonl
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/singlora/singlora/models/hf/hftest"
)

// The model: hidden 128, 4 layers, 4 query and 2 key-value heads (GQA), SwiGLU 256.
const (
	hidden, inter, layers, heads, kvHeads = 128, 256, 4, 4, 2
	seed                                  = 5
)

var (
	subjects = []string{"the fox", "a cat", "the bird", "a fish", "the dog", "a cow", "the owl", "a frog"}
	verbs    = []string{"jumps over", "sleeps on", "sings in", "swims in", "barks at", "eats", "watches", "finds"}
	objects  = []string{"the mat", "the tree", "the sea", "the grass", "the moon", "the river", "the hill", "the barn"}
)

func main() {
	out := flag.String("out", "", "the folder to write (created; tiny-llama/, train.jsonl and val.jsonl in it)")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mktiny -out DIR")
		os.Exit(2)
	}
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "mktiny:", err)
		os.Exit(1)
	}
}

func write(out string) error {
	words := vocabulary()
	model := filepath.Join(out, "tiny-llama")
	if err := os.MkdirAll(model, 0o755); err != nil {
		return err
	}
	if err := writeTokenizer(model, words); err != nil {
		return err
	}
	if err := writeCheckpoint(model, len(words)); err != nil {
		return err
	}
	// 64 sentences "subject verb object"; every 8th goes to validation.
	var train, val strings.Builder
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < 64; i++ {
		s, v, o := subjects[i%8], verbs[(i/8+i)%8], objects[r.IntN(8)]
		line, err := json.Marshal(map[string]string{"prompt": s, "completion": v + " " + o})
		if err != nil {
			return err
		}
		w := &train
		if i%8 == 7 {
			w = &val
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(out, "train.jsonl"), []byte(train.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "val.jsonl"), []byte(val.String()), 0o644)
}

// vocabulary is [PAD] (id 0), [UNK] (1), then every word of the data, in first-seen order.
func vocabulary() []string {
	words := []string{"[PAD]", "[UNK]"}
	seen := map[string]bool{}
	for _, list := range [][]string{subjects, verbs, objects} {
		for _, phrase := range list {
			for _, w := range strings.Fields(phrase) {
				if !seen[w] {
					seen[w] = true
					words = append(words, w)
				}
			}
		}
	}
	return words
}

// writeTokenizer writes a lowercase WordPiece tokenizer.json over words (the first two are the
// special [PAD] and [UNK]); there is no BOS or EOS, so singlora and the PEFT peer both tokenise
// a prompt and a completion to exactly their words.
func writeTokenizer(dir string, words []string) error {
	vocab := map[string]int{}
	for i, w := range words {
		vocab[w] = i
	}
	tj := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "[PAD]", "special": true, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
			map[string]any{"id": 1, "content": "[UNK]", "special": true, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
		},
		"normalizer":     map[string]any{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": nil, "lowercase": true},
		"pre_tokenizer":  map[string]any{"type": "BertPreTokenizer"},
		"post_processor": nil,
		"decoder":        map[string]any{"type": "WordPiece", "prefix": "##", "cleanup": true},
		"model": map[string]any{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
			"max_input_chars_per_word": 100, "vocab": vocab},
	}
	b, err := json.MarshalIndent(tj, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644)
}

// writeCheckpoint writes config.json and model.safetensors (float32) of a random LlamaForCausalLM
// with vocab tokens: linears ~ N(0, 1/in), embeddings and head N(0, 0.25) and N(0, 1/hidden),
// norms ~ N(1, 0.01).
func writeCheckpoint(dir string, vocab int) error {
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "torch_dtype": "float32",
		"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
		"num_attention_heads": heads, "num_key_value_heads": kvHeads, "max_position_embeddings": 128,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": false,
		"attention_bias": false, "mlp_bias": false, "pad_token_id": 0,
	}
	ck := hftest.New(seed)
	ck.Rand("model.embed_tokens.weight", 0, 0.5, vocab, hidden)
	hd := hidden / heads
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		lin := func(name string, in, out int) { ck.Rand(p+name+".weight", 0, 1/math.Sqrt(float64(in)), out, in) }
		lin("self_attn.q_proj", hidden, heads*hd)
		lin("self_attn.k_proj", hidden, kvHeads*hd)
		lin("self_attn.v_proj", hidden, kvHeads*hd)
		lin("self_attn.o_proj", heads*hd, hidden)
		lin("mlp.gate_proj", hidden, inter)
		lin("mlp.up_proj", hidden, inter)
		lin("mlp.down_proj", inter, hidden)
		ck.Rand(p+"input_layernorm.weight", 1, 0.1, hidden)
		ck.Rand(p+"post_attention_layernorm.weight", 1, 0.1, hidden)
	}
	ck.Rand("model.norm.weight", 1, 0.1, hidden)
	ck.Rand("lm_head.weight", 0, 1/math.Sqrt(float64(hidden)), vocab, hidden)
	return ck.Write(dir, cfg, "F32", 1)
}
