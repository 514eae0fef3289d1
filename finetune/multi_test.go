package finetune

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/singlora/singlora/backend"
)

// trainClassifier trains a short run on texts/labels over the model in modelDir and returns its
// folder.
func trainClassifier(t *testing.T, modelDir string, texts, labels []string, edit func(*Config)) string {
	t.Helper()
	tmp := t.TempDir()
	var sb strings.Builder
	for i := range texts {
		js, _ := json.Marshal(map[string]string{"text": texts[i], "label": labels[i]})
		sb.Write(js)
		sb.WriteByte('\n')
	}
	data := filepath.Join(tmp, "train.jsonl")
	if err := os.WriteFile(data, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Model, c.Train, c.ValFraction = modelDir, data, 0.25
	c.LR, c.HeadLR, c.Steps, c.Batch = 1e-2, 1e-2, 6, 8
	edit(&c)
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(tmp, "run")
	job, err := New(c, run, be, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	job.SetQuiet(true)
	if _, err := job.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	return run
}

// TestClassifiersShareOneBase: two runs on one BERT (SingLoRA with two labels, LoRA with three)
// loaded by LoadClassifiers give, whichever is active and in any order, log-probabilities
// bit-identical to each run loaded alone; a frozen run and a run on another model are refused.
func TestClassifiersShareOneBase(t *testing.T) {
	words := []string{"good", "bad", "meh", "the", "film"}
	modelDir := tinyBERT(t, words)
	var texts, two, three []string
	for i := 0; i < 36; i++ {
		w := []string{"good", "bad", "meh"}[i%3]
		texts = append(texts, fmt.Sprintf("the film %s", w))
		two = append(two, map[string]string{"good": "pos", "bad": "neg", "meh": "neg"}[w])
		three = append(three, w)
	}
	runA := trainClassifier(t, modelDir, texts, two, func(c *Config) { c.Method = "singlora" })
	runB := trainClassifier(t, modelDir, texts, three, func(c *Config) { c.Method, c.Seed, c.R, c.LoraAlpha = "lora", 3, 4, 8 })
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	probe := []string{"the film good", "bad film", "meh", "the the film"}
	logProbs := func(task interface {
		Tokenize([]string) [][]int
	}, lp func([][]int) ([][]float32, error)) [][]float32 {
		out, err := lp(task.Tokenize(probe))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	alone := map[string][][]float32{}
	for name, run := range map[string]string{"a": runA, "b": runB} {
		task, err := LoadClassifier(run)
		if err != nil {
			t.Fatal(err)
		}
		p, err := task.NewPredictor(be)
		if err != nil {
			t.Fatal(err)
		}
		alone[name] = logProbs(task, p.LogProbs)
		p.Close()
	}
	cs, err := LoadClassifiers([]NamedRun{{"a", runA}, {"b", runB}}, CheckpointAuto)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "a", "b", "b"} {
		task, err := cs.Activate(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := task.NewPredictor(be)
		if err != nil {
			t.Fatal(err)
		}
		got := logProbs(task, p.LogProbs)
		p.Close()
		if len(got[0]) != len(alone[name][0]) {
			t.Fatalf("%s: %d classes, alone %d", name, len(got[0]), len(alone[name][0]))
		}
		for i := range got {
			if !slices.Equal(got[i], alone[name][i]) {
				t.Fatalf("%s active: log-probs of %q %v, the run alone %v", name, probe[i], got[i], alone[name][i])
			}
		}
	}
	if _, err := cs.Activate("c"); err == nil || !strings.Contains(err.Error(), "loaded: a, b") {
		t.Fatalf("unknown run: %v", err)
	}
	runF := trainClassifier(t, modelDir, texts, two, func(c *Config) { c.Method = "frozen" })
	if _, err := LoadClassifiers([]NamedRun{{"a", runA}, {"f", runF}}, CheckpointAuto); err == nil || !strings.Contains(err.Error(), "classify it on its own") {
		t.Fatalf("frozen run: %v", err)
	}
	other := tinyBERT(t, append(words, "x"))
	runO := trainClassifier(t, other, texts, two, func(c *Config) { c.Method = "singlora" })
	if _, err := LoadClassifiers([]NamedRun{{"a", runA}, {"o", runO}}, CheckpointAuto); err == nil || !strings.Contains(err.Error(), "different models") {
		t.Fatalf("run on another model: %v", err)
	}
	if _, err := LoadClassifiers([]NamedRun{{"a", runA}, {"a", runB}}, CheckpointAuto); err == nil || !strings.Contains(err.Error(), `two runs named "a"`) {
		t.Fatalf("duplicate names: %v", err)
	}
}
