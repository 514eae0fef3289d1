// Package adapterconfig reads, validates and writes adapter_config.json, the configuration file
// of an adapter folder in PEFT's layout. It imports no graph engine (check with
// `go list -deps ./adapterio/adapterconfig | grep gomlx`, which must print nothing), so that its
// fuzz target builds a small binary; package adapterio re-exports Config and Parse.
//
// SingLoRA adapters have "peft_type": "SINGLORA" and record, besides PEFT's LoRA keys (r,
// lora_alpha, target_modules, use_rslora, lora_dropout, fan_in_fan_out, modules_to_save,
// base_model_name_or_path), the ramp T ("ramp_up_steps"), the optimizer steps taken
// ("trained_steps", so that u = min(trained_steps/T, 1) is known after reload), "init", and
// "module_shapes" ({module: [out, in]}): A ∈ ℝ^{max(in,out)×r} alone does not say which of in/out
// is the larger. module_shapes is optional in the file because a command that has the base
// checkpoint or the model at hand (merge, classify) reads [out, in] from there; commands with
// neither (export, inspect) need it. LoRA, LoRA+ and DoRA adapters are written as PEFT writes LoRA
// ("peft_type": "LORA", "use_dora": true for DoRA, "bias": "none", "init_lora_weights": true);
// LoRA+ is recorded by "loraplus_lr_ratio" (informational for PEFT, which ignores the key).
// Unknown keys of a parsed config are kept and written back by MarshalJSON.
//
// This package knows the keys, not the methods: which method a config describes, and which keys
// a method writes, are each method's own (peft/tuner's Tuner.FromFile and ToFile). A method with
// a peft_type of its own registers it (RegisterType) and keeps its keys in Config.Extra.
package adapterconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/singlora/singlora/peft/peftdef"
	"github.com/singlora/singlora/safetensors"
)

// File names inside an adapter folder.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// PEFT types: the two this package writes keys for. Other methods register theirs (RegisterType).
const (
	TypeSingLoRA = "SINGLORA"
	TypeLoRA     = "LORA"
)

// peftTypes are the accepted peft_type values, in registration order.
var peftTypes struct {
	sync.RWMutex
	list []string
}

// RegisterType makes Parse and Validate accept peft_type t (registering a type twice is a no-op).
// tuner.Register calls it for each method's type; SINGLORA and LORA are always accepted. A
// registered type other than those two is written with the common keys, trained_steps (when
// non-zero), module_shapes (when non-empty) and Extra, where its method keeps its own keys.
func RegisterType(t string) {
	peftTypes.Lock()
	defer peftTypes.Unlock()
	if len(peftTypes.list) == 0 {
		peftTypes.list = []string{TypeSingLoRA, TypeLoRA}
	}
	if !slices.Contains(peftTypes.list, t) {
		peftTypes.list = append(peftTypes.list, t)
	}
}

// knownType reports whether peft_type t is accepted; the string lists the accepted ones.
func knownType(t string) (bool, string) {
	peftTypes.RLock()
	defer peftTypes.RUnlock()
	list := peftTypes.list
	if len(list) == 0 {
		list = []string{TypeSingLoRA, TypeLoRA}
	}
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	want := strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
	return slices.Contains(list, t), want
}

