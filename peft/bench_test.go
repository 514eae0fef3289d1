package peft

import (
	"fmt"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// BenchmarkLayer times one adapted linear layer, forward + backward (gradients w.r.t. the
// adapter and the layer input, as inside a network; the frozen weight gets none), for SingLoRA,
// LoRA and the naive SingLoRA that builds ΔW, at batch×seq = 1024.
//
//	GOEXPERIMENT=simd go test ./peft -run '^$' -bench Layer -benchtime 5x
//
// It reports ms/op and GFLOP/s (useful FLOPs: 4·N·in·out for the base forward and input gradient
// plus 6·N·r·(in+out) for the adapter), to compare with the ~220 GFLOP/s two-core AVX-512 peak.
func BenchmarkLayer(b *testing.B) {
	const n = 1024
	for _, sz := range []struct{ in, out, r int }{{768, 768, 8}, {768, 3072, 8}, {4096, 4096, 8}, {4096, 11008, 16}} {
		for _, variant := range []string{"singlora", "lora", "singlora-naive"} {
			b.Run(fmt.Sprintf("%dx%d_r%d/%s", sz.in, sz.out, sz.r, variant), func(b *testing.B) {
				method := SingLoRA
				if variant == "lora" {
					method = LoRA
				}
				cfg := DefaultConfig(method)
				cfg.Rank, cfg.Targets = sz.r, []string{"lin"}
				rng := rand.New(rand.NewPCG(1, 2))
				w := make([]float32, sz.in*sz.out)
				for i := range w {
					w[i] = float32(rng.NormFloat64() * 0.02)
				}
				store := model.NewStore()
				store.VariableWithValue("/lin/weight", tensors.FromFlatDataAndDimensions(w, sz.out, sz.in))
				inj, err := Inject(cfg, []LinearSpec{{Path: "lin", In: sz.in, Out: sz.out}})
				if err != nil {
					b.Fatal(err)
				}
				if err := inj.Attach(store); err != nil {
					b.Fatal(err)
				}
				exec, err := model.NewExec(testBackend(b), store, func(scope *model.Scope, x *Node) []*Node {
					g := x.Graph()
					scope.SetTraining(g, true)
					var y *Node
					if variant == "singlora-naive" {
						y = NaiveSingLoRALinear(inj, scope.In("lin"), x)
					} else {
						y = Linear(inj, scope.In("lin"), x)
					}
					loss := ReduceAllSum(y)
					wrt := []*Node{x}
					for v := range store.IterVariables() {
						if v.Trainable && IsAdapterVariable(v.Path()) {
							wrt = append(wrt, v.NodeValue(g))
						}
					}
					// The loss is an output too, so the backend cannot drop the base forward matmul.
					return append([]*Node{loss}, Gradient(loss, wrt...)...)
				})
				if err != nil {
					b.Fatal(err)
				}
				xs := make([]float32, n*sz.in)
				for i := range xs {
					xs[i] = float32(rng.NormFloat64())
				}
				x := tensors.FromFlatDataAndDimensions(xs, n, sz.in)
				for i := 0; i < 2; i++ { // compile + warm up
					if _, err := exec.Call(x); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					outs, err := exec.Call(x)
					if err != nil {
						b.Fatal(err)
					}
					for _, o := range outs {
						o.FinalizeAll()
					}
				}
				b.StopTimer()
				flops := 4*float64(n)*float64(sz.in)*float64(sz.out) + 6*float64(n)*float64(sz.r)*float64(sz.in+sz.out)
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(sec*1e3, "ms/op")
				b.ReportMetric(flops/sec/1e9, "GFLOP/s")
			})
		}
	}
}
