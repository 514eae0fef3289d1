package peft

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/layers"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/nn"
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive

	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/optim"
)

// Linear computes the linear layer whose variables live in scope: "weight" ([out, in], or
// [in, out] for layout InOut) and optionally "bias" [out]. x has shape [..., in]; the result
// [..., out]. If inj adapts this module (the module path is the scope path with '/' → '.'), the
// adapter is added:
//
//	SingLoRA: y = x·W0ᵀ + b + s·u·((x·A[:in])·A[:out]ᵀ)    (ΔW is never built)
//	LoRA/LoRA+: y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ
//	DoRA: y = (m/‖W0+sBA‖)⊙(x·W0ᵀ + s·(x·Aᵀ)·Bᵀ) + b, the norm a constant in backward
//
// A nil inj computes the plain layer in the OutIn layout; a model with InOut layers (GPT-2's
// Conv1D) passes an injection that lists them (e.g. one built with method Frozen) so that the
// layout is known. Graph-building errors panic, as GoMLX graph code does.
func Linear(inj *Injection, scope *model.Scope, x *Node) *Node {
	path := ScopeModule(scope.Scope())
	wVar := scope.GetVariable("weight")
	if wVar == nil {
		Panicf("peft.Linear: module %q has no variable \"weight\" in scope %q", path, scope.Scope())
	}
	g := x.Graph()
	w := wVar.NodeValue(g)
	var b *Node
	if bVar := scope.GetVariable("bias"); bVar != nil {
		b = bVar.NodeValue(g)
	}
	layout := compute.DenseLayoutOutputsInput
	if m, ok := inj.Module(path); ok && m.Layout == InOut {
		layout = compute.DenseLayoutInputOutputs
	}
	mode := denseFused
	if scope.IsTraining(g) {
		mode = denseFrozen
		if wVar.Trainable {
			mode = denseTrainable
		}
	}
	spec, adapted := inj.Target(path)
	if !adapted {
		return dense(x, w, b, layout, mode)
	}
	switch inj.Config.Method {
	case SingLoRA:
		return Add(dense(x, w, b, layout, mode), singLoRADelta(inj, scope, spec, x))
	case LoRA, LoRAPlus:
		return Add(dense(x, w, b, layout, mode), loraDelta(inj, scope, spec, x))
	case DoRA:
		return doraForward(inj, scope, spec, x, w, b, layout, mode)
	}
	return dense(x, w, b, layout, mode)
}

// denseMode says how dense builds a layer: the fused op (inference graphs), a plain product whose
// gradient is only the input's (a frozen weight in a training graph), or a plain product with a
// hand-built weight gradient (a trainable weight in a training graph).
type denseMode int

const (
	denseFused denseMode = iota
	denseFrozen
	denseTrainable
)

// dense computes x·Wᵀ + b (x·W + b for layout InOut).
//
// Inference graphs use nn.Dense (the backend's fused dense op). In training graphs the weight is
// contracted with a plain DotGeneral plus a bias add instead: the pure-Go backend's fused dense
// backward (FusedDenseVJP) always computes the weight gradient, even for a frozen weight where
// nothing uses it (about a third of the bert-base-4l SingLoRA step; see PERFORMANCE.md), and for a
// trainable weight it transposes the output gradient with a single-threaded loop (~10% of the
// bert-base-4l full fine-tuning step). A frozen weight's product gets GoMLX's own gradient, which
// is only the input's. A trainable weight's gradient is built by weightGrad.
func dense(x, w, b *Node, layout compute.DenseLayout, mode denseMode) *Node {
	if mode == denseFused {
		return nn.Dense(x, w, b, layout)
	}
	wAxis := 1 // w [out, in]
	if layout == compute.DenseLayoutInputOutputs {
		wAxis = 0 // w [in, out]
	}
	var y *Node
	if mode == denseTrainable {
		var dy *Node
		wc := IdentityWithCustomGradient(w, func(_, v *Node) *Node {
			if dy == nil { // not reached through y: keep GoMLX's gradient
				return v
			}
			return weightGrad(x, dy, layout)
		})
		y = Dot(x, wc).General([]int{x.Rank() - 1}, nil, []int{wAxis}, nil)
		y = IdentityWithCustomGradient(y, func(_, v *Node) *Node {
			dy = v
			return v
		})
	} else {
		y = Dot(x, w).General([]int{x.Rank() - 1}, nil, []int{wAxis}, nil)
	}
	if b != nil {
		y = Add(y, ExpandLeftToRank(b, y.Rank()))
	}
	return y
}

