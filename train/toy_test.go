package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
)

// AttentionToy is the paper's §5 synthetic task at small scale: frozen Wq, Wk (d×d) must be
// adapted so that the attention scores (x·Wqᵀ)(x·Wkᵀ)ᵀ/√d match those of target matrices
// Wq* = Wq + Δq, Wk* = Wk + Δk with random low-rank Δ. It returns the initial and final MSE.
func AttentionToy(t testing.TB, method peft.Method, d, rank, steps int, lr float64, seed uint64) (initial, final float64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	store := model.NewStore()
	wq := randF32(rng, d*d, 1/math.Sqrt(float64(d)))
	wk := randF32(rng, d*d, 1/math.Sqrt(float64(d)))
	store.VariableWithValue("/attn/q/weight", tensors.FromFlatDataAndDimensions(wq, d, d))
	store.VariableWithValue("/attn/k/weight", tensors.FromFlatDataAndDimensions(wk, d, d))
	// Targets: W* = W + U·Vᵀ/√d with rank-2 random U, V (not symmetric).
	target := func(w []float32) []float32 {
		u, v := randF32(rng, d*2, 1), randF32(rng, d*2, 1)
		out := append([]float32(nil), w...)
		for o := 0; o < d; o++ {
			for i := 0; i < d; i++ {
				out[o*d+i] += (u[o*2]*v[i*2] + u[o*2+1]*v[i*2+1]) / float32(math.Sqrt(float64(d)))
			}
		}
		return out
	}
	wqT, wkT := target(wq), target(wk)
	cfg := peft.DefaultConfig(method)
	cfg.Rank, cfg.Alpha = rank, float64(rank)
	cfg.RampSteps = int64(steps / 100)
	cfg.Seed = seed
	mods := []peft.LinearSpec{{Path: "attn.q", In: d, Out: d}, {Path: "attn.k", In: d, Out: d}}
	inj, err := peft.Inject(cfg, mods)
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	const batchN, seq = 8, 16
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
	st, err := NewStepper(be(t), store, loss, optim.AdamW{LR: lr, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, GroupOf: inj.OptimizerGroups(0)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var first, last float64
	for s := 0; s < steps; s++ {
		x := tensors.FromFlatDataAndDimensions(randF32(rng, batchN*seq*d, 1), batchN, seq, d)
		res, err := st.Step([]*tensors.Tensor{x})
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			first = res.Loss
		}
		last = res.Loss
	}
	return first, last
}

// TestAdaptersLearnAttentionToy: each adapter lowers the §5 toy's loss on the pure-Go backend.
func TestAdaptersLearnAttentionToy(t *testing.T) {
	steps := 150
	if testing.Short() {
		steps = 60
	}
	for _, m := range []peft.Method{peft.SingLoRA, peft.LoRA, peft.LoRAPlus, peft.DoRA} {
		t.Run(string(m), func(t *testing.T) {
			rank := 4
			if m == peft.SingLoRA {
				rank = 8 // equal parameter budget: r·d vs LoRA's 2·r·d
			}
			first, last := AttentionToy(t, m, 32, rank, steps, 3e-3, 1)
			t.Logf("%s: loss %.4g → %.4g after %d steps", m, first, last, steps)
			if !(last < 0.5*first) {
				t.Fatalf("%s did not learn: loss %.4g → %.4g", m, first, last)
			}
		})
	}
}

var _ = fmt.Sprint
