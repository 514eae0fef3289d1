package data

import (
	"fmt"
	"math"
	"reflect"
	"testing"
)

func labelled(counts map[string]int) []Example {
	var exs []Example
	// Interleave labels so input order is not grouped by label.
	for i := 0; ; i++ {
		added := false
		for _, l := range []string{"a", "b", "c", "d"} {
			if i < counts[l] {
				exs = append(exs, Example{Text: fmt.Sprintf("%s%d", l, i), Label: l, Line: len(exs) + 1})
				added = true
			}
		}
		if !added {
			return exs
		}
	}
}

func TestSplitCounts(t *testing.T) {
	tests := []struct {
		n    int
		f    []float64
		want []int
	}{
		{10, []float64{0.7, 0.1, 0.2}, []int{7, 1, 2}},
		{100, []float64{0.7, 0.1, 0.2}, []int{70, 10, 20}},
		{7, []float64{0.7, 0.1, 0.2}, []int{5, 1, 1}},             // 4.9, 0.7, 1.4 → 4,0,1 + remainders 0.9, 0.7 → 5,1,1
		{3, []float64{0.7, 0.1, 0.2}, []int{1, 1, 1}},             // 2.1,0.3,0.6 → 2,0,1 → minimum: val takes one from train
		{2, []float64{0.7, 0.1, 0.2}, []int{1, 0, 1}},             // cannot serve all: test (0.2) before validation (0.1)
		{2, []float64{0.9, 0.05, 0.05}, []int{1, 1, 0}},           // 2,0,0 → validation (lower index on a tie) gets one
		{1, []float64{0.7, 0.1, 0.2}, []int{1, 0, 0}},             // one example goes to the largest split
		{5, []float64{1, 0, 0}, []int{5, 0, 0}},                   // zero fractions get nothing
		{6, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}, []int{2, 2, 2}}, // fractions summing to ~1
		{4, []float64{0.5, 0.5}, []int{2, 2}},
		{5, []float64{0.5, 0.5}, []int{3, 2}}, // tie on remainders: lower index
		{0, []float64{0.5, 0.5}, []int{0, 0}},
	}
	for _, tc := range tests {
		sum := 0.0
		for _, f := range tc.f {
			sum += f
		}
		norm := make([]float64, len(tc.f))
		for i := range tc.f {
			norm[i] = tc.f[i] / sum
		}
		if got := splitCounts(tc.n, norm); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCounts(%d, %v) = %v, want %v", tc.n, tc.f, got, tc.want)
		}
	}
}

func TestStratifiedSplit(t *testing.T) {
	exs := labelled(map[string]int{"a": 50, "b": 20, "c": 3, "d": 1})
	fr := []float64{0.7, 0.1, 0.2}
	s1, err := StratifiedSplit(exs, fr, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 3 {
		t.Fatalf("%d splits", len(s1))
	}
	// Per-label counts follow splitCounts; every example is used exactly once.
	seen := map[string]int{}
	perLabel := make([]map[string]int, 3)
	for s, part := range s1 {
		perLabel[s] = map[string]int{}
		for i, e := range part {
			seen[e.Text]++
			perLabel[s][e.Label]++
			if i > 0 && part[i-1].Line >= e.Line {
				t.Errorf("split %d is not in input order", s)
			}
		}
	}
	if len(seen) != len(exs) {
		t.Errorf("%d distinct examples in splits, want %d", len(seen), len(exs))
	}
	for k, v := range seen {
		if v != 1 {
			t.Errorf("%s appears %d times", k, v)
		}
	}
	want := map[string][]int{"a": {35, 5, 10}, "b": {14, 2, 4}, "c": {1, 1, 1}, "d": {1, 0, 0}}
	for l, w := range want {
		for s := range 3 {
			if perLabel[s][l] != w[s] {
				t.Errorf("label %s split %d: %d, want %d", l, s, perLabel[s][l], w[s])
			}
		}
	}

	// Deterministic for a seed; another seed gives another split.
	s2, _ := StratifiedSplit(exs, fr, 42)
	if !reflect.DeepEqual(s1, s2) {
		t.Error("same seed, different split")
	}
	s3, _ := StratifiedSplit(exs, fr, 43)
	if reflect.DeepEqual(s1, s3) {
		t.Error("different seeds, same split")
	}
	// The input is not modified.
	if !reflect.DeepEqual(exs, labelled(map[string]int{"a": 50, "b": 20, "c": 3, "d": 1})) {
		t.Error("input modified")
	}
	// A label's assignment does not depend on other labels being present.
	only := labelled(map[string]int{"a": 50})
	s4, _ := StratifiedSplit(only, fr, 42)
	for s := range 3 {
		var a []string
		for _, e := range s1[s] {
			if e.Label == "a" {
				a = append(a, e.Text)
			}
		}
		var b []string
		for _, e := range s4[s] {
			b = append(b, e.Text)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("split %d of label a depends on other labels", s)
		}
	}
}

func TestStratifiedSplitErrors(t *testing.T) {
	exs := labelled(map[string]int{"a": 4})
	for _, fr := range [][]float64{nil, {0, 0}, {0.5, -0.1}, {math.NaN(), 1}, {math.Inf(1)}} {
		if _, err := StratifiedSplit(exs, fr, 1); err == nil {
			t.Errorf("fractions %v: no error", fr)
		}
	}
	// Unnormalised fractions are fine.
	s, err := StratifiedSplit(exs, []float64{3, 1}, 1)
	if err != nil || len(s[0]) != 3 || len(s[1]) != 1 {
		t.Errorf("fractions 3:1 → %d/%d, %v", len(s[0]), len(s[1]), err)
	}
	s, err = StratifiedSplit(nil, []float64{1, 1}, 1)
	if err != nil || len(s) != 2 || len(s[0])+len(s[1]) != 0 {
		t.Errorf("empty input: %v %v", s, err)
	}
}