// weightGrad returns the gradient of a dense layer's weight from its input x [..., in] and output
// gradient dy [..., out]: dyᵀ·x [out, in] for layout OutIn, xᵀ·dy [in, out] for InOut. GoMLX's
// own form contracts the leading (batch×sequence) axes of both, which the pure-Go backend runs by
// transposing both full activations with its generic transpose. Here one of them is reshaped to
// [N, ·] and transposed with the fast 2-D transpose (fastops.Transpose2D), and the other is used in
// place, contracting its leading axes.
func weightGrad(x, dy *Node, layout compute.DenseLayout) *Node {
	leadDims := x.Shape().Dimensions[:x.Rank()-1]
	n := x.Shape().Size() / x.Shape().Dim(-1)
	transposed := func(t *Node) *Node { // t [..., k] → [k, ...]
		k := t.Shape().Dim(-1)
		tt := fastops.Transpose2D(Reshape(t, n, k))
		return Reshape(tt, append([]int{k}, leadDims...)...)
	}
	if layout == compute.DenseLayoutInputOutputs {
		return contractLead(transposed(x), dy) // [in, out]
	}
	return contractLead(transposed(dy), x) // [out, in]
}

// contractLead multiplies tT [k, ...] by u [..., m] over the shared middle axes (the batch×sequence
// axes of an activation): [k, m]. u is used in place — the backend multiplies a right-hand side
// whose contracting axes lead without transposing or copying it.
func contractLead(tT, u *Node) *Node {
	lead := make([]int, u.Rank()-1)
	shifted := make([]int, u.Rank()-1)
	for i := range lead {
		lead[i], shifted[i] = i, i+1
	}
	return Dot(tT, u).General(shifted, nil, lead, nil)
}

func adapterVar(scope *model.Scope, name, path string) *model.Variable {
	v := scope.GetVariable(name)
	if v == nil {
		Panicf("peft: module %q has no adapter variable %q: call Injection.Attach(store) before building graphs", path, name)
	}
	return v
}

// adapterInput applies the adapter's input dropout (training only).
func adapterInput(inj *Injection, scope *model.Scope, x *Node) *Node {
	if inj.Config.Dropout > 0 {
		return layers.DropoutStatic(scope, x, inj.Config.Dropout)
	}
	return x
}

// contractLast computes x·Mᵀ for M [k, last(x)] — the contraction over x's last axis and M's axis 1.
func contractLast(x, m *Node) *Node {
	return Dot(x, m).General([]int{x.Rank() - 1}, nil, []int{1}, nil)
}

// adapterMatmul computes x·Mᵀ for a thin adapter factor M [k, m] (x [..., m]), like contractLast,
// but with M's gradient built in the layout the pure-Go backend runs without big transposes or
// copies.
//
// GoMLX's DotGeneral gradient for M is a DotGeneral contracting the leading (batch×sequence)
// axes of the output gradient dy [..., k] with x [..., m]; the backend only runs contractions over
// the lhs's last axes, so it transposes both operands first, one of them N×out or N×in (a full
// activation, single-threaded) for every adapted layer. Here dM = dyᵀ·x is computed as
// Transpose(dy)·x when k is the small (rank) side, or as Transpose(Transpose(x)·dy) when m is:
// only the rank-sized operand (N×r) and the r×out result are transposed, and the big operand is
// used in place, contracting its leading axes (a layout the backend multiplies directly; a
// Reshape to 2-D would copy it, as it is still in use elsewhere).
//
// It works with public GoMLX API: an identity with a custom gradient on y records dy (reverse
// mode visits y before M, whose only consumer is the Dot producing y), and an identity with a
// custom gradient on M returns dM from it; the default dM the Dot's gradient builds is then unused
// and the backend drops it.
func adapterMatmul(x, m *Node) *Node {
	var dy *Node
	k, mm := m.Shape().Dim(0), m.Shape().Dim(1)
	mc := IdentityWithCustomGradient(m, func(_, v *Node) *Node {
		if dy == nil { // not reached through y (cannot happen in reverse mode): keep the default
			return v
		}
		if k <= mm { // dM [k, m] = dyᵀ [k, ...] · x [..., m]
			return contractLead(leadLast(dy), x)
		}
		// dMᵀ [m, k] = xᵀ [m, ...] · dy [..., k]
		return Transpose(contractLead(leadLast(x), dy), 0, 1)
	})
	y := contractLast(x, mc)
	return IdentityWithCustomGradient(y, func(_, v *Node) *Node {
		dy = v
		return v
	})
}

