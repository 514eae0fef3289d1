package train

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/safetensors"
)

// Dataset is training data addressed by example index.
type Dataset interface {
	Len() int
	// Batch returns the LossFn inputs for the examples idx (len(idx) is the batch size).
	Batch(idx []int) ([]*tensors.Tensor, error)
}

// TokenCounter is optionally implemented by a Dataset whose examples are token sequences; the
// progress display then shows tokens/s.
type TokenCounter interface {
	NumTokens(idx []int) int
}

// EvalFn evaluates the model in store (e.g. on a validation set) and returns named metrics.
type EvalFn func(store *model.Store) (map[string]float64, error)

// EarlyStopping stops a run when Metric has not improved for Patience evaluations.
type EarlyStopping struct {
	Metric   string `json:"metric"`
	Maximize bool   `json:"maximize"`
	Patience int    `json:"patience"` // 0 = never stop early (the best checkpoint is still kept)
}

// RunConfig configures a training run.
type RunConfig struct {
	Dir             string        `json:"-"`
	TotalSteps      int64         `json:"total_steps"`
	BatchSize       int           `json:"batch_size"`
	AccumSteps      int           `json:"grad_accum_steps"`
	Seed            uint64        `json:"seed"`
	EvalEvery       int64         `json:"eval_every"`       // 0: only at the end
	CheckpointEvery int64         `json:"checkpoint_every"` // 0: only at the end
	Early           EarlyStopping `json:"early_stopping"`
	Quiet           bool          `json:"-"`
	LogEvery        int64         `json:"-"` // with Quiet: a log line every N steps (default 10)
}

// Metric is one line of a run's metrics.jsonl.
type Metric struct {
	Step     int64              `json:"step"`
	Loss     float64            `json:"loss"`
	LR       float64            `json:"lr"`
	U        *float64           `json:"u,omitempty"`
	GradNorm float64            `json:"grad_norm"`
	Eval     map[string]float64 `json:"eval,omitempty"`
	Wall     float64            `json:"wall_seconds"`
}

// Runner runs training with run-folder bookkeeping: metrics, checkpoints, resume, early stopping.
type Runner struct {
	Cfg     RunConfig
	Backend compute.Backend
	Store   *model.Store
	Loss    LossFn
	Opt     optim.AdamW
	Train   Dataset
	Eval    EvalFn
	// Ramp returns u for a step (nil: no u column).
	Ramp func(step int64) float64
	// SaveExtra writes extra files (e.g. the adapter folder) into a checkpoint's folder.
	SaveExtra func(dir string) error
	Out       io.Writer // progress and logs (default os.Stderr)

	stepper *Stepper
	state   State
	start   time.Time
	metrics *os.File
}

// Errors a run can end with.
var (
	ErrInterrupted = errors.New("training interrupted")
)

// Folder layout of a run.
const (
	MetricsFile   = "metrics.jsonl"
	CheckpointDir = "checkpoints"
	LastDir       = "last"
	BestDir       = "best"
)

// ExampleOrder returns the example index at global position e: epoch e/n uses a permutation of
// 0..n-1 drawn from (seed, epoch), so the data position of a run is a single number and a resumed
// run sees the same examples as an uninterrupted one.
type ExampleOrder struct {
	Seed  uint64
	N     int
	epoch int64
	perm  []int
}

// At returns the example at global position e.
func (o *ExampleOrder) At(e int64) int {
	ep := e / int64(o.N)
	if o.perm == nil || ep != o.epoch {
		o.epoch = ep
		o.perm = rand.New(rand.NewPCG(o.Seed, uint64(ep)+0x5eed)).Perm(o.N)
	}
	return o.perm[e%int64(o.N)]
}

func (r *Runner) out() io.Writer {
	if r.Out == nil {
		return os.Stderr
	}
	return r.Out
}

