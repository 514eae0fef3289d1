// Package adapterio reads and writes adapter folders in PEFT's layout (adapter_config.json +
// adapter_model.safetensors), loads them into and saves them from a GoMLX store, and does the
// host-side math on them: ΔW, merge into / unmerge from base weights, and export of a SingLoRA
// adapter as a plain LoRA adapter.
//
// # Format
//
// SingLoRA adapters have "peft_type": "SINGLORA" and record, besides PEFT's LoRA keys (r,
// lora_alpha, target_modules, use_rslora, lora_dropout, fan_in_fan_out, modules_to_save,
// base_model_name_or_path), the ramp T ("ramp_up_steps"), the optimizer steps taken
// ("trained_steps", so that u = min(trained_steps/T, 1) is known after reload), "init", and
// "module_shapes" ({module: [out, in]}, needed because A ∈ ℝ^{max(in,out)×r} alone does not say
// which of in/out is the larger). LoRA, LoRA+ and DoRA adapters are written as PEFT writes LoRA
// ("peft_type": "LORA", "use_dora": true for DoRA, "bias": "none", "init_lora_weights": true);
// LoRA+ is recorded by "loraplus_lr_ratio" (informational for PEFT, which ignores the key).
// Unknown keys of a loaded config are kept and written back on save.
//
// Tensor names follow PEFT: "base_model.model.<module>.<tensor>.weight" for singlora_A, lora_A
// and lora_B, where "<module>.weight" is the base weight's name in the checkpoint. DoRA's
// magnitude is "base_model.model.<module>.lora_magnitude_vector" without ".weight", as PEFT ≥
// 0.12 writes it (its state-dict code strips the ".weight" of the DoraLinearLayer parameter to
// keep the older format); a ".lora_magnitude_vector.weight" key is accepted on load. Variables
// of modules_to_save (e.g. a classifier head) are saved as "base_model.model.<variable path with
// dots>" (e.g. "base_model.model.classifier.weight"), which is what PEFT's
// get_peft_model_state_dict produces after stripping "modules_to_save.<adapter>".
package adapterio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// File names inside an adapter folder.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// PEFT types.
const (
	TypeSingLoRA = "SINGLORA"
	TypeLoRA     = "LORA"
)

// TensorPrefix prefixes every tensor name in the adapter file.
const TensorPrefix = "base_model.model."

// Config is adapter_config.json.
type Config struct {
	PeftType      string
	R             int
	LoraAlpha     float64
	TargetModules []string // patterns (see peft.MatchModule); a PEFT regex string loads as one "re:" pattern
	UseRSLoRA     bool
	LoraDropout   float64
	FanInFanOut   bool
	ModulesToSave []string
	BaseModel     string
	TaskType      string

	// SingLoRA only.
	RampUpSteps  int64
	TrainedSteps int64
	Init         string
	// ModuleShapes maps each adapted module to [out, in] (nn.Linear orientation, whatever the layout).
	ModuleShapes map[string][2]int
	// InOutModules lists modules stored [in, out] when FanInFanOut is false (a model mixing layouts).
	InOutModules []string

	// LoRA family only.
	UseDora         bool
	Bias            string
	InitLoraWeights json.RawMessage
	LoraPlusRatio   float64

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
}

// Method returns the peft method the config describes.
func (c *Config) Method() peft.Method {
	switch {
	case c.PeftType == TypeSingLoRA:
		return peft.SingLoRA
	case c.UseDora:
		return peft.DoRA
	case c.LoraPlusRatio > 0:
		return peft.LoRAPlus
	}
	return peft.LoRA
}

// Scale is the adapter scaling: lora_alpha/r, or lora_alpha/√r with use_rslora.
func (c *Config) Scale() float64 { return c.PeftConfig().Scale() }

