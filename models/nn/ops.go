// Package nn holds the neural-network building blocks the models share, as GoMLX graph code:
// normalisations (LayerNorm, RMSNorm), activations (exact and tanh GELU, ReLU, SiLU), the
// attention products with transposes the pure-Go backend runs fast (MatmulT, Matmul and their
// grouped-query forms, WithKeyBias), the attention-mask bias MaskValue, and the losses
// (MaskedCrossEntropy, CausalLoss). It reads no files: checkpoints are models/hf's.
package nn

import (
	"math"
	"slices"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/layers/activation"
	"github.com/gomlx/gomlx/ml/model"
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive

	"github.com/singlora/singlora/internal/fastops"
)

// MaskValue is the additive attention bias at disallowed keys (padding, or future positions in
// causal attention): softmax gives them weight exp(MaskValue − max) = 0 in float32. HF uses
// finfo.min; a finite value keeps a fully masked row uniform instead of NaN.
const MaskValue = -1e30

// Param returns the value of variable name in scope, panicking (as graph code does) with the
// scope path if it is missing.
func Param(scope *model.Scope, name string, g *Graph) *Node {
	v := scope.GetVariable(name)
	if v == nil {
		Panicf("model variable %s/%s is missing: was the checkpoint loaded into this store?", scope.Scope(), name)
	}
	return v.NodeValue(g)
}

// LayerNorm is torch.nn.LayerNorm over the last axis: (x-μ)/√(σ²+eps)·weight + bias, σ² biased.
// The variables are "weight" and "bias" in scope.
func LayerNorm(scope *model.Scope, x *Node, eps float64) *Node {
	g := x.Graph()
	w := ExpandLeftToRank(Param(scope, "weight", g), x.Rank())
	b := ExpandLeftToRank(Param(scope, "bias", g), x.Rank())
	c := Sub(x, ReduceAndKeep(x, ReduceMean, -1))
	v := ReduceAndKeep(Square(c), ReduceMean, -1)
	return Add(Mul(Div(c, Sqrt(AddScalar(v, eps))), w), b) // Div/Sqrt: GoMLX has no gradient for Rsqrt
}

// RMSNorm is Llama's: weight·x/√(mean(x²)+eps) (not (1+weight)). Variable "weight" in scope.
func RMSNorm(scope *model.Scope, x *Node, eps float64) *Node {
	w := ExpandLeftToRank(Param(scope, "weight", x.Graph()), x.Rank())
	ms := ReduceAndKeep(Square(x), ReduceMean, -1)
	return Mul(Div(x, Sqrt(AddScalar(ms, eps))), w)
}

// GeluErf is the exact GELU, 0.5·x·(1+erf(x/√2)) (HF "gelu"). It uses GoMLX's activation.Gelu
// (the exact form), which runs as one fused op with a fused backward on backends that offer them
// (the pure-Go backend does) instead of the four element-wise ops above plus their gradients.
func GeluErf(x *Node) *Node {
	return activation.Gelu(x)
}

// geluErfDecomposed is GeluErf from primitive ops (the formula it computes).
func geluErfDecomposed(x *Node) *Node {
	return Mul(MulScalar(x, 0.5), OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))))
}

// GeluTanh is the tanh approximation, 0.5·x·(1+tanh(√(2/π)·(x+0.044715·x³))) (HF "gelu_new",
// "gelu_pytorch_tanh").
func GeluTanh(x *Node) *Node {
	inner := MulScalar(Add(x, MulScalar(Mul(Square(x), x), 0.044715)), math.Sqrt(2/math.Pi))
	return Mul(MulScalar(x, 0.5), OnePlus(Tanh(inner)))
}

// Activations are the hidden_act values the models implement.
var Activations = []string{"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish"}

// Activation applies HF's activation called name.
func Activation(name string, x *Node) *Node {
	switch name {
	case "gelu":
		return GeluErf(x)
	case "gelu_new", "gelu_pytorch_tanh":
		return GeluTanh(x)
	case "relu":
		return MaxScalar(x, 0.0)
	case "silu", "swish":
		return Mul(x, Sigmoid(x))
	}
	Panicf("activation %q not implemented", name)
	return nil
}

