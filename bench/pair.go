package bench

import (
	"fmt"
	"sort"
	"time"
)

// PairResult is an in-process comparison of two workloads' steps (see Pair).
type PairResult struct {
	A, B string
	// Ratios are B's step time over A's for each adjacent pair of steps, sorted.
	Ratios []float64
	// MedianRatio is the median of Ratios; MsA and MsB the median step times.
	MedianRatio, MsA, MsB float64
}

// Pair builds workloads a and b in this process, runs warmup untimed steps of each, then pairs
// timed steps, alternating which of the two goes first, and reports B/A per pair. Running both in
// one process, step against step, removes the between-process and minute-scale drift that
// separate runs suffer on a shared or throttled machine; only the two graphs' own costs differ.
func Pair(a, b Workload, pairs, warmup int) (PairResult, error) {
	if pairs < 1 {
		return PairResult{}, fmt.Errorf("pairs must be ≥ 1")
	}
	for _, w := range []Workload{a, b} {
		if w.Prepare != nil {
			if err := w.Prepare(); err != nil {
				return PairResult{}, fmt.Errorf("%s: %w", w.Name, err)
			}
		}
	}
	stepA, err := a.Setup()
	if err != nil {
		return PairResult{}, fmt.Errorf("%s: %w", a.Name, err)
	}
	stepB, err := b.Setup()
	if err != nil {
		return PairResult{}, fmt.Errorf("%s: %w", b.Name, err)
	}
	for i := 0; i < warmup; i++ {
		if err := stepA(); err != nil {
			return PairResult{}, fmt.Errorf("%s warm-up: %w", a.Name, err)
		}
		if err := stepB(); err != nil {
			return PairResult{}, fmt.Errorf("%s warm-up: %w", b.Name, err)
		}
	}
	timed := func(step func() error) (float64, error) {
		t0 := time.Now()
		err := step()
		return float64(time.Since(t0).Nanoseconds()) / 1e6, err
	}
	r := PairResult{A: a.Name, B: b.Name}
	var msA, msB []float64
	for i := 0; i < pairs; i++ {
		var ta, tb float64
		if i%2 == 0 {
			if ta, err = timed(stepA); err == nil {
				tb, err = timed(stepB)
			}
		} else {
			if tb, err = timed(stepB); err == nil {
				ta, err = timed(stepA)
			}
		}
		if err != nil {
			return PairResult{}, fmt.Errorf("pair %d: %w", i+1, err)
		}
		msA, msB = append(msA, ta), append(msB, tb)
		r.Ratios = append(r.Ratios, tb/ta)
	}
	sort.Float64s(r.Ratios)
	r.MedianRatio, r.MsA, r.MsB = Median(r.Ratios), Median(msA), Median(msB)
	return r, nil
}
