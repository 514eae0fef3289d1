package train

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
)

// regData is a fixed regression data set; poison makes one example NaN.
type regData struct {
	x, y    [][]float32
	poison  int
	batches int
}

func newRegData(n, in, out int) *regData {
	rng := rand.New(rand.NewPCG(10, 10))
	d := &regData{poison: -1}
	for i := 0; i < n; i++ {
		d.x = append(d.x, randF32(rng, in, 1))
		d.y = append(d.y, randF32(rng, out, 1))
	}
	return d
}

func (d *regData) Len() int { return len(d.x) }

func (d *regData) Batch(idx []int) ([]*tensors.Tensor, error) {
	in, out := len(d.x[0]), len(d.y[0])
	var xs, ys []float32
	for _, i := range idx {
		row := d.x[i]
		if i == d.poison {
			row = append([]float32(nil), row...)
			row[0] = float32(math.NaN())
		}
		xs = append(xs, row...)
		ys = append(ys, d.y[i]...)
	}
	d.batches++
	return []*tensors.Tensor{tensors.FromFlatDataAndDimensions(xs, len(idx), in), tensors.FromFlatDataAndDimensions(ys, len(idx), out)}, nil
}

// newRun builds a fresh SingLoRA regression run (with adapter dropout, so the RNG state matters).
func newRun(t *testing.T, dir string, data Dataset, steps int64) *Runner {
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.RampSteps, cfg.Dropout = 5, 0.1
	store, inj, loss := regression(t, cfg, 8, 6)
	if err := store.SetRNGStateFromSeed(42); err != nil {
		t.Fatal(err)
	}
	opt := optim.DefaultAdamW(5e-2)
	opt.GroupOf = inj.OptimizerGroups(0.01)
	opt.Schedule = optim.Schedule{Kind: optim.Cosine, WarmupSteps: 2, TotalSteps: steps}
	return &Runner{
		Cfg:     RunConfig{Dir: dir, TotalSteps: steps, BatchSize: 4, AccumSteps: 2, Seed: 3, CheckpointEvery: 4, EvalEvery: 5, Early: EarlyStopping{Metric: "neg_loss", Maximize: true}, Quiet: true},
		Backend: be(t), Store: store, Loss: loss, Opt: opt, Train: data,
		Eval: func(s *model.Store) (map[string]float64, error) {
			a, _ := peft.Float32Values(s.GetVariable("/lin/singlora_A"))
			return map[string]float64{"neg_loss": -float64(a[0] * a[0])}, nil
		},
		Ramp: cfg.Ramp,
		Out:  &strings.Builder{},
	}
}

func readMetrics(t *testing.T, dir string) []Metric {
	b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var ms []Metric
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m Metric
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		m.Wall = 0
		ms = append(ms, m)
	}
	return ms
}

// cancelAfter cancels ctx when the dataset has served n batches.
type cancelAfter struct {
	*regData
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Batch(idx []int) ([]*tensors.Tensor, error) {
	if c.batches == c.n {
		c.cancel()
	}
	return c.regData.Batch(idx)
}

// TestResumeIsBitIdentical: a run interrupted mid-way and resumed ends with the same adapter,
// optimizer state and metrics as an uninterrupted run with the same seed.
func TestResumeIsBitIdentical(t *testing.T) {
	const steps = 13
	whole := t.TempDir()
	r := newRun(t, whole, newRegData(23, 8, 6), steps)
	if _, err := r.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	want, _ := peft.Float32Values(r.Store.GetVariable("/lin/singlora_A"))

	split := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	data := &cancelAfter{regData: newRegData(23, 8, 6), n: 13, cancel: cancel}
	r1 := newRun(t, split, data, steps)
	_, err := r1.Run(ctx, false)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: err = %v", err)
	}
	stopped := CurrentStep(r1.Store)
	if stopped == 0 || stopped >= steps {
		t.Fatalf("interrupted at step %d: the test must stop mid-way", stopped)
	}
	// Resume into a fresh process-like state: a new store with freshly initialised adapters.
	r2 := newRun(t, split, newRegData(23, 8, 6), steps)
	if _, err := r2.Run(context.Background(), false); err == nil {
		t.Fatal("starting a new run in a used folder must fail")
	}
	if _, err := r2.Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	got, _ := peft.Float32Values(r2.Store.GetVariable("/lin/singlora_A"))
	for i := range want {
		if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
			t.Fatalf("singlora_A[%d]: uninterrupted %v, resumed %v", i, want[i], got[i])
		}
	}
	mw, mg := readMetrics(t, whole), readMetrics(t, split)
	if len(mw) != len(mg) {
		t.Fatalf("%d metric lines uninterrupted, %d resumed", len(mw), len(mg))
	}
	for i := range mw {
		a, _ := json.Marshal(mw[i])
		b, _ := json.Marshal(mg[i])
		if string(a) != string(b) {
			t.Fatalf("metric line %d differs:\n%s\n%s", i, a, b)
		}
	}
	for _, d := range []string{LastDir, BestDir} {
		if _, err := os.Stat(filepath.Join(split, CheckpointDir, d, CheckpointTensors)); err != nil {
			t.Errorf("checkpoint %s missing: %v", d, err)
		}
	}
}