// MaskedCrossEntropy returns the mean over positions with mask ≠ 0 of -log softmax(logits)[target]
// (logits [..., V], targets int [...], mask float [...]). With no selected position it is 0.
// Targets must lie in [0, V) where the mask is set (elsewhere they are clamped into range).
//
// It is computed as logsumexp(logits) − logits[target], the target logit gathered (no one-hot
// tensor), with a hand-written gradient (softmax − onehot)·dnll: over a language model's
// [B, L, vocab] logits each pass is the size of the whole logit tensor, and this form makes 4 of
// them forward and 1 backward (plus a scatter of one value per position), where LogSoftmax, a
// one-hot product and their automatic gradient make about 15. The reference form is
// maskedCrossEntropyDecomposed; TestMaskedCrossEntropy compares the two, values and gradients.
func MaskedCrossEntropy(logits, targets, mask *Node) *Node {
	return MeanOfSums(maskedCrossEntropySums(logits, targets, mask))
}

// maskedCrossEntropySums returns [Σ nll·mask, Σ mask] (see MaskedCrossEntropy).
func maskedCrossEntropySums(logits, targets, mask *Node) *Node {
	g := logits.Graph()
	v := logits.Shape().Dim(-1)
	lead := logits.Shape().Dimensions[:logits.Rank()-1]
	// Gather indices [..., rank]: (i_0, ..., i_{r-2}, target) for every position.
	var idx []*Node
	for axis := range lead {
		idx = append(idx, Iota(g, shapes.Make(dtypes.Int32, append(slices.Clone(lead), 1)...), axis))
	}
	t := ExpandAxes(ConvertDType(targets, dtypes.Int32), -1)
	t = Min(Max(t, ScalarZero(g, dtypes.Int32)), Scalar(g, dtypes.Int32, v-1)) // as OneHot: out-of-range ids must not index outside
	indices := Concatenate(append(idx, t), -1)

	var dnll *Node // gradient w.r.t. nll, recorded when reverse mode passes nll
	var e, z *Node
	lc := IdentityWithCustomGradient(logits, func(_, vjp *Node) *Node {
		if dnll == nil { // not reached through nll: keep the automatic gradient
			return vjp
		}
		d := ExpandAxes(dnll, -1)
		grad := Mul(e, Div(d, z))                                // softmax·dnll, one pass over [..., V]
		return ScatterSum(grad, indices, Neg(dnll), false, true) // − onehot·dnll
	})
	m := StopGradient(ReduceAndKeep(lc, ReduceMax, -1))
	e = Exp(Sub(lc, m))
	z = ReduceAndKeep(e, ReduceSum, -1)
	lse := Squeeze(Add(Log(z), m), -1)
	nll := Sub(lse, Gather(lc, indices))
	nll = IdentityWithCustomGradient(nll, func(_, vjp *Node) *Node {
		dnll = vjp
		return vjp
	})
	mf := ConvertDType(mask, logits.DType())
	return Stack([]*Node{ReduceAllSum(Mul(nll, mf)), ReduceAllSum(mf)}, 0)
}

// MeanOfSums turns a [2] (Σ nll·mask, Σ mask) pair, or an [n, 2] stack of them, into the masked
// mean Σ nll·mask / max(Σ mask, 1).
func MeanOfSums(sums *Node) *Node {
	if sums.Rank() == 2 {
		sums = ReduceSum(sums, 0)
	}
	num := Reshape(Slice(sums, AxisRange(0, 1)))
	den := Reshape(Slice(sums, AxisRange(1, 2)))
	return Div(num, MaxScalar(den, 1.0))
}

// CausalLoss is the masked cross-entropy of a language model over a batch split into streams
// independent chains (fastops.Streams): logitsFn computes the logits of one part from its ids and
// attention mask (nil when in has 3 inputs); in = ids, targets, loss mask[, attention mask]. The
// parts' sums are added before dividing, so the result equals MaskedCrossEntropy over the whole
// batch.
func CausalLoss(streams int, in []*Node, logitsFn func(ids, mask *Node) *Node) *Node {
	sums := fastops.Streams(streams, in, func(p []*Node) *Node {
		var mask *Node
		if len(p) > 3 {
			mask = p[3]
		}
		return ExpandAxes(maskedCrossEntropySums(logitsFn(p[0], mask), p[1], p[2]), 0) // [1, 2]
	})
	return MeanOfSums(sums)
}

// maskedCrossEntropyDecomposed is MaskedCrossEntropy through LogSoftmax and a one-hot product,
// differentiated automatically (the reference the tests compare with).
func maskedCrossEntropyDecomposed(logits, targets, mask *Node) *Node {
	logp := LogSoftmax(logits, -1)
	oh := OneHot(ConvertDType(targets, dtypes.Int32), logits.Shape().Dim(-1), logits.DType())
	nll := Neg(ReduceSum(Mul(logp, oh), -1))
	m := ConvertDType(mask, logits.DType())
	return Div(ReduceAllSum(Mul(nll, m)), MaxScalar(ReduceAllSum(m), 1.0))
}