// Ramp is u = min(trained_steps/T, 1) (1 when T = 0 or for the LoRA family).
func (c *Config) Ramp() float64 {
	if c.PeftType != TypeSingLoRA {
		return 1
	}
	return c.PeftConfig().Ramp(c.TrainedSteps)
}

// Layout returns the storage layout of module's base weight.
func (c *Config) Layout(module string) peft.Layout {
	if c.FanInFanOut {
		return peft.InOut
	}
	for _, m := range c.InOutModules {
		if m == module {
			return peft.InOut
		}
	}
	return peft.OutIn
}

// PeftConfig converts the file config to the training configuration.
func (c *Config) PeftConfig() peft.Config {
	pc := peft.Config{
		Method:        c.Method(),
		Rank:          c.R,
		Alpha:         c.LoraAlpha,
		UseRSLoRA:     c.UseRSLoRA,
		Dropout:       c.LoraDropout,
		Targets:       append([]string(nil), c.TargetModules...),
		ModulesToSave: append([]string(nil), c.ModulesToSave...),
		Seed:          c.Seed,
	}
	if c.PeftType == TypeSingLoRA {
		pc.RampSteps = c.RampUpSteps
		pc.Init = peft.Init(c.Init)
	} else {
		pc.Init = peft.InitKaiming
		pc.LoRAPlusRatio = c.LoraPlusRatio
	}
	return pc
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
	} else if len(c.TargetModules) == 1 && c.TargetModules[0] == peft.AllLinear {
		targets = peft.AllLinear
	}
	m["peft_type"] = c.PeftType
	m["r"] = c.R
	m["lora_alpha"] = c.LoraAlpha
	m["target_modules"] = targets
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
	} else {
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
		if c.TrainedSteps > 0 {
			m["trained_steps"] = c.TrainedSteps
		}
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

// ParseConfig parses and validates adapter_config.json.
func ParseConfig(b []byte) (*Config, error) {
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
	if c.PeftType != TypeSingLoRA && c.PeftType != TypeLoRA {
		return nil, fmt.Errorf("%s: unsupported peft_type %q (want %q or %q)", ConfigFile, c.PeftType, TypeSingLoRA, TypeLoRA)
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
	if err := get("module_shapes", &shapes, sing); err != nil {
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
		if str == peft.AllLinear {
			c.TargetModules = []string{str}
		} else {
			c.TargetModules = []string{"re:" + str}
		}
	} else {
		return nil, fmt.Errorf("%s: target_modules must be a list of names or a regex string", ConfigFile)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the values of the config.
func (c *Config) Validate() error {
	if c.PeftType != TypeSingLoRA && c.PeftType != TypeLoRA {
		return fmt.Errorf("adapter config: unsupported peft_type %q", c.PeftType)
	}
	if c.R <= 0 {
		return fmt.Errorf("adapter config: r must be ≥ 1, got %d", c.R)
	}
	if math.IsNaN(c.LoraAlpha) || math.IsInf(c.LoraAlpha, 0) || c.LoraAlpha == 0 {
		return fmt.Errorf("adapter config: lora_alpha must be finite and non-zero, got %v", c.LoraAlpha)
	}
	if len(c.TargetModules) == 0 {
		return fmt.Errorf("adapter config: target_modules is empty")
	}
	if c.RampUpSteps < 0 || c.TrainedSteps < 0 {
		return fmt.Errorf("adapter config: ramp_up_steps (%d) and trained_steps (%d) must be ≥ 0", c.RampUpSteps, c.TrainedSteps)
	}
	if c.PeftType == TypeLoRA && c.Bias != "" && c.Bias != "none" {
		return fmt.Errorf("adapter config: bias %q is not supported (only \"none\")", c.Bias)
	}
	if c.PeftType == TypeSingLoRA && c.Init != "" && c.Init != string(peft.InitTheory) && c.Init != string(peft.InitKaimingDR) {
		return fmt.Errorf("adapter config: unknown singlora init %q", c.Init)
	}
	return nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