// TestPoisonedBatchStopsCleanly: a NaN example stops the run with ErrNonFinite and the last
// checkpoint is intact and loadable, holding finite weights from before the bad step.
func TestPoisonedBatchStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	data := newRegData(60, 8, 6)
	r := newRun(t, dir, data, 40)
	// Example order is fixed by the seed: poison the example served at global position 41, in
	// step 6 (8 examples a step); epoch 0 covers positions 0..59, so it is its first appearance.
	order := &ExampleOrder{Seed: 3, N: 60}
	data.poison = order.At(41)
	_, err := r.Run(context.Background(), false)
	if !errors.Is(err, ErrNonFinite) {
		t.Fatalf("err = %v, want ErrNonFinite", err)
	}
	if !strings.Contains(err.Error(), "last good checkpoint") {
		t.Errorf("error should point at the last good checkpoint: %v", err)
	}
	fresh := newRun(t, t.TempDir(), newRegData(60, 8, 6), 40)
	st, err := LoadCheckpoint(filepath.Join(dir, CheckpointDir, LastDir), fresh.Store)
	if err != nil {
		t.Fatalf("last checkpoint unreadable after the NaN stop: %v", err)
	}
	// Checkpoints are written every 4 steps and on each improved evaluation (every 5): the last
	// good one before the poisoned step 6 is step 5.
	if st.Step != 5 {
		t.Fatalf("last checkpoint at step %d, want 5", st.Step)
	}
	a, _ := peft.Float32Values(fresh.Store.GetVariable("/lin/singlora_A"))
	for _, x := range a {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatal("checkpoint holds non-finite weights")
		}
	}
}

func TestUnwritableRunFolder(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permissions: use a path under a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r := newRun(t, filepath.Join(f, "run"), newRegData(8, 8, 6), 3)
		if _, err := r.Run(context.Background(), false); err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Fatalf("err = %v, want a 'not writable' error", err)
		}
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	r := newRun(t, filepath.Join(dir, "run"), newRegData(8, 8, 6), 3)
	if _, err := r.Run(context.Background(), false); err == nil {
		t.Fatal("training into an unwritable folder must fail before it starts")
	}
}

// TestRunReleasesStepGraphs: a finished run releases its compiled training graphs (one per
// input shape; the demo trains three methods in one process), and a closed Stepper compiles
// them again on its next step.
func TestRunReleasesStepGraphs(t *testing.T) {
	r := newRun(t, t.TempDir(), newRegData(16, 8, 6), 3)
	if _, err := r.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if r.stepper == nil {
		t.Fatal("the run kept no stepper")
	}
	if s := r.stepper; s.fused != nil || s.accumExec != nil || s.applyExc != nil {
		t.Error("after Run the stepper still holds its compiled graphs")
	}
	rng := rand.New(rand.NewPCG(5, 5))
	if _, err := r.stepper.Step(batch(rng, 4, 8, 6), batch(rng, 4, 8, 6)); err != nil {
		t.Fatalf("a step after Close: %v", err)
	}
	if r.stepper.accumExec == nil {
		t.Error("the step after Close compiled no graph")
	}
	r.stepper.Close()
}
