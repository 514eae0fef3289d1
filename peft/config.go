// Package peft holds the adapter methods (SingLoRA, LoRA, LoRA+, DoRA, full fine-tuning and a
// frozen base), their configuration, and their injection into a GoMLX model's linear layers.
//
// A model written for singlora computes every adaptable linear layer through [Linear], with the
// layer's variables ("weight" and optionally "bias") in a scope whose path is the module path
// (for example scope "/encoder/layer/0/attention/self/query" is module
// "encoder.layer.0.attention.self.query"), and lists those layers as [LinearSpec] values so that
// target-module patterns can be resolved before any graph is built.
//
// Each method lives in its own package (peft/singlora, peft/lora, peft/dora; Full and Frozen in
// peft/tuner) behind the tuner.Tuner interface, and methods.go lists them: importing peft
// registers them all. Code here asks the registered method instead of switching on its name.
package peft

import (
	"github.com/singlora/singlora/peft/lora"
	"github.com/singlora/singlora/peft/peftdef"
	"github.com/singlora/singlora/peft/tuner"
)

// Method names an adaptation method (defined in peftdef, which file formats import without GoMLX).
type Method = peftdef.Method

// The methods singlora offers (see peftdef for each one's formula, and methods.go for the
// packages that implement them).
const (
	SingLoRA = peftdef.SingLoRA
	LoRA     = peftdef.LoRA
	LoRAPlus = peftdef.LoRAPlus
	DoRA     = peftdef.DoRA
	Full     = peftdef.Full
	Frozen   = peftdef.Frozen
)

// ParseMethod returns the Method named s: a registered method's name or alias, case-insensitive
// ("lora+" is LoRAPlus, "none" and "head" are Frozen). The error lists the registered methods.
func ParseMethod(s string) (Method, error) { return tuner.Parse(s) }

// MethodList returns the registered method names for help texts: "singlora, lora, loraplus,
// dora, full or frozen".
func MethodList() string { return tuner.MethodList() }

// UsesRamp reports whether method m scales its update by u(t) = min(t/T, 1), so that a trainer
// should set Config.RampSteps (SingLoRA).
func UsesRamp(m Method) bool { return tuner.UsesRamp(m) }

// TrainsBase reports whether method m trains the base layers' weights themselves (full
// fine-tuning) rather than adapter tensors beside frozen ones: a training step then also computes
// every weight's gradient (benchmarks count those FLOPs).
func TrainsBase(m Method) bool {
	t, err := tuner.Lookup(m)
	return err == nil && t.Trainable("/layer/weight")
}

// Init names how adapter weights are initialised (defined in peftdef).
type Init = peftdef.Init

// The initialisations (see peftdef for each one's distribution).
const (
	InitTheory    = peftdef.InitTheory
	InitKaimingDR = peftdef.InitKaimingDR
	InitKaiming   = peftdef.InitKaiming
	InitGaussian  = peftdef.InitGaussian
)

// Config configures an adapter method and where it applies (see tuner.Config).
type Config = tuner.Config

// DefaultLoRAPlusRatio is LoRA+'s default λ.
const DefaultLoRAPlusRatio = lora.DefaultPlusRatio

// DefaultConfig returns the paper's defaults for method m: r = α = 8, all linear layers, T = 0
// (set RampSteps for a ramp; the trainer sets it from a fraction of the total steps), and the
// method's own defaults (its default init; LoRA+'s λ = 16).
func DefaultConfig(m Method) Config { return tuner.DefaultConfig(m) }

// Pattern is a rank_pattern or alpha_pattern: per-module values by module-name pattern
// (defined in peftdef; see peftdef.Pattern for how keys match).
type Pattern[V int | float64] = peftdef.Pattern[V]

// PatternEntry is one key of a Pattern and its value.
type PatternEntry[V int | float64] = peftdef.PatternEntry[V]

// ParsePattern parses a --rank-pattern / --alpha-pattern flag, "key=value,key=value".
func ParsePattern[V int | float64](s string) (Pattern[V], error) { return peftdef.ParsePattern[V](s) }
