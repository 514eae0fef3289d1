// Package demo is singlora's embedded demo: Universal Sentence Encoder Lite, fine-tuned on 3,000
// labelled sentiment sentences (IMDB, Yelp, Amazon) with a frozen encoder + head, LoRA and
// SingLoRA, on one seeded stratified split, reporting test accuracy, trainable parameters and
// training time.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/data"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models/use"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
	"github.com/singlora/singlora/train"
)

// MethodSpec is one row of the demo: a method and its default hyperparameters.
type MethodSpec struct {
	Name   string
	Method peft.Method
	LR     float64 // encoder-adapter learning rate
}

// DefaultLR is each method's default learning rate in the demo: the paper's 1e-3 for SingLoRA,
// PEFT's common 5e-4 for LoRA, LoRA+ and DoRA, 5e-5 for full fine-tuning, and 1e-2 for the
// frozen baseline (the head alone).
var DefaultLR = map[peft.Method]float64{peft.Frozen: 1e-2, peft.LoRA: 5e-4, peft.LoRAPlus: 5e-4, peft.DoRA: 5e-4, peft.SingLoRA: 1e-3, peft.Full: 5e-5}

// Options configures a demo run.
type Options struct {
	RunDir    string
	CacheDir  string
	Methods   []MethodSpec
	Epochs    int
	BatchSize int
	Rank      int
	HeadLR    float64
	Seed      uint64
	Quiet     bool
	Out       io.Writer
	Backend   compute.Backend
	// MaxTrain and MaxEval limit the training and the validation/test examples (0: all) — for
	// quick checks.
	MaxTrain, MaxEval int
}

// Result is one method's outcome, as written to results.json.
type Result struct {
	Name            string  `json:"name"`
	TestAccuracy    float64 `json:"test_accuracy"`
	ValAccuracy     float64 `json:"val_accuracy"`
	TrainableParams int     `json:"trainable_params"`
	AdapterParams   int     `json:"adapter_params"`
	TrainSeconds    float64 `json:"train_seconds"`
	LR              float64 `json:"lr"`
	Steps           int64   `json:"steps"`
	BestStep        int64   `json:"best_step"`
}

// Results is results.json.
type Results struct {
	Methods []Result          `json:"methods"`
	Split   map[string]int    `json:"split"`
	Config  map[string]any    `json:"config"`
	Extra   map[string]string `json:"extra,omitempty"`
}

// Sentences loads the 3,000 labelled sentences of the sentiment package in a fixed order. Each
// fixture file ends with one record {"text": "", "class": null}, which is skipped; any other
// record without text or class is an error.
func Sentences(cache string) ([]data.Example, error) {
	dir := filepath.Join(fetch.Sentiment.Dir(cache), "package", "test", "fixtures")
	var all []data.Example
	for _, f := range []string{"amazon.json", "imdb.json", "yelp.json"} {
		path := filepath.Join(dir, f)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w (run \"singlora fetch\")", err)
		}
		var recs []struct {
			Text  string `json:"text"`
			Class *int   `json:"class"`
		}
		if err := json.Unmarshal(b, &recs); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for i, r := range recs {
			if r.Class == nil && strings.TrimSpace(r.Text) == "" {
				continue
			}
			if r.Class == nil || strings.TrimSpace(r.Text) == "" {
				return nil, fmt.Errorf("%s: record %d has no text or no class", path, i)
			}
			all = append(all, data.Example{Text: r.Text, Label: fmt.Sprint(*r.Class), File: path, Line: i + 1})
		}
	}
	return all, nil
}

// Run runs the demo and returns the results (also written to RunDir/results.json).
func Run(ctx context.Context, o Options) (*Results, error) {
	if o.Out == nil {
		o.Out = os.Stderr
	}
	for _, p := range fetch.All {
		if _, _, err := fetch.Fetch(p, o.CacheDir, func(f string, a ...any) { fmt.Fprintf(o.Out, f+"\n", a...) }); err != nil {
			return nil, err
		}
	}
	examples, err := Sentences(o.CacheDir)
	if err != nil {
		return nil, err
	}
	splits, err := data.StratifiedSplit(examples, []float64{0.7, 0.1, 0.2}, o.Seed)
	if err != nil {
		return nil, err
	}
	trainEx, valEx, testEx := splits[0], splits[1], splits[2]
	if o.MaxTrain > 0 && len(trainEx) > o.MaxTrain {
		trainEx = trainEx[:o.MaxTrain]
	}
	if o.MaxEval > 0 {
		valEx, testEx = valEx[:min(len(valEx), o.MaxEval)], testEx[:min(len(testEx), o.MaxEval)]
	}
	labels := data.LabelSet(examples)
	res := &Results{
		Split: map[string]int{"train": len(trainEx), "validation": len(valEx), "test": len(testEx)},
		Config: map[string]any{"epochs": o.Epochs, "batch_size": o.BatchSize, "rank": o.Rank, "seed": o.Seed,
			"head_lr": o.HeadLR, "model": use.BaseModelName, "split": "70/10/20 stratified"},
	}
	fmt.Fprintf(o.Out, "data: %d sentences (%d train / %d validation / %d test), labels %v\n",
		len(examples), len(trainEx), len(valEx), len(testEx), labels)
	for _, ms := range o.Methods {
		r, err := runMethod(ctx, o, ms, labels, trainEx, valEx, testEx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ms.Name, err)
		}
		res.Methods = append(res.Methods, *r)
	}
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := os.MkdirAll(o.RunDir, 0o755); err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(o.RunDir, "results.json"), append(js, '\n')); err != nil {
		return nil, err
	}
	return res, nil
}

