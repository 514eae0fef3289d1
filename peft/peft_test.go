package peft

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/optim"
)

// float32Model builds a float32 store with one layer "blk.lin" (random weights) and attaches cfg.
func float32Model(t *testing.T, cfg Config, in, out int) (*model.Store, *Injection) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	w := make([]float32, in*out)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.3)
	}
	b := make([]float32, out)
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	store := model.NewStore()
	store.VariableWithValue("/blk/lin/weight", tensors.FromFlatDataAndDimensions(w, out, in))
	store.VariableWithValue("/blk/lin/bias", tensors.FromFlatDataAndDimensions(b, out))
	inj, err := Inject(cfg, []LinearSpec{{Path: "blk.lin", In: in, Out: out, Bias: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	return store, inj
}

func runLinear(t *testing.T, store *model.Store, inj *Injection, x *tensors.Tensor) []float32 {
	t.Helper()
	out, err := model.CallOnce(testBackend(t), store, func(scope *model.Scope, x *Node) *Node {
		return Linear(inj, scope.In("blk").In("lin"), x)
	}, x)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](out)
}

func randInput(n, in int) *tensors.Tensor {
	rng := rand.New(rand.NewPCG(9, 9))
	x := make([]float32, n*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return tensors.FromFlatDataAndDimensions(x, n, in)
}

// TestStartsExactlyAtBase: at u = 0 (SingLoRA, step 0 of a ramp) and at LoRA's B = 0 init, the
// adapted layer's output equals the base layer's bit for bit.
func TestStartsExactlyAtBase(t *testing.T) {
	for _, tc := range []struct {
		method  Method
		in, out int
	}{{SingLoRA, 16, 16}, {SingLoRA, 24, 10}, {SingLoRA, 10, 24}, {LoRA, 16, 12}, {LoRAPlus, 12, 16}} {
		cfg := DefaultConfig(tc.method)
		cfg.RampSteps = 10
		store, inj := float32Model(t, cfg, tc.in, tc.out)
		x := randInput(32, tc.in)
		base := runLinear(t, store, nil, x)
		adapted := runLinear(t, store, inj, x)
		for i := range base {
			if math.Float32bits(base[i]) != math.Float32bits(adapted[i]) {
				t.Fatalf("%s %dx%d: output[%d] = %v, base %v: not bit-identical at start", tc.method, tc.in, tc.out, i, adapted[i], base[i])
			}
		}
		if tc.method == SingLoRA {
			// One step into the ramp the adapter must act (u = 0.1): guards against a test that passes
			// because the adapter path is dead.
			optim.StepVar(store).MustSetValue(tensors.FromScalar(int64(1)))
			moved := runLinear(t, store, inj, x)
			same := true
			for i := range base {
				if base[i] != moved[i] {
					same = false
				}
			}
			if same {
				t.Fatalf("%s: output unchanged at u=0.1", tc.method)
			}
		}
	}
}

// TestSingLoRADeltaEqualsExplicit: the ΔW the forward applies (read off by feeding the identity)
// equals (α/r)·u·A[:out]·A[:in]ᵀ built on the host, and DeltaWeight builds the same; for square
// layers it is symmetric positive semi-definite.
func TestSingLoRADeltaEqualsExplicit(t *testing.T) {
	for _, tc := range []struct {
		in, out, r int
		rslora     bool
	}{{12, 12, 4, false}, {20, 8, 3, false}, {8, 20, 3, true}, {16, 16, 16, true}} {
		cfg := DefaultConfig(SingLoRA)
		cfg.Rank, cfg.Alpha, cfg.RampSteps, cfg.UseRSLoRA = tc.r, 6, 4, tc.rslora
		store, inj := float32Model(t, cfg, tc.in, tc.out)
		optim.StepVar(store).MustSetValue(tensors.FromScalar(int64(3))) // u = 0.75
		a, _ := Float32Values(store.GetVariable("/blk/lin/singlora_A"))
		s := cfg.Scale() * 0.75
		want := make([]float64, tc.out*tc.in)
		for o := 0; o < tc.out; o++ {
			for i := 0; i < tc.in; i++ {
				var acc float64
				for k := 0; k < tc.r; k++ {
					acc += float64(a[o*tc.r+k]) * float64(a[i*tc.r+k])
				}
				want[o*tc.in+i] = s * acc
			}
		}
		// Forward with x = I and zero base weights/bias: y[i, o] = ΔW[o, i].
		eye := make([]float32, tc.in*tc.in)
		for i := 0; i < tc.in; i++ {
			eye[i*tc.in+i] = 1
		}
		store.GetVariable("/blk/lin/weight").MustSetValue(tensors.FromShape(store.GetVariable("/blk/lin/weight").Shape()))
		store.GetVariable("/blk/lin/bias").MustSetValue(tensors.FromShape(store.GetVariable("/blk/lin/bias").Shape()))
		y := runLinear(t, store, inj, tensors.FromFlatDataAndDimensions(eye, tc.in, tc.in))
		dw, err := model.CallOnce(testBackend(t), store, func(scope *model.Scope, g *Graph) *Node {
			return DeltaWeight(inj, scope.In("blk").In("lin"), g, y0dtype)
		})
		if err != nil {
			t.Fatal(err)
		}
		explicit := tensors.MustCopyFlatData[float32](dw)
		maxAbs := 0.0
		for _, v := range want {
			maxAbs = math.Max(maxAbs, math.Abs(v))
		}
		tol := 1e-6 * maxAbs
		for o := 0; o < tc.out; o++ {
			for i := 0; i < tc.in; i++ {
				w := want[o*tc.in+i]
				if d := math.Abs(float64(y[i*tc.out+o]) - w); d > tol {
					t.Fatalf("%dx%d: forward ΔW[%d,%d] = %v, explicit %v", tc.in, tc.out, o, i, y[i*tc.out+o], w)
				}
				if d := math.Abs(float64(explicit[o*tc.in+i]) - w); d > tol {
					t.Fatalf("%dx%d: DeltaWeight[%d,%d] = %v, explicit %v", tc.in, tc.out, o, i, explicit[o*tc.in+i], w)
				}
			}
		}
		if tc.in == tc.out {
			n := tc.in
			for o := 0; o < n; o++ {
				for i := 0; i < n; i++ {
					if math.Abs(float64(explicit[o*n+i]-explicit[i*n+o])) > tol {
						t.Fatalf("ΔW not symmetric at (%d,%d)", o, i)
					}
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for trial := 0; trial < 200; trial++ {
				v := randSlice(rng, n, 1)
				var q float64
				for o := 0; o < n; o++ {
					for i := 0; i < n; i++ {
						q += v[o] * float64(explicit[o*n+i]) * v[i]
					}
				}
				if q < -tol*float64(n) {
					t.Fatalf("ΔW not PSD: vᵀΔWv = %v", q)
				}
			}
		}
	}
}

var y0dtype = tensors.FromScalar(float32(0)).DType()

// TestParameterCounts: trainable parameters counted from the store after Attach match
// SingLoRA r·max(in,out), LoRA r·(in+out), DoRA r·(in+out)+out.
func TestParameterCounts(t *testing.T) {
	for _, tc := range []struct{ in, out, r int }{{32, 32, 8}, {48, 16, 4}, {16, 48, 1}} {
		for _, m := range []Method{SingLoRA, LoRA, LoRAPlus, DoRA, Full, Frozen} {
			cfg := DefaultConfig(m)
			cfg.Rank = tc.r
			store, inj := float32Model(t, cfg, tc.in, tc.out)
			rep := inj.Report(store)
			var want int
			switch m {
			case SingLoRA:
				want = tc.r * max(tc.in, tc.out)
			case LoRA, LoRAPlus:
				want = tc.r * (tc.in + tc.out)
			case DoRA:
				want = tc.r*(tc.in+tc.out) + tc.out
			case Full:
				want = tc.in*tc.out + tc.out
			case Frozen:
				want = 0
			}
			if rep.Trainable != want {
				t.Errorf("%s %dx%d r=%d: %d trainable params, want %d", m, tc.in, tc.out, tc.r, rep.Trainable, want)
			}
			if rep.Total != tc.in*tc.out+tc.out+AdapterParams(m, LinearSpec{In: tc.in, Out: tc.out}, tc.r) {
				t.Errorf("%s: total %d", m, rep.Total)
			}
			if m == SingLoRA && tc.in == tc.out {
				lora := AdapterParams(LoRA, LinearSpec{In: tc.in, Out: tc.out}, tc.r)
				if 2*rep.Trainable != lora {
					t.Errorf("square SingLoRA should have half LoRA's parameters: %d vs %d", rep.Trainable, lora)
				}
			}
		}
	}
}

func TestInjectPatterns(t *testing.T) {
	mods := []LinearSpec{
		{Path: "encoder.layer.0.attention.self.query", In: 8, Out: 8},
		{Path: "encoder.layer.0.attention.self.key", In: 8, Out: 8},
		{Path: "encoder.layer.0.intermediate.dense", In: 8, Out: 32},
		{Path: "encoder.layer.0.output.dense", In: 32, Out: 8},
		{Path: "encoder.layer.1.attention.self.query", In: 8, Out: 8},
	}
	for _, tc := range []struct {
		targets []string
		want    int
		errHas  string
	}{
		{[]string{"all-linear"}, 5, ""},
		{[]string{"query"}, 2, ""},
		{[]string{"query", "key"}, 3, ""},
		{[]string{"encoder.layer.0.attention.self.query"}, 1, ""},
		{[]string{"dense"}, 2, ""},
		{[]string{"output.dense"}, 1, ""},
		{[]string{`re:encoder\.layer\.1\..*`}, 1, ""},
		{[]string{`re:.*\.(query|key)`}, 3, ""},
		{[]string{"uery"}, 0, "available: encoder.layer.0.attention.self.query"},
		{[]string{"query", "q_proj"}, 0, `"q_proj" matches none`},
		{[]string{"re:("}, 0, "re:("},
		{nil, 0, "no target modules"},
	} {
		cfg := DefaultConfig(SingLoRA)
		cfg.Targets = tc.targets
		inj, err := Inject(cfg, mods)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("targets %q: error %v, want one containing %q", tc.targets, err, tc.errHas)
			}
			continue
		}
		if err != nil {
			t.Errorf("targets %q: %v", tc.targets, err)
			continue
		}
		if got := len(inj.Targets()); got != tc.want {
			t.Errorf("targets %q matched %d modules, want %d", tc.targets, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.Rank = 0 },
		func(c *Config) { c.Alpha = math.NaN() },
		func(c *Config) { c.RampSteps = -1 },
		func(c *Config) { c.Dropout = 1 },
		func(c *Config) { c.Init = "xavier" },
		func(c *Config) { c.Method = "bogus" },
	}
	for i, f := range bad {
		c := DefaultConfig(SingLoRA)
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: invalid config accepted: %+v", i, c)
		}
	}
	c := DefaultConfig(SingLoRA)
	c.RampSteps = 100
	for _, tc := range []struct {
		t int64
		u float64
	}{{0, 0}, {1, 0.01}, {50, 0.5}, {100, 1}, {1000, 1}} {
		if got := c.Ramp(tc.t); got != tc.u {
			t.Errorf("Ramp(%d) = %v, want %v", tc.t, got, tc.u)
		}
	}
	c.RampSteps = 0
	if c.Ramp(0) != 1 {
		t.Error("T = 0 must mean no ramp (u = 1)")
	}
}

// TestInitScale: theory init has entries bounded by 1/√d, the public implementations' variant by
// 1/√r, so ‖AAᵀ‖ differs by about d/r.
func TestInitScale(t *testing.T) {
	spec := LinearSpec{Path: "x", In: 512, Out: 512}
	frob := func(init Init) float64 {
		cfg := DefaultConfig(SingLoRA)
		cfg.Init = init
		v, err := InitialValues(cfg, spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		a := v[NameSingLoRAA]
		bound := 1 / math.Sqrt(512)
		if init == InitKaimingDR {
			bound = 1 / math.Sqrt(8)
		}
		var sq float64
		for _, x := range a {
			if math.Abs(float64(x)) > bound {
				t.Fatalf("%s: entry %v beyond bound %v", init, x, bound)
			}
			sq += float64(x) * float64(x)
		}
		return sq // ‖A‖_F² ∝ ‖AAᵀ‖ scale
	}
	ratio := frob(InitKaimingDR) / frob(InitTheory)
	if ratio < 0.8*64 || ratio > 1.25*64 { // (1/r)/(1/d) = d/r = 64 for ‖A‖²
		t.Fatalf("kaiming-dr/theory ‖A‖² ratio %v, want ≈ d/r = 64", ratio)
	}
}
