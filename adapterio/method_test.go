package adapterio_test

// This file defines a whole adapter method — a small VeRA-like adapter — and takes it through
// inject → train steps → save → load → merge → unmerge → export without any other file knowing
// of it: the proof that a method is one package (here, one file) plus a registration.

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/peft/tuner"
	"github.com/singlora/singlora/safetensors"
	"github.com/singlora/singlora/train"
)

// veraTest is VeRA-like: frozen random projections A [r, in] and B [out, r] and trainable
// scaling vectors d [r] (init 0.1) and b [out] (init 0):
//
//	ΔW = s·diag(b)·B·diag(d)·A,   y = x·W0ᵀ + bias + s·(((x·Aᵀ)⊙d)·Bᵀ)⊙b
//
// Its adapter files have peft_type "VERA_TEST" and keep its one key, "vera_d_initial", in Extra.
type veraTest struct{}

const (
	veraName  = tuner.Method("vera-test")
	veraType  = "VERA_TEST"
	veraA     = "vera_A"
	veraB     = "vera_B"
	veraD     = "vera_d"
	veraBVec  = "vera_b"
	veraDInit = 0.1
)

func init() {
	if err := tuner.Register(veraTest{}); err != nil {
		panic(err)
	}
}

func (veraTest) Name() tuner.Method          { return veraName }
func (veraTest) Aliases() []string           { return []string{"vera_test"} }
func (veraTest) Inits() []tuner.Init         { return []tuner.Init{"uniform"} }
func (veraTest) Defaults(*tuner.Config)      {}
func (veraTest) Validate(tuner.Config) error { return nil }
func (veraTest) UsesRamp() bool              { return false }

func (veraTest) Tensors(s tuner.LinearSpec, r int) []tuner.TensorSpec {
	return []tuner.TensorSpec{{Name: veraA, Shape: []int{r, s.In}}, {Name: veraB, Shape: []int{s.Out, r}},
		{Name: veraD, Shape: []int{r}}, {Name: veraBVec, Shape: []int{s.Out}}}
}

func (veraTest) Init(c tuner.Config, s tuner.LinearSpec, _ func() ([]float32, error)) (map[string][]float32, error) {
	d := make([]float32, c.Rank)
	for i := range d {
		d[i] = veraDInit
	}
	return map[string][]float32{
		veraA:    tuner.Uniform(tuner.RNG(c.Seed, s.Path, veraA), c.Rank*s.In, 1/math.Sqrt(float64(s.In))),
		veraB:    tuner.Uniform(tuner.RNG(c.Seed, s.Path, veraB), s.Out*c.Rank, 1/math.Sqrt(float64(c.Rank))),
		veraD:    d,
		veraBVec: make([]float32, s.Out),
	}, nil
}

func (veraTest) Trainable(path string) bool {
	n := tuner.VarName(path)
	return n == veraD || n == veraBVec
}

func (veraTest) Group(tuner.Config, *model.Variable, *optim.Group) {}

func (veraTest) Forward(l *tuner.Layer, x *Node) *Node {
	h := tuner.ContractLast(l.Input(x), l.Var(veraA)) // [..., r]
	h = Mul(h, ExpandLeftToRank(l.Var(veraD), h.Rank()))
	y := tuner.ContractLast(h, l.Var(veraB)) // [..., out]
	y = Mul(y, ExpandLeftToRank(l.Var(veraBVec), y.Rank()))
	return Add(l.Base(x, true), MulScalar(y, l.Config.Scale()))
}

func (veraTest) DeltaWeight(l *tuner.Layer) *Node {
	a := Mul(l.Var(veraA), InsertAxes(l.Var(veraD), -1))    // diag(d)·A [r, in]
	b := Mul(l.Var(veraB), InsertAxes(l.Var(veraBVec), -1)) // diag(b)·B [out, r]
	return MulScalar(Dot(b, a).Product(), l.Config.Scale())
}

func (veraTest) PeftType() string { return veraType }

func (veraTest) ToFile(_ tuner.Config, f *adapterconfig.Config) {
	f.PeftType = veraType
	if f.Extra == nil {
		f.Extra = map[string]json.RawMessage{}
	}
	f.Extra["vera_d_initial"] = json.RawMessage(fmt.Sprint(veraDInit))
}

