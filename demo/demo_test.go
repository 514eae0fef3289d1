package demo

import (
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"testing"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models/use"
)

// TestDemoIsReproducible: the demo run twice with the same seed gives the same accuracies (a
// small version: 64 training sentences, one epoch).
func TestDemoIsReproducible(t *testing.T) {
	if !use.Available() || !fetch.Sentiment.Present(fetch.CacheDir()) {
		t.Skip("demo data not fetched: run singlora fetch")
	}
	if testing.Short() {
		t.Skip("trains the encoder four times")
	}
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	specs, err := ParseMethods("frozen,singlora")
	if err != nil {
		t.Fatal(err)
	}
	var results []*Results
	runDir := filepath.Join(t.TempDir(), "demo")
	for i := 0; i < 2; i++ {
		r, err := Run(context.Background(), Options{RunDir: runDir, CacheDir: fetch.CacheDir(),
			Methods: specs, Epochs: 1, BatchSize: 16, Rank: 8, HeadLR: 1e-2, Seed: 5, Quiet: true, Out: io.Discard, Backend: be, MaxTrain: 64, MaxEval: 100})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	for i, m := range results[0].Methods {
		o := results[1].Methods[i]
		if m.TestAccuracy != o.TestAccuracy || m.ValAccuracy != o.ValAccuracy || m.TrainableParams != o.TrainableParams {
			t.Fatalf("%s: run 1 %+v, run 2 %+v", m.Name, m, o)
		}
		t.Logf("%s: test accuracy %.4f both times", m.Name, m.TestAccuracy)
	}
	if results[0].Split["train"] != 64 || results[0].Split["test"] != 100 {
		t.Fatalf("split %v", results[0].Split)
	}
	// Each method's folder is a run "singlora classify" can load, with the demo's settings.
	for _, m := range results[1].Methods {
		dir := filepath.Join(runDir, m.Name)
		c, err := finetune.LoadRunConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		if c.Method != m.Name || c.R != 8 || c.Seed != 5 || c.Steps != m.Steps || c.LR != m.LR {
			t.Errorf("%s: config.json %+v does not match the run %+v", m.Name, c, m)
		}
		task, err := finetune.LoadClassifier(dir)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if !reflect.DeepEqual(task.Labels, []string{"0", "1"}) || task.NumClasses != 2 {
			t.Errorf("%s: labels %q, %d classes", m.Name, task.Labels, task.NumClasses)
		}
	}
}

// TestConfigSteps: whole epochs train epochs·⌈n/batch⌉ steps and evaluate every ⌈n/batch⌉ steps
// (the demo's schedule before fractional epochs); a fraction trains ⌈epochs·⌈n/batch⌉⌉ steps,
// ignoring the product's rounding error; α defaults to the rank.
func TestConfigSteps(t *testing.T) {
	for _, tc := range []struct {
		n, batch    int
		epochs      float64
		rank        int
		alpha       float64
		steps, eval int64
		wantAlpha   float64
	}{
		{2100, 32, 3, 8, 0, 198, 66, 8}, // make demo: 3·⌈2100/32⌉
		{2100, 32, 1, 8, 16, 66, 66, 16},
		{2113, 32, 2, 4, 0, 134, 67, 4}, // ⌈2113/32⌉ = 67
		{32, 16, 5, 8, 0, 10, 2, 8},
		{2100, 32, 0.5, 8, 0, 33, 66, 8},
		{320, 32, 1.1, 8, 0, 11, 10, 8}, // 1.1·10 is 11.000000000000002 in float64
		{320, 32, 0.15, 8, 0, 2, 10, 8}, // ⌈1.5⌉
		{320, 32, 1e-6, 8, 0, 1, 10, 8}, // at least one step
	} {
		o := Options{Epochs: tc.epochs, BatchSize: tc.batch, Rank: tc.rank, Alpha: tc.alpha, HeadLR: 1e-2, Seed: 1}
		c := Config(o, MethodSpec{Name: "singlora", Method: "singlora", LR: 1e-3}, &Split{Train: "train.jsonl", Val: "val.jsonl", Counts: map[string]int{"train": tc.n}})
		if c.Steps != tc.steps || c.EvalEvery != tc.eval || c.Epochs != tc.epochs || c.LoraAlpha != tc.wantAlpha || c.R != tc.rank {
			t.Errorf("%d examples, batch %d, %g epochs, α %g: steps %d, eval every %d, epochs %g, r %d α %g; want %d, %d, %g, r %d α %g",
				tc.n, tc.batch, tc.epochs, tc.alpha, c.Steps, c.EvalEvery, c.Epochs, c.R, c.LoraAlpha, tc.steps, tc.eval, tc.epochs, tc.rank, tc.wantAlpha)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%g epochs: the config does not validate: %v", tc.epochs, err)
		}
	}
	for _, o := range []Options{{Epochs: 0, BatchSize: 32, Rank: 8}, {Epochs: -1, BatchSize: 32, Rank: 8}, {Epochs: 1, BatchSize: 32, Rank: 8, Alpha: -2}} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v): no error", o)
		}
	}
}

// TestSetMemoryLimit: the demo sets its soft memory limit (768 MiB at batch 32) only where
// neither GOMEMLIMIT nor the program set one, and hands back the limit to restore.
func TestSetMemoryLimit(t *testing.T) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		t.Skip("GOMEMLIMIT is set: the demo leaves the limit alone")
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	prev, ok := setMemoryLimit(32)
	if !ok || prev != math.MaxInt64 || debug.SetMemoryLimit(-1) != 768<<20 {
		t.Fatalf("no limit set before: set %v, previous %d, now %d; want a 768 MiB limit", ok, prev, debug.SetMemoryLimit(-1))
	}
	if _, ok := setMemoryLimit(64); ok || debug.SetMemoryLimit(-1) != 768<<20 {
		t.Errorf("a limit already set was replaced by %d", debug.SetMemoryLimit(-1))
	}
}
