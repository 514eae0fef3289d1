// Package singlora implements SingLoRA (Bensaïd et al., 2025) as a peft method: one matrix
// A ∈ ℝ^{d×r}, d = max(in, out), whose symmetric product is the update,
//
//	W = W0 + s·u(t)·A[:out]·A[:in]ᵀ      (A·Aᵀ for a square layer)
//	y = x·W0ᵀ + b + s·u(t)·((x·A[:in])·A[:out]ᵀ)   (ΔW is never built in training)
//
// with s = α/r (α/√r with rsLoRA) and the ramp u(t) = min(t/T, 1) over optimizer steps t
// (T = Config.RampSteps; 0 = no ramp), which starts the adapter at W0 although A is not zero.
// A is initialised U(-1/√d, 1/√d) ("theory", the scale the paper's width analysis assumes) or
// U(-1/√r, 1/√r) ("kaiming-dr", what the public implementations' kaiming_uniform on the d×r
// tensor gives). Adapters are written with "peft_type": "SINGLORA", the ramp and the steps
// taken (so that u is known after reload), the init, and module_shapes: A's shape does not say
// which of in and out is the larger.
package singlora

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft/peftdef"
	"github.com/singlora/singlora/peft/tuner"
)

// NameA is the adapter tensor's name, [max(in,out), r].
const NameA = "singlora_A"

// Tuner is SingLoRA.
var Tuner tuner.Tuner = method{}

type method struct{}

func (method) Name() tuner.Method     { return peftdef.SingLoRA }
func (method) Aliases() []string      { return nil }
func (method) Defaults(*tuner.Config) {}
func (method) UsesRamp() bool         { return true }

// Inits are theory (the default) and kaiming-dr.
func (method) Inits() []tuner.Init { return []tuner.Init{peftdef.InitTheory, peftdef.InitKaimingDR} }

func (method) Validate(tuner.Config) error { return nil }

// Tensors returns singlora_A [max(in,out), r].
func (method) Tensors(s tuner.LinearSpec, r int) []tuner.TensorSpec {
	return []tuner.TensorSpec{{Name: NameA, Shape: []int{max(s.In, s.Out), r}}}
}

// Init draws A ~ U(-1/√d, 1/√d) (theory) or U(-1/√r, 1/√r) (kaiming-dr).
func (method) Init(c tuner.Config, s tuner.LinearSpec, _ func() ([]float32, error)) (map[string][]float32, error) {
	d, r := max(s.In, s.Out), c.Rank
	init := c.Init
	if init == "" {
		init = peftdef.InitTheory
	}
	var bound float64
	switch init {
	case peftdef.InitTheory:
		bound = 1 / math.Sqrt(float64(d))
	case peftdef.InitKaimingDR:
		bound = 1 / math.Sqrt(float64(r))
	default:
		return nil, fmt.Errorf("singlora init %q unknown (known: %s, %s)", init, peftdef.InitTheory, peftdef.InitKaimingDR)
	}
	return map[string][]float32{NameA: tuner.Uniform(tuner.RNG(c.Seed, s.Path, NameA), d*r, bound)}, nil
}

func (method) Trainable(path string) bool { return tuner.VarName(path) == NameA }

func (method) Group(tuner.Config, *model.Variable, *optim.Group) {}

// Forward computes y = x·W0ᵀ + b + s·u·((x·A[:in])·A[:out]ᵀ).
func (method) Forward(l *tuner.Layer, x *Node) *Node {
	return Add(l.Base(x, true), delta(l, x))
}

// delta computes s·u·((x·A[:in])·A[:out]ᵀ) without building ΔW. It is evaluated exactly as
// LoRA's s·(x·Lᵀ)·Rᵀ with L = A[:in]ᵀ [r, in] and R = A[:out] [out, r]: the same two thin
// matmuls (tuner.ThinMatmul) in the layouts the backend runs fastest (the transpose of A costs
// d·r, nothing).
func delta(l *tuner.Layer, x *Node) *Node {
	f := factors(l, x.DType())
	h := tuner.ThinMatmul(l.Input(x), f.inT) // [..., r]
	h = Mul(h, f.su)
	return tuner.ThinMatmul(h, f.out) // [..., out]
}

// parts are the per-graph pieces of a SingLoRA module: A[:in]ᵀ [r, in], A[:out] [out, r] and the
// scalar s·u.
type parts struct{ inT, out, su *Node }

