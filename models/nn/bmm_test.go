package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/internal/fastops"
)

// TestBatchedMatmulsMatchEinsum checks (Grouped)MatmulT, (Grouped)Matmul and BatchTranspose,
// values and gradients with respect to both operands, against GoMLX's Einsum, its automatic
// gradient and its transpose (float64), on square and non-square trailing shapes, with and without
// groups.
func TestBatchedMatmulsMatchEinsum(t *testing.T) {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	randT := func(dims ...int) *tensors.Tensor {
		n := 1
		for _, d := range dims {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return tensors.FromFlatDataAndDimensions(v, dims...)
	}
	cases := []struct {
		name    string
		a, c    int
		m, k, n int
		groups  int
	}{
		{"square", 2, 3, 5, 5, 5, 1},
		{"wide", 1, 2, 3, 7, 4, 1},
		{"tall", 2, 1, 9, 2, 6, 1},
		{"grouped", 2, 2, 6, 3, 4, 2},
		{"grouped3", 1, 2, 9, 2, 5, 3},
		{"long-blocks", 1, 1, 1024, 2, 3, 2}, // blocks of 512 rows: the generic-transpose path
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, transposed := range []bool{true, false} {
				x := randT(tc.a, tc.c, tc.m, tc.k)
				var y *tensors.Tensor
				if transposed {
					y = randT(tc.a, tc.c, tc.n, tc.k)
				} else {
					y = randT(tc.a, tc.c, tc.k, tc.n)
				}
				w := randT(tc.a, tc.c, tc.m, tc.n) // weights of the scalar loss Σ w⊙z
				exec, err := NewExec(b, func(x, y, w *Node) []*Node {
					var z1, z2 *Node
					if transposed {
						z1, z2 = GroupedMatmulT(x, y, tc.groups), Einsum("acmk,acnk->acmn", x, y)
					} else {
						z1, z2 = GroupedMatmul(x, y, tc.groups), Einsum("acmk,ackn->acmn", x, y)
					}
					g1 := Gradient(ReduceAllSum(Mul(z1, w)), x, y)
					g2 := Gradient(ReduceAllSum(Mul(z2, w)), x, y)
					bt := fastops.BatchTranspose(x, tc.groups)
					return []*Node{z1, z2, g1[0], g2[0], g1[1], g2[1], bt, TransposeAllDims(x, 0, 1, 3, 2)}
				})
				if err != nil {
					t.Fatal(err)
				}
				outs, err := exec.Exec(x, y, w)
				if err != nil {
					t.Fatal(err)
				}
				for i, what := range []string{"value", "d/dx", "d/dy", "BatchTranspose"} {
					got := tensors.MustCopyFlatData[float64](outs[2*i])
					want := tensors.MustCopyFlatData[float64](outs[2*i+1])
					if !outs[2*i].Shape().Equal(outs[2*i+1].Shape()) {
						t.Fatalf("transposed=%v %s: shape %s, want %s", transposed, what, outs[2*i].Shape(), outs[2*i+1].Shape())
					}
					for j := range got {
						if math.Abs(got[j]-want[j]) > 1e-12*(1+math.Abs(want[j])) {
							t.Fatalf("transposed=%v %s[%d] = %g, want %g", transposed, what, j, got[j], want[j])
						}
					}
				}
			}
		})
	}
}
