// Package lora implements LoRA (Hu et al., 2021) and LoRA+ (Hayou et al., 2024) as peft methods:
//
//	W = W0 + s·B·A,   A ∈ ℝ^{r×in} ~ kaiming_uniform(a=√5) = U(-1/√in, 1/√in),   B ∈ ℝ^{out×r} = 0
//	y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ   (ΔW is never built in training)
//
// with s = α/r (α/√r with rsLoRA). LoRA+ is the same adapter with one optimizer rule: lora_B's
// learning rate is λ times lora_A's (η_B = λ·η_A, λ = 16 unless Config.LoRAPlusRatio says
// otherwise). Both are written as PEFT writes LoRA ("peft_type": "LORA"); LoRA+ adds
// "loraplus_lr_ratio", which tells it apart on load. Package dora builds on the pieces exported
// here.
package lora

import (
	"fmt"
	"math"
	"strings"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft/peftdef"
	"github.com/singlora/singlora/peft/tuner"
)

// Adapter tensor names, as PEFT names them.
const (
	NameA = "lora_A" // [r, in]
	NameB = "lora_B" // [out, r]
)

// DefaultPlusRatio is LoRA+'s default λ.
const DefaultPlusRatio = 16

// The registered methods.
var (
	// Tuner is LoRA.
	Tuner tuner.Tuner = &method{name: peftdef.LoRA}
	// PlusTuner is LoRA+: LoRA with lora_B's learning rate ×λ.
	PlusTuner tuner.Tuner = &method{name: peftdef.LoRAPlus, aliases: []string{"lora+", "lora_plus"}, plus: true}
)

type method struct {
	name    tuner.Method
	aliases []string
	plus    bool
}

func (m *method) Name() tuner.Method  { return m.name }
func (m *method) Aliases() []string   { return m.aliases }
func (m *method) Inits() []tuner.Init { return Inits }

// Inits are the initialisations LoRA, LoRA+ and DoRA accept: kaiming (the default) and gaussian,
// PEFT's init_lora_weights true and "gaussian".
var Inits = []tuner.Init{peftdef.InitKaiming, peftdef.InitGaussian}

func (m *method) UsesRamp() bool { return false }

func (m *method) Validate(tuner.Config) error { return nil }

// Defaults sets LoRA+'s λ when unset.
func (m *method) Defaults(c *tuner.Config) {
	if m.plus && c.LoRAPlusRatio == 0 {
		c.LoRAPlusRatio = DefaultPlusRatio
	}
}

// lambda returns LoRA+'s λ in force for c: Config.LoRAPlusRatio, or DefaultPlusRatio when unset.
func lambda(c tuner.Config) float64 {
	if c.LoRAPlusRatio > 0 {
		return c.LoRAPlusRatio
	}
	return DefaultPlusRatio
}

// Tensors returns lora_A [r, in] and lora_B [out, r].
func (m *method) Tensors(s tuner.LinearSpec, r int) []tuner.TensorSpec { return Tensors(s, r) }

// Tensors returns LoRA's tensors of layer s at rank r: lora_A [r, in], lora_B [out, r].
func Tensors(s tuner.LinearSpec, r int) []tuner.TensorSpec {
	return []tuner.TensorSpec{{Name: NameA, Shape: []int{r, s.In}}, {Name: NameB, Shape: []int{s.Out, r}}}
}

// Init draws A and zeroes B (see InitValues).
func (m *method) Init(c tuner.Config, s tuner.LinearSpec, _ func() ([]float32, error)) (map[string][]float32, error) {
	return InitValues(c, s), nil
}

// InitValues returns LoRA's initial tensors of layer s: A ~ kaiming_uniform(a=√5) on [r, in],
// whose gain √(2/(1+5)) and fan-in in give the bound √(1/3)·√(3/in) = 1/√in (init kaiming), or
// A ~ N(0, 1/r²) (init gaussian), and B = 0, as PEFT initialises them (so that the adapted layer
// starts exactly at W0).
func InitValues(c tuner.Config, s tuner.LinearSpec) map[string][]float32 {
	rng := tuner.RNG(c.Seed, s.Path, NameA)
	a := tuner.Uniform(rng, c.Rank*s.In, 1/math.Sqrt(float64(s.In)))
	if c.Init == peftdef.InitGaussian {
		a = tuner.Normal(rng, c.Rank*s.In, 1/float64(c.Rank))
	}
	return map[string][]float32{NameA: a, NameB: make([]float32, s.Out*c.Rank)}
}

// InitToFile returns init_lora_weights for init: true for kaiming (PEFT's default), "gaussian".
func InitToFile(init tuner.Init) []byte {
	if init == peftdef.InitGaussian {
		return []byte(`"gaussian"`)
	}
	return []byte("true")
}

