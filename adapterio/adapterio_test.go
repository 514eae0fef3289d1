package adapterio

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

func randVals(rng *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((rng.Float64()*2 - 1) * scale)
	}
	return out
}

// shapes used throughout: square, in > out, out > in.
var testSpecs = []peft.LinearSpec{
	{Path: "enc.layer.0.query", In: 6, Out: 6},
	{Path: "enc.layer.0.down", In: 8, Out: 4},
	{Path: "enc.layer.0.up", In: 4, Out: 8},
}

// newAdapter builds a random adapter of method m over specs (layout taken from each spec).
func newAdapter(t testing.TB, m peft.Method, specs []peft.LinearSpec, r int, alpha float64, rs bool, T, steps int64, seed uint64) *Adapter {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	c := &Config{Settings: Settings{R: r, LoraAlpha: alpha, TargetModules: []string{peft.AllLinear}, UseRSLoRA: rs},
		BaseModel: "test/base", TrainedSteps: steps, Extra: map[string]json.RawMessage{}}
	switch m {
	case peft.SingLoRA:
		c.PeftType, c.RampUpSteps, c.Init = TypeSingLoRA, T, string(peft.InitTheory)
	default:
		c.PeftType, c.Bias = TypeLoRA, "none"
		c.UseDora = m == peft.DoRA
		if m == peft.LoRAPlus {
			c.LoraPlusRatio = 16
		}
	}
	inOut := 0
	for _, s := range specs {
		if s.Layout == peft.InOut {
			inOut++
		}
	}
	c.FanInFanOut = inOut == len(specs)
	a := &Adapter{Config: c}
	for _, s := range specs {
		if s.Layout == peft.InOut && !c.FanInFanOut {
			c.InOutModules = append(c.InOutModules, s.Path)
		}
		mod := &Module{Path: s.Path, In: s.In, Out: s.Out, Layout: s.Layout, Tensors: map[string]*Matrix{}}
		for _, at := range peft.AdapterTensors(m, s, r) {
			n := 1
			for _, d := range at.Shape {
				n *= d
			}
			vals := randVals(rng, n, 0.5)
			if at.Name == peft.NameMagnitude {
				for i := range vals {
					vals[i] = 0.5 + float32(math.Abs(float64(vals[i])))
				}
			}
			mod.Tensors[at.Name] = &Matrix{Shape: at.Shape, Data: vals}
		}
		a.Modules = append(a.Modules, mod)
	}
	return a
}

