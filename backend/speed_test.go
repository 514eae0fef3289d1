package backend

import (
	"os"
	"testing"
	"time"
)

// TestConfigSpeed compares backend configs step by step: one trainer per config, stepping in
// rotation (ABCABC...), so that load from other processes hits all configs alike. Opt-in:
//
//	SINGLORA_SPEED=1 SINGLORA_HANG_SHAPE=bert4l SINGLORA_HANG_STEPS=10 \
//	  SINGLORA_HANG_CONFIGS='go;go:parallelism=-1;go:ops_sequential' go test ./backend -run TestConfigSpeed -v
func TestConfigSpeed(t *testing.T) {
	if os.Getenv("SINGLORA_SPEED") == "" {
		t.Skip("set SINGLORA_SPEED=1 to compare backend configs' speed")
	}
	shape := tinyGPT
	if os.Getenv("SINGLORA_HANG_SHAPE") == "bert4l" {
		shape = bert4l
	}
	steps := envInt("SINGLORA_HANG_STEPS", 20)
	configs := testConfigs()
	trainers := make([]*trainer, len(configs))
	for i, cfg := range configs {
		b := newTestBackend(t, cfg)
		tr, err := newTrainer(b, shape, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		if _, err := tr.Step(); err != nil { // compile
			t.Fatal(err)
		}
		trainers[i] = tr
	}
	times := make([][]time.Duration, len(configs))
	wins := make([]int, len(configs))
	for step := range steps {
		best := -1
		for k := range configs {
			i := (k + step) % len(configs) // rotate who goes first
			start := time.Now()
			if _, err := trainers[i].Step(); err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			times[i] = append(times[i], d)
			if best < 0 || d < times[best][len(times[best])-1] {
				best = i
			}
		}
		wins[best]++
	}
	for i, cfg := range configs {
		var sum time.Duration
		for _, d := range times[i] {
			sum += d
		}
		t.Logf("%-34q ms/step min %s median %s mean %s; fastest in %d/%d rounds", cfg,
			fmtDurations([]time.Duration{minDur(times[i])}), fmtDurations([]time.Duration{median(times[i])}),
			fmtDurations([]time.Duration{sum / time.Duration(len(times[i]))}), wins[i], steps)
	}
}
