// Package finetune is "singlora train": fine-tune a model on a data file with an adapter method,
// in a run folder that can be resumed. It resolves a Config (config file + flags) into the
// model, task, adapter, optimizer and train.Runner.
package finetune

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/ml/model"
	"gopkg.in/yaml.v3"

	"github.com/singlora/singlora/optim"

	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/peft"
)

// Config is everything a run needs; RUN/config.json holds the resolved copy.
type Config struct {
	Name  string `json:"name,omitempty" yaml:"name"`
	Model string `json:"model" yaml:"model"` // "use" (the demo encoder) or a Hugging Face folder
	Task  string `json:"task" yaml:"task"`   // "classify" (text/label) or "causal-lm" (prompt/completion)

	Train            string  `json:"train" yaml:"train"`
	Val              string  `json:"val,omitempty" yaml:"val"`
	Test             string  `json:"test,omitempty" yaml:"test"`
	ValFraction      float64 `json:"val_fraction" yaml:"val_fraction"` // split from train when Val is empty
	TextColumn       string  `json:"text_column,omitempty" yaml:"text_column"`
	LabelColumn      string  `json:"label_column,omitempty" yaml:"label_column"`
	PromptColumn     string  `json:"prompt_column,omitempty" yaml:"prompt_column"`
	CompletionColumn string  `json:"completion_column,omitempty" yaml:"completion_column"`

	Method        string   `json:"method" yaml:"method"`
	Rank          int      `json:"r" yaml:"r"`
	Alpha         float64  `json:"lora_alpha" yaml:"lora_alpha"`
	RSLoRA        bool     `json:"use_rslora" yaml:"use_rslora"`
	Targets       []string `json:"target_modules" yaml:"target_modules"`
	Init          string   `json:"init,omitempty" yaml:"init"`
	Dropout       float64  `json:"lora_dropout" yaml:"lora_dropout"`
	LoRAPlusRatio float64  `json:"loraplus_lr_ratio,omitempty" yaml:"loraplus_lr_ratio"`
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
		Model: "use", Task: "classify", ValFraction: 0.1,
		Method: "singlora", Rank: 8, Alpha: 8, Targets: []string{peft.AllLinear}, Ramp: "1%",
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

// Validate checks the config before anything is loaded.
func (c *Config) Validate() error {
	if c.Train == "" {
		return fmt.Errorf("no training data: give --data FILE (JSONL, CSV, TSV or a JSON array)")
	}
	if _, err := peft.ParseMethod(c.Method); err != nil {
		return err
	}
	switch c.Task {
	case "classify", "causal-lm":
	default:
		return fmt.Errorf("task %q: want classify or causal-lm", c.Task)
	}
	switch {
	case c.Batch < 1:
		return fmt.Errorf("batch size must be ≥ 1")
	case c.Streams < 0:
		return fmt.Errorf("streams must be ≥ 0 (0: the default, %d)", DefaultStreams)
	case c.Accum < 1:
		return fmt.Errorf("gradient accumulation steps must be ≥ 1")
	case c.Steps <= 0 && c.Epochs <= 0:
		return fmt.Errorf("give epochs > 0 or steps > 0")
	case c.ValFraction < 0 || c.ValFraction >= 1:
		return fmt.Errorf("val fraction must be in [0, 1)")
	case !(c.LR > 0):
		return fmt.Errorf("learning rate must be > 0")
	}
	if _, err := resolveSteps(c.Ramp, 100, "ramp"); err != nil {
		return err
	}
	if _, err := resolveSteps(c.Warmup, 100, "warmup"); err != nil {
		return err
	}
	return nil
}

// PeftConfig returns the adapter configuration (T resolved against total steps).
func (c *Config) PeftConfig(totalSteps int64) (peft.Config, error) {
	m, err := peft.ParseMethod(c.Method)
	if err != nil {
		return peft.Config{}, err
	}
	pc := peft.DefaultConfig(m)
	pc.Rank, pc.Alpha, pc.UseRSLoRA, pc.Dropout, pc.Seed = c.Rank, c.Alpha, c.RSLoRA, c.Dropout, c.Seed
	if len(c.Targets) > 0 {
		pc.Targets = c.Targets
	}
	if c.Init != "" {
		pc.Init = peft.Init(c.Init)
	}
	if c.LoRAPlusRatio > 0 {
		pc.LoRAPlusRatio = c.LoRAPlusRatio
	}
	if m == peft.SingLoRA {
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