func (veraTest) FromFile(f *adapterconfig.Config, c *tuner.Config) bool {
	if _, ok := f.Extra["vera_d_initial"]; !ok {
		return false
	}
	c.Init = "uniform"
	return true
}

func (veraTest) LayerShape(shapes map[string][]int) ([2]int, error) {
	a, b := shapes[veraA], shapes[veraBVec]
	if len(a) != 2 || len(b) != 1 {
		return [2]int{}, fmt.Errorf("vera_A %v must be a matrix and vera_b %v a vector", a, b)
	}
	return [2]int{b[0], a[1]}, nil
}

// factors returns diag(d)·A [r, in] and s·diag(b)·B [out, r], whose product is ΔW.
func (veraTest) factors(h tuner.Host) (la, lb []float32) {
	in, out, r := h.Spec.In, h.Spec.Out, h.Rank
	A, B, d, b := h.Tensors[veraA], h.Tensors[veraB], h.Tensors[veraD], h.Tensors[veraBVec]
	la, lb = make([]float32, r*in), make([]float32, out*r)
	for k := range r {
		for i := range in {
			la[k*in+i] = d[k] * A[k*in+i]
		}
	}
	for o := range out {
		for k := range r {
			lb[o*r+k] = float32(h.Scale) * b[o] * B[o*r+k]
		}
	}
	return la, lb
}

func (v veraTest) DeltaW(h tuner.Host) ([]float64, error) {
	in, out, r := h.Spec.In, h.Spec.Out, h.Rank
	A, B, d, b := h.Tensors[veraA], h.Tensors[veraB], h.Tensors[veraD], h.Tensors[veraBVec]
	delta := make([]float64, out*in)
	for o := range out {
		for i := range in {
			var acc float64
			for k := range r {
				acc += float64(B[o*r+k]) * float64(d[k]) * float64(A[k*in+i])
			}
			delta[h.Index(o, i)] = h.Scale * float64(b[o]) * acc
		}
	}
	return delta, nil
}

func (v veraTest) Merge(h tuner.Host, w0 []float64, unmerge bool) ([]float64, error) {
	delta, err := v.DeltaW(h)
	if err != nil {
		return nil, err
	}
	return tuner.AddDelta(w0, delta, unmerge)
}

func (v veraTest) AsLoRA(h tuner.Host) ([]float32, []float32, error) {
	la, lb := v.factors(h)
	return la, lb, nil
}

var veraSpecs = []peft.LinearSpec{
	{Path: "enc.a", In: 6, Out: 5, Bias: true},
	{Path: "enc.b", In: 5, Out: 4, Layout: peft.InOut},
}

