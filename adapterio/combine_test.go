package adapterio

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/singlora/singlora/peft"
)

// combineSpecs: square, in > out, out > in, and a Conv1D-style [in, out] module.
var combineSpecs = []peft.LinearSpec{
	{Path: "enc.layer.0.query", In: 6, Out: 6},
	{Path: "enc.layer.0.down", In: 8, Out: 4},
	{Path: "enc.layer.0.up", In: 4, Out: 8},
	{Path: "enc.layer.0.c_attn", In: 5, Out: 7, Layout: peft.InOut},
}

// combAdapter builds a random adapter of method m over specs: rank r, or ranks[path] written as
// rank_pattern (with alpha_pattern α = 2·rank) where given; SingLoRA has ramp T after steps.
func combAdapter(t *testing.T, m peft.Method, specs []peft.LinearSpec, r int, ranks map[string]int, alpha float64, rs bool, T, steps int64, seed uint64) *Adapter {
	t.Helper()
	a := newAdapter(t, m, specs, r, alpha, rs, T, steps, seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	for _, s := range specs {
		mr, ok := ranks[s.Path]
		if !ok {
			continue
		}
		key := regexp.QuoteMeta(s.Path)
		a.Config.RankPattern = append(a.Config.RankPattern, peft.PatternEntry[int]{Key: key, Value: mr})
		a.Config.AlphaPattern = append(a.Config.AlphaPattern, peft.PatternEntry[float64]{Key: key, Value: 2 * float64(mr)})
		mod := a.Module(s.Path)
		for _, at := range peft.AdapterTensors(m, s, mr) {
			n := 1
			for _, d := range at.Shape {
				n *= d
			}
			mod.Tensors[at.Name] = &Matrix{Shape: at.Shape, Data: randVals(rng, n, 0.5)}
		}
	}
	return a
}

// indepDelta computes a module's ΔW as [out][in] in float64 straight from its tensors and the
// config's fields: s = α/r (α/√r with rsLoRA) with the rank read from the tensor shapes, u =
// min(steps/T, 1) for SingLoRA.
func indepDelta(t *testing.T, a *Adapter, m *Module) [][]float64 {
	t.Helper()
	c := a.Config
	d := make([][]float64, m.Out)
	for o := range d {
		d[o] = make([]float64, m.In)
	}
	if c.PeftType == TypeSingLoRA {
		A := m.Tensors[peft.NameSingLoRAA]
		r := A.Shape[1]
		s := c.ModuleAlpha(m.Path) / float64(r)
		if c.UseRSLoRA {
			s = c.ModuleAlpha(m.Path) / math.Sqrt(float64(r))
		}
		u := 1.0
		if c.RampUpSteps > 0 && c.TrainedSteps < c.RampUpSteps {
			u = float64(c.TrainedSteps) / float64(c.RampUpSteps)
		}
		for o := range m.Out {
			for i := range m.In {
				for k := range r {
					d[o][i] += s * u * float64(A.Data[o*r+k]) * float64(A.Data[i*r+k])
				}
			}
		}
		return d
	}
	A, B := m.Tensors[peft.NameLoRAA], m.Tensors[peft.NameLoRAB]
	r := A.Shape[0]
	s := c.ModuleAlpha(m.Path) / float64(r)
	if c.UseRSLoRA {
		s = c.ModuleAlpha(m.Path) / math.Sqrt(float64(r))
	}
	for o := range m.Out {
		for i := range m.In {
			for k := range r {
				d[o][i] += s * float64(B.Data[o*r+k]) * float64(A.Data[k*m.In+i])
			}
		}
	}
	return d
}

// wantSum is Σ wᵢΔWᵢ per module path, from indepDelta.
func wantSum(t *testing.T, ins []Weighted) map[string][][]float64 {
	t.Helper()
	sum := map[string][][]float64{}
	for _, x := range ins {
		for _, m := range x.Adapter.Modules {
			d := indepDelta(t, x.Adapter, m)
			if sum[m.Path] == nil {
				sum[m.Path] = make([][]float64, m.Out)
				for o := range sum[m.Path] {
					sum[m.Path][o] = make([]float64, m.In)
				}
			}
			for o := range d {
				for i := range d[o] {
					sum[m.Path][o][i] += x.Weight * d[o][i]
				}
			}
		}
	}
	return sum
}

// frob returns ‖got − want‖²_F and ‖want‖²_F.
func frob(got, want [][]float64) (diff, norm float64) {
	for o := range want {
		for i := range want[o] {
			e := got[o][i] - want[o][i]
			diff += e * e
			norm += want[o][i] * want[o][i]
		}
	}
	return diff, norm
}

// library ΔW (base layout) as [out][in].
func libDelta(t *testing.T, a *Adapter, m *Module) [][]float64 {
	t.Helper()
	flat, err := DeltaW(a, m)
	if err != nil {
		t.Fatal(err)
	}
	d := make([][]float64, m.Out)
	for o := range d {
		d[o] = make([]float64, m.In)
		for i := range d[o] {
			if m.Layout == peft.InOut {
				d[o][i] = flat[i*m.Out+o]
			} else {
				d[o][i] = flat[o*m.In+i]
			}
		}
	}
	return d
}

// droppedEnergy computes Σ_{j>k} σⱼ² / Σ σⱼ² of d from the eigenvalues of dᵀd (an eigen
// decomposition, not the SVD Combine uses).
func droppedEnergy(t *testing.T, d [][]float64, k int) float64 {
	t.Helper()
	out, in := len(d), len(d[0])
	g := mat.NewSymDense(in, nil)
	for x := range in {
		for y := x; y < in; y++ {
			var acc float64
			for o := range out {
				acc += d[o][x] * d[o][y]
			}
			g.SetSym(x, y, acc)
		}
	}
	var eig mat.EigenSym
	if !eig.Factorize(g, false) {
		t.Fatal("eigen decomposition failed")
	}
	ev := eig.Values(nil)
	sort.Sort(sort.Reverse(sort.Float64Slice(ev)))
	var all, dropped float64
	for j, v := range ev {
		v = max(v, 0)
		all += v
		if j >= k {
			dropped += v
		}
	}
	if all == 0 {
		return 0
	}
	return dropped / all
}

func TestCombineModes(t *testing.T) {
	sub := combineSpecs[1:3] // down and up only
	extra := []peft.LinearSpec{combineSpecs[0], {Path: "enc.layer.1.query", In: 6, Out: 6}}
	type tc struct {
		name    string
		how     string
		rank    int
		inputs  func(t *testing.T) []Weighted
		form    string
		why     string         // a fragment of the report's Why
		ranks   map[string]int // expected output ranks
		r       int            // expected config r
		exact   bool           // the output must equal Σ wᵢΔWᵢ to float32 rounding
		dropped bool           // svd: check the dropped energy and the Eckart–Young error
	}
	cases := []tc{
		{name: "cat singlora", how: CombineCat, form: TypeSingLoRA, why: "every input is SingLoRA", exact: true,
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 0.7, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 4, false, 100, 40, 1)},
					{Name: "b", Weight: 1.5, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 3, map[string]int{"enc.layer.0.up": 1}, 6, true, 0, 0, 2)},
				}
			},
			ranks: map[string]int{"enc.layer.0.query": 5, "enc.layer.0.down": 5, "enc.layer.0.up": 3, "enc.layer.0.c_attn": 5}, r: 5},
		{name: "cat singlora negative weight", how: CombineCat, form: TypeLoRA, why: "< 0 on module", exact: true,
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 1, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 4, false, 10, 5, 3)},
					{Name: "b", Weight: -0.5, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 2, false, 0, 0, 4)},
				}
			},
			ranks: map[string]int{"enc.layer.0.query": 4, "enc.layer.0.down": 4, "enc.layer.0.up": 4, "enc.layer.0.c_attn": 4}, r: 4},
		{name: "cat mixed singlora lora loraplus", how: CombineCat, form: TypeLoRA, why: "input b is lora", exact: true,
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 2, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 4, false, 0, 0, 5)},
					{Name: "b", Weight: 0.25, Adapter: combAdapter(t, peft.LoRA, combineSpecs, 3, map[string]int{"enc.layer.0.down": 2}, 6, true, 0, 0, 6)},
					{Name: "c", Weight: -1, Adapter: combAdapter(t, peft.LoRAPlus, combineSpecs, 1, nil, 3, false, 0, 0, 7)},
				}
			},
			ranks: map[string]int{"enc.layer.0.query": 6, "enc.layer.0.down": 5, "enc.layer.0.up": 6, "enc.layer.0.c_attn": 6}, r: 6},
		{name: "cat modules in one input only", how: CombineCat, form: TypeSingLoRA, why: "every input is SingLoRA", exact: true,
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 1, Adapter: combAdapter(t, peft.SingLoRA, sub, 2, nil, 2, false, 0, 0, 8)},
					{Name: "b", Weight: 3, Adapter: combAdapter(t, peft.SingLoRA, extra, 4, nil, 8, false, 0, 0, 9)},
				}
			},
			ranks: map[string]int{"enc.layer.0.down": 2, "enc.layer.0.up": 2, "enc.layer.0.query": 4, "enc.layer.1.query": 4}, r: 2},
		{name: "cat a path that ends in another", how: CombineCat, form: TypeLoRA, why: "input a is lora", exact: true,
			inputs: func(t *testing.T) []Weighted {
				both := []peft.LinearSpec{{Path: "x.blk.q", In: 3, Out: 5}, {Path: "blk.q", In: 4, Out: 4}}
				return []Weighted{
					{Name: "a", Weight: 1, Adapter: combAdapter(t, peft.LoRA, both, 1, nil, 1, false, 0, 0, 10)},
					{Name: "b", Weight: 1, Adapter: combAdapter(t, peft.LoRA, both[1:], 2, nil, 2, false, 0, 0, 11)},
				}
			},
			ranks: map[string]int{"x.blk.q": 1, "blk.q": 3}, r: 1},
		{name: "linear singlora", how: CombineLinear, form: TypeSingLoRA, why: "SingLoRA inputs",
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 0.6, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 2, map[string]int{"enc.layer.0.up": 3}, 4, false, 100, 50, 12)},
					{Name: "b", Weight: 0.4, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 2, map[string]int{"enc.layer.0.up": 3}, 2, true, 0, 0, 13)},
				}
			},
			ranks: map[string]int{"enc.layer.0.query": 2, "enc.layer.0.down": 2, "enc.layer.0.up": 3, "enc.layer.0.c_attn": 2}, r: 2},
		{name: "linear lora negative weight", how: CombineLinear, form: TypeLoRA, why: "LoRA inputs",
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 1, Adapter: combAdapter(t, peft.LoRA, combineSpecs, 2, nil, 4, false, 0, 0, 14)},
					{Name: "b", Weight: -0.3, Adapter: combAdapter(t, peft.LoRAPlus, combineSpecs, 2, nil, 8, true, 0, 0, 15)},
				}
			},
			ranks: map[string]int{"enc.layer.0.query": 2, "enc.layer.0.down": 2, "enc.layer.0.up": 2, "enc.layer.0.c_attn": 2}, r: 2},
		{name: "linear one input is exact", how: CombineLinear, form: TypeLoRA, why: "LoRA inputs", exact: true,
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{{Name: "a", Weight: -2, Adapter: combAdapter(t, peft.LoRA, combineSpecs, 2, nil, 4, false, 0, 0, 16)}}
			},
			ranks: map[string]int{"enc.layer.0.query": 2, "enc.layer.0.down": 2, "enc.layer.0.up": 2, "enc.layer.0.c_attn": 2}, r: 2},
		{name: "svd truncating", how: CombineSVD, rank: 2, form: TypeLoRA, why: "rank 2", dropped: true,
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 1, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 4, false, 0, 0, 17)},
					{Name: "b", Weight: -0.7, Adapter: combAdapter(t, peft.LoRA, combineSpecs, 2, nil, 2, false, 0, 0, 18)},
				}
			},
			ranks: map[string]int{"enc.layer.0.query": 2, "enc.layer.0.down": 2, "enc.layer.0.up": 2, "enc.layer.0.c_attn": 2}, r: 2},
		{name: "svd default rank, modules in one input", how: CombineSVD, form: TypeLoRA, why: "rank 4", dropped: true,
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 1, Adapter: combAdapter(t, peft.LoRA, combineSpecs[:3], 2, nil, 4, false, 0, 0, 19)},
					{Name: "b", Weight: 2, Adapter: combAdapter(t, peft.SingLoRA, extra, 4, nil, 4, false, 0, 0, 20)},
				}
			},
			ranks: map[string]int{"enc.layer.0.down": 4, "enc.layer.0.up": 4, "enc.layer.0.query": 4, "enc.layer.1.query": 4}, r: 4},
		{name: "svd rank ≥ true rank is exact", how: CombineSVD, rank: 4, form: TypeLoRA, why: "rank 4", exact: true, dropped: true,
			inputs: func(t *testing.T) []Weighted {
				return []Weighted{
					{Name: "a", Weight: 1, Adapter: combAdapter(t, peft.LoRA, combineSpecs, 1, nil, 1, false, 0, 0, 21)},
					{Name: "b", Weight: 0.5, Adapter: combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 2, false, 0, 0, 22)},
				}
			},
			ranks: map[string]int{"enc.layer.0.query": 4, "enc.layer.0.down": 4, "enc.layer.0.up": 4, "enc.layer.0.c_attn": 4}, r: 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ins := c.inputs(t)
			want := wantSum(t, ins)
			out, rep, err := Combine(ins, c.how, c.rank)
			if err != nil {
				t.Fatal(err)
			}
			if rep.PeftType != c.form || out.Config.PeftType != c.form {
				t.Errorf("form %s (config %s), want %s (why: %s)", rep.PeftType, out.Config.PeftType, c.form, rep.Why)
			}
			if !strings.Contains(strings.ToLower(rep.Why), strings.ToLower(c.why)) {
				t.Errorf("why %q, want it to mention %q", rep.Why, c.why)
			}
			dir := filepath.Join(t.TempDir(), "combined")
			if err := Save(dir, out); err != nil {
				t.Fatal(err)
			}
			back, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if back.Config.R != c.r || back.Config.LoraAlpha != float64(c.r) || back.Config.UseRSLoRA || back.Config.RampUpSteps != 0 {
				t.Errorf("config r=%d α=%v rslora=%v ramp=%d, want r=α=%d, no rslora, no ramp", back.Config.R, back.Config.LoraAlpha, back.Config.UseRSLoRA, back.Config.RampUpSteps, c.r)
			}
			if len(back.Modules) != len(c.ranks) || len(rep.Modules) != len(c.ranks) {
				t.Fatalf("%d modules (report %d), want %d", len(back.Modules), len(rep.Modules), len(c.ranks))
			}
			var diffAll, normAll float64
			for _, rm := range rep.Modules {
				m := back.Module(rm.Path)
				if m == nil {
					t.Fatalf("module %s missing from the reloaded output", rm.Path)
				}
				if got := back.Config.ModuleRank(m.Path); got != c.ranks[m.Path] || rm.Rank != got {
					t.Errorf("%s: rank %d (report %d), want %d", m.Path, got, rm.Rank, c.ranks[m.Path])
				}
				if s := back.Config.ModuleScale(m.Path); s != 1 {
					t.Errorf("%s: scale %v, want 1", m.Path, s)
				}
				wantLayout := peft.OutIn
				for _, s := range append(append([]peft.LinearSpec{}, combineSpecs...), extra...) {
					if s.Path == m.Path {
						wantLayout = s.Layout
					}
				}
				if m.Layout != wantLayout {
					t.Errorf("%s: layout %v, want %v", m.Path, m.Layout, wantLayout)
				}
				got := indepDelta(t, back, m)
				lib := libDelta(t, back, m)
				if d, n := frob(lib, got); d > 1e-20*(1+n) {
					t.Errorf("%s: adapterio.DeltaW of the output differs from its tensors' ΔW by %g", m.Path, math.Sqrt(d))
				}
				diff, norm := frob(got, want[m.Path])
				diffAll, normAll = diffAll+diff, normAll+norm
				rel := math.Sqrt(diff / norm)
				if math.Abs(rel-rm.RelError) > 1e-6*(1+rel) && !(c.exact && rel < 1e-6 && rm.RelError < 1e-6) {
					t.Errorf("%s: reported error %g, measured %g", m.Path, rm.RelError, rel)
				}
				if c.exact && rel > 1e-6 {
					t.Errorf("%s: relative error %g, want float32 rounding", m.Path, rel)
				}
				if c.how == CombineLinear && !c.exact && rel < 1e-3 {
					t.Errorf("%s: linear error %g: the cross terms should show", m.Path, rel)
				}
				if c.dropped {
					k := c.ranks[m.Path]
					de := droppedEnergy(t, want[m.Path], k)
					if math.Abs(rm.Dropped-de) > 1e-9+1e-6*de {
						t.Errorf("%s: dropped energy %g, eigenvalues say %g", m.Path, rm.Dropped, de)
					}
					// Eckart–Young: ‖ΔW − ΔW_K‖² = Σ_{j>K} σⱼ².
					if math.Abs(diff/norm-de) > 1e-6*(1+de) {
						t.Errorf("%s: ‖ΔW_out − ΣwΔW‖²/‖ΣwΔW‖² = %g, dropped energy %g", m.Path, diff/norm, de)
					}
					if c.exact && de > 1e-12 {
						t.Errorf("%s: dropped energy %g at K ≥ true rank", m.Path, de)
					}
				}
			}
			if overall := math.Sqrt(diffAll / normAll); math.Abs(overall-rep.RelError) > 1e-6*(1+overall) && !(c.exact && overall < 1e-6) {
				t.Errorf("overall error %g reported, %g measured", rep.RelError, overall)
			}
			if c.dropped && !c.exact && rep.MaxDropped <= 0 {
				t.Errorf("largest dropped energy %g, want > 0 when truncating", rep.MaxDropped)
			}
			if rep.Params != back.Params() {
				t.Errorf("params %d, output has %d", rep.Params, back.Params())
			}
		})
	}
}

