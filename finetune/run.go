package finetune

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/data"
	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/internal/memtune"
	"github.com/singlora/singlora/models"
	_ "github.com/singlora/singlora/models/all" // the model packages register themselves
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// Files in a run folder besides train's.
const (
	ConfigFile  = "config.json"
	SummaryFile = "summary.json"
	AdapterDir  = "adapter"   // the best checkpoint's adapter (PEFT layout), for adapter methods
	HeadFile    = "head.json" // the label set of a classifier
)

// Summary is RUN/summary.json.
type Summary struct {
	Name            string             `json:"name"`
	Method          string             `json:"method"`
	LR              float64            `json:"lr"`
	Seed            uint64             `json:"seed"`
	Steps           int64              `json:"steps"`
	BestStep        int64              `json:"best_step"`
	TrainableParams int                `json:"trainable_params"`
	TotalParams     int                `json:"total_params"`
	TrainSeconds    float64            `json:"train_seconds"`
	Val             map[string]float64 `json:"val"`
	Test            map[string]float64 `json:"test,omitempty"`
	Labels          []string           `json:"labels,omitempty"`
}

// Job is a resolved, loaded run: everything needed to train, evaluate and save.
type Job struct {
	Cfg        Config
	Dir        string
	Backend    compute.Backend
	Task       *classify.Task
	Inj        *peft.Injection
	TotalSteps int64
	Train      *classify.Data
	Val, Test  *classify.Data
	Runner     *train.Runner
	Out        io.Writer
	baseName   string // the base model adapters record
}

func loadSplit(path string, c *Config) ([]data.Example, error) {
	return data.LoadClassification(path, data.Options{TextColumn: c.TextColumn, LabelColumn: c.LabelColumn})
}

