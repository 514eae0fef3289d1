// Package finetune is "singlora train": fine-tune a model on a data file with an adapter method,
// in a run folder that can be resumed. It resolves a Config (config file + flags) into the
// model, task, adapter, optimizer and train.Runner.
package finetune

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/ml/model"
	"gopkg.in/yaml.v3"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/optim"

	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/peft"
)

// Config is everything a run needs; RUN/config.json holds the resolved copy.
type Config struct {
	Name  string `json:"name,omitempty" yaml:"name"`
	Model string `json:"model" yaml:"model"` // "use" (the demo encoder) or a Hugging Face folder
	Task  string `json:"task" yaml:"task"`   // "classify" (text/label), "causal-lm" (prompt/completion), "" (what the model is for)

	Train            string  `json:"train" yaml:"train"`
	Val              string  `json:"val,omitempty" yaml:"val"`
	Test             string  `json:"test,omitempty" yaml:"test"`
	ValFraction      float64 `json:"val_fraction" yaml:"val_fraction"` // split from train when Val is empty
	TextColumn       string  `json:"text_column,omitempty" yaml:"text_column"`
	LabelColumn      string  `json:"label_column,omitempty" yaml:"label_column"`
	PromptColumn     string  `json:"prompt_column,omitempty" yaml:"prompt_column"`
	CompletionColumn string  `json:"completion_column,omitempty" yaml:"completion_column"`

	Method string `json:"method" yaml:"method"`
	// The adapter's settings under PEFT's names (r, lora_alpha, use_rslora, target_modules, init,
	// lora_dropout, loraplus_lr_ratio): the same type adapter_config.json carries.
	adapterconfig.Settings `yaml:",inline"`
	// Ramp is SingLoRA's T: an absolute step count ("200") or a fraction of the total steps ("1%", "0.01").
	Ramp string `json:"ramp" yaml:"ramp"`

	LR          float64 `json:"lr" yaml:"lr"`
	HeadLR      float64 `json:"head_lr" yaml:"head_lr"`
	WeightDecay float64 `json:"weight_decay" yaml:"weight_decay"`
	Warmup      string  `json:"warmup" yaml:"warmup"` // steps or fraction ("10%")
	Schedule    string  `json:"schedule" yaml:"schedule"`
	ClipNorm    float64 `json:"clip_grad_norm" yaml:"clip_grad_norm"`
	Batch       int     `json:"batch_size" yaml:"batch_size"`
	Accum       int     `json:"grad_accum_steps" yaml:"grad_accum_steps"`
	Epochs      float64 `json:"epochs" yaml:"epochs"`
	Steps       int64   `json:"steps,omitempty" yaml:"steps"` // overrides Epochs when > 0
	Seed        uint64  `json:"seed" yaml:"seed"`
	MaxLength   int     `json:"max_length,omitempty" yaml:"max_length"`
	// BaseDType is how the frozen base matrices are held: auto (the checkpoint's bf16/f16, else
	// float32; "" too), bf16, f16 or f32. Methods that train the base always use float32.
	BaseDType string `json:"base_dtype,omitempty" yaml:"base_dtype"`
	// RecomputeBlocks recomputes each transformer block in the backward (gradient checkpointing):
	// less activation memory, a second forward of every block.
	RecomputeBlocks bool `json:"recompute_blocks,omitempty" yaml:"recompute_blocks"`
	// Streams splits each training batch into this many independent chains of ops (the same
	// math; the pure-Go backend overlaps them on its cores). 0 means DefaultStreams.
	Streams int `json:"streams,omitempty" yaml:"streams"`

	EvalEvery       int64  `json:"eval_every" yaml:"eval_every"`
	CheckpointEvery int64  `json:"checkpoint_every" yaml:"checkpoint_every"`
	EarlyMetric     string `json:"early_stopping_metric" yaml:"early_stopping_metric"`
	Patience        int    `json:"patience" yaml:"patience"`
}

// DefaultStreams is the number of independent chains a classification batch is split into when
// the config does not say (see Config.Streams and fastops.Streams).
const DefaultStreams = classify.DefaultStreams

// StreamCount returns the configured number of streams (DefaultStreams for 0).
func (c *Config) StreamCount() int {
	if c.Streams == 0 {
		return DefaultStreams
	}
	return c.Streams
}

