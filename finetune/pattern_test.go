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

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// TestRankPatternAndBiasTrain: a BERT run with per-module ranks (rank_pattern), a per-module α
// and bias = lora_only trains the adapted layers' biases and nothing else's, saves them with the
// adapter at the module's rank, and the config.json / adapter_config.json record both.
func TestRankPatternAndBiasTrain(t *testing.T) {
	words := []string{"good", "bad", "the", "film"}
	var sb strings.Builder
	for i := 0; i < 32; i++ {
		w, label := "good", "pos"
		if i%2 == 1 {
			w, label = "bad", "neg"
		}
		js, _ := json.Marshal(map[string]string{"text": fmt.Sprintf("the film %s", w), "label": label})
		sb.Write(js)
		sb.WriteByte('\n')
	}
	modelDir := tinyBERT(t, words)
	tmp := t.TempDir()
	trainPath := filepath.Join(tmp, "train.jsonl")
	if err := os.WriteFile(trainPath, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Model, c.Train, c.ValFraction = modelDir, trainPath, 0.25
	c.Method, c.LR, c.HeadLR, c.Steps, c.Batch = "lora", 1e-2, 1e-2, 6, 8
	c.TargetModules = []string{"query", "value"}
	c.RankPattern = peft.Pattern[int]{{Key: `layer\.1\.attention\.self\.value`, Value: 3}}
	c.AlphaPattern = peft.Pattern[float64]{{Key: "value", Value: 2}}
	c.Bias = "lora_only"
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
	a, err := adapterio.Load(filepath.Join(run, "adapter"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range a.Modules {
		want := 8
		if m.Path == "bert.encoder.layer.1.attention.self.value" {
			want = 3
		}
		if got := m.Tensors[peft.NameLoRAA].Shape[0]; got != want {
			t.Errorf("%s: lora_A rank %d, want %d", m.Path, got, want)
		}
		wantAlpha := 8.0
		if strings.HasSuffix(m.Path, "value") {
			wantAlpha = 2
		}
		if got := a.Config.ModuleAlpha(m.Path); got != wantAlpha {
			t.Errorf("%s: alpha %v, want %v", m.Path, got, wantAlpha)
		}
	}
	base := hftestWeights(t, modelDir)
	var biases []string
	for _, s := range a.Saved {
		if !strings.HasSuffix(s.Name, ".bias") || strings.HasPrefix(s.Name, "head.") { // the classifier head is modules_to_save
			continue
		}
		biases = append(biases, s.Name)
		orig := base["bert."+s.Name]
		if orig == nil {
			orig = base[s.Name]
		}
		if orig == nil {
			t.Fatalf("saved bias %s is not in the base checkpoint", s.Name)
		}
		moved := false
		for i := range orig {
			if float32(orig[i]) != s.Data[i] {
				moved = true
			}
		}
		if !moved {
			t.Errorf("bias %s did not train", s.Name)
		}
	}
	if len(biases) != 4 || slices.ContainsFunc(biases, func(n string) bool { return !strings.Contains(n, "query") && !strings.Contains(n, "value") }) {
		t.Fatalf("saved biases %v, want the 4 adapted layers'", biases)
	}
	b, err := os.ReadFile(filepath.Join(run, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"rank_pattern"`, `"alpha_pattern"`, `"bias": "lora_only"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config.json lacks %s:\n%s", want, b)
		}
	}
	if _, err := LoadClassifier(run); err != nil {
		t.Fatalf("reloading the run: %v", err)
	}
}

// hftestWeights reads a test checkpoint's tensors as float64 by name.
func hftestWeights(t *testing.T, dir string) map[string][]float64 {
	t.Helper()
	f, err := safetensors.Read(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for _, tn := range f.Tensors {
		if out[tn.Name], err = tn.Float64s(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
