package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestInspectModel: inspect on a model folder asks the registry which architecture loads it and
// lists the linear layers an adapter can target; an unknown model_type lists the known ones.
func TestInspectModel(t *testing.T) {
	dir := tinyLlamaDir(t)
	var out strings.Builder
	if err := runInspect([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	// 1 layer, hidden 16, 2 query heads and 1 key/value head of 8, MLP 24: 256+128+128+256+3·384.
	for _, want := range []string{"architecture: llama (models/llama), model_type llama | mistral | qwen2", "tasks:        classify, causal-lm",
		"tokenizer:    tokenizer.json", "vocabulary 20 tokens, at most 2048 positions (max_position_embeddings), eos 19",
		"model.layers.0.self_attn.k_proj                         16       8 false        128",
		"7 linear layers with 1920 weights, of 2288 parameters loaded"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect printed\n%s\nwant a line containing %q", out.String(), want)
		}
	}
	for _, tc := range []struct {
		dir, want string
	}{
		{withConfig(t, dir, "model_type", "mamba"), `model_type "mamba" is not a model singlora knows (known: bert, gpt2, llama, mistral, qwen2, roberta, use)`},
		{filepath.Join(dir, "nosuch"), "no such file or directory"},
	} {
		err := runInspect([]string{tc.dir}, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("inspect %s: error %v, want %q", tc.dir, err, tc.want)
		}
	}
}
