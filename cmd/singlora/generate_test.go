package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/models/lm"
)

// tinyLlamaDir writes a random 1-layer Llama checkpoint (tied embeddings) and returns its folder.
func tinyLlamaDir(t *testing.T) string {
	const d, inter, v, heads, kvh = 16, 24, 20, 2, 1
	hd := d / heads
	ck := hftest.New(9)
	ck.Rand("model.embed_tokens.weight", 0, 1, v, d)
	for _, l := range []struct {
		n       string
		in, out int
	}{{"self_attn.q_proj", d, heads * hd}, {"self_attn.k_proj", d, kvh * hd}, {"self_attn.v_proj", d, kvh * hd},
		{"self_attn.o_proj", heads * hd, d}, {"mlp.gate_proj", d, inter}, {"mlp.up_proj", d, inter}, {"mlp.down_proj", inter, d}} {
		ck.Rand("model.layers.0."+l.n+".weight", 0, 0.3, l.out, l.in)
	}
	ck.Rand("model.layers.0.input_layernorm.weight", 1, 0.1, d)
	ck.Rand("model.layers.0.post_attention_layernorm.weight", 1, 0.1, d)
	ck.Rand("model.norm.weight", 1, 0.1, d)
	cfg := map[string]any{"model_type": "llama", "architectures": []string{"LlamaForCausalLM"}, "vocab_size": v,
		"hidden_size": d, "intermediate_size": inter, "num_hidden_layers": 1, "num_attention_heads": heads,
		"num_key_value_heads": kvh, "tie_word_embeddings": true, "eos_token_id": 19, "hidden_act": "silu"}
	dir := t.TempDir()
	if err := ck.Write(dir, cfg, "BF16", 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

func captureStdout(t *testing.T, f func() error) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	err = f()
	os.Stdout = old
	w.Close()
	b, _ := io.ReadAll(r)
	return strings.TrimSpace(string(b)), err
}

func TestGenerateCommand(t *testing.T) {
	dir := tinyLlamaDir(t)
	out, err := captureStdout(t, func() error {
		return runGenerate([]string{"--model", dir, "--prompt-ids", "1,4,7", "--max-new-tokens", "6"})
	})
	if err != nil {
		t.Fatal(err)
	}
	// The same through the library.
	store := model.NewStore()
	c, err := llama.Load(dir, store)
	if err != nil {
		t.Fatal(err)
	}
	be, _ := backend.Get()
	gen, err := llama.NewGenerator(be, store, c, nil, 9)
	if err != nil {
		t.Fatal(err)
	}
	want, err := gen.Generate([]int{1, 4, 7}, 6, lm.SampleOptions{}, c.EOS)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Trim(strings.ReplaceAll(fmt.Sprint(want), " ", ","), "[]")
	if out != w {
		t.Fatalf("generate printed %q, want %q", out, w)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", dir, "--prompt", "hi"}, "no tokenizer.json"},
		{[]string{"--model", dir, "--prompt-ids", "1,99"}, "outside the vocabulary"},
		{[]string{"--model", dir, "--prompt-ids", "1", "--adapter", t.TempDir()}, "adapter"},
		{[]string{"--prompt-ids", "1"}, "--model is required"},
		{[]string{"--model", withConfig(t, dir, "model_type", "mamba"), "--prompt-ids", "1"}, `model_type "mamba" is not a model singlora knows (known: bert, gpt2, llama`},
	} {
		_, err := captureStdout(t, func() error { return runGenerate(tc.args) })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// withConfig returns a copy of the model folder dir whose config.json has key set to value.
func withConfig(t *testing.T, dir, key string, value any) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "config.json" {
			var cfg map[string]any
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg[key] = value
			b, _ = json.Marshal(cfg)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestGenerateRefusesBadSettings: sampling settings out of range, and prompts that do not fit the
// model's positions, are refused with the flag, the allowed range and (for the prompt) the counts.
func TestGenerateRefusesBadSettings(t *testing.T) {
	dir := withConfig(t, tinyLlamaDir(t), "max_position_embeddings", 8)
	base := []string{"--model", dir, "--prompt-ids", "1,4,7"}
	for _, tc := range []struct {
		args []string
		want []string // substrings of the error; none: it must succeed
	}{
		{[]string{"--temperature", "-1"}, []string{"--temperature -1", "finite number ≥ 0"}},
		{[]string{"--temperature", "NaN"}, []string{"--temperature NaN", "finite number ≥ 0"}},
		{[]string{"--temperature", "+Inf"}, []string{"--temperature +Inf", "finite"}},
		{[]string{"--top-k", "-3"}, []string{"--top-k -3", "≥ 0"}},
		{[]string{"--max-new-tokens", "0"}, []string{"--max-new-tokens 0", "≥ 1"}},
		{[]string{"--max-new-tokens", "6"}, []string{"the prompt has 3 tokens", "--max-new-tokens is 6", "9 positions", "8 (max_position_embeddings)", "at most 5"}},
		{[]string{"--prompt-ids", "1,2,3,4,5,6,7,8"}, []string{"the prompt has 8 tokens", "at most 8 (max_position_embeddings)", "shorten the prompt"}},
		{[]string{"--max-new-tokens", "5"}, nil},
		{[]string{"--max-new-tokens", "5", "--temperature", "0.7", "--top-k", "3", "--seed", "2"}, nil},
	} {
		args := append(append([]string(nil), base...), tc.args...)
		out, err := captureStdout(t, func() error { return runGenerate(args) })
		if tc.want == nil {
			if err != nil {
				t.Errorf("%v: %v", tc.args, err)
			} else if n := len(strings.Split(out, ",")); n < 1 || n > 5 {
				t.Errorf("%v: printed %q, want 1 to 5 token ids", tc.args, out)
			}
			continue
		}
		if err == nil {
			t.Errorf("%v: no error (printed %q)", tc.args, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not contain %q", tc.args, err, w)
			}
		}
	}
}
