package pretrain

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/singlora/singlora/corpora/corporatest"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/singlora/singlora/finetune"
)

// fakeFortunes writes n entries per category in fortune format into a temp folder.
func fakeFortunes(t *testing.T, n map[string]int) string {
	t.Helper()
	dir := t.TempDir()
	for cat, k := range n {
		var b strings.Builder
		for i := 0; i < k; i++ {
			fmt.Fprintf(&b, "A %s saying, number %d.\n\t-- somebody\n%%\n", cat, i)
		}
		if err := os.WriteFile(filepath.Join(dir, cat), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestWriteFortunes: the three files hold a balanced, disjoint split of {"text", "label"} lines;
// sweep.json is a classify config of the base with them as train/val/test; it trains (the
// causal-LM base gets a fresh head) and scores the test set.
func TestWriteFortunes(t *testing.T) {
	base := run(t, micro(), Options{Cache: corporatest.Cache(t)})
	dir := fakeFortunes(t, map[string]int{"alpha": 40, "beta": 30, "gamma": 55})
	out := t.TempDir()
	cats := []string{"alpha", "beta", "gamma"}
	d, err := WriteFortunes(dir, base.Dir, out, 3, FortunesOptions{Categories: cats, PerClass: 20, Seed: 1, Unverified: true})
	if err != nil {
		t.Fatal(err)
	}
	if d.Examples != [3]int{42, 6, 12} || strings.Join(d.Labels, ",") != "alpha,beta,gamma" {
		t.Errorf("examples %v labels %v, want [42 6 12] (20 per class: 14/2/4) and the categories", d.Examples, d.Labels)
	}
	seen := map[string]bool{}
	for i, path := range []string{d.Train, d.Val, d.Test} {
		count := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(string(readFile(t, path))), "\n") {
			var ex map[string]string
			if err := json.Unmarshal([]byte(line), &ex); err != nil || len(ex) != 2 || !strings.Contains(ex["text"], "A "+ex["label"]+" saying") {
				t.Fatalf("%s: %v %q", path, err, line)
			}
			if seen[ex["text"]] {
				t.Errorf("%s: %q is in two splits", path, ex["text"])
			}
			seen[ex["text"]] = true
			count[ex["label"]]++
		}
		for _, c := range cats {
			if count[c] != d.Examples[i]/3 {
				t.Errorf("%s: %d of %s, want %d", path, count[c], c, d.Examples[i]/3)
			}
		}
	}
	c := finetune.Default()
	if err := c.LoadFile(d.Config); err != nil {
		t.Fatal(err)
	}
	if c.Model != base.Dir || c.Task != "classify" || c.Train != d.Train || c.Val != d.Val || c.Test != d.Test || c.ValFraction != 0 ||
		c.Steps != 3 || c.EvalEvery != 3 || c.Batch != FortunesBatch || c.MaxLength != micro().Seq || c.R != 8 || c.LoraAlpha != 8 || c.Method != "singlora" {
		t.Errorf("sweep.json: %+v", c)
	}
	c.Batch = 8
	job, err := finetune.New(c, filepath.Join(t.TempDir(), "run"), be(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := job.(*finetune.Job); !ok {
		t.Fatalf("sweep.json prepared a %T, want a classification *finetune.Job", job)
	}
	job.SetQuiet(true)
	s, err := job.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Steps != 3 || s.Test["accuracy"] < 0 || len(s.Labels) != 3 || s.Val == nil {
		t.Errorf("summary: %+v", s)
	}
}

func TestWriteFortunesRefuses(t *testing.T) {
	base := run(t, micro(), Options{Cache: corporatest.Cache(t)})
	dir := fakeFortunes(t, map[string]int{"computers": 20, "work": 20})
	for _, tc := range []struct {
		name  string
		steps int64
		o     FortunesOptions
		want  string
	}{
		{"unpinned files", 3, FortunesOptions{Categories: []string{"computers", "work"}}, "has sha256"},
		{"default categories", 3, FortunesOptions{Unverified: true}, `fortune category "definitions"`},
		{"steps", 0, FortunesOptions{Categories: []string{"computers", "work"}, Unverified: true}, "steps 0"},
	} {
		_, err := WriteFortunes(dir, base.Dir, t.TempDir(), tc.steps, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := WriteFortunes(dir, t.TempDir(), t.TempDir(), 3, FortunesOptions{Unverified: true}); err == nil || !strings.Contains(err.Error(), "not a folder singlora pretrain wrote") {
		t.Errorf("a folder pretrain did not write: %v", err)
	}
}
