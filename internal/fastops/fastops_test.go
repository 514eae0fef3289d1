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
