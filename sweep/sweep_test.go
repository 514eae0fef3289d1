package sweep

import (
	"context"
	"errors"
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