// veraBase returns a store with the two layers' base weights (the same for a given seed) and
// the base weights by module, in their stored layouts.
func veraBase(t *testing.T, seed uint64) (*model.Store, map[string][]float32) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	s := model.NewStore()
	w := map[string][]float32{}
	for _, sp := range veraSpecs {
		dims := []int{sp.Out, sp.In}
		if sp.Layout == peft.InOut {
			dims = []int{sp.In, sp.Out}
		}
		vals := make([]float32, sp.In*sp.Out)
		for i := range vals {
			vals[i] = float32(rng.Float64()*2 - 1)
		}
		w[sp.Path] = vals
		if _, err := s.CreateVariable(sp.ScopePath()+"/weight", tensors.FromFlatDataAndDimensions(vals, dims...)); err != nil {
			t.Fatal(err)
		}
		if sp.Bias {
			if _, err := s.CreateVariable(sp.ScopePath()+"/bias", tensors.FromFlatDataAndDimensions(make([]float32, sp.Out), sp.Out)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s, w
}

// veraForward is the two-layer model: y = b(a(x)).
func veraForward(inj *peft.Injection, scope *model.Scope, x *Node) *Node {
	enc := scope.In("enc")
	return peft.Linear(inj, enc.In("b"), peft.Linear(inj, enc.In("a"), x))
}

func run(t *testing.T, store *model.Store, inj *peft.Injection, x *tensors.Tensor) []float32 {
	t.Helper()
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	y, err := model.CallOnce(be, store, func(scope *model.Scope, x *Node) *Node { return veraForward(inj, scope, x) }, x)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](y)
}

func values(t *testing.T, s *model.Store, path string) []float32 {
	t.Helper()
	v, err := peft.Float32Values(s.GetVariable(path))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > tol*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestTestOnlyMethodEndToEnd registers veraTest (above) and uses it through every layer of the
// project: Inject/Attach (its tensors and trainability), three AdamW steps (its Forward and
// gradients), save and load (its peft_type and Extra key, its tensors by name), the reloaded
// forward, merge into a base checkpoint (its host ΔW, checked against the graph's DeltaWeight
// and the adapted forward), unmerge, and export as plain LoRA.
func TestTestOnlyMethodEndToEnd(t *testing.T) {
	if m, err := peft.ParseMethod("VERA_test"); err != nil || m != veraName {
		t.Fatalf("ParseMethod: %q, %v", m, err)
	}
	cfg := peft.DefaultConfig(veraName)
	cfg.Rank, cfg.Alpha, cfg.Seed = 3, 6, 4
	if cfg.Init != "uniform" {
		t.Errorf("default init %q", cfg.Init)
	}
	store, base := veraBase(t, 1)
	inj, err := peft.Inject(cfg, veraSpecs)
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	rep := inj.Report(store)
	if want := 3 + 5 + 3 + 4; rep.Trainable != want { // d [r] and b [out] per layer
		t.Errorf("trainable %d, want %d", rep.Trainable, want)
	}
	for _, sp := range veraSpecs {
		for name, train := range map[string]bool{veraA: false, veraB: false, veraD: true, veraBVec: true, "weight": false} {
			if v := store.GetVariable(sp.ScopePath() + "/" + name); v == nil || v.Trainable != train {
				t.Errorf("%s.%s: trainable should be %v", sp.Path, name, train)
			}
		}
	}

	// Train: three steps on y ≈ target; b starts at 0, so it must move and the loss must drop.
	rng := rand.New(rand.NewPCG(9, 9))
	randT := func(dims ...int) *tensors.Tensor {
		n := 1
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Float64()*2 - 1)
		}
		return tensors.FromFlatDataAndDimensions(v, dims...)
	}
	x, target := randT(2, 3, 6), randT(2, 3, 4)
	before := run(t, store, inj, x)
	aBefore := values(t, store, "/enc/a/"+veraA)
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	opt := optim.DefaultAdamW(0.05)
	opt.GroupOf = inj.OptimizerGroups(0)
	stepper, err := train.NewStepper(be, store, func(scope *model.Scope, in []*Node) *Node {
		return ReduceAllMean(Square(Sub(veraForward(inj, scope, in[0]), in[1])))
	}, opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	var losses []float64
	for range 3 {
		res, err := stepper.Step([]*tensors.Tensor{x, target})
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, res.Loss)
	}
	if !(losses[2] < losses[0]) {
		t.Errorf("losses %v do not decrease", losses)
	}
	if slices.Equal(values(t, store, "/enc/a/"+veraBVec), make([]float32, 5)) {
		t.Error("vera_b did not train")
	}
	if !slices.Equal(values(t, store, "/enc/a/"+veraA), aBefore) {
		t.Error("the frozen projection vera_A changed")
	}
	trained := run(t, store, inj, x)
	if slices.Equal(trained, before) {
		t.Fatal("training did not change the output")
	}

	// Save and load: the method's own peft_type and key, no module_shapes (its tensors give [out, in]).
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := adapterio.SaveFromStore(dir, inj, store, "tiny"); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	b, err := os.ReadFile(filepath.Join(dir, adapterio.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["peft_type"] != veraType || raw["vera_d_initial"] != veraDInit || raw["trained_steps"] != 3.0 || raw["module_shapes"] != nil || raw["use_dora"] != nil {
		t.Errorf("adapter_config.json: %s", b)
	}
	a, err := adapterio.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Method() != veraName || len(a.Modules) != 2 || a.Module("enc.b").Layout != peft.InOut || a.Module("enc.b").In != 5 || a.Module("enc.b").Out != 4 {
		t.Fatalf("loaded %s with modules %+v", a.Method(), a.Modules)
	}
	f, err := safetensors.Read(filepath.Join(dir, adapterio.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ts := range f.Tensors {
		names = append(names, ts.Name)
	}
	if !slices.Contains(names, "base_model.model.enc.a.vera_d.weight") || len(names) != 8 {
		t.Errorf("tensor names %v", names)
	}
	fresh, _ := veraBase(t, 1)
	inj2, err := adapterio.LoadIntoStore(dir, fresh, veraSpecs)
	if err != nil {
		t.Fatal(err)
	}
	if inj2.Config.Method != veraName || inj2.Config.Rank != 3 || inj2.Config.Alpha != 6 {
		t.Errorf("reloaded config %+v", inj2.Config)
	}
	if got := run(t, fresh, inj2, x); !slices.Equal(got, trained) {
		t.Errorf("reloaded forward %v, trained %v", got, trained)
	}

	// Host ΔW = graph DeltaWeight, for both layouts.
	for _, sp := range veraSpecs {
		host, err := adapterio.DeltaW(a, a.Module(sp.Path))
		if err != nil {
			t.Fatal(err)
		}
		dw, err := model.CallOnce(be, fresh, func(scope *model.Scope, x *Node) *Node {
			return peft.DeltaWeight(inj2, fresh.Scope(sp.ScopePath()), x.Graph(), x.DType())
		}, x)
		if err != nil {
			t.Fatal(err)
		}
		h32 := make([]float32, len(host))
		for i, v := range host {
			h32[i] = float32(v)
		}
		closeTo(t, sp.Path+" ΔW", h32, tensors.MustCopyFlatData[float32](dw), 1e-6)
	}

	// Merge into a base checkpoint: the merged plain model computes the adapted forward.
	var ts []safetensors.Tensor
	for _, sp := range veraSpecs {
		dims := []int{sp.Out, sp.In}
		if sp.Layout == peft.InOut {
			dims = []int{sp.In, sp.Out}
		}
		st, err := safetensors.FromFloat32s(sp.Path+".weight", safetensors.F32, dims, base[sp.Path])
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, st)
	}
	tmp := t.TempDir()
	basePath, merged, unmerged := filepath.Join(tmp, "base.safetensors"), filepath.Join(tmp, "merged.safetensors"), filepath.Join(tmp, "unmerged.safetensors")
	if err := safetensors.Write(basePath, ts, nil); err != nil {
		t.Fatal(err)
	}
	rep2, err := adapterio.MergeFile(basePath, dir, merged, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep2.Merged) != 2 {
		t.Errorf("merged %v", rep2.Merged)
	}
	mf, err := safetensors.Read(merged)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := veraBase(t, 1)
	for _, mt := range mf.Tensors {
		vals, err := mt.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		plain.GetVariable(peft.ModuleScope(strings.TrimSuffix(mt.Name, ".weight")) + "/weight").MustSetValue(tensors.FromFlatDataAndDimensions(vals, mt.Shape...))
	}
	layouts, err := peft.Inject(peft.Config{Method: peft.Frozen}, veraSpecs) // no adapter; knows the layouts
	if err != nil {
		t.Fatal(err)
	}
	closeTo(t, "merged forward", run(t, plain, layouts, x), trained, 1e-5)
	if _, err := adapterio.MergeFile(merged, dir, unmerged, true); err != nil {
		t.Fatal(err)
	}
	uf, err := safetensors.Read(unmerged)
	if err != nil {
		t.Fatal(err)
	}
	for _, ut := range uf.Tensors {
		vals, _ := ut.Float32s()
		closeTo(t, "unmerged "+ut.Name, vals, base[strings.TrimSuffix(ut.Name, ".weight")], 1e-6)
	}

	// Export as plain LoRA: B·A with lora_alpha = r reproduces the method's ΔW.
	e, err := adapterio.ExportLoRAFolder(dir, filepath.Join(tmp, "lora"))
	if err != nil {
		t.Fatal(err)
	}
	el, err := adapterio.Load(filepath.Join(tmp, "lora"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Config.PeftType != adapterio.TypeLoRA || el.Method() != peft.LoRA || el.Config.Scale() != 1 {
		t.Fatalf("export: peft_type %s, method %s, scale %v", e.Config.PeftType, el.Method(), el.Config.Scale())
	}
	for _, sp := range veraSpecs {
		want, _ := adapterio.DeltaW(a, a.Module(sp.Path))
		got, err := adapterio.DeltaW(el, el.Module(sp.Path))
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-6 {
				t.Fatalf("%s: exported ΔW[%d] = %v, method's %v", sp.Path, i, got[i], want[i])
			}
		}
	}
}