// leadLast moves the last axis of t [..., r] to the front: [r, ...] (for the thin, rank-sized
// operands of adapterMatmul's gradient).
func leadLast(t *Node) *Node {
	if t.Rank() == 2 {
		return Transpose(t, 0, 1)
	}
	perm := make([]int, t.Rank())
	perm[0] = t.Rank() - 1
	for i := 1; i < t.Rank(); i++ {
		perm[i] = i - 1
	}
	return TransposeAllDims(t, perm...)
}

// Ramp returns u = min(t/T, 1) as a scalar of dtype, t being the optimizer step counter.
func Ramp(cfg Config, store *model.Store, g *Graph, dtype dtypes.DType) *Node {
	if cfg.RampSteps <= 0 {
		return ScalarOne(g, dtype)
	}
	t := ConvertDType(optim.Step(store, g), dtypes.Float64)
	u := Min(DivScalar(t, float64(cfg.RampSteps)), ScalarOne(g, dtypes.Float64))
	return ConvertDType(u, dtype)
}

// singLoRADelta computes s·u·((x·A[:in])·A[:out]ᵀ) without building ΔW. It is evaluated exactly
// as LoRA's s·(x·Lᵀ)·Rᵀ with L = A[:in]ᵀ [r, in] and R = A[:out] [out, r]: the same two thin
// matmuls in the layouts the backend runs fastest (the transpose of A costs d·r, nothing).
func singLoRADelta(inj *Injection, scope *model.Scope, spec LinearSpec, x *Node) *Node {
	f := singLoRAFactors(inj, scope, spec, x.Graph(), x.DType())
	h := adapterMatmul(adapterInput(inj, scope, x), f.inT) // [..., r]
	h = Mul(h, f.su)
	return adapterMatmul(h, f.out) // [..., out]
}

// singLoRAParts are the per-graph pieces of a SingLoRA module: A[:in]ᵀ [r, in], A[:out] [out, r]
// and the scalar s·u.
type singLoRAParts struct{ inT, out, su *Node }

// singLoRAKey keys singLoRAParts in the graph's state: a module called more than once in one
// graph (a batch split into streams, see fastops.Streams) shares them instead of repeating the
// slices, the transpose and the ramp's scalar ops per call.
// The key includes A's current node, so a graph that updates A and then uses the module again
// gets the new value.
type singLoRAKey struct {
	a     *Node
	dtype dtypes.DType
}

func singLoRAFactors(inj *Injection, scope *model.Scope, spec LinearSpec, g *Graph, dtype dtypes.DType) *singLoRAParts {
	a := adapterVar(scope, NameSingLoRAA, spec.Path).NodeValue(g) // [d, r]
	key := singLoRAKey{a, dtype}
	if p, ok := g.State(key).(*singLoRAParts); ok {
		return p
	}
	aIn, aOut := a, a
	d := a.Shape().Dim(0)
	if spec.In != d {
		aIn = Slice(a, AxisRange(0, spec.In))
	}
	if spec.Out != d {
		aOut = Slice(a, AxisRange(0, spec.Out))
	}
	p := &singLoRAParts{inT: Transpose(aIn, 0, 1), out: aOut,
		su: MulScalar(Ramp(inj.Config, scope.Store(), g, dtype), inj.Config.Scale())}
	g.AttachState(key, p)
	return p
}

// loraDelta computes s·(x·Aᵀ)·Bᵀ.
func loraDelta(inj *Injection, scope *model.Scope, spec LinearSpec, x *Node) *Node {
	g := x.Graph()
	a := adapterVar(scope, NameLoRAA, spec.Path).NodeValue(g) // [r, in]
	b := adapterVar(scope, NameLoRAB, spec.Path).NodeValue(g) // [out, r]
	h := adapterMatmul(adapterInput(inj, scope, x), a)        // [..., r]
	h = MulScalar(h, inj.Config.Scale())
	return adapterMatmul(h, b)
}

