package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/peft"
)

// combineFixture saves a random adapter of method m (rank r, α 2r) over "blk.q" [4, 6] and
// "blk.v" [6, 4] into dir/name and returns its folder.
func combineFixture(t *testing.T, dir, name string, m peft.Method, r int, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	c := &adapterio.Config{Settings: adapterio.Settings{R: r, LoraAlpha: 2 * float64(r), TargetModules: []string{"q", "v"}}}
	switch m {
	case peft.SingLoRA:
		c.PeftType, c.Init, c.RampUpSteps, c.TrainedSteps = adapterio.TypeSingLoRA, "theory", 10, 5
	default:
		c.PeftType, c.Bias, c.UseDora = adapterio.TypeLoRA, adapterio.BiasNone, m == peft.DoRA
	}
	a := &adapterio.Adapter{Config: c}
	for _, s := range []peft.LinearSpec{{Path: "blk.q", Out: 4, In: 6}, {Path: "blk.v", Out: 6, In: 4}} {
		mod := &adapterio.Module{Path: s.Path, In: s.In, Out: s.Out, Tensors: map[string]*adapterio.Matrix{}}
		for _, at := range peft.AdapterTensors(m, s, r) {
			n := 1
			for _, d := range at.Shape {
				n *= d
			}
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(rng.Float64() - 0.5)
				if at.Name == peft.NameMagnitude {
					v[i] += 1
				}
			}
			mod.Tensors[at.Name] = &adapterio.Matrix{Shape: at.Shape, Data: v}
		}
		a.Modules = append(a.Modules, mod)
	}
	p := filepath.Join(dir, name)
	if err := adapterio.Save(p, a); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkSum checks that the adapter in out has ΔW = Σ wᵢΔWᵢ of the folders ins to tol (relative).
func checkSum(t *testing.T, out string, ins []string, ws []float64, tol float64) {
	t.Helper()
	got, err := adapterio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got.Modules {
		d, err := adapterio.DeltaW(got, m)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, len(d))
		for k, in := range ins {
			a, err := adapterio.Load(in)
			if err != nil {
				t.Fatal(err)
			}
			di, err := adapterio.DeltaW(a, a.Module(m.Path))
			if err != nil {
				t.Fatal(err)
			}
			for j := range di {
				want[j] += ws[k] * di[j]
			}
		}
		var diff, norm float64
		for j := range d {
			diff += (d[j] - want[j]) * (d[j] - want[j])
			norm += want[j] * want[j]
		}
		if rel := math.Sqrt(diff / norm); rel > tol {
			t.Errorf("%s: ‖ΔW_out − Σ wᵢΔWᵢ‖/‖Σ wᵢΔWᵢ‖ = %g, want ≤ %g", m.Path, rel, tol)
		}
	}
}

