package sweep

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/train"
)

func result(variant string, lr, val float64, test *float64) Result {
	c := Cell{Variant: variant, Cfg: finetune.Config{LR: lr}}
	s := finetune.Summary{Val: map[string]float64{"accuracy": val}}
	if test != nil {
		s.Test = map[string]float64{"accuracy": *test}
	}
	return Result{Cell: c, Summary: s}
}

func f(v float64) *float64 { return &v }

// TestSummarizeWithoutTestSet: runs without a test set are compared by validation accuracy, and
// no test accuracy is reported for them (not a 0.0000 ± 0.0000 that picks the best lr).
func TestSummarizeWithoutTestSet(t *testing.T) {
	for _, tc := range []struct {
		name       string
		results    []Result
		wantMetric string
		wantBestLR float64
		wantInMD   string
	}{
		{"no test", []Result{result("lora", 1e-3, 0.8, nil), result("lora", 1e-2, 0.9, nil)}, "validation accuracy", 1e-2, "— (no test set)"},
		{"with test", []Result{result("lora", 1e-3, 0.9, f(0.85)), result("lora", 1e-2, 0.8, f(0.7))}, "test accuracy", 1e-3, "0.8500 ± 0.0000"},
		{"one run without test", []Result{result("lora", 1e-3, 0.7, f(0.95)), result("lora", 1e-2, 0.9, nil)}, "validation accuracy", 1e-2, "— (no test set)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Summarize(tc.results)
			if s.Metric != tc.wantMetric || len(s.Spreads) != 1 || s.Spreads[0].BestLR != tc.wantBestLR {
				t.Fatalf("metric %q, spreads %+v; want %q with best lr %g", s.Metric, s.Spreads, tc.wantMetric, tc.wantBestLR)
			}
			md := s.Markdown()
			if !strings.Contains(md, tc.wantInMD) || !strings.Contains(md, "max mean "+tc.wantMetric) {
				t.Fatalf("markdown lacks %q / the metric name:\n%s", tc.wantInMD, md)
			}
			if err := s.Write(t.TempDir()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func pplResult(variant string, lr float64, seed uint64, val, test float64) Result {
	c := Cell{Variant: variant, Cfg: finetune.Config{LR: lr, Seed: seed}}
	return Result{Cell: c, Summary: finetune.Summary{
		Val:  map[string]float64{"perplexity": val, "loss": math.Log(val)},
		Test: map[string]float64{"perplexity": test, "loss": math.Log(test)}}}
}

// TestSummarizePerplexity: causal-LM runs are ranked by test perplexity, lower is better: the
// best learning rate is the lowest mean, worst / best is their ratio, and the grid table has a
// column per learning rate with "–" where no run finished.
func TestSummarizePerplexity(t *testing.T) {
	rs := []Result{
		pplResult("lora", 1e-3, 1, 90, 120), pplResult("lora", 1e-3, 2, 90, 124),
		pplResult("lora", 1e-2, 1, 80, 100), pplResult("lora", 3e-2, 1, 70, 183),
		pplResult("singlora", 1e-2, 1, 85, 110),
	}
	s := Summarize(rs)
	if s.Metric != "test perplexity" || !s.Lower {
		t.Fatalf("metric %q lower %v, want test perplexity, lower is better", s.Metric, s.Lower)
	}
	sp := s.Spreads[0]
	if sp.Variant != "lora" || sp.BestLR != 1e-2 || sp.WorstLR != 3e-2 || sp.Min != 100 || sp.Max != 183 || math.Abs(sp.Ratio-1.83) > 1e-12 {
		t.Fatalf("lora spread %+v, want best 100 at 1e-2, worst 183 at 3e-2, ratio 1.83", sp)
	}
	if r := s.Rows[0]; r.LR != 1e-3 || r.N != 2 || r.Mean != 122 || math.Abs(r.Std-math.Sqrt(8)) > 1e-12 || r.TestMean != nil || r.ValMean != nil {
		t.Fatalf("first row %+v, want lr 1e-3, 2 runs, 122 ± √8, no accuracy fields", r)
	}
	md := s.Markdown()
	for _, want := range []string{"| lora | 0 | 122.0 ± 2.8 (2) | 100.0 ± 0.0 (1) | 183.0 ± 0.0 (1) |",
		"| singlora | 0 | – | 110.0 ± 0.0 (1) | – |", "| lora | 100.0 | 183.0 | 83.0 | 1.83× | 0.01 | 0.03 |"} {
		if !strings.Contains(md, want) {
			t.Fatalf("markdown lacks %q:\n%s", want, md)
		}
	}
	dir := t.TempDir()
	if err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sweep-test-perplexity.svg")); err != nil {
		t.Fatal(err)
	}
	// Without a test set on every run, validation perplexity ranks them.
	rs[4].Summary.Test = nil
	if s := Summarize(rs); s.Metric != "validation perplexity" || s.Spreads[0].BestLR != 3e-2 {
		t.Fatalf("metric %q best lr %g, want validation perplexity, 3e-2", s.Metric, s.Spreads[0].BestLR)
	}
}

// TestRunRefusesAFolderInUse: a cell whose folder a trainer still holds (left running by a
// killed sweep) is reported, not removed or given a second trainer.
func TestRunRefusesAFolderInUse(t *testing.T) {
	dir := t.TempDir()
	cell := Cell{Name: "lora-lr0.001-s1", Variant: "lora", Cfg: finetune.Default()}
	cellDir := filepath.Join(dir, cell.Name)
	l, err := train.LockFolder(cellDir) // a folder without config.json: "stale", removed if not held
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	err = Run(context.Background(), []Cell{cell}, Options{Dir: dir, Binary: "/bin/false", Out: &strings.Builder{}})
	if !errors.Is(err, train.ErrFolderInUse) {
		t.Fatalf("err = %v, want ErrFolderInUse", err)
	}
	if _, err := os.Stat(filepath.Join(cellDir, train.LockFile)); err != nil {
		t.Fatalf("the held folder was removed: %v", err)
	}
}