func approx(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, m := range []peft.Method{peft.SingLoRA, peft.LoRA, peft.LoRAPlus, peft.DoRA} {
		t.Run(string(m), func(t *testing.T) {
			a := newAdapter(t, m, testSpecs, 3, 6, m == peft.LoRA, 100, 250, 1)
			a.Config.ModulesToSave = []string{"classifier"}
			a.Config.Extra["custom_key"] = json.RawMessage(`{"x":[1,2]}`)
			a.Saved = []SavedTensor{{Name: "classifier.weight", Matrix: Matrix{Shape: []int{2, 6}, Data: randVals(rand.New(rand.NewPCG(3, 3)), 12, 1)}}}
			dir := filepath.Join(t.TempDir(), "adapter")
			if err := Save(dir, a); err != nil {
				t.Fatal(err)
			}
			b, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if b.Method() != m {
				t.Errorf("method %s, want %s", b.Method(), m)
			}
			if b.Config.TrainedSteps != 250 && m == peft.SingLoRA {
				t.Errorf("trained_steps %d", b.Config.TrainedSteps)
			}
			if m == peft.SingLoRA && b.Config.Ramp() != 1 {
				t.Errorf("trained past T but u = %v", b.Config.Ramp())
			}
			if b.Config.R != 3 || b.Config.LoraAlpha != 6 || b.Config.UseRSLoRA != a.Config.UseRSLoRA || b.Config.BaseModel != "test/base" {
				t.Errorf("config changed: %+v", b.Config)
			}
			if string(b.Config.Extra["custom_key"]) != `{"x":[1,2]}` {
				t.Errorf("extra key lost: %q", b.Config.Extra["custom_key"])
			}
			if len(b.Modules) != len(a.Modules) {
				t.Fatalf("%d modules, want %d", len(b.Modules), len(a.Modules))
			}
			for i, am := range a.Modules {
				bm := b.Modules[i]
				if bm.Path != am.Path || bm.In != am.In || bm.Out != am.Out {
					t.Errorf("module %d: %s %dx%d, want %s %dx%d", i, bm.Path, bm.In, bm.Out, am.Path, am.In, am.Out)
				}
				for name, at := range am.Tensors {
					bt := bm.Tensors[name]
					if bt == nil || !slices.Equal(bt.Shape, at.Shape) || !slices.Equal(bt.Data, at.Data) {
						t.Errorf("module %s tensor %s differs", am.Path, name)
					}
				}
			}
			if !reflect.DeepEqual(b.Saved, a.Saved) {
				t.Errorf("modules_to_save tensors differ")
			}
			// Tensor names follow PEFT.
			f, err := safetensors.Read(filepath.Join(dir, WeightsFile))
			if err != nil {
				t.Fatal(err)
			}
			names := f.Names()
			want := "base_model.model.enc.layer.0.query.lora_A.weight"
			if m == peft.SingLoRA {
				want = "base_model.model.enc.layer.0.query.singlora_A.weight"
			}
			if !slices.Contains(names, want) || !slices.Contains(names, "base_model.model.classifier.weight") {
				t.Errorf("tensor names %v lack %s", names, want)
			}
			if m == peft.DoRA && !slices.Contains(names, "base_model.model.enc.layer.0.up.lora_magnitude_vector") {
				t.Errorf("DoRA magnitude name: %v", names)
			}
			// Saving the loaded adapter again gives identical files.
			dir2 := filepath.Join(t.TempDir(), "again")
			if err := Save(dir2, b); err != nil {
				t.Fatal(err)
			}
			for _, fn := range []string{ConfigFile, WeightsFile} {
				x, _ := os.ReadFile(filepath.Join(dir, fn))
				y, _ := os.ReadFile(filepath.Join(dir2, fn))
				if string(x) != string(y) {
					t.Errorf("%s differs after load→save", fn)
				}
			}
		})
	}
}

func TestRampAfterReload(t *testing.T) {
	for _, c := range []struct {
		T, steps int64
		u        float64
	}{{0, 0, 1}, {100, 0, 0}, {100, 25, 0.25}, {100, 100, 1}, {100, 1000, 1}} {
		a := newAdapter(t, peft.SingLoRA, testSpecs[:1], 2, 2, false, c.T, c.steps, 2)
		dir := filepath.Join(t.TempDir(), "a")
		if err := Save(dir, a); err != nil {
			t.Fatal(err)
		}
		b, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if b.Config.Ramp() != c.u {
			t.Errorf("T=%d steps=%d: u=%v, want %v", c.T, c.steps, b.Config.Ramp(), c.u)
		}
	}
}

// independentDelta computes s·u·A[:out]·A[:in]ᵀ as the top-left out×in block of the full d×d A·Aᵀ
// in float64, returned as [out][in].
func independentDelta(A []float32, d, r, out, in int, alpha float64, rs bool, u float64) [][]float64 {
	full := make([][]float64, d)
	for x := range d {
		full[x] = make([]float64, d)
		for y := range d {
			for k := range r {
				full[x][y] += float64(A[x*r+k]) * float64(A[y*r+k])
			}
		}
	}
	s := alpha / float64(r)
	if rs {
		s = alpha / math.Sqrt(float64(r))
	}
	res := make([][]float64, out)
	for o := range out {
		res[o] = make([]float64, in)
		for i := range in {
			res[o][i] = s * u * full[o][i]
		}
	}
	return res
}

