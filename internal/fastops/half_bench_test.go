package fastops

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/dtypes/bfloat16"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/backend"
)

// BenchmarkHalfProduct times y = x·Wᵀ and its input gradient (one frozen layer's share of a
// training step) for a bf16 W in both modes against a float32 W, on Llama-3.2-1B / LLaMA-7B
// projection shapes at several row counts N (tokens per step):
//
//	go test ./internal/fastops -run NONE -bench HalfProduct -benchtime 5x
func BenchmarkHalfProduct(b *testing.B) {
	be, err := backend.Get()
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, shape := range [][2]int{{2048, 8192}, {8192, 2048}, {4096, 11008}} {
		in, out := shape[0], shape[1]
		w32 := make([]float32, in*out)
		for i := range w32 {
			w32[i] = float32(rng.NormFloat64() * 0.02)
		}
		wf := tensors.FromFlatDataAndDimensions(w32, out, in)
		wh := tensors.FromFlatDataAndDimensions(bfloat16.FromFloat32s(w32...), out, in)
		for _, n := range []int{1, 32, 128, 512} {
			x := make([]float32, n*in)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			xt := tensors.FromFlatDataAndDimensions(x, n, in)
			for _, v := range []struct {
				name string
				w    *tensors.Tensor
				mode HalfMode
			}{{"f32", wf, HalfCast}, {"bf16-cast", wh, HalfCast}, {"bf16-widen", wh, HalfWiden}} {
				b.Run(fmt.Sprintf("%dx%d/N=%d/%s", in, out, n, v.name), func(b *testing.B) {
					exec, err := NewExec(be, func(x, w *Node) *Node {
						y := ProductMode(x, w, 1, v.mode)
						return Gradient(ReduceAllSum(Mul(y, y)), x)[0]
					})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := exec.Exec(xt, v.w); err != nil { // compile
						b.Fatal(err)
					}
					b.ResetTimer()
					for range b.N {
						out, err := exec.Exec(xt, v.w)
						if err != nil {
							b.Fatal(err)
						}
						out[0].FinalizeAll()
					}
					flop := 4 * float64(n) * float64(in) * float64(out)
					b.ReportMetric(flop/b.Elapsed().Seconds()*float64(b.N)/1e9, "GFLOP/s")
				})
			}
		}
	}
}