func TestCombineCommand(t *testing.T) {
	dir := t.TempDir()
	s1 := combineFixture(t, dir, "s1", peft.SingLoRA, 2, 1)
	s2 := combineFixture(t, dir, "s2", peft.SingLoRA, 3, 2)
	l1 := combineFixture(t, dir, "l1", peft.LoRA, 2, 3)
	for _, c := range []struct {
		name  string
		args  []string
		ins   []string
		ws    []float64
		tol   float64
		wants []string // fragments of the output
	}{
		{"cat singlora", []string{"--adapter", "one=" + s1 + ":0.5", "--adapter", s2}, []string{s1, s2}, []float64{0.5, 1}, 1e-6,
			[]string{"combined 2 adapters (one×0.5, s2×1) by cat → SINGLORA adapter, 2 modules, r=5, 60 params → ", "form: every input is SingLoRA", "overall "}},
		{"cat negative weight", []string{"--adapter", s1 + ":1," + s2 + ":-0.25"}, []string{s1, s2}, []float64{1, -0.25}, 1e-6,
			[]string{"by cat → LORA adapter", "input s2 has w·s·u = ", "< 0 on module blk.q"}},
		{"cat mixed", []string{"--adapter", "a=" + s1, "--adapter", "b=" + l1 + ":2", "--how", "cat"}, []string{s1, l1}, []float64{1, 2}, 1e-6,
			[]string{"by cat → LORA adapter", "input b is lora"}},
		{"linear one input", []string{"--how", "linear", "--adapter", s1 + ":0.5"}, []string{s1}, []float64{0.5}, 1e-6,
			[]string{"by linear → SINGLORA adapter", "  blk.q [4,6] r=2: error ", "  blk.v [6,4] r=2: error "}},
		{"svd", []string{"--how", "svd", "--rank", "4", "--adapter", s1, "--adapter", l1 + ":-1"}, []string{s1, l1}, []float64{1, -1}, 1e-5,
			[]string{"by svd → LORA adapter, 2 modules, r=4,", "dropped energy Σ_{j>K} σⱼ²/Σ σⱼ²: largest ", ", dropped energy "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			var buf bytes.Buffer
			if err := runCombine(append(c.args, "--out", out), &buf); err != nil {
				t.Fatal(err)
			}
			for _, w := range c.wants {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("output\n%s\nwant it to contain %q", buf.String(), w)
				}
			}
			checkSum(t, out, c.ins, c.ws, c.tol)
		})
	}
}