// Settings are an adapter's settings under Hugging Face PEFT's key names — the one definition of
// those keys: a run's config.json embeds them (finetune.Config), adapter_config.json reads and
// writes them (Config), and peft turns them into its in-memory configuration (tuner.Config).
type Settings struct {
	R             int      `json:"r" yaml:"r"`
	LoraAlpha     float64  `json:"lora_alpha" yaml:"lora_alpha"`
	UseRSLoRA     bool     `json:"use_rslora" yaml:"use_rslora"`         // scale lora_alpha/√r instead of lora_alpha/r
	TargetModules []string `json:"target_modules" yaml:"target_modules"` // patterns (see peft.MatchModule); a PEFT regex string loads as one "re:" pattern
	Init          string   `json:"init,omitempty" yaml:"init"`           // the method's initialisation ("": its default)
	LoraDropout   float64  `json:"lora_dropout" yaml:"lora_dropout"`
	LoraPlusRatio float64  `json:"loraplus_lr_ratio,omitempty" yaml:"loraplus_lr_ratio"` // LoRA+'s λ (0: its default)
	// ExcludeModules, LayersToTransform and LayersPattern narrow target_modules as PEFT's keys do
	// (tuner.Config); PEFT's string forms (a regex; one layer number; one pattern) load as lists.
	ExcludeModules    []string `json:"exclude_modules,omitempty" yaml:"exclude_modules"`
	LayersToTransform []int    `json:"layers_to_transform,omitempty" yaml:"layers_to_transform"`
	LayersPattern     []string `json:"layers_pattern,omitempty" yaml:"layers_pattern"`
	// RankPattern and AlphaPattern override r and lora_alpha per module (PEFT's rank_pattern and
	// alpha_pattern; see peftdef.Pattern for how keys match). ModuleRank and ModuleAlpha resolve them.
	RankPattern  peftdef.Pattern[int]     `json:"rank_pattern,omitempty" yaml:"rank_pattern"`
	AlphaPattern peftdef.Pattern[float64] `json:"alpha_pattern,omitempty" yaml:"alpha_pattern"`
	// Bias says which biases train and are saved with the adapter (PEFT's bias): "none" (or ""),
	// "lora_only" (the adapted layers' biases) or "all" (every variable named bias).
	Bias string `json:"bias,omitempty" yaml:"bias"`
}

// Bias values (Settings.Bias).
const (
	BiasNone     = "none"
	BiasLoRAOnly = "lora_only"
	BiasAll      = "all"
)

// ModuleRank is module's rank: its rank_pattern value, else r.
func (s *Settings) ModuleRank(module string) int {
	if v, _, ok := s.RankPattern.Lookup(module); ok {
		return v
	}
	return s.R
}

// ModuleAlpha is module's α: its alpha_pattern value, else lora_alpha.
func (s *Settings) ModuleAlpha(module string) float64 {
	if v, _, ok := s.AlphaPattern.Lookup(module); ok {
		return v
	}
	return s.LoraAlpha
}

// ModuleScale is module's scaling: ModuleAlpha/ModuleRank (or /√ModuleRank with use_rslora).
func (s *Settings) ModuleScale(module string) float64 {
	return peftdef.Scale(s.ModuleAlpha(module), s.ModuleRank(module), s.UseRSLoRA)
}

// CheckBias reports a bias value other than none, lora_only and all.
func CheckBias(b string) error {
	switch b {
	case "", BiasNone, BiasLoRAOnly, BiasAll:
		return nil
	}
	return fmt.Errorf("bias %q: want %q, %q or %q", b, BiasNone, BiasLoRAOnly, BiasAll)
}

// Config is adapter_config.json: the Settings plus what a file records about the adapter.
type Config struct {
	PeftType string
	Settings
	FanInFanOut   bool
	ModulesToSave []string
	BaseModel     string
	TaskType      string

	// SingLoRA only.
	RampUpSteps  int64
	TrainedSteps int64
	// ModuleShapes maps adapted modules to [out, in] (nn.Linear orientation, whatever the
	// layout). It may be empty or partial: a module it does not list takes its [out, in] from the
	// base checkpoint or the model it is applied to, where there is one.
	ModuleShapes map[string][2]int
	// InOutModules lists modules stored [in, out] when FanInFanOut is false (a model mixing layouts).
	InOutModules []string

	// LoRA family only.
	UseDora         bool
	InitLoraWeights json.RawMessage

	Seed uint64

	// Extra holds keys this package does not interpret, written back unchanged.
	Extra map[string]json.RawMessage
}