func TestMergeSingLoRAMatchesIndependent(t *testing.T) {
	for _, c := range []struct {
		name   string
		in     int
		out    int
		layout peft.Layout
		rs     bool
		T      int64
		steps  int64
	}{
		{"square", 6, 6, peft.OutIn, false, 0, 0},
		{"in>out", 9, 4, peft.OutIn, false, 10, 3},
		{"out>in", 4, 9, peft.OutIn, true, 10, 30},
		{"square InOut", 5, 5, peft.InOut, false, 10, 5},
		{"in>out InOut", 9, 4, peft.InOut, true, 0, 0},
		{"out>in InOut", 4, 9, peft.InOut, false, 8, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := peft.LinearSpec{Path: "m", In: c.in, Out: c.out, Layout: c.layout}
			r, alpha := 3, 5.0
			a := newAdapter(t, peft.SingLoRA, []peft.LinearSpec{spec}, r, alpha, c.rs, c.T, c.steps, 4)
			u := 1.0
			if c.T > 0 {
				u = math.Min(float64(c.steps)/float64(c.T), 1)
			}
			m := a.Modules[0]
			want := independentDelta(m.Tensors[peft.NameSingLoRAA].Data, max(c.in, c.out), r, c.out, c.in, alpha, c.rs, u)
			rng := rand.New(rand.NewPCG(9, 9))
			w0f := randVals(rng, c.in*c.out, 1)
			w0 := make([]float64, len(w0f))
			for i, v := range w0f {
				w0[i] = float64(v)
			}
			merged, err := MergeWeight(a, m, w0, false)
			if err != nil {
				t.Fatal(err)
			}
			at := func(o, i int) int {
				if c.layout == peft.InOut {
					return i*c.out + o
				}
				return o*c.in + i
			}
			merged32 := make([]float64, len(merged))
			for o := range c.out {
				for i := range c.in {
					got := float32(merged[at(o, i)])
					exp := float32(w0[at(o, i)] + want[o][i])
					if !approx(float64(got), float64(exp), 1e-6) {
						t.Fatalf("W[%d,%d] = %v, want %v", o, i, got, exp)
					}
					merged32[at(o, i)] = float64(got)
				}
			}
			if u > 0 && slices.Equal(merged, w0) {
				t.Fatal("merge changed nothing")
			}
			back, err := MergeWeight(a, m, merged32, true)
			if err != nil {
				t.Fatal(err)
			}
			for i := range back {
				if !approx(float64(float32(back[i])), w0[i], 1e-6) {
					t.Fatalf("unmerge: %v, want %v", back[i], w0[i])
				}
			}
		})
	}
}

func TestMergeLoRAAndDoRA(t *testing.T) {
	for _, layout := range []peft.Layout{peft.OutIn, peft.InOut} {
		spec := peft.LinearSpec{Path: "m", In: 7, Out: 5, Layout: layout}
		at := func(o, i int) int {
			if layout == peft.InOut {
				return i*5 + o
			}
			return o*7 + i
		}
		rng := rand.New(rand.NewPCG(1, 1))
		w0 := make([]float64, 35)
		for i := range w0 {
			w0[i] = float64(float32(rng.NormFloat64()))
		}
		for _, m := range []peft.Method{peft.LoRA, peft.DoRA} {
			a := newAdapter(t, m, []peft.LinearSpec{spec}, 2, 4, true, 0, 0, 5)
			mod := a.Modules[0]
			A, B := mod.Tensors[peft.NameLoRAA].Data, mod.Tensors[peft.NameLoRAB].Data
			s := 4 / math.Sqrt(2)
			v := make([][]float64, 5)
			for o := range 5 {
				v[o] = make([]float64, 7)
				for i := range 7 {
					v[o][i] = w0[at(o, i)] + s*(float64(B[o*2])*float64(A[i])+float64(B[o*2+1])*float64(A[7+i]))
				}
			}
			if m == peft.DoRA {
				mag := mod.Tensors[peft.NameMagnitude].Data
				for o := range 5 {
					var n float64
					for i := range 7 {
						n += v[o][i] * v[o][i]
					}
					for i := range 7 {
						v[o][i] *= float64(mag[o]) / math.Sqrt(n)
					}
				}
			}
			got, err := MergeWeight(a, mod, w0, false)
			if err != nil {
				t.Fatal(err)
			}
			for o := range 5 {
				for i := range 7 {
					if !approx(got[at(o, i)], v[o][i], 1e-12) {
						t.Fatalf("%s %s: W[%d,%d] = %v, want %v", m, layout, o, i, got[at(o, i)], v[o][i])
					}
				}
			}
			if m == peft.DoRA {
				if _, err := MergeWeight(a, mod, got, true); err == nil {
					t.Error("DoRA unmerge accepted")
				}
			}
		}
	}
}

