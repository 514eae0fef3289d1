package nn

import (
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/backend"
)

// TestGeluErfFusedMatchesFormula checks the fused exact GELU and its gradient against the
// erf formula built from primitive ops, in float32 and float64.
func TestGeluErfFusedMatchesFormula(t *testing.T) {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	for _, f64 := range []bool{false, true} {
		xs := make([]float64, 301)
		for i := range xs {
			xs[i] = -7.5 + 0.05*float64(i)
		}
		var in *tensors.Tensor
		if f64 {
			in = tensors.FromValue(xs)
		} else {
			x32 := make([]float32, len(xs))
			for i, v := range xs {
				x32[i] = float32(v)
			}
			in = tensors.FromValue(x32)
		}
		exec, err := NewExec(b, func(x *Node) []*Node {
			y1, y2 := GeluErf(x), geluErfDecomposed(x)
			g1 := Gradient(ReduceAllSum(y1), x)[0]
			g2 := Gradient(ReduceAllSum(y2), x)[0]
			return []*Node{ConvertDType(y1, dtypes.Float64), ConvertDType(y2, dtypes.Float64), ConvertDType(g1, dtypes.Float64), ConvertDType(g2, dtypes.Float64)}
		})
		if err != nil {
			t.Fatal(err)
		}
		outs, err := exec.Exec(in)
		if err != nil {
			t.Fatal(err)
		}
		tol := 2e-6
		if f64 {
			tol = 1e-12
		}
		vals := make([][]float64, 4)
		for i, o := range outs {
			vals[i] = tensors.MustCopyFlatData[float64](o)
		}
		for i := range xs {
			if d := math.Abs(vals[0][i] - vals[1][i]); d > tol {
				t.Errorf("f64=%v x=%g: gelu %g vs formula %g", f64, xs[i], vals[0][i], vals[1][i])
			}
			if d := math.Abs(vals[2][i] - vals[3][i]); d > tol {
				t.Errorf("f64=%v x=%g: gelu' %g vs formula %g", f64, xs[i], vals[2][i], vals[3][i])
			}
		}
	}
}
