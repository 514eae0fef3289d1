package fastops

import (
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/backend"
)

// TestTransposesMatchGeneric checks BatchTranspose (with and without groups, short and
// 512-multiple blocks) and Transpose2D (plain and blocked) against GoMLX's TransposeAllDims,
// element for element.
func TestTransposesMatchGeneric(t *testing.T) {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	iota := func(dims ...int) *tensors.Tensor {
		n := 1
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i)
		}
		return tensors.FromFlatDataAndDimensions(v, dims...)
	}
	check := func(name string, in *tensors.Tensor, fast, ref func(x *Node) *Node) {
		t.Helper()
		exec, err := NewExec(b, func(x *Node) []*Node { return []*Node{fast(x), ref(x)} })
		if err != nil {
			t.Fatal(err)
		}
		outs, err := exec.Exec(in)
		if err != nil {
			t.Fatal(err)
		}
		if !outs[0].Shape().Equal(outs[1].Shape()) {
			t.Fatalf("%s: shape %s, want %s", name, outs[0].Shape(), outs[1].Shape())
		}
		got, want := tensors.MustCopyFlatData[float32](outs[0]), tensors.MustCopyFlatData[float32](outs[1])
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: element %d = %g, want %g", name, i, got[i], want[i])
			}
		}
	}
	swap := func(x *Node) *Node { return TransposeAllDims(x, 0, 1, 3, 2) }
	for _, c := range []struct {
		dims   []int
		groups int
	}{
		{[]int{2, 3, 5, 7}, 1}, {[]int{1, 2, 6, 4}, 3}, {[]int{1, 1, 1024, 3}, 2}, {[]int{2, 1, 16, 8}, 4},
	} {
		check("BatchTranspose", iota(c.dims...), func(x *Node) *Node { return BatchTranspose(x, c.groups) }, swap)
	}
	for _, dims := range [][]int{{5, 3}, {512, 7}, {1024, 9}} {
		check("Transpose2D", iota(dims...), Transpose2D, func(x *Node) *Node { return Transpose(x, 0, 1) })
	}
}

// TestStreamsMatchesOnePass checks that Streams gives the same values and gradients (float64,
// to 1e-12) as one call over the whole batch, for a row-wise function of two batched inputs and
// a shared weight, with n dividing the batch, not dividing it (reduced to a divisor), and 1.
func TestStreamsMatchesOnePass(t *testing.T) {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	xs := make([]float64, 6*4)
	for i := range xs {
		xs[i] = float64(i%7)/3 - 1
	}
	ms := make([]float64, 6*3)
	for i := range ms {
		ms[i] = float64(i%2) + 0.5
	}
	ws := []float64{0.5, -1, 0.25, 2, 1, 0.5, -0.5, 1.5, 0.1, 0.2, 0.3, 0.4}
	for _, n := range []int{1, 2, 3, 4} {
		exec, err := NewExec(b, func(x, m, w *Node) []*Node {
			rowwise := func(in []*Node) *Node { // tanh(x·W)·m + x[:, :3]
				y := Mul(Tanh(Dot(in[0], w).Product()), in[1])
				return Add(y, Slice(in[0], AxisRange(), AxisRange(0, 3)))
			}
			split := Streams(n, []*Node{x, m}, rowwise)
			whole := rowwise([]*Node{x, m})
			g1 := Gradient(ReduceAllSum(Square(split)), x, w)
			g2 := Gradient(ReduceAllSum(Square(whole)), x, w)
			return []*Node{split, whole, g1[0], g2[0], g1[1], g2[1]}
		})
		if err != nil {
			t.Fatal(err)
		}
		outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(xs, 6, 4), tensors.FromFlatDataAndDimensions(ms, 6, 3),
			tensors.FromFlatDataAndDimensions(ws, 4, 3))
		if err != nil {
			t.Fatal(err)
		}
		for i, what := range []string{"value", "d/dx", "d/dw"} {
			got, want := tensors.MustCopyFlatData[float64](outs[2*i]), tensors.MustCopyFlatData[float64](outs[2*i+1])
			if len(got) != len(want) {
				t.Fatalf("n=%d %s: %d values, want %d", n, what, len(got), len(want))
			}
			for j := range want {
				if d := got[j] - want[j]; d > 1e-12 || d < -1e-12 {
					t.Fatalf("n=%d %s[%d] = %.15g, one pass %.15g", n, what, j, got[j], want[j])
				}
			}
		}
	}
}