// TestCombineTargets: inputs targeting alike keep their target_modules; otherwise the output
// targets exactly its modules; rank_pattern keys are regexp-quoted paths.
func TestCombineTargets(t *testing.T) {
	a := combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 4, false, 0, 0, 1)
	b := combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 4, false, 0, 0, 2)
	out, _, err := Combine([]Weighted{{Name: "a", Weight: 1, Adapter: a}, {Name: "b", Weight: 1, Adapter: b}}, CombineCat, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Config.TargetModules) != 1 || out.Config.TargetModules[0] != peft.AllLinear || len(out.Config.RankPattern) != 0 {
		t.Errorf("targets %v, rank_pattern %v: want the inputs' all-linear and no pattern", out.Config.TargetModules, out.Config.RankPattern)
	}
	c := combAdapter(t, peft.SingLoRA, combineSpecs[:2], 1, nil, 4, false, 0, 0, 3)
	out, _, err = Combine([]Weighted{{Name: "a", Weight: 1, Adapter: a}, {Name: "c", Weight: 1, Adapter: c}}, CombineCat, 0)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range combineSpecs {
		paths = append(paths, s.Path)
	}
	if strings.Join(out.Config.TargetModules, ",") != strings.Join(paths, ",") {
		t.Errorf("targets %v, want the module paths %v", out.Config.TargetModules, paths)
	}
	b2, _ := json.Marshal(out.Config.RankPattern)
	if string(b2) != `{"enc\\.layer\\.0\\.query":3,"enc\\.layer\\.0\\.down":3}` {
		t.Errorf("rank_pattern %s", b2)
	}
	if out.Config.R != 2 || out.Config.ModuleAlpha("enc.layer.0.down") != 3 {
		t.Errorf("r %d, down's α %v", out.Config.R, out.Config.ModuleAlpha("enc.layer.0.down"))
	}
}