// knownKeys are the keys Config interprets (all others go to Extra).
var knownKeys = map[string]bool{
	"peft_type": true, "r": true, "lora_alpha": true, "target_modules": true, "use_rslora": true,
	"lora_dropout": true, "fan_in_fan_out": true, "modules_to_save": true,
	"base_model_name_or_path": true, "task_type": true, "ramp_up_steps": true, "trained_steps": true,
	"init": true, "module_shapes": true, "in_out_modules": true, "use_dora": true, "bias": true,
	"init_lora_weights": true, "loraplus_lr_ratio": true, "seed": true,
	"exclude_modules": true, "layers_to_transform": true, "layers_pattern": true,
	"rank_pattern": true, "alpha_pattern": true,
}

// Scale is the adapter scaling: lora_alpha/r, or lora_alpha/√r with use_rslora.
func (c *Config) Scale() float64 { return peftdef.Scale(c.LoraAlpha, c.R, c.UseRSLoRA) }

// Ramp is u = min(trained_steps/T, 1) (1 when T = 0 or for the LoRA family).
func (c *Config) Ramp() float64 {
	if c.PeftType != TypeSingLoRA {
		return 1
	}
	return peftdef.Ramp(c.RampUpSteps, c.TrainedSteps)
}

// Layout returns the storage layout of module's base weight.
func (c *Config) Layout(module string) peftdef.Layout {
	if c.FanInFanOut {
		return peftdef.InOut
	}
	for _, m := range c.InOutModules {
		if m == module {
			return peftdef.InOut
		}
	}
	return peftdef.OutIn
}

