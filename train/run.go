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

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/optim"
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
	// Lock is the run folder's lock when the caller already holds it (it wrote files there
	// first); nil: Run takes the lock itself for the run's duration.
	Lock *FolderLock

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

// checkpointBytes estimates one checkpoint's size on disk: the size of an existing last
// checkpoint, else the checkpoint variables with room for the optimizer's two moments (which do
// not exist before the first step), plus slack for the adapter copy and state.
func (r *Runner) checkpointBytes(ckDir string) int64 {
	if n := dirBytes(filepath.Join(ckDir, LastDir)); n > 0 {
		return n + 1<<20
	}
	var n int64
	for _, v := range CheckpointVariables(r.Store) {
		n += int64(v.Shape().Memory())
	}
	return 3*n + 1<<20
}

// diskNeed is the free space a run needs besides what its folder already holds: a checkpoint is
// written beside the one it replaces, and last and best that do not exist yet take one each.
func (r *Runner) diskNeed(ckDir string) int64 {
	one := r.checkpointBytes(ckDir)
	need := one // the temporary copy of a replace
	for _, d := range []string{LastDir, BestDir} {
		if _, ok := ReadState(filepath.Join(ckDir, d)); !ok {
			need += one
		}
	}
	return need
}

// Preflight checks, before anything is trained or written, that the run folder is writable and
// its file system has room for the run's checkpoints (beside those it already holds).
func (r *Runner) Preflight() error {
	return CheckWritable(r.Cfg.Dir, r.diskNeed(filepath.Join(r.Cfg.Dir, CheckpointDir)))
}

// dirBytes is the total size of the files under dir (0 if absent).
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// lastNote says what a user can rely on after a failure: the step of the intact last
// checkpoint and how to resume, or that no checkpoint exists yet.
func (r *Runner) lastNote() string {
	ckDir := filepath.Join(r.Cfg.Dir, CheckpointDir)
	if st, ok := ReadState(filepath.Join(ckDir, LastDir)); ok {
		return fmt.Sprintf("the checkpoint of step %d in %s is intact; resume with --resume %s", st.Step, filepath.Join(ckDir, LastDir), r.Cfg.Dir)
	}
	return fmt.Sprintf("no checkpoint was written yet; --resume %s starts the run again from step 0", r.Cfg.Dir)
}