func TestCombineCommandJSON(t *testing.T) {
	dir := t.TempDir()
	s1 := combineFixture(t, dir, "s1", peft.SingLoRA, 2, 1)
	l1 := combineFixture(t, dir, "l1", peft.LoRA, 3, 2)
	out := filepath.Join(dir, "out")
	var buf bytes.Buffer
	if err := runCombine([]string{"--how", "svd", "--rank", "2", "--adapter", "s=" + s1 + ":1", "--adapter", "l=" + l1 + ":0.5", "--out", out, "--json"}, &buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Out    string `json:"out"`
		Inputs []struct {
			Name   string  `json:"name"`
			Dir    string  `json:"dir"`
			Weight float64 `json:"weight"`
		} `json:"inputs"`
		How      string  `json:"how"`
		PeftType string  `json:"peft_type"`
		R        int     `json:"r"`
		RelError float64 `json:"rel_error"`
		Max      float64 `json:"max_dropped_energy"`
		Modules  []struct {
			Path     string   `json:"path"`
			Rank     int      `json:"rank"`
			Inputs   []string `json:"inputs"`
			RelError float64  `json:"rel_error"`
			Dropped  float64  `json:"dropped_energy"`
		} `json:"modules"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if doc.Out != out || len(doc.Inputs) != 2 || doc.Inputs[1].Name != "l" || doc.Inputs[1].Weight != 0.5 || doc.Inputs[0].Dir != s1 ||
		doc.How != "svd" || doc.PeftType != "LORA" || doc.R != 2 || len(doc.Modules) != 2 || doc.Modules[0].Rank != 2 || len(doc.Modules[0].Inputs) != 2 {
		t.Errorf("json %s", buf.String())
	}
	maxD, sq := 0.0, 0.0
	for _, m := range doc.Modules {
		maxD = max(maxD, m.Dropped)
		sq += m.RelError * m.RelError
		// Eckart–Young: the relative error² is the dropped energy.
		if math.Abs(m.RelError*m.RelError-m.Dropped) > 1e-6 {
			t.Errorf("%s: error² %g, dropped energy %g", m.Path, m.RelError*m.RelError, m.Dropped)
		}
	}
	if maxD == 0 || maxD != doc.Max || doc.RelError == 0 {
		t.Errorf("dropped energies %g (max reported %g), error %g: rank 2 < 5 should drop some", maxD, doc.Max, doc.RelError)
	}
}

func TestCombineCommandRefuses(t *testing.T) {
	dir := t.TempDir()
	s1 := combineFixture(t, dir, "s1", peft.SingLoRA, 2, 1)
	s2 := combineFixture(t, dir, "s2", peft.SingLoRA, 2, 2)
	d1 := combineFixture(t, dir, "d1", peft.DoRA, 2, 3)
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no adapter", []string{"--out", out}, "--adapter is missing"},
		{"no out", []string{"--adapter", s1}, "--out is missing"},
		{"positional", []string{"--adapter", s1, "--out", out, "extra"}, "takes flags only"},
		{"NaN weight", []string{"--adapter", s1 + ":NaN", "--out", out}, "input s1: weight NaN is not a finite number"},
		{"Inf weight", []string{"--adapter", s1 + ":+Inf", "--out", out}, "weight +Inf is not a finite number"},
		{"weight not a number", []string{"--adapter", s1 + ":heavy", "--out", out}, `weight "heavy" is not a number`},
		{"empty name", []string{"--adapter", "=" + s1, "--out", out}, "empty name"},
		{"no folder", []string{"--adapter", "a=:2", "--out", out}, "no folder"},
		{"duplicate names", []string{"--adapter", "a=" + s1, "--adapter", "a=" + s2, "--out", out}, `the name "a" is given to two inputs`},
		{"duplicate default names", []string{"--adapter", s1, "--adapter", s1, "--out", out}, `the name "s1" is given to two inputs`},
		{"out is an input", []string{"--adapter", s1, "--adapter", s2, "--out", s2}, "is the input " + s2},
		{"unknown how", []string{"--how", "ties", "--adapter", s1, "--out", out}, `unknown --how "ties" (want cat, linear, svd)`},
		{"rank 0", []string{"--how", "svd", "--rank", "0", "--adapter", s1, "--out", out}, "--rank 0: want K ≥ 1"},
		{"rank too large", []string{"--how", "svd", "--rank", "5", "--adapter", s1, "--out", out}, "rank 5 exceeds module blk.q's min(in, out) = min(6, 4) = 4"},
		{"rank without svd", []string{"--rank", "2", "--adapter", s1, "--out", out}, "--rank is for --how svd"},
		{"dora", []string{"--adapter", s1, "--adapter", d1, "--out", out}, "input d1 is a DoRA adapter"},
		{"missing input", []string{"--adapter", s1, "--adapter", filepath.Join(dir, "nope"), "--out", out}, "input nope:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := runCombine(c.args, &buf)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Errorf("%s written on error", out)
			}
		})
	}
	if a, err := adapterio.Load(s2); err != nil || a.Config.PeftType != adapterio.TypeSingLoRA {
		t.Errorf("the input named as --out changed: %v", err)
	}
}

func TestParseCombineInput(t *testing.T) {
	for _, c := range []struct {
		in         string
		name, dir  string
		weight     float64
		wantErrSub string
	}{
		{"a=runs/x/adapter:0.5", "a", "runs/x/adapter", 0.5, ""},
		{"runs/x/adapter:-2", "", "runs/x/adapter", -2, ""},
		{"runs/x/adapter", "", "runs/x/adapter", 1, ""},
		{"b=dir", "b", "dir", 1, ""},
		{"runs/lr=0.1/adapter:3", "", "runs/lr=0.1/adapter", 3, ""},
		{"n=lr=0.1:1e-1", "n", "lr=0.1", 0.1, ""},
		{"dir:with:colon:1", "", "dir:with:colon", 1, ""},
		{"dir:with:colon", "", "", 0, `weight "colon" is not a number`},
		{"=dir", "", "", 0, "empty name"},
		{"a=", "", "", 0, "no folder"},
		{":1", "", "", 0, "no folder"},
	} {
		got, err := parseCombineInput(c.in)
		if c.wantErrSub != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErrSub) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.wantErrSub)
			}
			continue
		}
		if err != nil || got.Name != c.name || got.Dir != c.dir || got.Weight != c.weight {
			t.Errorf("%q: %+v, %v; want name %q dir %q weight %v", c.in, got, err, c.name, c.dir, c.weight)
		}
	}
}