// Table formats results as a text table.
func (r *Results) Table() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-10s %16s %14s %13s %12s\n", "method", "trainable params", "adapter params", "test accuracy", "train time")
	for _, m := range r.Methods {
		fmt.Fprintf(&sb, "%-10s %16d %14d %13.4f %11.1fs\n", m.Name, m.TrainableParams, m.AdapterParams, m.TestAccuracy, m.TrainSeconds)
	}
	return sb.String()
}

func texts(ex []data.Example) []string {
	out := make([]string, len(ex))
	for i, e := range ex {
		out[i] = e.Text
	}
	return out
}

func labelIDs(ex []data.Example, labels []string) ([]int, error) {
	idx := map[string]int{}
	for i, l := range labels {
		idx[l] = i
	}
	out := make([]int, len(ex))
	for i, e := range ex {
		id, ok := idx[e.Label]
		if !ok {
			return nil, fmt.Errorf("label %q not in %v", e.Label, labels)
		}
		out[i] = id
	}
	return out, nil
}

// Setup loads the encoder and builds the classification task for a method.
func Setup(dir string, ms MethodSpec, rank int, labels []string, seed uint64) (*classify.Task, *peft.Injection, error) {
	m, err := use.New(dir)
	if err != nil {
		return nil, nil, err
	}
	cfg := peft.DefaultConfig(ms.Method)
	cfg.Rank, cfg.Alpha, cfg.Seed = rank, float64(rank), seed
	cfg.ModulesToSave = []string{classify.HeadScope}
	inj, err := peft.Inject(cfg, m.Linears())
	if err != nil {
		return nil, nil, err
	}
	task := &classify.Task{Enc: m, Inj: inj, Store: m.Store, NumClasses: len(labels), Labels: labels,
		FeatureScale: math.Sqrt(float64(m.EmbedDim())), PadTo: 16, Streams: classify.DefaultStreams}
	if err := task.InitHead(seed); err != nil {
		return nil, nil, err
	}
	return task, inj, nil
}