// Run trains until TotalSteps (or early stopping, a non-finite loss, or ctx cancellation), writing
// metrics and checkpoints in Cfg.Dir. With resume, it continues from Dir's last checkpoint (a run
// that stopped before its first checkpoint starts again from step 0). It holds the folder's lock
// (Lock, or its own) for the whole run, and first repairs what a kill during a checkpoint write
// left (RecoverCheckpoints).
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
	if r.Lock == nil {
		l, err := LockFolder(c.Dir)
		if err != nil {
			return r.state, err
		}
		defer l.Unlock()
	}
	ckDir := filepath.Join(c.Dir, CheckpointDir)
	notes, err := RecoverCheckpoints(ckDir)
	for _, n := range notes {
		fmt.Fprintf(r.out(), "%s: %s\n", c.Dir, n)
	}
	if err != nil {
		return r.state, err
	}
	removeStrayTemps(c.Dir)
	_, haveLast := ReadState(filepath.Join(ckDir, LastDir))
	if !resume && haveLast {
		return r.state, fmt.Errorf("run folder %s already holds a run: resume it with --resume %s or choose another folder", c.Dir, c.Dir)
	}
	if err := r.Preflight(); err != nil {
		return r.state, err
	}
	if resume && haveLast {
		st, err := LoadCheckpoint(filepath.Join(ckDir, LastDir), r.Store)
		if err != nil {
			return r.state, fmt.Errorf("resume: %w", err)
		}
		r.state = st
		fmt.Fprintf(r.out(), "%s: resuming from step %d\n", c.Dir, st.Step)
	} else if resume {
		fmt.Fprintf(r.out(), "%s: no checkpoint yet: starting the run again from step 0\n", c.Dir)
	}
	if resume {
		if err := truncateMetrics(filepath.Join(c.Dir, MetricsFile), r.state.Step); err != nil {
			return r.state, err
		}
	}
	st, err := NewStepper(r.Backend, r.Store, r.Loss, r.Opt, c.AccumSteps)
	if err != nil {
		return r.state, err
	}
	r.stepper = st
	defer st.Close()
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
		if err := SaveCheckpoint(filepath.Join(ckDir, LastDir), r.Store, r.state, r.SaveExtra); err != nil {
			return fmt.Errorf("saving the checkpoint of step %d: %w; %s", r.state.Step, err, r.lastNote())
		}
		return nil
	}
	writeMetric := func(m Metric) error {
		if err := r.writeMetric(m); err != nil {
			return fmt.Errorf("writing the metrics of step %d to %s: %w; %s", m.Step, filepath.Join(c.Dir, MetricsFile), err, r.lastNote())
		}
		return nil
	}
	for r.state.Step < c.TotalSteps {
		if ctx.Err() != nil {
			bar.done()
			if err := saveLast(); err != nil {
				return r.state, fmt.Errorf("interrupted, and %w", err)
			}
			return r.state, fmt.Errorf("%w at step %d: checkpoint saved in %s; resume with --resume %s", ErrInterrupted, r.state.Step, filepath.Join(ckDir, LastDir), c.Dir)
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
			bar.done()
			m.Step = r.state.Step + 1 // the step that failed (the counter did not advance)
			if werr := writeMetric(m); werr != nil {
				return r.state, errors.Join(err, werr)
			}
			if errors.Is(err, ErrNonFinite) {
				return r.state, fmt.Errorf("%w; stopping: %s", err, r.nonFiniteNote())
			}
			return r.state, err
		}
		r.state.Step = res.Step
		final := r.state.Step >= c.TotalSteps
		stop, saveBest := false, false
		if r.Eval != nil && (final || (c.EvalEvery > 0 && r.state.Step%c.EvalEvery == 0)) {
			ev, err := r.Eval(r.Store)
			if err != nil {
				return r.state, fmt.Errorf("evaluation at step %d: %w", r.state.Step, err)
			}
			m.Eval = ev
			improved, haveMetric := r.improved(ev)
			if haveMetric && improved {
				r.state.BadEvals = 0
				saveBest = true
			} else if haveMetric {
				r.state.BadEvals++
				if c.Early.Patience > 0 && r.state.BadEvals >= c.Early.Patience {
					stop = true
				}
			}
			bar.note(ev)
		}
		// The metric line goes first: a kill before the checkpoint below re-runs this step on
		// resume (truncateMetrics drops the line), a kill after it loses nothing.
		if err := writeMetric(m); err != nil {
			bar.done()
			return r.state, err
		}
		bar.update(r.state.Step, res.Loss)
		if saveBest || final || stop || (c.CheckpointEvery > 0 && r.state.Step%c.CheckpointEvery == 0) {
			if err := saveLast(); err != nil {
				bar.done()
				return r.state, err
			}
		}
		if saveBest {
			// A kill before this copy is repaired by RecoverCheckpoints (last is the best step).
			if err := copyDir(filepath.Join(ckDir, LastDir), filepath.Join(ckDir, BestDir)); err != nil {
				bar.done()
				return r.state, fmt.Errorf("copying the best checkpoint (step %d): %w; %s", r.state.Step, err, r.lastNote())
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

// nonFiniteNote says where the last good weights are after a non-finite loss.
func (r *Runner) nonFiniteNote() string {
	ckDir := filepath.Join(r.Cfg.Dir, CheckpointDir)
	var parts []string
	if st, ok := ReadState(filepath.Join(ckDir, LastDir)); ok {
		parts = append(parts, fmt.Sprintf("the last good checkpoint (step %d) is in %s", st.Step, filepath.Join(ckDir, LastDir)))
	}
	if st, ok := ReadState(filepath.Join(ckDir, BestDir)); ok {
		parts = append(parts, fmt.Sprintf("the best (step %d) in %s", st.Step, filepath.Join(ckDir, BestDir)))
	}
	if len(parts) == 0 {
		return "no checkpoint was written before it (lower the learning rate, or check the data, and start again)"
	}
	return strings.Join(parts, ", ") + " (lower the learning rate, or check the data, and start again)"
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

// writeMetric appends one line to metrics.jsonl; a failed write (a full disk) is an error, and a
// short write is an error too (the partial line is dropped on resume).
func (r *Runner) writeMetric(m Metric) error {
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = r.metrics.Write(append(js, '\n'))
	return err
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
	return atomicfile.WriteFile(path, []byte(data), 0o644)
}

// copyDir copies a checkpoint folder to dst atomically (temp + rename), each file synced, and
// state.json last so that an interrupted copy is never taken for a complete checkpoint.
func copyDir(src, dst string) error {
	tmp, err := atomicfile.TempDir(dst)
	if err != nil {
		return err
	}
	var files []string
	err = filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(tmp, rel), 0o755)
		}
		if rel != CheckpointState {
			files = append(files, rel)
		}
		return nil
	})
	if err == nil {
		for _, rel := range append(files, CheckpointState) {
			if err = copyFile(filepath.Join(src, rel), filepath.Join(tmp, rel)); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = atomicfile.ReplaceDir(tmp, dst)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	return nil
}

// copyFile copies one file and syncs it.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
