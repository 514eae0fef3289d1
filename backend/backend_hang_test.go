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

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Regression test for the pure-Go backend deadlock (docs/FOUNDATION.md, "The deadlock"): with gomlx v0.28.2 /
// compute v0.1.2 and the default config, a tiny-GPT training step died with "all goroutines
// are asleep - deadlock!" in workerspool.(*Pool).Saturate in 5 of 6 runs. A training run must
// never hang or crash.
//
//	go test ./backend -run TestTrainingNeverHangs                     # default: 3 runs × 20 steps
//	go test ./backend -run TestTrainingNeverHangs -long               # 30 runs × 20 steps
//	SINGLORA_HANG_RUNS=100 SINGLORA_HANG_CONFIGS='go;go:parallelism=-1;go:ops_sequential' \
//	    go test ./backend -run TestTrainingNeverHangs -v -timeout 0
//
// SINGLORA_HANG_SHAPE=bert4l swaps the tiny GPT for a BERT-base-sized 4-layer step (dim 768,
// 12 heads, FFN 3072, seq 128, batch 8) to compare configs' speed on the project's workload.
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

	shape := tinyGPT
	if os.Getenv("SINGLORA_HANG_SHAPE") == "bert4l" {
		shape = bert4l
	}
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
			tr, err := newTrainer(b, shape, uint64(run))
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
		t.Logf("%-34q hangs %d/%d runs × %d steps; ms/step min %s median %s; per run: %s", cfg, hangs[cfg], runs, steps,
			fmtDurations([]time.Duration{minDur(perStep[cfg])}), fmtDurations([]time.Duration{median(perStep[cfg])}),
			fmtDurations(perStep[cfg]))
	}
}

func minDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Min(ds)
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

// whileMatmulGraph: a While loop whose body runs four independent 256×256 matmuls (each
// large enough to fan out with workerspool.Saturate). A nested execution like this runs its
// body with a second set of parallel executors taken from the same bounded pool as the outer
// ones, which can leave no free slot for Saturate.
func whileMatmulGraph(x *Node) *Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	cond := NewClosure(g, func(g *Graph) []*Node {
		i := Parameter(g, "i", shapes.Scalar[int32]())
		_ = Parameter(g, "x", shapes.Make(dtypes.Float32, dims...))
		return []*Node{LessThan(i, Const(g, int32(4)))}
	})
	body := NewClosure(g, func(g *Graph) []*Node {
		i := Parameter(g, "i", shapes.Scalar[int32]())
		x := Parameter(g, "x", shapes.Make(dtypes.Float32, dims...))
		xt := Transpose(x, 0, 1)
		y := Add(Add(MatMul(x, x), MatMul(x, xt)), Add(MatMul(xt, x), MatMul(xt, xt)))
		y = Tanh(MulScalar(y, 0.01))
		return []*Node{AddScalar(i, 1), y}
	})
	return While(cond, body, Const(g, int32(0)), x)[1]
}

func TestWhileLoopWithMatmulsNeverHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	runs := 3
	if *long {
		runs = 20
	}
	runs = envInt("SINGLORA_HANG_RUNS", runs)
	data := make([]float32, 256*256)
	for i := range data {
		data[i] = float32(i%17) / 17
	}
	for _, cfg := range testConfigs() {
		hangs := 0
		for run := range runs {
			b, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			x := tensors.FromFlatDataAndDimensions(data, 256, 256)
			ok := withWatchdog(t, 30*time.Second, fmt.Sprintf("config %q run %d: While loop with matmuls", cfg, run),
				hangs == 0, func() error {
					e, err := NewExec(b, whileMatmulGraph)
					if err != nil {
						return err
					}
					for range 5 {
						y, err := e.Call(x)
						if err != nil {
							return err
						}
						y[0].FinalizeAll()
					}
					e.Finalize()
					return nil
				})
			if !ok {
				hangs++
				continue
			}
			b.Finalize()
		}
		t.Logf("%-34q While-loop graph: hangs %d/%d runs", cfg, hangs, runs)
	}
}