func runMethod(ctx context.Context, o Options, ms MethodSpec, labels []string, trainEx, valEx, testEx []data.Example) (*Result, error) {
	task, inj, err := Setup("", ms, o.Rank, labels, o.Seed)
	if err != nil {
		return nil, err
	}
	steps := int64(o.Epochs * ((len(trainEx) + o.BatchSize - 1) / o.BatchSize))
	if inj.Config.Method == peft.SingLoRA {
		inj.Config.RampSteps = max(1, steps/100) // T = 1% of the steps, the paper's rule
	}
	if err := inj.Attach(task.Store); err != nil {
		return nil, err
	}
	if err := task.Store.SetRNGStateFromSeed(int64(o.Seed)); err != nil {
		return nil, err
	}
	rep := inj.Report(task.Store)
	adapterParams := 0
	for _, l := range rep.Layers {
		adapterParams += l.Trainable
	}
	trainIDs, err := labelIDs(trainEx, labels)
	if err != nil {
		return nil, err
	}
	valIDs, err := labelIDs(valEx, labels)
	if err != nil {
		return nil, err
	}
	testIDs, err := labelIDs(testEx, labels)
	if err != nil {
		return nil, err
	}
	trainData := task.NewData(texts(trainEx), trainIDs)
	valData := task.NewData(texts(valEx), valIDs)
	testData := task.NewData(texts(testEx), testIDs)

	opt := optim.DefaultAdamW(ms.LR)
	opt.Schedule = optim.Schedule{Kind: optim.Linear, WarmupSteps: steps / 10, TotalSteps: steps}
	groups := inj.OptimizerGroups(0.01)
	opt.GroupOf = func(v *model.Variable) optim.Group {
		g := groups(v)
		if strings.HasPrefix(v.Path(), "/"+classify.HeadScope+"/") {
			g.Name, g.LRMultiplier = "head", o.HeadLR/ms.LR
		}
		return g
	}
	dir := filepath.Join(o.RunDir, ms.Name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	evalEvery := max(1, steps/int64(o.Epochs))
	// config.json and head.json make the folder a run "singlora classify --run" can load.
	cfg := runConfig(o, ms, inj.Config, steps, evalEvery)
	if err := finetune.WriteClassifierFiles(dir, cfg, finetune.HeadInfo{Labels: labels, FeatureScale: task.FeatureScale, Model: cfg.Model}); err != nil {
		return nil, err
	}
	runner := &train.Runner{
		Cfg: train.RunConfig{Dir: dir, TotalSteps: steps, BatchSize: o.BatchSize, AccumSteps: 1, Seed: o.Seed,
			EvalEvery: evalEvery, Early: train.EarlyStopping{Metric: "accuracy", Maximize: true}, Quiet: o.Quiet},
		Backend: o.Backend, Store: task.Store, Loss: task.Loss, Opt: opt, Train: trainData,
		Eval: func(_ *model.Store) (map[string]float64, error) { return task.Evaluate(o.Backend, valData) },
		Ramp: inj.Config.Ramp,
		Out:  o.Out,
	}
	if inj.Config.Method.HasAdapter() {
		// Each checkpoint also holds the adapter (with the head) as a PEFT-layout folder.
		runner.SaveExtra = func(d string) error {
			return adapterio.SaveFromStore(filepath.Join(d, "adapter"), inj, task.Store, use.BaseModelName)
		}
	}
	fmt.Fprintf(o.Out, "== %s: %d trainable parameters (%d in adapters), lr %g, %d steps\n", ms.Name, rep.Trainable, adapterParams, ms.LR, steps)
	start := time.Now()
	st, err := runner.Run(ctx, false)
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	// Test with the best checkpoint by validation accuracy.
	best := filepath.Join(dir, train.CheckpointDir, train.BestDir)
	if _, err := train.LoadCheckpoint(best, task.Store); err != nil {
		return nil, err
	}
	p, err := task.NewPredictor(o.Backend)
	if err != nil {
		return nil, err
	}
	val, _, err := p.Score(valData)
	if err != nil {
		return nil, err
	}
	test, _, err := p.Score(testData)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "   %s: validation accuracy %.4f, test accuracy %.4f (best step %d), %.1fs\n", ms.Name, val["accuracy"], test["accuracy"], st.BestStep, secs)
	return &Result{Name: ms.Name, TestAccuracy: test["accuracy"], ValAccuracy: val["accuracy"], TrainableParams: rep.Trainable,
		AdapterParams: adapterParams, TrainSeconds: secs, LR: ms.LR, Steps: st.Step, BestStep: st.BestStep}, nil
}

// runConfig is the finetune.Config of one method's demo run, as written to its config.json: the
// settings runMethod trains with (the data are the sentiment fixtures, split 70/10/20).
func runConfig(o Options, ms MethodSpec, pc peft.Config, steps, evalEvery int64) finetune.Config {
	c := finetune.Default()
	c.Name, c.Model, c.Task = "demo-"+ms.Name, "use", "classify"
	c.Train = filepath.Join(fetch.Sentiment.Dir(o.CacheDir), "package", "test", "fixtures")
	c.LabelColumn = "class"
	c.Method, c.Rank, c.Alpha = string(ms.Method), pc.Rank, pc.Alpha
	c.Targets, c.Dropout, c.Init = pc.Targets, pc.Dropout, string(pc.Init)
	c.Ramp = strconv.FormatInt(pc.RampSteps, 10)
	c.LR, c.HeadLR, c.WeightDecay, c.ClipNorm = ms.LR, o.HeadLR, 0.01, 0
	c.Warmup, c.Schedule = strconv.FormatInt(steps/10, 10), string(optim.Linear)
	c.Batch, c.Accum, c.Epochs, c.Steps, c.Seed = o.BatchSize, 1, float64(o.Epochs), steps, o.Seed
	c.Streams, c.EvalEvery, c.EarlyMetric = classify.DefaultStreams, evalEvery, "accuracy"
	return c
}

func writeAtomic(path string, b []byte) error { return safetensors.WriteFileAtomic(path, b, 0o644) }

// ParseMethods resolves a comma-separated method list to specs with default learning rates.
func ParseMethods(s string) ([]MethodSpec, error) {
	var out []MethodSpec
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		m, err := peft.ParseMethod(name)
		if err != nil {
			return nil, err
		}
		out = append(out, MethodSpec{Name: string(m), Method: m, LR: DefaultLR[m]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no methods given")
	}
	return out, nil
}