// doraWeightNorm returns ‖W0[o,:] + s·B[o,:]·A‖ for each output o without building the out×in
// matrix: ‖W0_o‖² + 2s·B_o·(A·W0_oᵀ) + s²·B_o·(A·Aᵀ)·B_oᵀ. The result is a gradient constant.
func doraWeightNorm(w, a, b *Node, s float64, layout compute.DenseLayout) *Node {
	w, a, b = StopGradient(w), StopGradient(a), StopGradient(b)
	var n0, p *Node
	if layout == compute.DenseLayoutInputOutputs { // w [in, out]
		n0 = ReduceSum(Square(w), 0)
		p = Dot(w, a).General([]int{0}, nil, []int{1}, nil) // [out, r]
	} else { // w [out, in]
		n0 = ReduceSum(Square(w), 1)
		p = Dot(w, a).General([]int{1}, nil, []int{1}, nil) // [out, r]
	}
	cross := ReduceSum(Mul(b, p), 1)                        // [out]
	gram := Dot(a, a).General([]int{1}, nil, []int{1}, nil) // [r, r]
	quad := ReduceSum(Mul(Dot(b, gram).Product(), b), 1)    // [out]
	sq := Add(n0, Add(MulScalar(cross, 2*s), MulScalar(quad, s*s)))
	sq = Max(sq, ScalarZero(w.Graph(), sq.DType()))
	return StopGradient(Sqrt(sq))
}

func doraForward(inj *Injection, scope *model.Scope, spec LinearSpec, x, w, bias *Node, layout compute.DenseLayout, mode denseMode) *Node {
	g := x.Graph()
	a := adapterVar(scope, NameLoRAA, spec.Path).NodeValue(g)
	b := adapterVar(scope, NameLoRAB, spec.Path).NodeValue(g)
	m := adapterVar(scope, NameMagnitude, spec.Path).NodeValue(g)
	s := inj.Config.Scale()
	norm := doraWeightNorm(w, a, b, s, layout)
	scale := Div(m, norm) // [out]
	base := dense(x, w, nil, layout, mode)
	h := MulScalar(contractLast(adapterInput(inj, scope, x), a), s)
	y := Mul(Add(base, contractLast(h, b)), ExpandLeftToRank(scale, base.Rank()))
	if bias != nil {
		y = Add(y, ExpandLeftToRank(bias, y.Rank()))
	}
	return y
}

// DeltaWeight builds ΔW explicitly for an adapted module, in the weight's own layout
// ([out, in] for OutIn, [in, out] for InOut): SingLoRA s·u·A[:out]·A[:in]ᵀ, LoRA s·B·A. It is the
// naive form (O(out·in·r), an out×in tensor) used for merging, tests and the benchmark's
// baseline; training never calls it. DoRA has no additive ΔW and is not supported here.
func DeltaWeight(inj *Injection, scope *model.Scope, g *Graph, dtype dtypes.DType) *Node {
	path := ScopeModule(scope.Scope())
	spec, ok := inj.Target(path)
	if !ok {
		Panicf("peft.DeltaWeight: module %q is not adapted", path)
	}
	var delta *Node // [out, in]
	switch inj.Config.Method {
	case SingLoRA:
		a := adapterVar(scope, NameSingLoRAA, path).NodeValue(g)
		aIn := Slice(a, AxisRange(0, spec.In))
		aOut := Slice(a, AxisRange(0, spec.Out))
		su := MulScalar(Ramp(inj.Config, scope.Store(), g, a.DType()), inj.Config.Scale())
		delta = Mul(Dot(aOut, aIn).General([]int{1}, nil, []int{1}, nil), su)
	case LoRA, LoRAPlus:
		a := adapterVar(scope, NameLoRAA, path).NodeValue(g)
		b := adapterVar(scope, NameLoRAB, path).NodeValue(g)
		delta = MulScalar(Dot(b, a).Product(), inj.Config.Scale())
	default:
		Panicf("peft.DeltaWeight: method %s has no additive ΔW", inj.Config.Method)
	}
	if spec.Layout == InOut {
		delta = Transpose(delta, 0, 1)
	}
	return ConvertDType(delta, dtype)
}

// NaiveSingLoRALinear is the formulation the public Python implementations use: it builds
// W = W0 + ΔW every call and multiplies by it. It exists only as the benchmark's baseline.
func NaiveSingLoRALinear(inj *Injection, scope *model.Scope, x *Node) *Node {
	g := x.Graph()
	path := ScopeModule(scope.Scope())
	spec, ok := inj.Target(path)
	if !ok || inj.Config.Method != SingLoRA {
		Panicf("peft.NaiveSingLoRALinear: module %q is not a SingLoRA target", path)
	}
	w := scope.GetVariable("weight").NodeValue(g)
	var b *Node
	if bVar := scope.GetVariable("bias"); bVar != nil {
		b = bVar.NodeValue(g)
	}
	wEff := Add(w, DeltaWeight(inj, scope, g, w.DType()))
	layout := compute.DenseLayoutOutputsInput
	if spec.Layout == InOut {
		layout = compute.DenseLayoutInputOutputs
	}
	return nn.Dense(x, wEff, b, layout)
}
