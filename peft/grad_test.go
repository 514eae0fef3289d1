package peft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

var shapeCases = []layerCase{
	{"square", 6, 6, 3, OutIn},
	{"in>out", 7, 4, 2, OutIn},
	{"out>in", 4, 7, 2, OutIn},
	{"r=1", 5, 6, 1, OutIn},
	{"r=max", 5, 4, 5, OutIn},
	{"conv1d-in>out", 7, 4, 3, InOut},
	{"conv1d-out>in", 3, 6, 2, InOut},
}

// graphLossAndGrads evaluates the test loss and its gradient w.r.t. every adapter tensor.
func graphLossAndGrads(t *testing.T, store *model.Store, inj *Injection, names []string, x, r []float64, n int, h *hostLayer, rank3 bool) (float64, map[string][]float64) {
	t.Helper()
	exec, err := model.NewExec(testBackend(t), store, func(scope *model.Scope, xs []*Node) []*Node {
		in := xs[0]
		if rank3 { // [n, in] as [1, n, in]: a batch and a sequence axis, as in the models
			in = Reshape(in, 1, n, h.spec.In)
		}
		y := Linear(inj, scope.In("blk").In("lin"), in)
		if rank3 {
			y = Reshape(y, n, h.spec.Out)
		}
		loss := Add(ReduceAllSum(Mul(y, xs[1])), MulScalar(ReduceAllSum(Square(y)), 0.05))
		g := loss.Graph()
		var wrt []*Node
		for _, nm := range names {
			wrt = append(wrt, store.GetVariable("/blk/lin/"+nm).NodeValue(g))
		}
		return append([]*Node{loss}, Gradient(loss, wrt...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := exec.Call(tensors.FromFlatDataAndDimensions(x, n, h.spec.In), tensors.FromFlatDataAndDimensions(r, n, h.spec.Out))
	if err != nil {
		t.Fatal(err)
	}
	grads := map[string][]float64{}
	for i, nm := range names {
		grads[nm] = tensors.MustCopyFlatData[float64](outs[i+1])
	}
	return tensors.ToScalar[float64](outs[0]), grads
}

// TestGradientsMatchFiniteDifferences checks every method's autodiff gradients, in every shape
// case, against float64 central finite differences of the independent host implementation.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, m := range []Method{SingLoRA, LoRA, LoRAPlus, DoRA} {
		for _, lc := range shapeCases {
			t.Run(fmt.Sprintf("%s/%s", m, lc.name), func(t *testing.T) {
				cfg := DefaultConfig(m)
				cfg.Rank, cfg.Alpha, cfg.RampSteps = lc.rank, 3, 8
				cfg.Targets = []string{"lin"}
				store, inj, h := newTestModel(t, cfg, lc, 3, 11)
				if m == SingLoRA && h.u != 3.0/8 {
					t.Fatalf("u = %v, want 0.375", h.u)
				}
				const n = 5
				rng := rand.New(rand.NewPCG(3, 4))
				x, r := randSlice(rng, n*lc.in, 1), randSlice(rng, n*lc.out, 1)
				var names []string
				for _, at := range AdapterTensors(m, h.spec, cfg.Rank) {
					names = append(names, at.Name)
				}
				loss, grads := graphLossAndGrads(t, store, inj, names, x, r, n, h, false)
				loss3, grads3 := graphLossAndGrads(t, store, inj, names, x, r, n, h, true)
				if math.Abs(loss3-loss) > 1e-12*math.Max(1, math.Abs(loss)) {
					t.Fatalf("rank-3 input: loss %.15g, rank-2 %.15g", loss3, loss)
				}
				for nm, g := range grads3 {
					for i := range g {
						if math.Abs(g[i]-grads[nm][i]) > 1e-12*math.Max(1, math.Abs(grads[nm][i])) {
							t.Fatalf("rank-3 input: %s[%d] = %.15g, rank-2 %.15g", nm, i, g[i], grads[nm][i])
						}
					}
				}
				if m == DoRA {
					// DoRA's norm is a constant in backward: differentiate with it held at its current value.
					w, _ := h.effectiveWeight()
					h.doraN = h.rowNorms(w)
				}
				want := lossOf(h.forward(x, n), r)
				if math.Abs(loss-want) > 1e-10*math.Max(1, math.Abs(want)) {
					t.Fatalf("forward loss %.15g, host reference %.15g", loss, want)
				}
				const eps = 1e-6
				for _, nm := range names {
					vals := h.t[nm]
					got := grads[nm]
					if len(got) != len(vals) {
						t.Fatalf("%s: gradient has %d entries, want %d", nm, len(got), len(vals))
					}
					nonzero := 0
					for i := range vals {
						orig := vals[i]
						vals[i] = orig + eps
						lp := lossOf(h.forward(x, n), r)
						vals[i] = orig - eps
						lm := lossOf(h.forward(x, n), r)
						vals[i] = orig
						fd := (lp - lm) / (2 * eps)
						if math.Abs(got[i]-fd) > 1e-6*math.Max(1, math.Abs(fd)) {
							t.Errorf("%s[%d]: autodiff %.10g, finite differences %.10g", nm, i, got[i], fd)
						}
						if math.Abs(fd) > 1e-8 {
							nonzero++
						}
					}
					if nonzero == 0 {
						t.Errorf("%s: all finite-difference gradients are zero: the test checks nothing", nm)
					}
				}
			})
		}
	}
}