func TestCombineErrors(t *testing.T) {
	sl := func(seed uint64) *Adapter {
		return combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 4, false, 0, 0, seed)
	}
	lo := func(seed uint64) *Adapter {
		return combAdapter(t, peft.LoRA, combineSpecs, 2, nil, 4, false, 0, 0, seed)
	}
	mismatch := combAdapter(t, peft.LoRA, []peft.LinearSpec{{Path: "enc.layer.0.down", In: 8, Out: 5}}, 2, nil, 4, false, 0, 0, 3)
	layout := combAdapter(t, peft.LoRA, []peft.LinearSpec{{Path: "enc.layer.0.down", In: 8, Out: 4, Layout: peft.InOut}}, 2, nil, 4, false, 0, 0, 3)
	head := lo(4)
	head.Config.ModulesToSave = []string{"classifier"}
	head.Saved = []SavedTensor{{Name: "classifier.weight", Matrix: Matrix{Shape: []int{1, 2}, Data: []float32{1, 2}}}}
	bias := lo(5)
	bias.Config.Bias = BiasAll
	for _, c := range []struct {
		name   string
		how    string
		rank   int
		inputs []Weighted
		want   string
	}{
		{"no inputs", CombineCat, 0, nil, "no inputs"},
		{"unknown mode", "ties", 0, []Weighted{{Name: "a", Weight: 1, Adapter: sl(1)}}, `unknown mode "ties" (want cat, linear, svd)`},
		{"NaN weight", CombineCat, 0, []Weighted{{Name: "a", Weight: math.NaN(), Adapter: sl(1)}}, "input a: weight NaN is not a finite number"},
		{"Inf weight", CombineCat, 0, []Weighted{{Name: "a", Weight: math.Inf(-1), Adapter: sl(1)}}, "weight -Inf is not a finite number"},
		{"duplicate names", CombineCat, 0, []Weighted{{Name: "a", Weight: 1, Adapter: sl(1)}, {Name: "a", Weight: 1, Adapter: sl(2)}}, `the name "a" is given to two inputs`},
		{"empty name", CombineCat, 0, []Weighted{{Weight: 1, Adapter: sl(1)}}, "input 1 has no name"},
		{"dora refused", CombineCat, 0, []Weighted{{Name: "a", Weight: 1, Adapter: sl(1)}, {Name: "d", Weight: 1, Adapter: combAdapter(t, peft.DoRA, combineSpecs, 2, nil, 4, false, 0, 0, 2)}}, "input d is a DoRA adapter, which has no additive ΔW"},
		{"dora refused by svd", CombineSVD, 0, []Weighted{{Name: "d", Weight: 1, Adapter: combAdapter(t, peft.DoRA, combineSpecs, 2, nil, 4, false, 0, 0, 2)}}, "DoRA"},
		{"modules_to_save refused", CombineCat, 0, []Weighted{{Name: "h", Weight: 1, Adapter: head}}, "input h has modules_to_save [classifier]"},
		{"bias refused", CombineCat, 0, []Weighted{{Name: "b", Weight: 1, Adapter: bias}}, `input b has bias "all"`},
		{"shape mismatch", CombineCat, 0, []Weighted{{Name: "a", Weight: 1, Adapter: lo(1)}, {Name: "m", Weight: 1, Adapter: mismatch}}, "module enc.layer.0.down is [out,in]=[4,8] in input a but [5,8] in input m"},
		{"layout mismatch", CombineCat, 0, []Weighted{{Name: "a", Weight: 1, Adapter: lo(1)}, {Name: "l", Weight: 1, Adapter: layout}}, "module enc.layer.0.down's base weight is stored out,in in input a but in,out in input l"},
		{"rank for cat", CombineCat, 3, []Weighted{{Name: "a", Weight: 1, Adapter: sl(1)}}, "a rank (3) is for svd only"},
		{"svd rank negative", CombineSVD, -1, []Weighted{{Name: "a", Weight: 1, Adapter: sl(1)}}, "want K ≥ 1"},
		{"svd rank too large", CombineSVD, 5, []Weighted{{Name: "a", Weight: 1, Adapter: sl(1)}}, "rank 5 exceeds module enc.layer.0.down's min(in, out) = min(8, 4) = 4: give a rank ≤ 4"},
		{"linear mixed methods", CombineLinear, 0, []Weighted{{Name: "a", Weight: 1, Adapter: sl(1)}, {Name: "b", Weight: 1, Adapter: lo(2)}}, "input a is singlora but input b is lora"},
		{"linear different modules", CombineLinear, 0, []Weighted{{Name: "a", Weight: 1, Adapter: lo(1)}, {Name: "b", Weight: 1, Adapter: combAdapter(t, peft.LoRA, combineSpecs[:1], 2, nil, 4, false, 0, 0, 2)}}, "module enc.layer.0.down is in input a but not in input b"},
		{"linear different ranks", CombineLinear, 0, []Weighted{{Name: "a", Weight: 1, Adapter: lo(1)}, {Name: "b", Weight: 1, Adapter: combAdapter(t, peft.LoRA, combineSpecs, 2, map[string]int{"enc.layer.0.up": 3}, 4, false, 0, 0, 2)}}, "module enc.layer.0.up has rank 2 in input a but 3 in input b"},
		{"linear singlora negative", CombineLinear, 0, []Weighted{{Name: "a", Weight: 1, Adapter: sl(1)}, {Name: "b", Weight: -1, Adapter: sl(2)}}, "input b has w·s·u = -2 < 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _, err := Combine(c.inputs, c.how, c.rank)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
			if out != nil {
				t.Error("an adapter returned with the error")
			}
		})
	}
}

