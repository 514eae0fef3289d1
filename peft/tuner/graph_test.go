package tuner_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/peft/tuner"
)

// TestThinMatmulMatchesContractLast checks the fast path against its decomposed reference, in
// float64: ThinMatmul(x, M) and ContractLast(x, M) (GoMLX's own gradient) give the same output and
// the same gradients for x and M, with the rank-sized side first (k ≤ m) or second (k > m), for
// rank-2 and rank-3 inputs.
func TestThinMatmulMatchesContractLast(t *testing.T) {
	be, err := backend.Get()
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
	for _, c := range []struct {
		lead []int
		k, m int
	}{{[]int{5}, 2, 7}, {[]int{5}, 7, 2}, {[]int{2, 3}, 3, 8}, {[]int{2, 3}, 8, 3}, {[]int{4}, 3, 3}} {
		t.Run(fmt.Sprintf("%v/k%d/m%d", c.lead, c.k, c.m), func(t *testing.T) {
			x := randT(append(append([]int{}, c.lead...), c.m)...)
			mat := randT(c.k, c.m)
			r := randT(append(append([]int{}, c.lead...), c.k)...)
			exec, err := NewExec(be, func(x, mat, r *Node) []*Node {
				y1, y2 := tuner.ThinMatmul(x, mat), tuner.ContractLast(x, mat)
				g1 := Gradient(ReduceAllSum(Mul(y1, r)), x, mat)
				g2 := Gradient(ReduceAllSum(Mul(y2, r)), x, mat)
				return []*Node{y1, y2, g1[0], g2[0], g1[1], g2[1]}
			})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := exec.Exec(x, mat, r)
			if err != nil {
				t.Fatal(err)
			}
			for i, what := range []string{"output", "d/dx", "d/dM"} {
				if !outs[2*i].Shape().Equal(outs[2*i+1].Shape()) {
					t.Fatalf("%s: shape %s, reference %s", what, outs[2*i].Shape(), outs[2*i+1].Shape())
				}
				got, want := tensors.MustCopyFlatData[float64](outs[2*i]), tensors.MustCopyFlatData[float64](outs[2*i+1])
				for j := range want {
					if math.Abs(got[j]-want[j]) > 1e-12*math.Max(1, math.Abs(want[j])) {
						t.Fatalf("%s[%d] = %.15g, reference %.15g", what, j, got[j], want[j])
					}
				}
			}
		})
	}
}
