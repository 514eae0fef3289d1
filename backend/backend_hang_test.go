package backend

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Regression test for the pure-Go backend deadlock (DESIGN.md §2): with gomlx v0.28.2 /
// compute v0.1.2 and the default config, a tiny-GPT training step died with "all goroutines
// are asleep - deadlock!" in workerspool.(*Pool).Saturate in 5 of 6 runs. A training run must
// never hang or crash.
//
//	go test ./backend -run TestTrainingNeverHangs                     # default: 3 runs × 20 steps
//	go test ./backend -run TestTrainingNeverHangs -long               # 30 runs × 20 steps
//	SINGLORA_HANG_RUNS=100 SINGLORA_HANG_CONFIGS='go;go:parallelism=-1;go:ops_sequential' \
//	    go test ./backend -run TestTrainingNeverHangs -v -timeout 0
var long = flag.Bool("long", false, "run the long versions of the backend tests (many more repetitions)")

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// testConfigs returns the backend configs to exercise: SINGLORA_HANG_CONFIGS (separated by
// ';'), else the one in force (Config()).
func testConfigs() []string {
	if v := os.Getenv("SINGLORA_HANG_CONFIGS"); v != "" {
		return strings.Split(v, ";")
	}
	return []string{Config()}
}

// withWatchdog runs fn and reports whether it returned within timeout. If not, it fails the
// test (without stopping it) with a dump of all goroutines, instead of hanging until go test's
// global -timeout, or forever; fn's goroutine is abandoned. Errors from fn are fatal.
func withWatchdog(t *testing.T, timeout time.Duration, what string, dump bool, fn func() error) bool {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return true
	case <-timer.C:
		msg := fmt.Sprintf("%s: no progress after %v, probably deadlocked", what, timeout)
		if dump {
			buf := make([]byte, 1<<22)
			buf = buf[:runtime.Stack(buf, true)]
			msg += fmt.Sprintf("; goroutines:\n%s", buf)
		}
		t.Error(msg)
		return false
	}
}

func TestTrainingNeverHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	runs, steps := 3, 20
	if *long {
		runs = 30
	}
	runs = envInt("SINGLORA_HANG_RUNS", runs)
	steps = envInt("SINGLORA_HANG_STEPS", steps)
	// A healthy step takes ~0.2 s on 2 busy cores; 60 s per step means a hang.
	stepTimeout := time.Duration(envInt("SINGLORA_HANG_STEP_TIMEOUT_S", 60)) * time.Second

	configs := testConfigs()
	perStep := map[string][]time.Duration{}
	hangs := map[string]int{}
	// Interleave configs run by run so that noise from other processes hits them alike.
	for run := range runs {
		for _, cfg := range configs {
			b, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := newTrainer(b, tinyGPT, uint64(run))
			if err != nil {
				t.Fatal(err)
			}
			var start time.Time
			hung := false
			for step := range steps {
				if step == 1 {
					start = time.Now() // exclude compilation
				}
				ok := withWatchdog(t, stepTimeout, fmt.Sprintf("config %q run %d step %d", cfg, run, step),
					hangs[cfg] == 0, func() error {
						_, err := tr.Step()
						return err
					})
				if !ok {
					hung = true
					hangs[cfg]++
					break // abandon this run (its goroutines are stuck) and go on
				}
			}
			if hung {
				continue
			}
			perStep[cfg] = append(perStep[cfg], time.Since(start)/time.Duration(steps-1))
			tr.Close()
			b.Finalize()
		}
	}
	for _, cfg := range configs {
		t.Logf("%-34q hangs %d/%d runs × %d steps; median %s ms/step; per run: %s", cfg, hangs[cfg], runs, steps,
			fmtDurations([]time.Duration{median(perStep[cfg])}), fmtDurations(perStep[cfg]))
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 0, 64)
	}
	return strings.Join(parts, " ")
}