// Default returns the defaults: SingLoRA r=α=8 on all linear layers of the demo encoder, T = 1%
// of the steps, AdamW lr 1e-3 with 10% warm-up and linear decay, 3 epochs of batch 32.
func Default() Config {
	return Config{
		Model: "use", ValFraction: 0.1,
		Method: "singlora", Settings: adapterconfig.Settings{R: 8, LoraAlpha: 8, TargetModules: []string{peft.AllLinear}}, Ramp: "1%",
		LR: 1e-3, HeadLR: 1e-2, WeightDecay: 0.01, Warmup: "10%", Schedule: "linear", ClipNorm: 1.0,
		Batch: 32, Accum: 1, Epochs: 3, Seed: 1, EarlyMetric: "accuracy",
	}
}

// LoadFile overlays a JSON or YAML config file (by extension; .yml/.yaml are YAML) on c.
// Unknown keys are an error (a typo must not be silently ignored).
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	default:
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return nil
}

// AbsPaths makes the data paths and a model folder absolute, so that config.json names the same
// files whatever directory a later --resume runs in.
func (c *Config) AbsPaths() error {
	for _, p := range []*string{&c.Train, &c.Val, &c.Test} {
		if *p == "" || *p == "-" {
			continue
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("path %s: %w", *p, err)
		}
		*p = a
	}
	if c.Model != "" && !models.IsBuiltin(c.Model) {
		a, err := filepath.Abs(c.Model)
		if err != nil {
			return fmt.Errorf("--model %s: %w", c.Model, err)
		}
		c.Model = a
	}
	return nil
}

// Steps resolves a "N" or "p%" / "0.p" specification against total steps.
func resolveSteps(spec string, total int64, what string) (int64, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return 0, nil
	}
	if strings.HasSuffix(s, "%") {
		p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || p < 0 || p > 100 {
			return 0, fmt.Errorf("%s %q: want a step count or a percentage", what, spec)
		}
		return int64(float64(total)*p/100 + 0.5), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%s %q must be ≥ 0", what, spec)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f >= 1 {
		return 0, fmt.Errorf("%s %q: want a step count, a fraction below 1 or a percentage", what, spec)
	}
	return int64(float64(total)*f + 0.5), nil
}

// LoadOptions returns the model-loading settings of the run: the parsed --base-dtype, float32
// for a method that trains the base (auto) or an error (bf16/f16: AdamW needs float32 weights to
// train), and --recompute-blocks.
func (c *Config) LoadOptions() (models.LoadOptions, error) {
	m, err := peft.ParseMethod(c.Method)
	if err != nil {
		return models.LoadOptions{}, err
	}
	d, err := hf.ParseBaseDType(c.BaseDType)
	if err != nil {
		return models.LoadOptions{}, fmt.Errorf("--base-dtype: %w", err)
	}
	if peft.TrainsBase(m) {
		if d == hf.BaseBF16 || d == hf.BaseF16 {
			return models.LoadOptions{}, fmt.Errorf("--base-dtype %s: method %s trains the base weights, which must be float32 (use auto or f32)", d, m)
		}
		d = hf.BaseF32
	}
	return models.LoadOptions{BaseDType: d, RecomputeBlocks: c.RecomputeBlocks}, nil
}

