package peft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/nn"
)

// TestTrainableDenseGradients checks dense's trainable-weight path (plain product + weightGrad)
// against GoMLX's nn.Dense and its fused gradient, in float64: the output and the gradients with
// respect to the input, the weight and the bias, for both weight layouts, rank-2 and rank-3
// inputs, and N = 1024 rows (the blocked 2-D transpose) as well as a small N.
func TestTrainableDenseGradients(t *testing.T) {
	b := testBackend(t)
	rng := rand.New(rand.NewPCG(9, 10))
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
	for _, layout := range []compute.DenseLayout{compute.DenseLayoutOutputsInput, compute.DenseLayoutInputOutputs} {
		for _, xDims := range [][]int{{6, 5}, {2, 3, 5}, {1024, 5}, {4, 256, 5}} {
			t.Run(fmt.Sprintf("%v/%v", layout, xDims), func(t *testing.T) {
				const in, out = 5, 7
				wDims := []int{out, in}
				if layout == compute.DenseLayoutInputOutputs {
					wDims = []int{in, out}
				}
				yDims := append(append([]int{}, xDims[:len(xDims)-1]...), out)
				x, w, bias, r := randT(xDims...), randT(wDims...), randT(out), randT(yDims...)
				exec, err := NewExec(b, func(x, w, bias, r *Node) []*Node {
					y1 := dense(x, w, bias, layout, denseTrainable)
					y2 := nn.Dense(x, w, bias, layout)
					g1 := Gradient(ReduceAllSum(Mul(y1, r)), x, w, bias)
					g2 := Gradient(ReduceAllSum(Mul(y2, r)), x, w, bias)
					return []*Node{y1, y2, g1[0], g2[0], g1[1], g2[1], g1[2], g2[2]}
				})
				if err != nil {
					t.Fatal(err)
				}
				outs, err := exec.Exec(x, w, bias, r)
				if err != nil {
					t.Fatal(err)
				}
				for i, what := range []string{"output", "d/dx", "d/dweight", "d/dbias"} {
					got, want := tensors.MustCopyFlatData[float64](outs[2*i]), tensors.MustCopyFlatData[float64](outs[2*i+1])
					if !outs[2*i].Shape().Equal(outs[2*i+1].Shape()) {
						t.Fatalf("%s: shape %s, want %s", what, outs[2*i].Shape(), outs[2*i+1].Shape())
					}
					for j := range want {
						if math.Abs(got[j]-want[j]) > 1e-10*math.Max(1, math.Abs(want[j])) {
							t.Fatalf("%s[%d] = %.15g, nn.Dense %.15g", what, j, got[j], want[j])
						}
					}
				}
			})
		}
	}
}
