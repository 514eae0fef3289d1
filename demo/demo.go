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
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/gomlx/compute"

	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/data"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models/use"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// MethodSpec is one row of the demo: a method and its default hyperparameters.
type MethodSpec struct {
	Name   string
	Method peft.Method
	LR     float64 // encoder-adapter learning rate
}

// DefaultLR is each method's default learning rate in the demo: the paper's 1e-3 for SingLoRA,
// PEFT's common 5e-4 for LoRA, LoRA+ and DoRA, 5e-5 for full fine-tuning, and 1e-2 for the
// frozen baseline (the head alone). A method missing from the table runs at FallbackLR.
var DefaultLR = map[peft.Method]float64{peft.Frozen: 1e-2, peft.LoRA: 5e-4, peft.LoRAPlus: 5e-4, peft.DoRA: 5e-4, peft.SingLoRA: 1e-3, peft.Full: 5e-5}

// FallbackLR is the demo's learning rate for a method DefaultLR does not list: the paper's one rate.
const FallbackLR = 1e-3

// Options configures a demo run.
type Options struct {
	RunDir    string
	CacheDir  string
	Methods   []MethodSpec
	Epochs    float64 // > 0; a fraction trains ⌈Epochs·⌈n/BatchSize⌉⌉ steps
	BatchSize int
	Rank      int
	Alpha     float64 // adapter α (scale α/r); 0: α = Rank
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

// Split holds the paths of the demo's split files and their sizes.
type Split struct {
	Train, Val, Test string
	Counts           map[string]int // "train", "validation", "test"
	Labels           []string
}

// WriteSplit writes the demo's seeded 70/10/20 stratified split of the sentiment sentences as
// train/val/test JSONL files ({"text", "label"}) in dir, the training part cut to maxTrain and the
// others to maxEval sentences when those are > 0. Files already there with the same content are
// left alone; each is written atomically.
func WriteSplit(cache, dir string, seed uint64, maxTrain, maxEval int) (*Split, error) {
	examples, err := Sentences(cache)
	if err != nil {
		return nil, err
	}
	parts, err := data.StratifiedSplit(examples, []float64{0.7, 0.1, 0.2}, seed)
	if err != nil {
		return nil, err
	}
	if maxTrain > 0 && len(parts[0]) > maxTrain {
		parts[0] = parts[0][:maxTrain]
	}
	if maxEval > 0 {
		parts[1], parts[2] = parts[1][:min(len(parts[1]), maxEval)], parts[2][:min(len(parts[2]), maxEval)]
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sp := &Split{Counts: map[string]int{}, Labels: data.LabelSet(examples)}
	for i, name := range []string{"train", "val", "test"} {
		var sb strings.Builder
		for _, e := range parts[i] {
			js, _ := json.Marshal(map[string]string{"text": e.Text, "label": e.Label})
			sb.Write(js)
			sb.WriteByte('\n')
		}
		path := filepath.Join(dir, name+".jsonl")
		if old, err := os.ReadFile(path); err != nil || string(old) != sb.String() {
			if err := writeAtomic(path, []byte(sb.String())); err != nil {
				return nil, err
			}
		}
		switch name {
		case "train":
			sp.Train, sp.Counts["train"] = path, len(parts[i])
		case "val":
			sp.Val, sp.Counts["validation"] = path, len(parts[i])
		case "test":
			sp.Test, sp.Counts["test"] = path, len(parts[i])
		}
	}
	return sp, nil
}

// Config is the finetune configuration of one method's demo run: USE-Lite, SingLoRA/LoRA/… at
// rank r with α (default r) on every linear layer, AdamW with the method's learning rate (the
// head at HeadLR), weight decay 0.01, 10% linear warm-up then linear decay, no gradient
// clipping, ⌈Epochs·⌈nTrain/batch⌉⌉ steps (Epochs may be fractional), SingLoRA's ramp T = 1% of
// the steps (the paper's rule), evaluation once per epoch (every ⌈nTrain/batch⌉ steps, and at
// the end), and the best validation accuracy's checkpoint kept.
func Config(o Options, ms MethodSpec, sp *Split) finetune.Config {
	perEpoch := int64((sp.Counts["train"] + o.BatchSize - 1) / o.BatchSize)
	steps := epochSteps(o.Epochs, perEpoch)
	c := finetune.Default()
	c.Name, c.Model, c.Task = ms.Name, "use", "classify"
	c.Train, c.Val, c.Test, c.ValFraction = sp.Train, sp.Val, sp.Test, 0
	c.Method, c.R, c.LoraAlpha = string(ms.Method), o.Rank, o.alpha()
	c.Ramp = strconv.FormatInt(max(1, steps/100), 10)
	c.LR, c.HeadLR, c.WeightDecay, c.ClipNorm = ms.LR, o.HeadLR, 0.01, 0
	c.Warmup, c.Schedule = strconv.FormatInt(steps/10, 10), string(optim.Linear)
	c.Batch, c.Accum, c.Epochs, c.Steps, c.Seed = o.BatchSize, 1, o.Epochs, steps, o.Seed
	c.EvalEvery, c.EarlyMetric, c.Patience, c.CheckpointEvery = max(1, perEpoch), "accuracy", 0, 0
	return c
}

// epochSteps is ⌈epochs·perEpoch⌉, at least 1, with the product's rounding error ignored (1.1
// epochs of 10 steps are 11 steps, not the 12 that 1.1·10 = 11.000000000000002 would give);
// whole epochs give exactly epochs·perEpoch.
func epochSteps(epochs float64, perEpoch int64) int64 {
	x := epochs * float64(perEpoch)
	if r := math.Round(x); math.Abs(x-r) <= 1e-9*max(1, x) {
		return max(1, int64(r))
	}
	return max(1, int64(math.Ceil(x)))
}

// alpha is the adapter α: Alpha, or Rank when Alpha is 0.
func (o Options) alpha() float64 {
	if o.Alpha == 0 {
		return float64(o.Rank)
	}
	return o.Alpha
}

// Run runs the demo — one `singlora train` run per method, in RunDir/<method>, on the split
// written to RunDir/data — and returns the results (also written to RunDir/results.json).
func Run(ctx context.Context, o Options) (*Results, error) {
	if o.Out == nil {
		o.Out = os.Stderr
	}
	if math.IsNaN(o.Epochs) || math.IsInf(o.Epochs, 0) || !(o.Epochs > 0) {
		return nil, fmt.Errorf("demo: epochs %v must be a finite number > 0 (fractions train part of an epoch)", o.Epochs)
	}
	if o.BatchSize < 1 || o.Rank < 1 {
		return nil, fmt.Errorf("demo: batch size (%d) and rank (%d) must be ≥ 1", o.BatchSize, o.Rank)
	}
	if a := o.alpha(); math.IsNaN(a) || math.IsInf(a, 0) || !(a > 0) {
		return nil, fmt.Errorf("demo: alpha %v must be a finite number > 0 (default: the rank)", o.Alpha)
	}
	if limit, ok := setMemoryLimit(o.BatchSize); ok {
		defer debug.SetMemoryLimit(limit)
	}
	for _, p := range fetch.All {
		if _, _, err := fetch.Fetch(p, o.CacheDir, func(f string, a ...any) { fmt.Fprintf(o.Out, f+"\n", a...) }); err != nil {
			return nil, err
		}
	}
	sp, err := WriteSplit(o.CacheDir, filepath.Join(o.RunDir, "data"), o.Seed, o.MaxTrain, o.MaxEval)
	if err != nil {
		return nil, err
	}
	res := &Results{
		Split: sp.Counts,
		Config: map[string]any{"epochs": o.Epochs, "batch_size": o.BatchSize, "rank": o.Rank, "alpha": o.alpha(), "seed": o.Seed,
			"head_lr": o.HeadLR, "model": use.BaseModelName, "split": "70/10/20 stratified"},
	}
	fmt.Fprintf(o.Out, "data: %d train / %d validation / %d test sentences, labels %v\n",
		sp.Counts["train"], sp.Counts["validation"], sp.Counts["test"], sp.Labels)
	for _, ms := range o.Methods {
		r, err := runMethod(ctx, o, ms, sp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ms.Name, err)
		}
		res.Methods = append(res.Methods, *r)
	}
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := writeAtomic(filepath.Join(o.RunDir, "results.json"), append(js, '\n')); err != nil {
		return nil, err
	}
	return res, nil
}

// MemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit) the demo trains under at a
// batch size: 256 MiB for the encoder, one evaluation graph and the runtime, plus 16 MiB per
// example of the batch (a USE-Lite training step at 128 tokens takes about 12.5 MB of backend
// buffers per example: 0.40 GB at batch 32). 768 MiB at the default batch of 32.
//
// Why a limit: the pure-Go backend keeps released buffers in a sync.Pool, which the garbage
// collector empties only at the second collection after their release, and the default pacing
// (GOGC=100) lets the heap grow to twice what the last collection found live, pooled buffers
// included; the demo's heap so grew to 2.5 GB. Its buffers hold no pointers, so the extra
// collections the limit causes cost little (PERFORMANCE.md). The limit is soft: a working set
// above it makes the collector run more often (at most half the CPU), never fails a run.
func MemoryLimit(batch int) int64 { return (256 + 16*int64(max(batch, 1))) << 20 }

// setMemoryLimit sets MemoryLimit(batch) unless GOMEMLIMIT or the program already set a limit,
// and returns the limit to restore afterwards (ok false: nothing was changed).
func setMemoryLimit(batch int) (prev int64, ok bool) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		return 0, false
	}
	return debug.SetMemoryLimit(MemoryLimit(batch)), true
}

