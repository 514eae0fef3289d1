package tuner

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/layers"
	"github.com/gomlx/gomlx/ml/model"
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive

	"github.com/singlora/singlora/optim"
)

// Layer is one adapted linear layer as a method's graph code sees it (built by peft.Linear and
// peft.DeltaWeight).
type Layer struct {
	Config Config
	Spec   LinearSpec
	// Scope is the layer's scope, holding "weight", the optional "bias" and the adapter tensors.
	Scope *model.Scope
	Graph *Graph
	// W is the base weight W0 ([out, in], or [in, out] for layout InOut) and B the bias [out] or
	// nil. Both are nil in DeltaWeight.
	W, B *Node
	// Base computes the base layer for x [..., in]: x·W0ᵀ, plus b when withBias, in the form the
	// graph needs (the fused dense op in inference graphs; in training graphs a plain product
	// whose weight gradient is built only when W0 trains). Nil in DeltaWeight.
	Base func(x *Node, withBias bool) *Node
}

// Var returns the value in l's graph of the adapter tensor name. A missing variable panics with
// a message saying that Injection.Attach was not called.
func (l *Layer) Var(name string) *Node {
	v := l.Scope.GetVariable(name)
	if v == nil {
		Panicf("peft: module %q has no adapter variable %q: call Injection.Attach(store) before building graphs", l.Spec.Path, name)
	}
	return v.NodeValue(l.Graph)
}

// Input applies the adapter's input dropout (Config.Dropout, training graphs only) to x.
func (l *Layer) Input(x *Node) *Node {
	if l.Config.Dropout > 0 {
		return layers.DropoutStatic(l.Scope, x, l.Config.Dropout)
	}
	return x
}

// Ramp returns u = min(t/T, 1) (T = Config.RampSteps, t the optimizer step counter) as a scalar
// of dtype: 1 when T is 0.
func (l *Layer) Ramp(dtype dtypes.DType) *Node {
	return rampNode(l.Config, l.Scope.Store(), l.Graph, dtype)
}

// rampNode returns u = min(t/T, 1) as a scalar of dtype in graph g, t being store's optimizer
// step counter (computed in float64, then converted).
func rampNode(cfg Config, store *model.Store, g *Graph, dtype dtypes.DType) *Node {
	if cfg.RampSteps <= 0 {
		return ScalarOne(g, dtype)
	}
	t := ConvertDType(optim.Step(store, g), dtypes.Float64)
	u := Min(DivScalar(t, float64(cfg.RampSteps)), ScalarOne(g, dtypes.Float64))
	return ConvertDType(u, dtype)
}

// ContractLast computes x·Mᵀ for M [k, last(x)]: the contraction over x's last axis and M's axis
// 1, with GoMLX's own gradient. It is the decomposed reference ThinMatmul is tested against.
func ContractLast(x, m *Node) *Node {
	return Dot(x, m).General([]int{x.Rank() - 1}, nil, []int{1}, nil)
}

// ThinMatmul computes x·Mᵀ for a thin adapter factor M [k, m] (x [..., m]), like ContractLast,
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
func ThinMatmul(x, m *Node) *Node {
	var dy *Node
	k, mm := m.Shape().Dim(0), m.Shape().Dim(1)
	mc := IdentityWithCustomGradient(m, func(_, v *Node) *Node {
		if dy == nil { // not reached through y (cannot happen in reverse mode): keep the default
			return v
		}
		if k <= mm { // dM [k, m] = dyᵀ [k, ...] · x [..., m]
			return ContractLead(leadLast(dy), x)
		}
		// dMᵀ [m, k] = xᵀ [m, ...] · dy [..., k]
		return Transpose(ContractLead(leadLast(x), dy), 0, 1)
	})
	y := ContractLast(x, mc)
	return IdentityWithCustomGradient(y, func(_, v *Node) *Node {
		dy = v
		return v
	})
}

// ContractLead multiplies tT [k, ...] by u [..., m] over the shared middle axes (the
// batch×sequence axes of an activation): [k, m]. u is used in place — the backend multiplies a
// right-hand side whose contracting axes lead without transposing or copying it.
func ContractLead(tT, u *Node) *Node {
	lead := make([]int, u.Rank()-1)
	shifted := make([]int, u.Rank()-1)
	for i := range lead {
		lead[i], shifted[i] = i, i+1
	}
	return Dot(tT, u).General(shifted, nil, lead, nil)
}

// leadLast moves the last axis of t [..., r] to the front: [r, ...] (for the thin, rank-sized
// operands of ThinMatmul's gradient).
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