// MarshalJSON writes the config with sorted keys, extras included.
func (c *Config) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	for k, v := range c.Extra {
		m[k] = v
	}
	targets := any(c.TargetModules)
	if len(c.TargetModules) == 1 && strings.HasPrefix(c.TargetModules[0], "re:") {
		targets = strings.TrimPrefix(c.TargetModules[0], "re:") // PEFT: a string is a full-match regex
	} else if len(c.TargetModules) == 1 && c.TargetModules[0] == peftdef.AllLinear {
		targets = peftdef.AllLinear
	}
	m["peft_type"] = c.PeftType
	m["r"] = c.R
	m["lora_alpha"] = c.LoraAlpha
	m["target_modules"] = targets
	if len(c.ExcludeModules) == 1 && strings.HasPrefix(c.ExcludeModules[0], "re:") {
		m["exclude_modules"] = strings.TrimPrefix(c.ExcludeModules[0], "re:")
	} else if len(c.ExcludeModules) > 0 {
		m["exclude_modules"] = c.ExcludeModules
	}
	if len(c.LayersToTransform) > 0 {
		m["layers_to_transform"] = c.LayersToTransform
	}
	if len(c.LayersPattern) > 0 {
		m["layers_pattern"] = c.LayersPattern
	}
	if len(c.RankPattern) > 0 {
		m["rank_pattern"] = c.RankPattern
	}
	if len(c.AlphaPattern) > 0 {
		m["alpha_pattern"] = c.AlphaPattern
	}
	m["use_rslora"] = c.UseRSLoRA
	m["lora_dropout"] = c.LoraDropout
	m["fan_in_fan_out"] = c.FanInFanOut
	m["base_model_name_or_path"] = c.BaseModel
	m["seed"] = c.Seed
	if c.ModulesToSave != nil {
		m["modules_to_save"] = c.ModulesToSave
	} else {
		m["modules_to_save"] = nil
	}
	if c.TaskType != "" {
		m["task_type"] = c.TaskType
	}
	if c.PeftType == TypeSingLoRA {
		m["ramp_up_steps"] = c.RampUpSteps
		m["trained_steps"] = c.TrainedSteps
		m["init"] = c.Init
		shapes := map[string][]int{}
		for k, v := range c.ModuleShapes {
			shapes[k] = []int{v[0], v[1]}
		}
		m["module_shapes"] = shapes
	} else if c.PeftType == TypeLoRA {
		m["use_dora"] = c.UseDora
		bias := c.Bias
		if bias == "" {
			bias = "none"
		}
		m["bias"] = bias
		if len(c.InitLoraWeights) > 0 {
			m["init_lora_weights"] = c.InitLoraWeights
		} else {
			m["init_lora_weights"] = true
		}
		if c.LoraPlusRatio > 0 {
			m["loraplus_lr_ratio"] = c.LoraPlusRatio
		}
	} else if len(c.ModuleShapes) > 0 { // a registered type: its keys are in Extra
		shapes := map[string][]int{}
		for k, v := range c.ModuleShapes {
			shapes[k] = []int{v[0], v[1]}
		}
		m["module_shapes"] = shapes
	}
	if c.PeftType != TypeLoRA && c.Bias != "" && c.Bias != BiasNone {
		m["bias"] = c.Bias
	}
	if c.PeftType != TypeSingLoRA && c.TrainedSteps > 0 {
		m["trained_steps"] = c.TrainedSteps
	}
	if len(c.InOutModules) > 0 {
		m["in_out_modules"] = c.InOutModules
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Parse parses and validates the contents of adapter_config.json.
func Parse(b []byte) (*Config, error) {
	if err := safetensors.CheckJSON(b); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %v", ConfigFile, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%s: not a JSON object", ConfigFile)
	}
	c := &Config{Extra: map[string]json.RawMessage{}}
	for k, v := range raw {
		if !knownKeys[k] {
			var cb bytes.Buffer
			if err := json.Compact(&cb, v); err != nil {
				return nil, fmt.Errorf("%s: key %q: %v", ConfigFile, k, err)
			}
			c.Extra[k] = cb.Bytes()
		}
	}
	get := func(key string, dst any, required bool) error {
		v, ok := raw[key]
		if !ok || string(v) == "null" {
			if required {
				return fmt.Errorf("%s: missing required key %q", ConfigFile, key)
			}
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%s: key %q: %v", ConfigFile, key, err)
		}
		return nil
	}
	if err := get("peft_type", &c.PeftType, true); err != nil {
		return nil, err
	}
	if ok, want := knownType(c.PeftType); !ok {
		return nil, fmt.Errorf("%s: unsupported peft_type %q (want %s)", ConfigFile, c.PeftType, want)
	}
	sing := c.PeftType == TypeSingLoRA
	var targets json.RawMessage
	steps := []struct {
		key      string
		dst      any
		required bool
	}{
		{"r", &c.R, true},
		{"lora_alpha", &c.LoraAlpha, true},
		{"target_modules", &targets, true},
		{"use_rslora", &c.UseRSLoRA, false},
		{"lora_dropout", &c.LoraDropout, false},
		{"fan_in_fan_out", &c.FanInFanOut, false},
		{"modules_to_save", &c.ModulesToSave, false},
		{"base_model_name_or_path", &c.BaseModel, false},
		{"task_type", &c.TaskType, false},
		{"ramp_up_steps", &c.RampUpSteps, sing},
		{"trained_steps", &c.TrainedSteps, sing},
		{"init", &c.Init, false},
		{"in_out_modules", &c.InOutModules, false},
		{"use_dora", &c.UseDora, false},
		{"bias", &c.Bias, false},
		{"loraplus_lr_ratio", &c.LoraPlusRatio, false},
		{"seed", &c.Seed, false},
		{"rank_pattern", &c.RankPattern, false},
		{"alpha_pattern", &c.AlphaPattern, false},
	}
	for _, s := range steps {
		if err := get(s.key, s.dst, s.required); err != nil {
			return nil, err
		}
	}
	if v, ok := raw["init_lora_weights"]; ok {
		c.InitLoraWeights = v
	}
	var shapes map[string][]int
	if err := get("module_shapes", &shapes, false); err != nil {
		return nil, err
	}
	if shapes != nil {
		c.ModuleShapes = map[string][2]int{}
		for k, v := range shapes {
			if len(v) != 2 || v[0] <= 0 || v[1] <= 0 {
				return nil, fmt.Errorf("%s: module_shapes[%q] = %v, want [out, in] with positive sizes", ConfigFile, k, v)
			}
			c.ModuleShapes[k] = [2]int{v[0], v[1]}
		}
	}
	var list []string
	var str string
	if json.Unmarshal(targets, &list) == nil && list != nil {
		c.TargetModules = list
	} else if json.Unmarshal(targets, &str) == nil {
		if str == peftdef.AllLinear {
			c.TargetModules = []string{str}
		} else {
			c.TargetModules = []string{"re:" + str}
		}
	} else {
		return nil, fmt.Errorf("%s: target_modules must be a list of names or a regex string", ConfigFile)
	}
	if v, ok := raw["exclude_modules"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &c.ExcludeModules) != nil {
			var str string
			if json.Unmarshal(v, &str) != nil {
				return nil, fmt.Errorf("%s: exclude_modules must be a list of names or a regex string", ConfigFile)
			}
			c.ExcludeModules = []string{"re:" + str} // PEFT: a string is a full-match regex
		}
	}
	if v, ok := raw["layers_to_transform"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &c.LayersToTransform) != nil {
			var one int
			if json.Unmarshal(v, &one) != nil {
				return nil, fmt.Errorf("%s: layers_to_transform must be a layer number or a list of them", ConfigFile)
			}
			c.LayersToTransform = []int{one}
		}
	}
	if v, ok := raw["layers_pattern"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &c.LayersPattern) != nil {
			var one string
			if json.Unmarshal(v, &one) != nil {
				return nil, fmt.Errorf("%s: layers_pattern must be a name or a list of names", ConfigFile)
			}
			c.LayersPattern = []string{one}
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the values of the config. Numbers must be usable in float32, the precision
// adapters are applied in: lora_alpha and the scaling it gives (lora_alpha/r or
// lora_alpha/sqrt(r)) must be finite and non-zero once rounded to float32.
func (c *Config) Validate() error {
	if ok, want := knownType(c.PeftType); !ok {
		return fmt.Errorf("adapter config: unsupported peft_type %q (want %s)", c.PeftType, want)
	}
	if c.R <= 0 {
		return fmt.Errorf("adapter config: r must be ≥ 1, got %d", c.R)
	}
	if err := peftdef.CheckScale(c.LoraAlpha, c.R, c.UseRSLoRA); err != nil {
		return fmt.Errorf("adapter config: %w", err)
	}
	if len(c.TargetModules) == 0 {
		return fmt.Errorf("adapter config: target_modules is empty")
	}
	if math.IsNaN(c.LoraDropout) || c.LoraDropout < 0 || c.LoraDropout >= 1 {
		return fmt.Errorf("adapter config: lora_dropout must be in [0, 1), got %v", c.LoraDropout)
	}
	if math.IsNaN(c.LoraPlusRatio) || math.IsInf(c.LoraPlusRatio, 0) || c.LoraPlusRatio < 0 {
		return fmt.Errorf("adapter config: loraplus_lr_ratio must be a finite number ≥ 0 (0 = not LoRA+), got %v", c.LoraPlusRatio)
	}
	if c.RampUpSteps < 0 || c.TrainedSteps < 0 {
		return fmt.Errorf("adapter config: ramp_up_steps (%d) and trained_steps (%d) must be ≥ 0", c.RampUpSteps, c.TrainedSteps)
	}
	if err := CheckBias(c.Bias); err != nil {
		return fmt.Errorf("adapter config: %w", err)
	}
	if err := c.RankPattern.Check("rank_pattern"); err != nil {
		return fmt.Errorf("adapter config: %w", err)
	}
	if err := c.AlphaPattern.Check("alpha_pattern"); err != nil {
		return fmt.Errorf("adapter config: %w", err)
	}
	if c.PeftType == TypeSingLoRA && c.Init != "" && c.Init != string(peftdef.InitTheory) && c.Init != string(peftdef.InitKaimingDR) {
		return fmt.Errorf("adapter config: unknown singlora init %q (known: %s, %s)", c.Init, peftdef.InitTheory, peftdef.InitKaimingDR)
	}
	for m, s := range c.ModuleShapes {
		if s[0] <= 0 || s[1] <= 0 {
			return fmt.Errorf("adapter config: module_shapes[%q] = %v, want [out, in] with positive sizes", m, s)
		}
	}
	return nil
}
