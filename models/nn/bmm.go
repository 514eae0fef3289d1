package nn

import (
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"         //nolint:revive // graph code reads better dot-imported
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive

	"github.com/singlora/singlora/internal/fastops"
)

// The attention products are batched matrix products over [A, C, M, K]-shaped tensors (batch,
// heads, sequence, head dim). GoMLX differentiates x·y into products that contract the
// sequence axis of both operands (dV = Pᵀ·dO, dK = dSᵀ·Q); the pure-Go backend only multiplies
// with the contraction on the lhs's last axis, so it first transposes both operands with its
// generic (element-by-element iterator) transpose: about 7 ns per element, 4.7M elements per
// BERT-base layer and step. MatmulT and Matmul below build that gradient themselves as
// fastops.BatchTranspose(·)·(·), which swaps the last two axes with the backend's two
// fast transposes (a tiled 2-D transpose and a row-copying [1,0,2] permutation). Only one,
// the attention-matrix-sized, operand is transposed. The gradient of the other operand keeps
// GoMLX's own form, which needs no transpose.

// MatmulT returns x·yᵀ over the trailing two axes, batched over the leading two:
// x [A, C, M, K], y [A, C, N, K] → [A, C, M, N] (attention scores q·kᵀ).
func MatmulT(x, y *Node) *Node { return GroupedMatmulT(x, y, 1) }

// GroupedMatmulT is MatmulT for x whose M axis holds groups consecutive blocks of M/groups rows
// (grouped-query attention: the query heads sharing one key/value head). The value is the same;
// the gradient transposes each block separately, which keeps the transposes' strides short.
func GroupedMatmulT(x, y *Node, groups int) *Node {
	checkBatched("MatmulT", x, y, 3, groups)
	var dz *Node
	yc := IdentityWithCustomGradient(y, func(_, v *Node) *Node {
		if dz == nil { // not reached through z: keep GoMLX's gradient
			return v
		}
		return batchedDot(fastops.BatchTranspose(dz, groups), x) // dy [N, K] = dzᵀ [N, M] · x [M, K]
	})
	z := Dot(x, yc).General([]int{3}, []int{0, 1}, []int{3}, []int{0, 1})
	return IdentityWithCustomGradient(z, func(_, v *Node) *Node {
		dz = v
		return v
	})
}

// Matmul returns x·y over the trailing two axes, batched over the leading two:
// x [A, C, M, K], y [A, C, K, N] → [A, C, M, N] (attention output p·v).
func Matmul(x, y *Node) *Node { return GroupedMatmul(x, y, 1) }

// GroupedMatmul is Matmul for x whose M axis holds groups consecutive blocks (see
// GroupedMatmulT).
func GroupedMatmul(x, y *Node, groups int) *Node {
	checkBatched("Matmul", x, y, 2, groups)
	var dz *Node
	yc := IdentityWithCustomGradient(y, func(_, v *Node) *Node {
		if dz == nil {
			return v
		}
		return batchedDot(fastops.BatchTranspose(x, groups), dz) // dy [K, N] = xᵀ [K, M] · dz [M, N]
	})
	z := batchedDot(x, yc)
	return IdentityWithCustomGradient(z, func(_, v *Node) *Node {
		dz = v
		return v
	})
}

// WithKeyBias returns q [B, C, M, d] and k [B, C, N, d] each with one more column, so that
// MatmulT(q', k') = MatmulT(q, k) + keyBias[b, n] for every query: q' gets a column of ones and
// k' a column holding keyBias [B, N] (broadcast over C). It replaces adding a [B, 1, 1, N]-shaped
// bias to the [B, C, M, N] scores, which the pure-Go backend runs through its generic broadcasting
// iterator (several times slower per element than these two concatenations and their gradient
// slices).
func WithKeyBias(q, k, keyBias *Node) (*Node, *Node) {
	b, c, m, n := q.Shape().Dim(0), q.Shape().Dim(1), q.Shape().Dim(2), k.Shape().Dim(2)
	ones := Ones(q.Graph(), shapes.Make(q.DType(), b, c, m, 1))
	kb := BroadcastToDims(Reshape(ConvertDType(keyBias, k.DType()), b, 1, n, 1), b, c, n, 1)
	return Concatenate([]*Node{q, ones}, -1), Concatenate([]*Node{k, kb}, -1)
}

// batchedDot is x·y for x [A, C, M, K], y [A, C, K, N], with GoMLX's own gradient.
func batchedDot(x, y *Node) *Node {
	return Dot(x, y).General([]int{3}, []int{0, 1}, []int{2}, []int{0, 1})
}

// checkBatched panics (as graph code does) unless x and y are rank 4 with equal batch axes and
// matching contracting axes (x's 3 with y's yAxis), and x's third axis divides into groups.
func checkBatched(name string, x, y *Node, yAxis, groups int) {
	if groups < 1 || (x.Rank() == 4 && x.Shape().Dim(2)%groups != 0) {
		Panicf("%s: cannot split %s into %d groups along axis 2", name, x.Shape(), groups)
	}
	if x.Rank() != 4 || y.Rank() != 4 {
		Panicf("%s: want rank-4 operands, got %s and %s", name, x.Shape(), y.Shape())
	}
	if x.Shape().Dim(0) != y.Shape().Dim(0) || x.Shape().Dim(1) != y.Shape().Dim(1) || x.Shape().Dim(3) != y.Shape().Dim(yAxis) {
		Panicf("%s: shapes %s and %s do not match", name, x.Shape(), y.Shape())
	}
}