// Prepare loads data and model and builds the runner (nothing is trained or written).
func Prepare(c Config, dir string, backend compute.Backend, out io.Writer) (*Job, error) {
	if out == nil {
		out = os.Stderr
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Task != "classify" {
		return nil, fmt.Errorf("task %q: singlora train supports classify with the demo encoder so far", c.Task)
	}
	trainEx, err := loadSplit(c.Train, &c)
	if err != nil {
		return nil, err
	}
	var valEx, testEx []data.Example
	if c.Val != "" {
		if valEx, err = loadSplit(c.Val, &c); err != nil {
			return nil, err
		}
	} else if c.ValFraction > 0 {
		parts, err := data.StratifiedSplit(trainEx, []float64{1 - c.ValFraction, c.ValFraction}, c.Seed)
		if err != nil {
			return nil, err
		}
		trainEx, valEx = parts[0], parts[1]
	}
	if c.Test != "" {
		if testEx, err = loadSplit(c.Test, &c); err != nil {
			return nil, err
		}
	}
	if err := checkBatch(c, len(trainEx)); err != nil {
		return nil, err
	}
	labels := data.LabelSet(trainEx)
	if len(labels) < 2 {
		return nil, fmt.Errorf("%s: classification needs at least 2 labels, found %v", c.Train, labels)
	}
	encode := func(ex []data.Example) ([]int, error) { return data.EncodeLabels(ex, labels) }
	trainY, err := encode(trainEx)
	if err != nil {
		return nil, err
	}
	valY, err := encode(valEx)
	if err != nil {
		return nil, err
	}
	testY, err := encode(testEx)
	if err != nil {
		return nil, err
	}

	enc, store, baseName, err := loadEncoder(c)
	if err != nil {
		return nil, err
	}
	stepsPerEpoch, total := c.StepCounts(len(trainEx))
	pc, err := c.PeftConfig(total)
	if err != nil {
		return nil, err
	}
	pc.ModulesToSave = []string{classify.HeadScope}
	inj, err := peft.Inject(pc, enc.Linears())
	if err != nil {
		return nil, err
	}
	if err := CheckRank(inj); err != nil {
		return nil, err
	}
	task := &classify.Task{Enc: enc, Inj: inj, Store: store, NumClasses: len(labels), Labels: labels,
		FeatureScale: enc.FeatureScale(), PadTo: 16, Streams: c.StreamCount()}
	if err := task.InitHead(c.Seed); err != nil {
		return nil, err
	}
	if err := inj.Attach(store); err != nil {
		return nil, err
	}
	if err := store.SetRNGStateFromSeed(int64(c.Seed)); err != nil {
		return nil, err
	}
	texts := func(ex []data.Example) []string {
		out := make([]string, len(ex))
		for i, e := range ex {
			out[i] = e.Text
		}
		return out
	}
	// One note for all splits (each NewData would print its own, without the split's name).
	task.Warnings = io.Discard
	j := &Job{Cfg: c, Dir: dir, Backend: backend, Task: task, Inj: inj, TotalSteps: total, Out: out, baseName: baseName,
		Train: task.NewData(texts(trainEx), trainY), Val: task.NewData(texts(valEx), valY)}
	if len(testEx) > 0 {
		j.Test = task.NewData(texts(testEx), testY)
	}
	task.Warnings = nil
	if note := clippedNote(map[string]*classify.Data{"training": j.Train, "validation": j.Val, "test": j.Test}); note != "" {
		fmt.Fprintf(out, "warning: %s are longer than the encoder's limit of %d tokens and were clipped to it\n", note, clipLimit(enc))
	}
	longest := 1
	for _, r := range j.Train.Rows {
		longest = max(longest, len(r))
	}
	if err := checkStepMemory(c, enc.Linears(), (longest+15)/16*16, 0); err != nil {
		return nil, err
	}
	groups := inj.OptimizerGroups(c.WeightDecay)
	headLR := c.HeadLR
	if headLR <= 0 {
		headLR = c.LR
	}
	opt, err := c.Optimizer(total, func(v *model.Variable) optim.Group {
		g := groups(v)
		if strings.HasPrefix(v.Path(), "/"+classify.HeadScope+"/") {
			g.Name, g.LRMultiplier = "head", headLR/c.LR
		}
		return g
	})
	if err != nil {
		return nil, err
	}
	evalEvery := c.EvalEvery
	if evalEvery <= 0 {
		evalEvery = max(1, stepsPerEpoch)
	}
	early := c.EarlyMetric
	if early == "" {
		early = "accuracy"
	}
	r := &train.Runner{
		Cfg: train.RunConfig{Dir: dir, TotalSteps: total, BatchSize: c.Batch, AccumSteps: c.Accum, Seed: c.Seed,
			EvalEvery: evalEvery, CheckpointEvery: c.CheckpointEvery,
			Early: train.EarlyStopping{Metric: early, Maximize: early != "loss", Patience: c.Patience}},
		Backend: backend, Store: store, Loss: task.Loss, Opt: opt, Train: j.Train, Ramp: inj.Config.Ramp, Out: out,
	}
	if j.Val.Len() > 0 {
		r.Eval = func(*model.Store) (map[string]float64, error) { return task.Evaluate(backend, j.Val) }
	}
	if inj.Config.Method.HasAdapter() {
		r.SaveExtra = func(d string) error {
			return adapterio.SaveFromStore(filepath.Join(d, AdapterDir), inj, store, baseName)
		}
	}
	j.Runner = r
	return j, nil
}

// Run trains (or resumes) the job, then scores the best checkpoint on the validation and test
// sets, writes the validation predictions, summary.json and, for adapter methods, RUN/adapter.
func (j *Job) Run(ctx context.Context, resume bool) (*Summary, error) {
	lj, _ := json.Marshal(HeadInfo{Labels: j.Task.Labels, FeatureScale: j.Task.FeatureScale, Model: j.Cfg.Model})
	return runFolder(ctx, resume, runParts{
		cfg: j.Cfg, dir: j.Dir, runner: j.Runner, inj: j.Inj, store: j.Task.Store, out: j.Out, total: j.TotalSteps,
		baseName: j.baseName, labels: j.Task.Labels, files: map[string][]byte{HeadFile: append(lj, '\n')},
		score: func(s *Summary) error {
			p, err := j.Task.NewPredictor(j.Backend)
			if err != nil {
				return err
			}
			defer p.Close()
			if j.Val.Len() > 0 {
				var preds []int
				if s.Val, preds, err = p.Score(j.Val); err != nil {
					return err
				}
				if err := j.writePredictions(preds); err != nil {
					return err
				}
			}
			if j.Test != nil {
				if s.Test, _, err = p.Score(j.Test); err != nil {
					return err
				}
			}
			return nil
		},
	})
}

// runParts is what runFolder needs of a prepared job.
type runParts struct {
	cfg      Config
	dir      string
	runner   *train.Runner
	inj      *peft.Injection
	store    *model.Store
	out      io.Writer
	total    int64
	baseName string               // base_model_name_or_path of the saved adapter
	labels   []string             // the classifier's labels, for summary.json (nil: none)
	files    map[string][]byte    // written beside config.json when the run starts (head.json)
	score    func(*Summary) error // fills the summary's metrics with the best weights loaded
}

// runFolder is the part of a run every task shares: take the run folder (lock, checks,
// config.json), train or resume with the runner, load the best checkpoint (else the last), let
// the task score it, and write RUN/adapter (adapter methods) and summary.json.
func runFolder(ctx context.Context, resume bool, p runParts) (*Summary, error) {
	lock, err := openRunFolder(p.dir, p.cfg, resume, p.runner, p.files)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	rep := p.inj.Report(p.store)
	fmt.Fprintf(p.out, "%s: %s r=%d on %d layers, %d trainable of %d parameters, %d steps\n",
		p.dir, p.cfg.Method, p.cfg.R, len(p.inj.Targets()), rep.Trainable, rep.Total, p.total)
	start := time.Now()
	st, err := p.runner.Run(ctx, resume)
	if err != nil {
		return nil, err
	}
	if err := loadBest(p.dir, p.store); err != nil {
		return nil, err
	}
	s := &Summary{Name: p.cfg.Name, Method: p.cfg.Method, LR: p.cfg.LR, Seed: p.cfg.Seed, Steps: st.Step, BestStep: st.BestStep,
		TrainableParams: rep.Trainable, TotalParams: rep.Total, TrainSeconds: st.Wall, Labels: p.labels}
	if st.Wall == 0 {
		s.TrainSeconds = time.Since(start).Seconds()
	}
	if err := p.score(s); err != nil {
		return nil, err
	}
	if p.inj.Config.Method.HasAdapter() {
		if err := adapterio.SaveFromStore(filepath.Join(p.dir, AdapterDir), p.inj, p.store, p.baseName); err != nil {
			return nil, err
		}
	}
	js, _ := json.MarshalIndent(s, "", "  ")
	if err := writeAtomic(filepath.Join(p.dir, SummaryFile), append(js, '\n')); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadRunConfig reads RUN/config.json (for --resume).
func LoadRunConfig(dir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return c, fmt.Errorf("resume %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("resume %s: config.json: %w", dir, err)
	}
	return c, nil
}

// writeAtomic writes a file by temp file + rename (a crash leaves the old file or the new one).
func writeAtomic(path string, b []byte) error { return atomicfile.WriteFile(path, b, 0o644) }

// PredictionsFile holds the validation predictions made at the end of training (best weights).
const PredictionsFile = "val_predictions.jsonl"

// Prediction is one line of PredictionsFile.
type Prediction struct {
	Text  string `json:"text"`
	Label string `json:"label"`
	Pred  string `json:"prediction"`
}

// writePredictions writes the validation predictions (class ids, in j.Val's order).
func (j *Job) writePredictions(preds []int) error {
	var b []byte
	for i, k := range preds {
		js, _ := json.Marshal(Prediction{Text: j.Val.Texts[i], Label: j.Task.Labels[j.Val.Labels[i]], Pred: j.Task.Labels[k]})
		b = append(append(b, js...), '\n')
	}
	return writeAtomic(filepath.Join(j.Dir, PredictionsFile), b)
}

// SetQuiet switches the progress bar to log lines.
func (j *Job) SetQuiet(q bool) { j.Runner.Cfg.Quiet = q }

// Runnable is a prepared training job.
type Runnable interface {
	Run(ctx context.Context, resume bool) (*Summary, error)
	SetQuiet(bool)
	// Params is the parameter report: per adapted layer, and trainable vs total.
	Params() peft.Report
}

// Params implements Runnable.
func (j *Job) Params() peft.Report { return j.Inj.Report(j.Task.Store) }

// New prepares the job c describes, for the model the registry resolves c.Model to (see
// models.Resolve): classification (a sentence encoder and a head) or causal-LM fine-tuning.
// The default task, classify, on a model that only has a causal-LM head trains it as a causal
// LM (models.Arch.TaskFor).
func New(c Config, dir string, backend compute.Backend, out io.Writer) (Runnable, error) {
	arch, err := models.Resolve(c.Model)
	if err != nil {
		return nil, err
	}
	task, err := arch.TaskIn(c.Model, models.Task(c.Task))
	if err != nil {
		return nil, err
	}
	c.Task = string(task)
	if task == models.CausalLM {
		return PrepareCausal(c, dir, backend, out)
	}
	return Prepare(c, dir, backend, out)
}

// loadEncoder loads the model c.Model names as a classification encoder, through the models
// registry, and returns it with its store and the base-model name its adapters record.
func loadEncoder(c Config) (models.Encoder, *model.Store, string, error) {
	arch, err := models.Resolve(c.Model)
	if err != nil {
		return nil, nil, "", err
	}
	lo, err := c.LoadOptions()
	if err != nil {
		return nil, nil, "", err
	}
	store := model.NewStore()
	enc, err := arch.LoadEncoder(c.Model, store, models.EncoderOptions{MaxLength: c.MaxLength, LoadOptions: lo})
	if err != nil {
		return nil, nil, "", err
	}
	memtune.AfterLoad()
	return enc, store, arch.BaseModelName(c.Model), nil
}

// clippedNote lists the splits with clipped texts ("3 of 900 training texts, 1 of 100 test
// texts"); "" when none was clipped.
func clippedNote(splits map[string]*classify.Data) string {
	var parts []string
	for _, name := range []string{"training", "validation", "test"} {
		if d := splits[name]; d != nil && d.Clipped > 0 {
			parts = append(parts, fmt.Sprintf("%d of %d %s texts", d.Clipped, d.Len(), name))
		}
	}
	return strings.Join(parts, ", ")
}

// clipLimit is the encoder's token limit (0 if it does not clip).
func clipLimit(enc classify.Encoder) int {
	if c, ok := enc.(classify.Clipper); ok {
		return c.MaxLength()
	}
	return 0
}
