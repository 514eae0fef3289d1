package fastops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/backend"
)

// TestHalfProductMatchesFloat64 checks Product with a bf16 and an f16 weight, in both layouts and
// both modes, against a float64 reference: the value y and the input gradient dx of Σ y⊙c. The
// reference rounds what the mode rounds (cast: x and dy = c to the weight's dtype; widen:
// nothing) and sums in float64, so the only difference left is float32 accumulation.
func TestHalfProductMatchesFloat64(t *testing.T) {
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	const b, l, k, n = 2, 3, 37, 19
	rng := rand.New(rand.NewPCG(1, 2))
	randn := func(m int) []float32 {
		v := make([]float32, m)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	for _, dt := range []dtypes.DType{dtypes.BFloat16, dtypes.Float16} {
		round := func(f float32) float64 {
			if dt == dtypes.BFloat16 {
				return float64(bfloat16.FromFloat32(f).Float32())
			}
			return float64(float16.FromFloat32(f).Float32())
		}
		for _, wAxis := range []int{0, 1} {
			for _, mode := range []HalfMode{HalfCast, HalfWiden} {
				name := fmt.Sprintf("%s/wAxis=%d/%s", dt, wAxis, mode)
				x, c, w32 := randn(b*l*k), randn(b*l*n), randn(k*n)
				wdims := []int{n, k} // w[o, i] at o·k+i
				if wAxis == 0 {
					wdims = []int{k, n} // w[i, o] at i·n+o
				}
				wAt := func(o, i int) float64 {
					if wAxis == 0 {
						return round(w32[i*n+o])
					}
					return round(w32[o*k+i])
				}
				var wt *tensors.Tensor
				if dt == dtypes.BFloat16 {
					wt = tensors.FromFlatDataAndDimensions(bfloat16.FromFloat32s(w32...), wdims...)
				} else {
					wt = tensors.FromFlatDataAndDimensions(float16.FromFloat32s(w32...), wdims...)
				}
				exec, err := NewExec(be, func(x, w, c *Node) []*Node {
					y := ProductMode(x, w, wAxis, mode)
					loss := ReduceAllSum(Mul(y, c))
					return []*Node{y, Gradient(loss, x)[0]}
				})
				if err != nil {
					t.Fatal(err)
				}
				outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(x, b, l, k), wt, tensors.FromFlatDataAndDimensions(c, b, l, n))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if outs[0].DType() != dtypes.Float32 || outs[1].DType() != dtypes.Float32 {
					t.Fatalf("%s: y %s, dx %s, want float32", name, outs[0].Shape(), outs[1].Shape())
				}
				y, dx := tensors.MustCopyFlatData[float32](outs[0]), tensors.MustCopyFlatData[float32](outs[1])
				in := func(f float32) float64 { // what the mode feeds the product
					if mode == HalfCast {
						return round(f)
					}
					return float64(f)
				}
				worst := 0.0
				for r := 0; r < b*l; r++ {
					for o := 0; o < n; o++ {
						want, mag := 0.0, 0.0
						for i := 0; i < k; i++ {
							p := in(x[r*k+i]) * wAt(o, i)
							want, mag = want+p, mag+math.Abs(p)
						}
						worst = max(worst, math.Abs(float64(y[r*n+o])-want)/mag)
					}
					for i := 0; i < k; i++ {
						want, mag := 0.0, 0.0
						for o := 0; o < n; o++ {
							p := in(c[r*n+o]) * wAt(o, i)
							want, mag = want+p, mag+math.Abs(p)
						}
						worst = max(worst, math.Abs(float64(dx[r*k+i])-want)/mag)
					}
				}
				if worst > 1e-6 {
					t.Errorf("%s: worst error relative to Σ|terms| %.3g, want ≤ 1e-6 (float32 accumulation)", name, worst)
				}
			}
		}
	}
}

func TestHalfAutoChoosesByRows(t *testing.T) {
	const mlp, head = 11008 * 4096, 128256 * 2048 // LLaMA-7B's MLP projection, Llama-3.2-1B's tied head
	for _, tc := range []struct {
		mode           HalfMode
		rows, elements int
		want           HalfMode
	}{
		{HalfAuto, 1, mlp, HalfCast}, {HalfAuto, WidenRows - 1, mlp, HalfCast}, {HalfAuto, WidenRows, mlp, HalfWiden},
		{HalfAuto, 4096, mlp, HalfWiden}, {HalfAuto, 4096, head, HalfCast}, {HalfAuto, 4096, WidenMaxElements, HalfWiden},
		{HalfCast, 4096, mlp, HalfCast}, {HalfWiden, 1, head, HalfWiden},
	} {
		if got := tc.mode.For(tc.rows, tc.elements); got != tc.want {
			t.Errorf("%s.For(%d rows, %d entries) = %s, want %s", tc.mode, tc.rows, tc.elements, got, tc.want)
		}
	}
}
