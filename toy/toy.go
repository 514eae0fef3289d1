// Package toy is the paper's §5 synthetic attention task: frozen query/key projections Wq, Wk
// (d×d) must be adapted so that the attention scores (x·Wqᵀ)(x·Wkᵀ)ᵀ/√d match those of targets
// Wq* = Wq + Δq and Wk* = Wk + Δk, Δ random, low-rank and not symmetric. SingLoRA's AAᵀ is
// symmetric, yet the product (Aq·Aqᵀ)(Ak·Akᵀ) that the scores see need not be.
package toy

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// Config of one toy run.
type Config struct {
	Method     peft.Method
	Dim        int     // d (the paper: 128)
	Rank       int     // adapter rank (SingLoRA at 2r has LoRA r's parameter count)
	TargetRank int     // rank of the target perturbations
	Steps      int     // optimizer steps
	LR         float64 // AdamW learning rate (the paper: 1e-4)
	Batch, Seq int
	Seed       uint64
}

func randF32(rng *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64() * scale)
	}
	return out
}

// Run trains the adapters and returns the loss (mean squared score error) at every step. It steps a
// train.Stepper itself rather than a train.Runner: its inputs are drawn fresh at every step from
// the seed, there is no data set to order or evaluate, and it keeps no run folder (the toy
// command writes each run's metrics.jsonl).
func Run(backend compute.Backend, c Config) ([]float64, error) {
	d := c.Dim
	rng := rand.New(rand.NewPCG(c.Seed, 99))
	store := model.NewStore()
	wq := randF32(rng, d*d, 1/math.Sqrt(float64(d)))
	wk := randF32(rng, d*d, 1/math.Sqrt(float64(d)))
	store.VariableWithValue("/attn/q/weight", tensors.FromFlatDataAndDimensions(wq, d, d))
	store.VariableWithValue("/attn/k/weight", tensors.FromFlatDataAndDimensions(wk, d, d))
	target := func(w []float32) []float32 {
		k := c.TargetRank
		u, v := randF32(rng, d*k, 1), randF32(rng, d*k, 1)
		out := append([]float32(nil), w...)
		for o := 0; o < d; o++ {
			for i := 0; i < d; i++ {
				var acc float32
				for j := 0; j < k; j++ {
					acc += u[o*k+j] * v[i*k+j]
				}
				out[o*d+i] += acc / float32(math.Sqrt(float64(d*k)))
			}
		}
		return out
	}
	wqT, wkT := target(wq), target(wk)
	cfg := peft.DefaultConfig(c.Method)
	cfg.Rank, cfg.Alpha, cfg.Seed = c.Rank, float64(c.Rank), c.Seed
	cfg.RampSteps = int64(c.Steps / 100) // T = 1% of the steps
	inj, err := peft.Inject(cfg, []peft.LinearSpec{{Path: "attn.q", In: d, Out: d}, {Path: "attn.k", In: d, Out: d}})
	if err != nil {
		return nil, err
	}
	if err := inj.Attach(store); err != nil {
		return nil, err
	}
	scores := func(q, k *Node) *Node {
		return DivScalar(Dot(q, k).General([]int{2}, []int{0}, []int{2}, []int{0}), math.Sqrt(float64(d)))
	}
	loss := func(scope *model.Scope, xs []*Node) *Node {
		x := xs[0]
		g := x.Graph()
		attn := scope.In("attn")
		q := peft.Linear(inj, attn.In("q"), x)
		k := peft.Linear(inj, attn.In("k"), x)
		qT := Dot(x, Const(g, tensors.FromFlatDataAndDimensions(wqT, d, d))).General([]int{2}, nil, []int{1}, nil)
		kT := Dot(x, Const(g, tensors.FromFlatDataAndDimensions(wkT, d, d))).General([]int{2}, nil, []int{1}, nil)
		return ReduceAllMean(Square(Sub(scores(q, k), scores(qT, kT))))
	}
	opt := optim.AdamW{LR: c.LR, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, WeightDecay: 0, GroupOf: inj.OptimizerGroups(0)}
	st, err := train.NewStepper(backend, store, loss, opt, 1)
	if err != nil {
		return nil, err
	}
	losses := make([]float64, 0, c.Steps)
	for s := 0; s < c.Steps; s++ {
		x := tensors.FromFlatDataAndDimensions(randF32(rng, c.Batch*c.Seq*d, 1), c.Batch, c.Seq, d)
		res, err := st.Step([]*tensors.Tensor{x})
		if err != nil {
			return losses, fmt.Errorf("step %d: %w", s, err)
		}
		losses = append(losses, res.Loss)
	}
	return losses, nil
}