func TestExportLoRA(t *testing.T) {
	for _, c := range []struct {
		rs       bool
		T, steps int64
	}{{false, 0, 0}, {true, 100, 40}, {false, 10, 10}} {
		specs := []peft.LinearSpec{{Path: "a", In: 6, Out: 6}, {Path: "b", In: 10, Out: 3}, {Path: "c", In: 3, Out: 10}}
		a := newAdapter(t, peft.SingLoRA, specs, 4, 16, c.rs, c.T, c.steps, 6)
		src, dst := filepath.Join(t.TempDir(), "s"), filepath.Join(t.TempDir(), "d")
		if err := Save(src, a); err != nil {
			t.Fatal(err)
		}
		if _, err := ExportLoRAFolder(src, dst); err != nil {
			t.Fatal(err)
		}
		e, err := Load(dst)
		if err != nil {
			t.Fatal(err)
		}
		if e.Config.PeftType != TypeLoRA || e.Config.LoraAlpha != 4 || e.Config.UseRSLoRA || e.Config.Scale() != 1 {
			t.Fatalf("exported config %+v", e.Config)
		}
		u := 1.0
		if c.T > 0 {
			u = math.Min(float64(c.steps)/float64(c.T), 1)
		}
		for _, sm := range a.Modules {
			em := e.Module(sm.Path)
			if em == nil {
				t.Fatalf("module %s missing", sm.Path)
			}
			want := independentDelta(sm.Tensors[peft.NameSingLoRAA].Data, max(sm.In, sm.Out), 4, sm.Out, sm.In, 16, c.rs, u)
			got, err := DeltaW(e, em)
			if err != nil {
				t.Fatal(err)
			}
			for o := range sm.Out {
				for i := range sm.In {
					if math.Abs(got[o*sm.In+i]-want[o][i]) > 1e-6*(1+math.Abs(want[o][i])) {
						t.Fatalf("%s: B·A[%d,%d] = %v, ΔW = %v", sm.Path, o, i, got[o*sm.In+i], want[o][i])
					}
				}
			}
		}
		var raw map[string]any
		b, _ := os.ReadFile(filepath.Join(dst, ConfigFile))
		_ = json.Unmarshal(b, &raw)
		if raw["peft_type"] != "LORA" || raw["bias"] != "none" || raw["use_dora"] != false {
			t.Errorf("exported config not PEFT LoRA: %s", b)
		}
	}
}