// runMethod trains one method with finetune in a fresh RunDir/<method> folder (a regular run
// folder: classify, embed, plot and train --resume work on it).
func runMethod(ctx context.Context, o Options, ms MethodSpec, sp *Split) (*Result, error) {
	dir := filepath.Join(o.RunDir, ms.Name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	job, err := finetune.New(Config(o, ms, sp), dir, o.Backend, o.Out)
	if err != nil {
		return nil, err
	}
	job.SetQuiet(o.Quiet)
	rep := job.Params()
	adapterParams := 0
	for _, l := range rep.Layers {
		adapterParams += l.Trainable
	}
	s, err := job.Run(ctx, false)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "   %s: validation accuracy %.4f, test accuracy %.4f (best step %d), %.1fs\n",
		ms.Name, s.Val["accuracy"], s.Test["accuracy"], s.BestStep, s.TrainSeconds)
	return &Result{Name: ms.Name, TestAccuracy: s.Test["accuracy"], ValAccuracy: s.Val["accuracy"], TrainableParams: s.TrainableParams,
		AdapterParams: adapterParams, TrainSeconds: s.TrainSeconds, LR: ms.LR, Steps: s.Steps, BestStep: s.BestStep}, nil
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
		lr, ok := DefaultLR[m]
		if !ok {
			lr = FallbackLR // a registered method the table does not list yet
		}
		out = append(out, MethodSpec{Name: string(m), Method: m, LR: lr})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no methods given")
	}
	return out, nil
}
