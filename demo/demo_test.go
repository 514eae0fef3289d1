package demo

import (
	"context"
	"io"
	"path/filepath"
	"reflect"
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
		if c.Method != m.Name || c.Rank != 8 || c.Seed != 5 || c.Steps != m.Steps || c.LR != m.LR {
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