func writeConfig(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	good := newAdapter(t, peft.SingLoRA, testSpecs, 2, 2, false, 10, 5, 8)
	cases := []struct {
		name string
		mod  func(t *testing.T, dir string)
		want string
	}{
		{"missing r", func(t *testing.T, d string) { writeConfig(t, d, func(m map[string]any) { delete(m, "r") }) }, `missing required key "r"`},
		{"missing trained_steps", func(t *testing.T, d string) {
			writeConfig(t, d, func(m map[string]any) { delete(m, "trained_steps") })
		}, "trained_steps"},
		{"missing peft_type", func(t *testing.T, d string) { writeConfig(t, d, func(m map[string]any) { delete(m, "peft_type") }) }, "peft_type"},
		{"rank 0", func(t *testing.T, d string) { writeConfig(t, d, func(m map[string]any) { m["r"] = 0 }) }, "r must be"},
		{"rank negative", func(t *testing.T, d string) { writeConfig(t, d, func(m map[string]any) { m["r"] = -2 }) }, "r must be"},
		{"rank disagrees", func(t *testing.T, d string) { writeConfig(t, d, func(m map[string]any) { m["r"] = 3 }) }, "want [6 3]"},
		{"unknown type", func(t *testing.T, d string) { writeConfig(t, d, func(m map[string]any) { m["peft_type"] = "IA3" }) }, "unsupported peft_type"},
		{"alpha zero", func(t *testing.T, d string) { writeConfig(t, d, func(m map[string]any) { m["lora_alpha"] = 0 }) }, "lora_alpha"},
		{"shape list wrong", func(t *testing.T, d string) {
			writeConfig(t, d, func(m map[string]any) { m["module_shapes"].(map[string]any)["enc.layer.0.down"] = []int{4, 9} })
		}, "want [9 2]"},
		{"lora type with singlora tensors", func(t *testing.T, d string) {
			writeConfig(t, d, func(m map[string]any) { m["peft_type"] = "LORA" })
		}, "does not belong"},
		{"not json", func(t *testing.T, d string) { _ = os.WriteFile(filepath.Join(d, ConfigFile), []byte("{r:"), 0o644) }, "JSON"},
		{"duplicate key", func(t *testing.T, d string) {
			b, _ := os.ReadFile(filepath.Join(d, ConfigFile))
			b = []byte(strings.Replace(string(b), "{", `{"r": 2,`, 1))
			_ = os.WriteFile(filepath.Join(d, ConfigFile), b, 0o644)
		}, "duplicate key"},
		{"no weights", func(t *testing.T, d string) { _ = os.Remove(filepath.Join(d, WeightsFile)) }, WeightsFile},
		{"truncated weights", func(t *testing.T, d string) {
			b, _ := os.ReadFile(filepath.Join(d, WeightsFile))
			_ = os.WriteFile(filepath.Join(d, WeightsFile), b[:len(b)-3], 0o644)
		}, "buffer"},
		{"nan", func(t *testing.T, d string) {
			f, _ := safetensors.Read(filepath.Join(d, WeightsFile))
			v, _ := f.Tensors[0].Float32s()
			v[3] = float32(math.NaN())
			f.Tensors[0], _ = safetensors.FromFloat32s(f.Tensors[0].Name, safetensors.F32, f.Tensors[0].Shape, v)
			_ = safetensors.Write(filepath.Join(d, WeightsFile), f.Tensors, nil)
		}, "non-finite"},
		{"inf", func(t *testing.T, d string) {
			f, _ := safetensors.Read(filepath.Join(d, WeightsFile))
			v, _ := f.Tensors[1].Float32s()
			v[0] = float32(math.Inf(-1))
			f.Tensors[1], _ = safetensors.FromFloat32s(f.Tensors[1].Name, safetensors.F32, f.Tensors[1].Shape, v)
			_ = safetensors.Write(filepath.Join(d, WeightsFile), f.Tensors, nil)
		}, "non-finite"},
		{"stray tensor", func(t *testing.T, d string) {
			f, _ := safetensors.Read(filepath.Join(d, WeightsFile))
			x, _ := safetensors.FromFloat32s("base_model.model.head.weight", safetensors.F32, []int{1}, []float32{1})
			_ = safetensors.Write(filepath.Join(d, WeightsFile), append(f.Tensors, x), nil)
		}, "not an adapter tensor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a")
			if err := Save(dir, good); err != nil {
				t.Fatal(err)
			}
			c.mod(t, dir)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestSaveInvalidLeavesNothing(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "a")
	bad := newAdapter(t, peft.SingLoRA, testSpecs, 2, 2, false, 10, 5, 8)
	bad.Modules[1].Tensors[peft.NameSingLoRAA].Data[0] = float32(math.NaN())
	if err := Save(dir, bad); err == nil {
		t.Fatal("NaN adapter saved")
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("failed save left %d entries", len(ents))
	}
	// Over an existing adapter: the old one stays intact.
	good := newAdapter(t, peft.SingLoRA, testSpecs, 2, 2, false, 10, 5, 9)
	if err := Save(dir, good); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, WeightsFile))
	bad.Config.R = 0
	if err := Save(dir, bad); err == nil {
		t.Fatal("rank-0 adapter saved")
	}
	after, _ := os.ReadFile(filepath.Join(dir, WeightsFile))
	if string(before) != string(after) {
		t.Error("failed save changed the existing adapter")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("adapter folder has %d entries", len(ents))
	}
	if _, err := Load(dir); err != nil {
		t.Errorf("old adapter no longer loads: %v", err)
	}
	// Overwriting an existing folder with a valid adapter works.
	if err := Save(dir, newAdapter(t, peft.LoRA, testSpecs, 2, 2, false, 0, 0, 10)); err != nil {
		t.Fatal(err)
	}
	if b, err := Load(dir); err != nil || b.Method() != peft.LoRA {
		t.Fatalf("overwrite: %v", err)
	}
}