// InitFromFile reads init_lora_weights: absent or true is kaiming, "gaussian" gaussian. Any other
// value (false, "pissa", "olora", "loftq", …) is returned as an init no method accepts, so that
// Config.Validate refuses it by name: those inits change the base weights or start B away from
// zero, which this package does not implement.
func InitFromFile(raw []byte) tuner.Init {
	switch s := strings.TrimSpace(string(raw)); s {
	case "", "true", "null":
		return peftdef.InitKaiming
	case `"gaussian"`:
		return peftdef.InitGaussian
	default:
		return tuner.Init("init_lora_weights=" + s)
	}
}

func (m *method) Trainable(path string) bool {
	n := tuner.VarName(path)
	return n == NameA || n == NameB
}

// Group gives lora_B the learning rate λ·lr under LoRA+.
func (m *method) Group(c tuner.Config, v *model.Variable, g *optim.Group) {
	if m.plus && v.Name() == NameB {
		g.Name, g.LRMultiplier = "lora_B (LoRA+)", lambda(c)
	}
}

// Forward computes y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ.
func (m *method) Forward(l *tuner.Layer, x *Node) *Node {
	return Add(l.Base(x, true), delta(l, x))
}

// delta computes the adapter's term s·(x·Aᵀ)·Bᵀ for x [..., in] with the thin matmuls
// (tuner.ThinMatmul); the input dropout applies to x.
func delta(l *tuner.Layer, x *Node) *Node {
	a := l.Var(NameA)                    // [r, in]
	b := l.Var(NameB)                    // [out, r]
	h := tuner.ThinMatmul(l.Input(x), a) // [..., r]
	h = MulScalar(h, l.Config.Scale())
	return tuner.ThinMatmul(h, b)
}

// DeltaWeight builds ΔW = s·B·A [out, in].
func (m *method) DeltaWeight(l *tuner.Layer) *Node {
	return MulScalar(Dot(l.Var(NameB), l.Var(NameA)).Product(), l.Config.Scale())
}

func (m *method) PeftType() string { return adapterconfig.TypeLoRA }

// ToFile writes PEFT's LoRA keys: use_dora false, init_lora_weights, and for LoRA+ loraplus_lr_ratio.
func (m *method) ToFile(c tuner.Config, f *adapterconfig.Config) {
	f.PeftType, f.UseDora, f.InitLoraWeights = adapterconfig.TypeLoRA, false, InitToFile(c.Init)
	if m.plus {
		f.LoraPlusRatio = lambda(c)
	}
}

// FromFile claims LORA configs without use_dora: LoRA+ those with a loraplus_lr_ratio, LoRA the
// others.
func (m *method) FromFile(f *adapterconfig.Config, c *tuner.Config) bool {
	if f.UseDora || (f.LoraPlusRatio > 0) != m.plus {
		return false
	}
	c.Init, c.LoRAPlusRatio = InitFromFile(f.InitLoraWeights), f.LoraPlusRatio
	return true
}

func (m *method) LayerShape(shapes map[string][]int) ([2]int, error) { return LayerShape(shapes) }

// LayerShape reads [out, in] from lora_B [out, r] and lora_A [r, in].
func LayerShape(shapes map[string][]int) ([2]int, error) {
	a, b := shapes[NameA], shapes[NameB]
	if len(a) != 2 || len(b) != 2 {
		return [2]int{}, fmt.Errorf("lora_A %v and lora_B %v must be matrices", a, b)
	}
	return [2]int{b[0], a[1]}, nil
}

// DeltaW returns ΔW = s·B·A (see HostDelta).
func (m *method) DeltaW(h tuner.Host) ([]float64, error) {
	delta := make([]float64, h.Spec.Out*h.Spec.In)
	HostDelta(h, delta)
	return delta, nil
}

// HostDelta writes ΔW = s·B·A into delta (the base weight's layout), each element accumulated
// in float64 over k: ΔW[o,i] = s·Σ_k B[o,k]·A[k,i].
func HostDelta(h tuner.Host, delta []float64) {
	in, out, r := h.Spec.In, h.Spec.Out, h.Rank
	A := h.Tensors[NameA] // [r, in]
	B := h.Tensors[NameB] // [out, r]
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			var acc float64
			for k := range r {
				acc += float64(B[o*r+k]) * float64(A[k*in+i])
			}
			delta[h.Index(o, i)] = h.Scale * acc
		}
	}
}

// Merge returns W0 ± ΔW.
func (m *method) Merge(h tuner.Host, w0 []float64, unmerge bool) ([]float64, error) {
	delta, err := m.DeltaW(h)
	if err != nil {
		return nil, err
	}
	return tuner.AddDelta(w0, delta, unmerge)
}

// AsLoRA: a LoRA or LoRA+ adapter already is a plain LoRA adapter.
func (m *method) AsLoRA(tuner.Host) ([]float32, []float32, error) {
	return nil, nil, tuner.ErrPlainLoRA
}