// Validate checks the config before anything is loaded. Every numeric field has a stated range;
// a value outside it is an error naming the flag, never a silent fallback.
func (c *Config) Validate() error {
	if c.Train == "" {
		return fmt.Errorf("no training data: give --data FILE (JSONL, CSV, TSV or a JSON array)")
	}
	if _, err := c.LoadOptions(); err != nil { // the method and --base-dtype
		return err
	}
	switch c.Task {
	case "", "classify", "causal-lm": // "": what the model folder is for (models.Arch.TaskIn)
	default:
		return fmt.Errorf("task %q: want classify or causal-lm", c.Task)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && math.Abs(v) <= math.MaxFloat32 }
	switch {
	case c.Batch < 1:
		return fmt.Errorf("--batch %d: the batch size must be ≥ 1", c.Batch)
	case c.Streams < 0:
		return fmt.Errorf("--streams %d must be ≥ 0 (0: the default, %d)", c.Streams, DefaultStreams)
	case c.Accum < 1:
		return fmt.Errorf("--accum %d: gradient accumulation steps must be ≥ 1", c.Accum)
	case c.Steps < 0:
		return fmt.Errorf("--steps %d must be ≥ 1 (or 0 to train for --epochs)", c.Steps)
	case !finite(c.Epochs) || c.Epochs < 0:
		return fmt.Errorf("--epochs %v must be a finite number ≥ 0", c.Epochs)
	case c.Steps == 0 && c.Epochs == 0:
		return fmt.Errorf("give --epochs > 0 or --steps > 0")
	case !finite(c.ValFraction) || c.ValFraction < 0 || c.ValFraction >= 1:
		return fmt.Errorf("--val-fraction %v must be in [0, 1)", c.ValFraction)
	case !finite(c.LR) || !(c.LR > 0):
		return fmt.Errorf("--lr %v: the learning rate must be a finite number > 0", c.LR)
	case !finite(c.HeadLR) || c.HeadLR < 0:
		return fmt.Errorf("--head-lr %v must be a finite number > 0 (or 0: the same as --lr)", c.HeadLR)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return fmt.Errorf("--weight-decay %v must be a finite number ≥ 0", c.WeightDecay)
	case !finite(c.ClipNorm) || c.ClipNorm < 0:
		return fmt.Errorf("--clip %v must be a finite number ≥ 0 (0: off)", c.ClipNorm)
	case !finite(c.LoraPlusRatio) || c.LoraPlusRatio < 0:
		return fmt.Errorf("--loraplus-ratio %v must be a finite number > 0 (or 0: the default, %d)", c.LoraPlusRatio, peft.DefaultLoRAPlusRatio)
	case c.MaxLength < 0:
		return fmt.Errorf("--max-length %d must be ≥ 1 (or 0: the default)", c.MaxLength)
	case c.EvalEvery < 0:
		return fmt.Errorf("--eval-every %d must be ≥ 1 (or 0: every epoch)", c.EvalEvery)
	case c.CheckpointEvery < 0:
		return fmt.Errorf("--checkpoint-every %d must be ≥ 1 (or 0: at evaluations and the end)", c.CheckpointEvery)
	case c.Patience < 0:
		return fmt.Errorf("--patience %d must be ≥ 1 (or 0: never stop early)", c.Patience)
	}
	if m, _ := peft.ParseMethod(c.Method); m.HasAdapter() {
		if c.R < 1 {
			return fmt.Errorf("--rank %d: the adapter rank must be ≥ 1", c.R)
		}
		if !finite(c.LoraAlpha) || !(c.LoraAlpha > 0) {
			return fmt.Errorf("--alpha %v: the adapter α must be a finite number > 0 (the scale is α/r)", c.LoraAlpha)
		}
		if s := float32(c.LoraAlpha / float64(c.R)); s == 0 {
			return fmt.Errorf("--alpha %v with --rank %d: the scale α/r underflows float32", c.LoraAlpha, c.R)
		}
	}
	if ok := earlyMetrics[c.Task][c.EarlyMetric]; !ok && c.EarlyMetric != "" && c.Task != "" { // checked again once the task is known
		return fmt.Errorf("--early-metric %q: %s runs report %s", c.EarlyMetric, c.Task, strings.Join(slices.Sorted(maps.Keys(earlyMetrics[c.Task])), " or "))
	}
	if _, err := resolveSteps(c.Ramp, 100, "ramp"); err != nil {
		return err
	}
	if _, err := resolveSteps(c.Warmup, 100, "warmup"); err != nil {
		return err
	}
	return nil
}

// earlyMetrics are the evaluation metrics each task reports, which --early-metric may name. A
// causal-LM run reads "accuracy" (the classification default) as "loss".
var earlyMetrics = map[string]map[string]bool{
	"classify":  {"accuracy": true, "loss": true},
	"causal-lm": {"loss": true, "perplexity": true, "accuracy": true},
}

// checkBatch refuses a batch larger than the training set (after the validation split): every
// step would repeat examples within one batch, and the memory it takes grows with the flag.
func checkBatch(c Config, n int) error {
	if c.Batch > n {
		return fmt.Errorf("--batch %d is larger than the %d training examples (after holding out the validation set): use --batch %d or less", c.Batch, n, n)
	}
	return nil
}