// TestCombineFolders: the folder form loads, combines and saves; the output may not be an input,
// and a bad input leaves no output.
func TestCombineFolders(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := Save(a, combAdapter(t, peft.SingLoRA, combineSpecs, 2, nil, 4, false, 10, 5, 1)); err != nil {
		t.Fatal(err)
	}
	if err := Save(b, combAdapter(t, peft.LoRA, combineSpecs, 3, nil, 3, false, 0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	_, rep, err := CombineFolders([]CombineInput{{Dir: a, Weight: 1}, {Name: "bee", Dir: b, Weight: 2}}, out, CombineCat, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PeftType != TypeLoRA || rep.Modules[0].Inputs[0] != "a" || rep.Modules[0].Inputs[1] != "bee" || rep.RelError > 1e-6 {
		t.Errorf("report %+v", rep)
	}
	back, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	la, _ := Load(a)
	lb, _ := Load(b)
	want := wantSum(t, []Weighted{{Weight: 1, Adapter: la}, {Weight: 2, Adapter: lb}})
	for _, m := range back.Modules {
		if d, n := frob(libDelta(t, back, m), want[m.Path]); d > 1e-12*n {
			t.Errorf("%s: reloaded ΔW off by %g relative", m.Path, math.Sqrt(d/n))
		}
	}
	for _, c := range []struct {
		name string
		in   []CombineInput
		out  string
		want string
	}{
		{"out is an input", []CombineInput{{Dir: a, Weight: 1}, {Dir: b, Weight: 1}}, b + "/", "the output folder " + b + "/ is the input " + b},
		{"missing input", []CombineInput{{Dir: a, Weight: 1}, {Dir: filepath.Join(dir, "nope"), Weight: 1}}, filepath.Join(dir, "o2"), "input nope:"},
		{"duplicate default names", []CombineInput{{Dir: a, Weight: 1}, {Dir: filepath.Join(dir, "x", "a"), Weight: 1}}, filepath.Join(dir, "o3"), `the name "a" is given to two inputs`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := CombineFolders(c.in, c.out, CombineCat, 0)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(c.out, ConfigFile)); c.name != "out is an input" && err == nil {
				t.Errorf("%s written on error", c.out)
			}
		})
	}
	// The input that --out named is untouched.
	if again, err := Load(b); err != nil || again.Config.PeftType != TypeLoRA || again.Config.R != 3 {
		t.Errorf("input b changed: %v", err)
	}
}
