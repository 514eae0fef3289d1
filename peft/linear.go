package peft

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/nn"
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive

	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/peft/tuner"
)

// Linear computes the linear layer whose variables live in scope: "weight" ([out, in], or
// [in, out] for layout InOut) and optionally "bias" [out]. x has shape [..., in]; the result
// [..., out]. If inj adapts this module (the module path is the scope path with '/' → '.'), the
// method computes the adapted layer (tuner.Tuner.Forward), e.g.
//
//	SingLoRA: y = x·W0ᵀ + b + s·u·((x·A[:in])·A[:out]ᵀ)    (ΔW is never built)
//	LoRA/LoRA+: y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ
//	DoRA: y = (m/‖W0+sBA‖)⊙(x·W0ᵀ + s·(x·Aᵀ)·Bᵀ) + b, the norm a constant in backward
//
// with the base product x·W0ᵀ (+ b) built by dense in the mode the graph needs.
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
	t, err := inj.method()
	if err != nil {
		Panicf("peft.Linear: module %q: %v", path, err)
	}
	l := &tuner.Layer{Config: inj.ModuleConfig(path), Spec: spec, Scope: scope, Graph: g, W: w, B: b,
		Base: func(x *Node, withBias bool) *Node {
			if withBias {
				return dense(x, w, b, layout, mode)
			}
			return dense(x, w, nil, layout, mode)
		}}
	return t.Forward(l, x)
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
//
// A 16-bit (bf16/f16) weight, a frozen base held in half precision, is multiplied by
// fastops.Product in every mode: float32 accumulation and output, no float32 copy of the weight
// kept, and the input gradient built without one. A trainable weight must be float32.
func dense(x, w, b *Node, layout compute.DenseLayout, mode denseMode) *Node {
	half := w.DType() != x.DType() && w.DType().IsHalfPrecision()
	if mode == denseFused && !half {
		return nn.Dense(x, w, b, layout)
	}
	wAxis := 1 // w [out, in]
	if layout == compute.DenseLayoutInputOutputs {
		wAxis = 0 // w [in, out]
	}
	var y *Node
	if half && mode == denseTrainable {
		Panicf("peft: a trained weight must be float32, got %s (load the base with --base-dtype f32 to train it)", w.Shape())
	}
	if half {
		y = fastops.Product(x, w, wAxis)
	} else if mode == denseTrainable {
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
		return tuner.ContractLead(transposed(x), dy) // [in, out]
	}
	return tuner.ContractLead(transposed(dy), x) // [out, in]
}

// DeltaWeight builds ΔW explicitly for an adapted module, in the weight's own layout
// ([out, in] for OutIn, [in, out] for InOut), as the method builds it (tuner.Tuner.DeltaWeight):
// SingLoRA s·u·A[:out]·A[:in]ᵀ, LoRA s·B·A. It is the naive form (O(out·in·r), an out×in
// tensor) used for merging, tests and the benchmark's baseline; training never calls it. A
// method without an additive ΔW (DoRA) panics, as graph-building errors do.
func DeltaWeight(inj *Injection, scope *model.Scope, g *Graph, dtype dtypes.DType) *Node {
	path := ScopeModule(scope.Scope())
	spec, ok := inj.Target(path)
	if !ok {
		Panicf("peft.DeltaWeight: module %q is not adapted", path)
	}
	t, err := inj.method()
	if err != nil {
		Panicf("peft.DeltaWeight: module %q: %v", path, err)
	}
	delta := t.DeltaWeight(&tuner.Layer{Config: inj.ModuleConfig(spec.Path), Spec: spec, Scope: scope, Graph: g}) // [out, in]
	if delta == nil {
		Panicf("peft.DeltaWeight: method %s has no additive ΔW", inj.Config.Method)
	}
	if spec.Layout == InOut {
		delta = Transpose(delta, 0, 1)
	}
	return ConvertDType(delta, dtype)
}

// NaiveSingLoRALinear is the formulation the public Python SingLoRA implementations use: it
// builds W = W0 + ΔW (DeltaWeight) every call and multiplies by it. It exists only as the
// benchmark's baseline, and works for any method with an additive ΔW.
func NaiveSingLoRALinear(inj *Injection, scope *model.Scope, x *Node) *Node {
	g := x.Graph()
	path := ScopeModule(scope.Scope())
	spec, ok := inj.Target(path)
	if !ok {
		Panicf("peft.NaiveSingLoRALinear: module %q is not an adapter target", path)
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