// CheckRank refuses an adapter rank wider than an adapted layer: above min(in, out) a layer's ΔW
// can gain no rank (rank ΔW ≤ min(in, out)) while the adapter's size and memory keep growing.
// Each layer's rank is its rank_pattern value, else --rank.
func CheckRank(inj *peft.Injection) error {
	targets := inj.Targets()
	for _, t := range targets {
		rank := inj.ModuleConfig(t.Path).Rank
		lim := min(t.In, t.Out)
		if rank <= lim {
			continue
		}
		if _, key, ok := inj.Config.RankPattern.Lookup(t.Path); ok {
			return fmt.Errorf("--rank-pattern %s=%d is wider than layer %s (in %d, out %d): a rank above min(in, out) = %d adds parameters but no expressiveness; lower it to at most %d",
				key, rank, t.Path, t.In, t.Out, lim, lim)
		}
		return fmt.Errorf("--rank %d is wider than layer %s (in %d, out %d): a rank above min(in, out) = %d adds parameters but no expressiveness; lower --rank to at most %d, or leave the layer out of --targets (or give it its own rank with --rank-pattern)",
			rank, t.Path, t.In, t.Out, lim, minSide(targets))
	}
	return nil
}

// minSide is the smallest min(in, out) over the layers.
func minSide(ts []peft.LinearSpec) int {
	m := math.MaxInt
	for _, t := range ts {
		m = min(m, t.In, t.Out)
	}
	return m
}

// PeftConfig returns the adapter configuration (T resolved against total steps).
func (c *Config) PeftConfig(totalSteps int64) (peft.Config, error) {
	m, err := peft.ParseMethod(c.Method)
	if err != nil {
		return peft.Config{}, err
	}
	pc := peft.DefaultConfig(m)
	pc.Rank, pc.Alpha, pc.UseRSLoRA, pc.Dropout, pc.Seed = c.R, c.LoraAlpha, c.UseRSLoRA, c.LoraDropout, c.Seed
	if len(c.TargetModules) > 0 {
		pc.Targets = c.TargetModules
	}
	pc.ExcludeModules, pc.LayersToTransform, pc.LayersPattern = c.ExcludeModules, c.LayersToTransform, c.LayersPattern
	pc.RankPattern, pc.AlphaPattern, pc.Bias = c.RankPattern.Clone(), c.AlphaPattern.Clone(), c.Bias
	if pc.Bias == adapterconfig.BiasNone {
		pc.Bias = ""
	}
	if c.Init != "" {
		pc.Init = peft.Init(c.Init)
	}
	if c.LoraPlusRatio > 0 {
		pc.LoRAPlusRatio = c.LoraPlusRatio
	}
	if peft.UsesRamp(m) {
		if pc.RampSteps, err = resolveSteps(c.Ramp, totalSteps, "ramp"); err != nil {
			return pc, err
		}
	}
	return pc, pc.Validate()
}

// StepCounts returns the steps per epoch and the total optimizer steps for n training examples.
func (c *Config) StepCounts(n int) (stepsPerEpoch, total int64) {
	stepsPerEpoch = int64((n + c.Batch*c.Accum - 1) / (c.Batch * c.Accum))
	total = c.Steps
	if total <= 0 {
		total = max(1, int64(math.Ceil(c.Epochs*float64(stepsPerEpoch))))
	}
	return stepsPerEpoch, total
}

// Optimizer returns the AdamW of the config for a run of total steps, with groups for the
// variables (nil: every variable in one group).
func (c *Config) Optimizer(total int64, groups func(v *model.Variable) optim.Group) (optim.AdamW, error) {
	warm, err := resolveSteps(c.Warmup, total, "warmup")
	if err != nil {
		return optim.AdamW{}, err
	}
	opt := optim.DefaultAdamW(c.LR)
	opt.WeightDecay, opt.ClipNorm = c.WeightDecay, c.ClipNorm
	opt.Schedule = optim.Schedule{Kind: optim.ScheduleKind(c.Schedule), WarmupSteps: warm, TotalSteps: total}
	opt.GroupOf = groups
	return opt, opt.Validate()
}
