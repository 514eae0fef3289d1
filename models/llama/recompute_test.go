package llama

import (
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
)

// TestRecomputeBlocksSameGradients: with RecomputeBlocks the training graph recomputes each
// decoder layer in the backward; the loss and every adapter gradient must equal the plain
// graph's (the same operations on the same values: equal to float32 rounding), for a float32 and
// a bf16 base.
func TestRecomputeBlocksSameGradients(t *testing.T) {
	for _, base := range []hf.BaseDType{hf.BaseF32, hf.BaseBF16} {
		t.Run(string(base), func(t *testing.T) {
			m := tinyConfig()
			dir, _ := writeTiny(t, m, "F32", 1, 8)
			store := model.NewStore()
			c, err := LoadBase(dir, store, base)
			if err != nil {
				t.Fatal(err)
			}
			cfg := peft.DefaultConfig(peft.SingLoRA)
			cfg.Targets = []string{"all-linear"}
			cfg.Seed = 4
			inj, err := peft.Inject(cfg, Linears(c))
			if err != nil {
				t.Fatal(err)
			}
			if err := inj.Attach(store); err != nil {
				t.Fatal(err)
			}
			vars := optim.TrainableVariables(store)
			ids, targets, mask, err := lm.CausalBatch([][]int{{1, 5, 9}, {1, 8}}, [][]int{{33, 60, 7, 2}, {17, 3, 2}}, 8, 0)
			if err != nil {
				t.Fatal(err)
			}
			run := func(recompute bool) []float32 {
				c.RecomputeBlocks = recompute
				exec, err := model.NewExec(be(t), store, func(scope *model.Scope, in []*Node) []*Node {
					g := in[0].Graph()
					scope.SetTraining(g, true)
					loss := LossFn(c, inj)(scope, in)
					nodes := make([]*Node, len(vars))
					for i, v := range vars {
						nodes[i] = v.NodeValue(g)
					}
					out := []*Node{loss}
					for _, gr := range Gradient(loss, nodes...) {
						out = append(out, Reshape(gr, -1))
					}
					return []*Node{Concatenate(out[1:], 0), ExpandAxes(out[0], 0)}
				})
				if err != nil {
					t.Fatal(err)
				}
				outs, err := exec.Call(ids, targets, mask)
				if err != nil {
					t.Fatal(err)
				}
				return append(tensors.MustCopyFlatData[float32](outs[1]), tensors.MustCopyFlatData[float32](outs[0])...) // loss first
			}
			plain, recomputed := run(false), run(true)
			worst, scale := 0.0, 0.0
			for i := range plain {
				worst = max(worst, float64(abs32(plain[i]-recomputed[i])))
				scale = max(scale, float64(abs32(plain[i])))
			}
			t.Logf("loss %.6f / %.6f, %d gradient entries, max |Δ| %.3g, max |value| %.3g", plain[0], recomputed[0], len(plain)-1, worst, scale)
			if worst > 1e-5*scale || scale == 0 {
				t.Fatalf("recomputed gradients differ: max |Δ| %.3g, max |g| %.3g", worst, scale)
			}
		})
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
