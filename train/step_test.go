package train

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
)

func be(t testing.TB) compute.Backend {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randF32(rng *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64() * scale)
	}
	return out
}

// regression builds a one-layer regression model (in→out) with cfg attached, and its MSE loss.
func regression(t *testing.T, cfg peft.Config, in, out int) (*model.Store, *peft.Injection, LossFn) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 1))
	store := model.NewStore()
	store.VariableWithValue("/lin/weight", tensors.FromFlatDataAndDimensions(randF32(rng, in*out, 0.2), out, in))
	store.VariableWithValue("/lin/bias", tensors.FromFlatDataAndDimensions(randF32(rng, out, 0.1), out))
	inj, err := peft.Inject(cfg, []peft.LinearSpec{{Path: "lin", In: in, Out: out, Bias: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	loss := func(scope *model.Scope, xs []*Node) *Node {
		y := peft.Linear(inj, scope.In("lin"), xs[0])
		return ReduceAllMean(Square(Sub(y, xs[1])))
	}
	return store, inj, loss
}

func batch(rng *rand.Rand, n, in, out int) []*tensors.Tensor {
	return []*tensors.Tensor{
		tensors.FromFlatDataAndDimensions(randF32(rng, n*in, 1), n, in),
		tensors.FromFlatDataAndDimensions(randF32(rng, n*out, 1), n, out),
	}
}

// TestRampCountsOptimizerStepsNotMicroBatches: k updates with m micro-batches each give
// u = min(k/T, 1), not min(k·m/T, 1).
func TestRampCountsOptimizerStepsNotMicroBatches(t *testing.T) {
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.RampSteps = 10
	store, _, loss := regression(t, cfg, 8, 6)
	const m, k = 3, 4
	st, err := NewStepper(be(t), store, loss, optim.DefaultAdamW(1e-2), m)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	for i := 0; i < k; i++ {
		micro := [][]*tensors.Tensor{batch(rng, 4, 8, 6), batch(rng, 4, 8, 6), batch(rng, 4, 8, 6)}
		res, err := st.Step(micro...)
		if err != nil {
			t.Fatal(err)
		}
		if res.Step != int64(i+1) {
			t.Fatalf("after update %d the step counter is %d", i+1, res.Step)
		}
	}
	if u := cfg.Ramp(CurrentStep(store)); u != 0.4 {
		t.Fatalf("u = %v after %d updates of %d micro-batches, want min(%d/10,1) = 0.4", u, k, m, k)
	}
}

// TestAccumulationEqualsFullBatch: one update accumulated over two half batches equals one update
// on the whole batch.
func TestAccumulationEqualsFullBatch(t *testing.T) {
	cfg := peft.DefaultConfig(peft.LoRA)
	rng := rand.New(rand.NewPCG(3, 3))
	full := batch(rng, 8, 8, 6)
	x := tensors.MustCopyFlatData[float32](full[0])
	y := tensors.MustCopyFlatData[float32](full[1])
	half := func(i int) []*tensors.Tensor {
		return []*tensors.Tensor{
			tensors.FromFlatDataAndDimensions(x[i*32:(i+1)*32], 4, 8),
			tensors.FromFlatDataAndDimensions(y[i*24:(i+1)*24], 4, 6),
		}
	}
	results := map[int][]float32{}
	for _, m := range []int{1, 2} {
		store, _, loss := regression(t, cfg, 8, 6)
		// Make B non-zero so that A's gradient is not trivially zero.
		store.GetVariable("/lin/lora_B").MustSetValue(tensors.FromFlatDataAndDimensions(randF32(rand.New(rand.NewPCG(4, 4)), 48, 0.3), 6, 8))
		st, err := NewStepper(be(t), store, loss, optim.DefaultAdamW(1e-2), m)
		if err != nil {
			t.Fatal(err)
		}
		for step := 0; step < 3; step++ {
			if m == 1 {
				_, err = st.Step(full)
			} else {
				_, err = st.Step(half(0), half(1))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		a, _ := peft.Float32Values(store.GetVariable("/lin/lora_A"))
		results[m] = a
	}
	for i := range results[1] {
		if d := math.Abs(float64(results[1][i] - results[2][i])); d > 1e-5 {
			t.Fatalf("lora_A[%d]: full batch %v, accumulated %v", i, results[1][i], results[2][i])
		}
	}
}

// hostAdamW is an independent float64 AdamW (PyTorch's formulas), the reference for optim.AdamW.
type hostAdamW struct {
	lr, b1, b2, eps float64
	m, v            map[string][]float64
	t               int
}

func (h *hostAdamW) step(name string, p, g []float64, lrMul, wd, sched float64) {
	if h.m == nil {
		h.m, h.v = map[string][]float64{}, map[string][]float64{}
	}
	if h.m[name] == nil {
		h.m[name], h.v[name] = make([]float64, len(p)), make([]float64, len(p))
	}
	m, v := h.m[name], h.v[name]
	lr := h.lr * lrMul * sched
	bc1 := 1 - math.Pow(h.b1, float64(h.t))
	bc2 := 1 - math.Pow(h.b2, float64(h.t))
	for i := range p {
		p[i] -= lr * wd * p[i]
		m[i] = h.b1*m[i] + (1-h.b1)*g[i]
		v[i] = h.b2*v[i] + (1-h.b2)*g[i]*g[i]
		p[i] -= lr * (m[i] / bc1) / (math.Sqrt(v[i]/bc2) + h.eps)
	}
}

// TestAdamWMatchesReference: optim.AdamW with LoRA+ groups, weight decay, warm-up + cosine
// schedule and gradient clipping follows an independent float64 implementation. The loss is
// L = Σ c⊙θ per variable, whose gradient is the constant c, so the reference needs no autodiff.
func TestAdamWMatchesReference(t *testing.T) {
	store := model.NewStore()
	rng := rand.New(rand.NewPCG(6, 6))
	shapes := map[string][]int{"/l/lora_A": {3, 4}, "/l/lora_B": {5, 3}}
	params := map[string][]float64{}
	coefs := map[string][]float64{}
	for name, dims := range shapes {
		n := dims[0] * dims[1]
		p := make([]float64, n)
		c := make([]float64, n)
		for i := range p {
			p[i] = rng.NormFloat64()
			c[i] = rng.NormFloat64() * 3
		}
		params[name], coefs[name] = p, c
		store.VariableWithValue(name, tensors.FromFlatDataAndDimensions(append([]float64(nil), p...), dims...))
	}
	opt := optim.DefaultAdamW(0.05)
	opt.WeightDecay = 0.1
	opt.ClipNorm = 2
	opt.Schedule = optim.Schedule{Kind: optim.Cosine, WarmupSteps: 2, TotalSteps: 6}
	lambda := 16.0
	opt.GroupOf = func(v *model.Variable) optim.Group {
		if v.Name() == peft.NameLoRAB {
			return optim.Group{LRMultiplier: lambda, WeightDecay: 0.1}
		}
		return optim.Group{LRMultiplier: 1, WeightDecay: 0.1}
	}
	loss := func(scope *model.Scope, xs []*Node) *Node {
		g := xs[0].Graph()
		total := MulScalar(ReduceAllSum(xs[0]), 0)
		for name := range shapes {
			c := Const(g, tensors.FromFlatDataAndDimensions(coefs[name], shapes[name]...))
			total = Add(total, ReduceAllSum(Mul(store.GetVariable(name).NodeValue(g), c)))
		}
		return total
	}
	st, err := NewStepper(be(t), store, loss, opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref := &hostAdamW{lr: 0.05, b1: 0.9, b2: 0.999, eps: 1e-8}
	var norm float64
	for _, c := range coefs {
		for _, x := range c {
			norm += x * x
		}
	}
	norm = math.Sqrt(norm)
	clip := math.Min(1, 2/(norm+1e-6))
	for step := 0; step < 6; step++ {
		res, err := st.Step([]*tensors.Tensor{tensors.FromScalar(float64(0))})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(res.GradNorm-norm) > 1e-4*norm {
			t.Fatalf("grad norm %v, want %v", res.GradNorm, norm)
		}
		ref.t++
		sched := opt.Schedule.Factor(int64(step))
		if math.Abs(res.LR-0.05*sched) > 1e-12 {
			t.Fatalf("step %d lr %v, want %v", step, res.LR, 0.05*sched)
		}
		for name, p := range params {
			g := make([]float64, len(p))
			for i := range g {
				g[i] = coefs[name][i] * clip
			}
			mul := 1.0
			if name == "/l/lora_B" {
				mul = lambda
			}
			ref.step(name, p, g, mul, 0.1, sched)
		}
	}
	for name, p := range params {
		got := tensors.MustCopyFlatData[float64](store.GetVariable(name).MustValue())
		for i := range p {
			if math.Abs(got[i]-p[i]) > 1e-9*math.Max(1, math.Abs(p[i])) {
				t.Fatalf("%s[%d] = %.12g, reference %.12g", name, i, got[i], p[i])
			}
		}
	}
}

// TestNonFiniteStepKeepsWeights: a NaN batch stops with ErrNonFinite, and weights, optimizer
// state and the step counter are those of the last good step.
func TestNonFiniteStepKeepsWeights(t *testing.T) {
	cfg := peft.DefaultConfig(peft.SingLoRA)
	store, _, loss := regression(t, cfg, 6, 6)
	st, err := NewStepper(be(t), store, loss, optim.DefaultAdamW(1e-2), 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	if _, err := st.Step(batch(rng, 4, 6, 6)); err != nil {
		t.Fatal(err)
	}
	before, _ := peft.Float32Values(store.GetVariable("/lin/singlora_A"))
	poison := batch(rng, 4, 6, 6)
	xs := tensors.MustCopyFlatData[float32](poison[0])
	xs[3] = float32(math.NaN())
	poison[0] = tensors.FromFlatDataAndDimensions(xs, 4, 6)
	_, err = st.Step(poison)
	if !errors.Is(err, ErrNonFinite) {
		t.Fatalf("poisoned step: err = %v, want ErrNonFinite", err)
	}
	after, _ := peft.Float32Values(store.GetVariable("/lin/singlora_A"))
	for i := range before {
		if math.Float32bits(before[i]) != math.Float32bits(after[i]) {
			t.Fatalf("singlora_A[%d] changed by the poisoned step: %v → %v", i, before[i], after[i])
		}
	}
	if s := CurrentStep(store); s != 1 {
		t.Fatalf("step counter %d after a skipped update, want 1", s)
	}
	if _, err := st.Step(batch(rng, 4, 6, 6)); err != nil {
		t.Fatalf("a good step after the skipped one failed: %v", err)
	}
}
