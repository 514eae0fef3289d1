// Package tuner is the contract between package peft and its adapter methods, after Hugging Face
// PEFT's tuners: each method (peft/singlora, peft/lora for LoRA and LoRA+, peft/dora, and the
// built-ins Full and Frozen here) implements [Tuner] in its own package and is registered with
// [Register] (package peft registers the built-in list in peft/methods.go). Everything that used
// to switch on the method — the adapter tensors and their initialisation, the graph forward,
// trainability and optimizer groups, the adapter_config.json keys, and the host-side ΔW, merge,
// unmerge and export — asks the registered Tuner instead.
//
// The package also holds what method implementations share: the configuration ([Config]), the
// layer description ([LinearSpec]), the graph context of an adapted layer ([Layer]) with the thin
// adapter matmul the pure-Go backend runs fast ([ThinMatmul]), the host-side context ([Host]),
// and the seeded initialisation streams ([RNG], [Uniform]). Package peft re-exports the types.
//
// Adding a method: write a package that implements Tuner (see peft/lora for a small one), add it
// to the list in peft/methods.go, and its name works everywhere: --method, config.json, Inject,
// Linear, adapter folders, merge, export, inspect.
package tuner

import (
	"errors"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/optim"
)

// Tuner is one adaptation method. Methods without adapter tensors (full fine-tuning, the frozen
// base) list no tensors and are never asked for the graph, file or host parts (see [NoAdapter]).
//
// Shapes are row-major; a layer's weight W0 is [out, in] in layout OutIn and [in, out] in layout
// InOut; ΔW is always reported in the weight's own layout. s is Config.Scale() (α/r, or α/√r with
// rsLoRA) and u the ramp u(t) = min(t/T, 1) (1 for methods that do not ramp).
type Tuner interface {
	// Name is the method's name, as --method, config.json and Config.Method spell it ("singlora").
	Name() Method
	// Aliases are other spellings ParseMethod accepts, case-insensitive ("lora+" for loraplus).
	Aliases() []string
	// Inits are the initialisations the method accepts, its default first (none without tensors).
	Inits() []Init
	// Defaults fills the method's defaults into its unset settings in c (LoRA+: λ = 16). It is
	// called by DefaultConfig and by peft.Inject.
	Defaults(c *Config)
	// Validate checks the method's own settings; Config.Validate has checked the common ones and
	// the init against Inits.
	Validate(c Config) error
	// UsesRamp reports whether the update is scaled by u(t) with T = Config.RampSteps; trainers
	// set T only for methods that use it.
	UsesRamp() bool

	// Tensors lists the adapter tensors of layer s at rank r, in the order they are created and
	// saved. The names, their order and NoWeightSuffix must not depend on s or r (the registry
	// reads them once for the file format).
	Tensors(s LinearSpec, r int) []TensorSpec
	// Init returns the initial values of Tensors(s, c.Rank), drawn from RNG(c.Seed, s.Path, name).
	// base returns the layer's base weight W0 (float32, its stored layout), for methods that start
	// from it (DoRA's magnitude is ‖W0‖ per output).
	Init(c Config, s LinearSpec, base func() ([]float32, error)) (map[string][]float32, error)
	// Trainable reports whether the store variable at path trains under the method. Internal
	// variables and modules_to_save are decided before it is asked.
	Trainable(path string) bool
	// Group adjusts v's optimizer group g, which starts as {"default", ×1 learning rate, weight
	// decay unless v is a bias, a normalisation weight or a vector} (LoRA+: lora_B gets ×λ).
	Group(c Config, v *model.Variable, g *optim.Group)

	// Forward computes the adapted layer for x [..., in]: [..., out], e.g. l.Base(x, true) plus
	// the adapter's term. Graph-building errors panic, as GoMLX graph code does.
	Forward(l *Layer, x *Node) *Node
	// DeltaWeight builds ΔW explicitly as [out, in] (whatever the layout) in the adapter tensors'
	// dtype — the naive O(out·in·r) form for merging, tests and benchmarks — or returns nil if the
	// update is not additive (DoRA). l.W, l.B and l.Base are not set.
	DeltaWeight(l *Layer) *Node

	// PeftType is the "peft_type" of the method's adapter_config.json ("SINGLORA", "LORA").
	// Several methods may share one (LoRA, LoRA+ and DoRA are PEFT's LORA, told apart by keys).
	PeftType() string
	// ToFile records c's method-specific settings in f: peft_type and the method's keys (DoRA:
	// use_dora; LoRA+: loraplus_lr_ratio; SingLoRA: ramp_up_steps and init). Keys that
	// adapterconfig.Config has no field for go into f.Extra.
	ToFile(c Config, f *adapterconfig.Config)
	// FromFile reports whether f, whose peft_type is PeftType(), describes an adapter of this
	// method, and if so sets the method's settings in c (the inverse of ToFile). Exactly one
	// registered method may claim a config.
	FromFile(f *adapterconfig.Config, c *Config) bool
	// LayerShape returns the layer's [out, in] as the adapter tensors' shapes (by name; all of
	// Tensors' names are present) determine it, or ErrShapeNotInTensors when they do not
	// (SingLoRA's A is [max(in,out), r]): the adapter file then records it in module_shapes.
	LayerShape(shapes map[string][]int) ([2]int, error)

	// DeltaW returns ΔW in float64 in the base weight's layout, with u frozen at h.U; an error if
	// the update is not additive.
	DeltaW(h Host) ([]float64, error)
	// Merge returns the merged weight for base weight w0 (its layout): W0 + ΔW for additive
	// methods (AddDelta), or with unmerge the inverse, W − ΔW; an error when there is no inverse.
	Merge(h Host, w0 []float64, unmerge bool) ([]float64, error)
	// AsLoRA returns the plain PEFT LoRA factors lora_A [r, in] and lora_B [out, r] with
	// B·A = ΔW (to be written with lora_alpha = r, so that the scale is 1); ErrPlainLoRA if the
	// adapter already is a plain LoRA adapter (exported as it is); another error if the method
	// has no such form.
	AsLoRA(h Host) (loraA, loraB []float32, err error)
}

// TensorSpec is one adapter tensor of one layer.
type TensorSpec struct {
	// Name is the variable's name in the layer's scope and the tensor's name in adapter files
	// ("base_model.model.<module>.<Name>.weight").
	Name  string
	Shape []int
	// NoWeightSuffix writes the file key without PEFT's ".weight" ("<module>.<Name>"), as PEFT
	// ≥ 0.12 writes DoRA's lora_magnitude_vector; "<module>.<Name>.weight" is accepted on load.
	NoWeightSuffix bool
}

// ErrShapeNotInTensors is returned by LayerShape when the adapter tensors do not determine the
// layer's [out, in].
var ErrShapeNotInTensors = errors.New("the adapter tensors do not determine the layer's [out, in]")

// ErrPlainLoRA is returned by AsLoRA for adapters that already are plain PEFT LoRA adapters.
var ErrPlainLoRA = errors.New("already a plain LoRA adapter")

// VarName returns the variable name (the last element) of a store path.
func VarName(path string) string {
	_, name := model.SplitPath(path)
	return name
}
