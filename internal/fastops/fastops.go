// Package fastops holds graph-building helpers that keep to the operations the pure-Go GoMLX
// backend (compute v0.1.14) runs with dedicated loops. Its generic transpose walks an
// element-by-element iterator (about 7 ns per element on the benchmark machine); the fast ones
// are a [1, 0, 2]-style permutation that copies whole trailing rows and a tiled, multi-threaded
// 2-D transpose. The helpers here express the transposes the models need with those two.
//
// The 2-D transpose writes each 32×32 tile into 32 output rows; when a row is a multiple of
// 512 float32s (2 KiB) long those rows fall into the same few cache sets and it slows down to
// ~11 ns per element, so long rows are transposed in blocks of at most 256.
package fastops

import (
	. "github.com/gomlx/gomlx/core/graph"         //nolint:revive // graph code reads better dot-imported
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive
)

// BatchTranspose swaps the last two axes of x [A, C, G·L, N] → [A, C, N, G·L], where the third
// axis is made of groups (G) blocks of L rows: each block is transposed on its own and the
// blocks stay side by side, so the result is the transpose of each [G·L, N] matrix whatever the
// grouping (groups only chooses how the work is split).
//
// A block transpose is a [1, 0, 2] permutation of [A·C·G, L, N] (copies of whole N-rows)
// followed by a 2-D transpose of the [L, A·C·G·N] matrix; the blocks are put back side by side
// with a permutation that keeps the last axis (row copies again). When L is a multiple of 512
// the generic transpose is used instead (see the package comment).
func BatchTranspose(x *Node, groups int) *Node {
	if x.Rank() != 4 || groups < 1 || x.Shape().Dim(2)%groups != 0 {
		Panicf("BatchTranspose: want a rank-4 tensor with a third axis divisible into %d groups, got %s", groups, x.Shape())
	}
	a, c, m, n := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2), x.Shape().Dim(3)
	l := m / groups
	if l%512 == 0 {
		t := TransposeAllDims(Reshape(x, a, c, groups, l, n), 0, 1, 2, 4, 3) // [A, C, G, N, L]
		return Reshape(TransposeAllDims(t, 0, 1, 3, 2, 4), a, c, n, m)
	}
	g := a * c * groups
	t := TransposeAllDims(Reshape(x, g, l, n), 1, 0, 2) // [L, A·C·G, N]
	t = Transpose(Reshape(t, l, g*n), 0, 1)             // [A·C·G·N, L]
	if groups == 1 {
		return Reshape(t, a, c, n, m)
	}
	t = TransposeAllDims(Reshape(t, a, c, groups, n, l), 0, 1, 3, 2, 4) // [A, C, N, G, L]
	return Reshape(t, a, c, n, m)
}

// Transpose2D returns the transpose [N, M] of x [M, N], in blocks of 256 rows when M is a
// multiple of 512 (see the package comment).
func Transpose2D(x *Node) *Node {
	if x.Rank() != 2 {
		Panicf("Transpose2D: want a rank-2 tensor, got %s", x.Shape())
	}
	m, n := x.Shape().Dim(0), x.Shape().Dim(1)
	if m%512 != 0 {
		return Transpose(x, 0, 1)
	}
	return Reshape(BatchTranspose(Reshape(x, 1, 1, m, n), m/256), n, m)
}

// Streams runs f on n equal slices of the batch (leading) axis of every input and concatenates
// f's results along that axis: the same values as f(inputs) for any f that treats batch rows
// independently, computed as n independent chains of ops. The pure-Go backend runs each
// element-wise op on one core but runs independent ops side by side, so while one chain is in a
// single-threaded stretch (bias and residual adds, a LayerNorm) another can use the second core.
// n is reduced to the largest divisor of the batch size not above it; n ≤ 1 calls f once.
func Streams(n int, inputs []*Node, f func(part []*Node) *Node) *Node {
	if len(inputs) == 0 {
		Panicf("Streams: no inputs")
	}
	batch := inputs[0].Shape().Dim(0)
	for n > 1 && batch%n != 0 {
		n--
	}
	if n <= 1 {
		return f(inputs)
	}
	size := batch / n
	outs := make([]*Node, n)
	for i := range outs {
		part := make([]*Node, len(inputs))
		for j, in := range inputs {
			if in.Shape().Dim(0) != batch {
				Panicf("Streams: input %d has batch %d, input 0 has %d", j, in.Shape().Dim(0), batch)
			}
			part[j] = Slice(in, AxisRange(i*size, (i+1)*size))
		}
		outs[i] = f(part)
	}
	return Concatenate(outs, 0)
}