// baseFile writes a checkpoint with the modules' weights in dtype plus unrelated tensors.
func baseFile(t *testing.T, path string, specs []peft.LinearSpec, dtype string) map[string][]float64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	vals := map[string][]float64{}
	var ts []safetensors.Tensor
	emb, _ := safetensors.FromFloat32s("embeddings.weight", safetensors.F32, []int{3, 2}, randVals(rng, 6, 1))
	ts = append(ts, emb, safetensors.Tensor{Name: "position_ids", DType: safetensors.I64, Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}})
	for _, s := range specs {
		shape := []int{s.Out, s.In}
		if s.Layout == peft.InOut {
			shape = []int{s.In, s.Out}
		}
		w, err := safetensors.FromFloat32s(s.Path+".weight", dtype, shape, randVals(rng, s.In*s.Out, 1))
		if err != nil {
			t.Fatal(err)
		}
		vals[w.Name], _ = w.Float64s()
		b, _ := safetensors.FromFloat32s(s.Path+".bias", dtype, []int{s.Out}, randVals(rng, s.Out, 1))
		ts = append(ts, w, b)
	}
	if err := safetensors.Write(path, ts, map[string]string{"format": "pt", "k": "v"}); err != nil {
		t.Fatal(err)
	}
	return vals
}

func TestMergeFile(t *testing.T) {
	for _, dtype := range []string{safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64} {
		for _, layout := range []peft.Layout{peft.OutIn, peft.InOut} {
			t.Run(dtype+"/"+layout.String(), func(t *testing.T) {
				specs := slices.Clone(testSpecs)
				for i := range specs {
					specs[i].Layout = layout
				}
				tmp := t.TempDir()
				base := filepath.Join(tmp, "base.safetensors")
				w0 := baseFile(t, base, specs, dtype)
				a := newAdapter(t, peft.SingLoRA, specs, 2, 4, false, 10, 7, 13)
				ad := filepath.Join(tmp, "adapter")
				if err := Save(ad, a); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(tmp, "merged.safetensors")
				rep, err := MergeFile(base, ad, out, false)
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Merged) != 3 || rep.Kept != 5 {
					t.Errorf("report %+v", rep)
				}
				bf, _ := safetensors.Read(base)
				mf, err := safetensors.Read(out)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(mf.Metadata, bf.Metadata) || !slices.Equal(mf.Names(), bf.Names()) {
					t.Fatalf("names/metadata changed")
				}
				tol := map[string]float64{safetensors.F32: 1e-6, safetensors.F64: 1e-12, safetensors.F16: 1e-3, safetensors.BF16: 8e-3}[dtype]
				for i, bt := range bf.Tensors {
					mt := mf.Tensors[i]
					if mt.DType != bt.DType || !slices.Equal(mt.Shape, bt.Shape) {
						t.Fatalf("%s: dtype/shape changed", bt.Name)
					}
					mod := a.Module(strings.TrimSuffix(bt.Name, ".weight"))
					if mod == nil {
						if string(mt.Data) != string(bt.Data) {
							t.Errorf("%s changed", bt.Name)
						}
						continue
					}
					want := independentDelta(mod.Tensors[peft.NameSingLoRAA].Data, max(mod.In, mod.Out), 2, mod.Out, mod.In, 4, false, 0.7)
					got, _ := mt.Float64s()
					for o := range mod.Out {
						for k := range mod.In {
							j := o*mod.In + k
							if layout == peft.InOut {
								j = k*mod.Out + o
							}
							exp := w0[bt.Name][j] + want[o][k]
							if !approx(got[j], exp, tol) {
								t.Fatalf("%s[%d,%d] = %v, want %v", bt.Name, o, k, got[j], exp)
							}
						}
					}
				}
				// Unmerge restores W0 (to the dtype's rounding).
				back := filepath.Join(tmp, "back.safetensors")
				if _, err := MergeFile(out, ad, back, true); err != nil {
					t.Fatal(err)
				}
				rf, _ := safetensors.Read(back)
				for i, bt := range bf.Tensors {
					x, _ := bt.Float64s()
					y, _ := rf.Tensors[i].Float64s()
					for j := range x {
						if !approx(y[j], x[j], 2*tol) {
							t.Fatalf("unmerged %s[%d] = %v, want %v", bt.Name, j, y[j], x[j])
						}
					}
				}
			})
		}
	}
}

