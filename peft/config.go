// Package peft holds the adapter methods (SingLoRA, LoRA, LoRA+, DoRA, full fine-tuning and a
// frozen base), their configuration, and their injection into a GoMLX model's linear layers.
//
// A model written for singlora computes every adaptable linear layer through [Linear], with the
// layer's variables ("weight" and optionally "bias") in a scope whose path is the module path
// (for example scope "/encoder/layer/0/attention/self/query" is module
// "encoder.layer.0.attention.self.query"), and lists those layers as [LinearSpec] values so that
// target-module patterns can be resolved before any graph is built.
package peft

import (
	"fmt"
	"math"
	"strings"

	"github.com/singlora/singlora/peft/peftdef"
)

// Method names an adaptation method (defined in peftdef, which file formats import without GoMLX).
type Method = peftdef.Method

// The methods singlora offers (see peftdef for each one's formula).
const (
	SingLoRA = peftdef.SingLoRA
	LoRA     = peftdef.LoRA
	LoRAPlus = peftdef.LoRAPlus
	DoRA     = peftdef.DoRA
	Full     = peftdef.Full
	Frozen   = peftdef.Frozen
)

// Methods lists every method, in the order they are usually reported.
var Methods = []Method{Frozen, LoRA, LoRAPlus, DoRA, SingLoRA, Full}

// ParseMethod returns the Method named s (case-insensitive; "lora+" is accepted for LoRAPlus).
func ParseMethod(s string) (Method, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "singlora":
		return SingLoRA, nil
	case "lora":
		return LoRA, nil
	case "loraplus", "lora+", "lora_plus":
		return LoRAPlus, nil
	case "dora":
		return DoRA, nil
	case "full":
		return Full, nil
	case "frozen", "none", "head":
		return Frozen, nil
	}
	return "", fmt.Errorf("unknown method %q (known: singlora, lora, loraplus, dora, full, frozen)", s)
}

// Init names how adapter weights are initialised (defined in peftdef).
type Init = peftdef.Init

// The initialisations (see peftdef for each one's distribution).
const (
	InitTheory    = peftdef.InitTheory
	InitKaimingDR = peftdef.InitKaimingDR
	InitKaiming   = peftdef.InitKaiming
)

// Config configures an adapter method and where it applies.
type Config struct {
	Method Method `json:"method"`
	// Rank r of the adapter.
	Rank int `json:"r"`
	// Alpha is the scaling numerator: the adapter is scaled by Alpha/Rank (or Alpha/√Rank with UseRSLoRA).
	Alpha float64 `json:"lora_alpha"`
	// UseRSLoRA scales by Alpha/√Rank (rank-stabilised LoRA) instead of Alpha/Rank.
	UseRSLoRA bool `json:"use_rslora"`
	// RampSteps is SingLoRA's T: u(t) = min(t/T, 1) with t the optimizer steps taken. 0 = no ramp (u ≡ 1).
	RampSteps int64 `json:"ramp_up_steps"`
	// Init selects the adapter initialisation ("" picks the method's default).
	Init Init `json:"init"`
	// Dropout is the dropout rate applied to the adapter's input while training (0 = none).
	Dropout float64 `json:"lora_dropout"`
	// Targets selects the linear layers to adapt: "all-linear", an exact module path, a dotted
	// suffix ("query" matches "encoder.layer.0.attention.self.query"), or a regular expression
	// prefixed with "re:" that must match the whole path.
	Targets []string `json:"target_modules"`
	// ModulesToSave are scope patterns (same syntax as Targets, matched against variable scopes)
	// whose variables stay trainable and are saved with the adapter, e.g. a classification head.
	ModulesToSave []string `json:"modules_to_save,omitempty"`
	// LoRAPlusRatio is λ in LoRA+ (η_B = λ·η_A); 0 means the default 16.
	LoRAPlusRatio float64 `json:"loraplus_lr_ratio,omitempty"`
	// Seed seeds the adapter initialisation; each module derives its own stream from it and its path.
	Seed uint64 `json:"seed"`
}

// DefaultLoRAPlusRatio is LoRA+'s default λ.
const DefaultLoRAPlusRatio = 16

// DefaultConfig returns the paper's defaults for method m: r = α = 8, all linear layers, T = 0
// (set RampSteps for a ramp; the trainer sets it from a fraction of the total steps).
func DefaultConfig(m Method) Config {
	c := Config{Method: m, Rank: 8, Alpha: 8, Targets: []string{"all-linear"}}
	c.Init = c.DefaultInit()
	if m == LoRAPlus {
		c.LoRAPlusRatio = DefaultLoRAPlusRatio
	}
	return c
}

// DefaultInit is the method's default initialisation.
func (c Config) DefaultInit() Init {
	if c.Method == SingLoRA {
		return InitTheory
	}
	if c.Method.HasAdapter() {
		return InitKaiming
	}
	return ""
}

// Scale returns the adapter scaling s: Alpha/Rank, or Alpha/√Rank with UseRSLoRA.
func (c Config) Scale() float64 { return peftdef.Scale(c.Alpha, c.Rank, c.UseRSLoRA) }

// LoRAPlusLambda returns the LoRA+ ratio in force (the default when unset).
func (c Config) LoRAPlusLambda() float64 {
	if c.LoRAPlusRatio > 0 {
		return c.LoRAPlusRatio
	}
	return DefaultLoRAPlusRatio
}

// Ramp returns u(t) = min(t/T, 1) for t optimizer steps taken (1 when RampSteps is 0).
func (c Config) Ramp(t int64) float64 { return peftdef.Ramp(c.RampSteps, t) }

// Validate checks the configuration, filling in nothing.
func (c Config) Validate() error {
	switch c.Method {
	case SingLoRA, LoRA, LoRAPlus, DoRA, Full, Frozen:
	default:
		return fmt.Errorf("peft config: unknown method %q", c.Method)
	}
	if !c.Method.HasAdapter() {
		return nil
	}
	if c.Rank <= 0 {
		return fmt.Errorf("peft config: rank must be ≥ 1, got %d", c.Rank)
	}
	if err := peftdef.CheckScale(c.Alpha, c.Rank, c.UseRSLoRA); err != nil {
		return fmt.Errorf("peft config: %w", err)
	}
	if c.RampSteps < 0 {
		return fmt.Errorf("peft config: ramp_up_steps must be ≥ 0, got %d", c.RampSteps)
	}
	if c.Dropout < 0 || c.Dropout >= 1 || math.IsNaN(c.Dropout) {
		return fmt.Errorf("peft config: dropout must be in [0, 1), got %v", c.Dropout)
	}
	if c.LoRAPlusRatio < 0 {
		return fmt.Errorf("peft config: loraplus_lr_ratio must be > 0, got %v", c.LoRAPlusRatio)
	}
	switch c.Init {
	case "":
	case InitTheory, InitKaimingDR:
		if c.Method != SingLoRA {
			return fmt.Errorf("peft config: init %q is for singlora, not %s", c.Init, c.Method)
		}
	case InitKaiming:
		if c.Method == SingLoRA {
			return fmt.Errorf("peft config: singlora init must be %q or %q, got %q", InitTheory, InitKaimingDR, c.Init)
		}
	default:
		return fmt.Errorf("peft config: unknown init %q", c.Init)
	}
	if len(c.Targets) == 0 {
		return fmt.Errorf("peft config: no target modules given (use \"all-linear\" for every linear layer)")
	}
	return nil
}