// CheckWritable verifies before training that dir is writable and has room for about need bytes.
func CheckWritable(dir string, need int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("run folder %s is not writable: %w", dir, err)
	}
	probe := filepath.Join(dir, ".write-probe")
	if err := os.WriteFile(probe, []byte("ok"), 0o644); err != nil {
		return fmt.Errorf("run folder %s is not writable: %w", dir, err)
	}
	_ = os.Remove(probe)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err == nil {
		free := int64(fs.Bavail) * int64(fs.Bsize)
		if free < need {
			return fmt.Errorf("run folder %s: %d MB free, checkpoints need about %d MB", dir, free>>20, need>>20)
		}
	}
	return nil
}

func (r *Runner) checkpointBytes() int64 {
	var n int64
	for _, v := range CheckpointVariables(r.Store) {
		n += int64(v.Shape().Memory())
	}
	// trainable + 2 moments are counted already once created; before the first step the moments
	// do not exist yet, so assume 3× plus slack, and 3 copies (last, best, temp).
	return 3*3*n + 1<<20
}

// Run trains until TotalSteps (or early stopping, a non-finite loss, or ctx cancellation), writing
// metrics and checkpoints in Cfg.Dir. With resume, it continues from Dir's last checkpoint.
func (r *Runner) Run(ctx context.Context, resume bool) (State, error) {
	c := r.Cfg
	if c.BatchSize < 1 || c.TotalSteps < 1 {
		return r.state, fmt.Errorf("batch size and total steps must be ≥ 1")
	}
	if c.AccumSteps < 1 {
		c.AccumSteps = 1
	}
	if r.Train == nil || r.Train.Len() == 0 {
		return r.state, fmt.Errorf("no training examples")
	}
	if err := CheckWritable(c.Dir, r.checkpointBytes()); err != nil {
		return r.state, err
	}
	ckDir := filepath.Join(c.Dir, CheckpointDir)
	if resume {
		st, err := LoadCheckpoint(filepath.Join(ckDir, LastDir), r.Store)
		if err != nil {
			return r.state, fmt.Errorf("resume: %w", err)
		}
		r.state = st
		if err := truncateMetrics(filepath.Join(c.Dir, MetricsFile), st.Step); err != nil {
			return r.state, err
		}
	} else if _, err := os.Stat(filepath.Join(ckDir, LastDir)); err == nil {
		return r.state, fmt.Errorf("run folder %s already holds a run: resume it or choose another folder", c.Dir)
	}
	st, err := NewStepper(r.Backend, r.Store, r.Loss, r.Opt, c.AccumSteps)
	if err != nil {
		return r.state, err
	}
	r.stepper = st
	if CurrentStep(r.Store) != r.state.Step {
		return r.state, fmt.Errorf("optimizer step counter %d does not match the checkpoint's step %d", CurrentStep(r.Store), r.state.Step)
	}
	r.metrics, err = os.OpenFile(filepath.Join(c.Dir, MetricsFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return r.state, err
	}
	defer r.metrics.Close()
	r.start = time.Now().Add(-time.Duration(r.state.Wall * float64(time.Second)))
	order := &ExampleOrder{Seed: c.Seed, N: r.Train.Len()}
	bar := newProgress(r.out(), c.TotalSteps, r.state.Step, c.Quiet, c.LogEvery, int64(c.BatchSize*c.AccumSteps))
	saveLast := func() error {
		r.state.Wall = time.Since(r.start).Seconds()
		return SaveCheckpoint(filepath.Join(ckDir, LastDir), r.Store, r.state, r.SaveExtra)
	}
	for r.state.Step < c.TotalSteps {
		if ctx.Err() != nil {
			bar.done()
			if err := saveLast(); err != nil {
				return r.state, fmt.Errorf("interrupted, and saving the checkpoint failed: %w", err)
			}
			return r.state, fmt.Errorf("%w at step %d: checkpoint saved in %s; resume with --resume", ErrInterrupted, r.state.Step, ckDir)
		}
		micro := make([][]*tensors.Tensor, c.AccumSteps)
		tokens := 0
		for j := range micro {
			idx := make([]int, c.BatchSize)
			for i := range idx {
				idx[i] = order.At(r.state.Examples)
				r.state.Examples++
			}
			if micro[j], err = r.Train.Batch(idx); err != nil {
				return r.state, fmt.Errorf("batch at step %d: %w", r.state.Step, err)
			}
			if tc, ok := r.Train.(TokenCounter); ok {
				tokens += tc.NumTokens(idx)
			}
		}
		bar.tokens += int64(tokens)
		res, err := st.Step(micro...)
		m := Metric{Step: res.Step, Loss: res.Loss, LR: res.LR, GradNorm: res.GradNorm, Wall: time.Since(r.start).Seconds()}
		if r.Ramp != nil {
			u := r.Ramp(res.Step)
			m.U = &u
		}
		if err != nil {
			r.writeMetric(m)
			bar.done()
			if errors.Is(err, ErrNonFinite) {
				return r.state, fmt.Errorf("%w; stopping. The last good checkpoint is in %s", err, filepath.Join(ckDir, LastDir))
			}
			return r.state, err
		}
		r.state.Step = res.Step
		final := r.state.Step >= c.TotalSteps
		stop := false
		if r.Eval != nil && (final || (c.EvalEvery > 0 && r.state.Step%c.EvalEvery == 0)) {
			ev, err := r.Eval(r.Store)
			if err != nil {
				return r.state, fmt.Errorf("evaluation at step %d: %w", r.state.Step, err)
			}
			m.Eval = ev
			improved, haveMetric := r.improved(ev)
			if haveMetric && improved {
				r.state.BadEvals = 0
				if err := saveLast(); err != nil {
					return r.state, err
				}
				if err := copyDir(filepath.Join(ckDir, LastDir), filepath.Join(ckDir, BestDir)); err != nil {
					return r.state, err
				}
			} else if haveMetric {
				r.state.BadEvals++
				if c.Early.Patience > 0 && r.state.BadEvals >= c.Early.Patience {
					stop = true
				}
			}
			bar.note(ev)
		}
		r.writeMetric(m)
		bar.update(r.state.Step, res.Loss)
		if final || stop || (c.CheckpointEvery > 0 && r.state.Step%c.CheckpointEvery == 0) {
			if err := saveLast(); err != nil {
				return r.state, err
			}
		}
		if stop {
			bar.done()
			fmt.Fprintf(r.out(), "early stopping at step %d: %s has not improved for %d evaluations (best %.4f at step %d)\n",
				r.state.Step, c.Early.Metric, c.Early.Patience, *r.state.BestMetric, r.state.BestStep)
			return r.state, nil
		}
	}
	bar.done()
	return r.state, nil
}

func (r *Runner) improved(ev map[string]float64) (improved, ok bool) {
	name := r.Cfg.Early.Metric
	if name == "" {
		return false, false
	}
	v, ok := ev[name]
	if !ok || math.IsNaN(v) {
		return false, false
	}
	b := r.state.BestMetric
	if b == nil || (r.Cfg.Early.Maximize && v > *b) || (!r.Cfg.Early.Maximize && v < *b) {
		r.state.BestMetric = &v
		r.state.BestStep = r.state.Step
		return true, true
	}
	return false, true
}

func (r *Runner) writeMetric(m Metric) {
	js, err := json.Marshal(m)
	if err != nil {
		return
	}
	_, _ = r.metrics.Write(append(js, '\n'))
}

// truncateMetrics drops metric lines past step (a resumed run rewrites them).
func truncateMetrics(path string, step int64) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	var keep []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var m Metric
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Step <= step {
			keep = append(keep, sc.Text())
		}
	}
	f.Close()
	data := strings.Join(keep, "\n")
	if len(keep) > 0 {
		data += "\n"
	}
	return safetensors.WriteFileAtomic(path, []byte(data), 0o644)
}

// copyDir copies a checkpoint folder to dst atomically (temp + rename).
func copyDir(src, dst string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}
	err = filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(tmp, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, info.Mode())
	})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := replaceDir(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	return nil
}