func TestMergeFileErrors(t *testing.T) {
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base.safetensors")
	baseFile(t, base, testSpecs, safetensors.F32)
	orig, _ := os.ReadFile(base)
	cases := []struct {
		name  string
		specs []peft.LinearSpec
		want  string
	}{
		{"missing module", []peft.LinearSpec{{Path: "enc.layer.9.query", In: 6, Out: 6}}, "has no tensor enc.layer.9.query.weight"},
		{"shape mismatch", []peft.LinearSpec{{Path: "enc.layer.0.down", In: 4, Out: 8}}, "has shape [4 8]"},
		{"layout mismatch", []peft.LinearSpec{{Path: "enc.layer.0.down", In: 8, Out: 4, Layout: peft.InOut}}, "enc.layer.0.down"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ad := filepath.Join(tmp, c.name)
			if err := Save(ad, newAdapter(t, peft.SingLoRA, c.specs, 2, 2, false, 0, 0, 1)); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(tmp, "out-"+c.name)
			_, err := MergeFile(base, ad, out, false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Error("output written despite the error")
			}
			// In place: the base stays intact.
			if _, err := MergeFile(base, ad, base, false); err == nil {
				t.Fatal("in-place bad merge accepted")
			}
			if now, _ := os.ReadFile(base); string(now) != string(orig) {
				t.Fatal("base changed")
			}
		})
	}
	// DoRA unmerge refused, nothing written.
	ad := filepath.Join(tmp, "dora")
	if err := Save(ad, newAdapter(t, peft.DoRA, testSpecs, 2, 2, false, 0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := MergeFile(base, ad, filepath.Join(tmp, "x"), true); err == nil {
		t.Error("DoRA unmerge accepted")
	}
	if _, err := os.Stat(filepath.Join(tmp, "x")); err == nil {
		t.Error("output written")
	}
	if ents, _ := os.ReadDir(tmp); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.Contains(e.Name(), ".tmp-") }) {
		t.Error("temporary files left behind")
	}
}
