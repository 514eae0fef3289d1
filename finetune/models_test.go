package finetune

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNewAsksTheRegistry: New resolves --model through the models registry: an unknown
// model_type is refused with the known ones, and a task the model has no head for with the tasks
// it has.
func TestNewAsksTheRegistry(t *testing.T) {
	bertDir := tinyBERT(t, []string{"good", "bad"})
	mamba := t.TempDir()
	if err := os.WriteFile(filepath.Join(mamba, "config.json"), []byte(`{"model_type": "mamba"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, model, task, want string
	}{
		{"unknown model_type", mamba, "classify", `model_type "mamba" is not a model singlora knows (known: bert, gpt2, llama, mistral, qwen2, roberta, use)`},
		{"no causal-lm head", bertDir, "causal-lm", "bert (models/bert) has no causal-lm head: it supports classify"},
		{"no such model", filepath.Join(mamba, "nosuch"), "classify", "nor a built-in model (use)"},
	} {
		c := Default()
		c.Model, c.Task, c.Train = tc.model, tc.task, filepath.Join(t.TempDir(), "never-read.jsonl")
		_, err := New(c, filepath.Join(t.TempDir(), "run"), nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