// partsKey keys parts in the graph's state: a module called more than once in one graph (a batch
// split into streams, see fastops.Streams) shares them instead of repeating the slices, the
// transpose and the ramp's scalar ops per call. The key includes A's current node, so a graph
// that updates A and then uses the module again gets the new value.
type partsKey struct {
	a     *Node
	dtype dtypes.DType
}

func factors(l *tuner.Layer, dtype dtypes.DType) *parts {
	a := l.Var(NameA) // [d, r]
	key := partsKey{a, dtype}
	g := l.Graph
	if p, ok := g.State(key).(*parts); ok {
		return p
	}
	aIn, aOut := a, a
	d := a.Shape().Dim(0)
	if l.Spec.In != d {
		aIn = Slice(a, AxisRange(0, l.Spec.In))
	}
	if l.Spec.Out != d {
		aOut = Slice(a, AxisRange(0, l.Spec.Out))
	}
	p := &parts{inT: Transpose(aIn, 0, 1), out: aOut, su: MulScalar(l.Ramp(dtype), l.Config.Scale())}
	g.AttachState(key, p)
	return p
}

// DeltaWeight builds ΔW = s·u·A[:out]·A[:in]ᵀ [out, in].
func (method) DeltaWeight(l *tuner.Layer) *Node {
	a := l.Var(NameA)
	aIn := Slice(a, AxisRange(0, l.Spec.In))
	aOut := Slice(a, AxisRange(0, l.Spec.Out))
	su := MulScalar(l.Ramp(a.DType()), l.Config.Scale())
	return Mul(Dot(aOut, aIn).General([]int{1}, nil, []int{1}, nil), su)
}

func (method) PeftType() string { return adapterconfig.TypeSingLoRA }

// ToFile writes ramp_up_steps and init (the default init when c has none).
func (method) ToFile(c tuner.Config, f *adapterconfig.Config) {
	f.PeftType, f.RampUpSteps, f.Init = adapterconfig.TypeSingLoRA, c.RampSteps, string(c.Init)
	if f.Init == "" {
		f.Init = string(peftdef.InitTheory)
	}
}

// FromFile claims every SINGLORA config.
func (method) FromFile(f *adapterconfig.Config, c *tuner.Config) bool {
	c.RampSteps, c.Init = f.RampUpSteps, tuner.Init(f.Init)
	return true
}

// LayerShape: A [max(in,out), r] does not say which of in and out is the larger.
func (method) LayerShape(map[string][]int) ([2]int, error) {
	return [2]int{}, tuner.ErrShapeNotInTensors
}

// DeltaW returns ΔW = s·u·A[:out]·A[:in]ᵀ, each element accumulated in float64 over k.
func (method) DeltaW(h tuner.Host) ([]float64, error) {
	A, r := h.Tensors[NameA], h.Rank // [d, r]
	su := h.Scale * h.U
	delta := make([]float64, h.Spec.Out*h.Spec.In)
	for o := 0; o < h.Spec.Out; o++ {
		ao := A[o*r : (o+1)*r]
		for i := 0; i < h.Spec.In; i++ {
			ai := A[i*r : (i+1)*r]
			var acc float64
			for k := range r {
				acc += float64(ao[k]) * float64(ai[k])
			}
			delta[h.Index(o, i)] = su * acc
		}
	}
	return delta, nil
}

// Merge returns W0 ± ΔW.
func (m method) Merge(h tuner.Host, w0 []float64, unmerge bool) ([]float64, error) {
	delta, err := m.DeltaW(h)
	if err != nil {
		return nil, err
	}
	return tuner.AddDelta(w0, delta, unmerge)
}

// AsLoRA returns lora_A = A[:in]ᵀ [r, in] and lora_B = s·u·A[:out] [out, r] (rounded to float32),
// so that B·A = s·u·A[:out]·A[:in]ᵀ = ΔW with lora_alpha = r.
func (method) AsLoRA(h tuner.Host) ([]float32, []float32, error) {
	A, r, in, out := h.Tensors[NameA], h.Rank, h.Spec.In, h.Spec.Out
	su := h.Scale * h.U
	la := make([]float32, r*in)
	lb := make([]float32, out*r)
	for i := 0; i < in; i++ {
		for k := range r {
			la[k*in+i] = A[i*r+k]
		}
	}
	for o := 0; o < out; o++ {
		for k := range r {
			lb[o*r+k] = float32(su * float64(A[o*r+k]))
		}
	}
	return la, lb, nil
}
