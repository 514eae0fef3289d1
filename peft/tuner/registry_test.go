package tuner_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/peft" // registers the built-in methods
	"github.com/singlora/singlora/peft/peftdef"
	"github.com/singlora/singlora/peft/tuner"
)

// TestBuiltinsRegistered: the six methods are registered in their listed order, each reachable
// by name and alias, with Method.HasAdapter (peftdef's table) agreeing with the registry.
func TestBuiltinsRegistered(t *testing.T) {
	want := []peft.Method{peft.SingLoRA, peft.LoRA, peft.LoRAPlus, peft.DoRA, peft.Full, peft.Frozen}
	var got []peft.Method
	for _, m := range tuner.All() {
		got = append(got, m.Name())
	}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Fatalf("registered %v, want %v first", got, want)
	}
	if l := tuner.MethodList(); !strings.HasPrefix(l, "singlora, lora, loraplus, dora, full") {
		t.Errorf("MethodList() = %q", l)
	}
	adapters := map[peft.Method]bool{peft.SingLoRA: true, peft.LoRA: true, peft.LoRAPlus: true, peft.DoRA: true}
	for _, m := range want {
		if m.HasAdapter() != adapters[m] || tuner.HasAdapter(m) != adapters[m] {
			t.Errorf("%s: Method.HasAdapter %v, tuner.HasAdapter %v, want %v", m, m.HasAdapter(), tuner.HasAdapter(m), adapters[m])
		}
	}
	if peftdef.Method("bogus").HasAdapter() || tuner.HasAdapter("bogus") {
		t.Error("an unregistered name has an adapter")
	}
	for _, c := range []struct {
		in   string
		want peft.Method
	}{
		{"singlora", peft.SingLoRA}, {" LoRA ", peft.LoRA}, {"lora+", peft.LoRAPlus}, {"LORA_PLUS", peft.LoRAPlus},
		{"loraplus", peft.LoRAPlus}, {"dora", peft.DoRA}, {"full", peft.Full}, {"none", peft.Frozen}, {"head", peft.Frozen},
	} {
		if m, err := tuner.Parse(c.in); err != nil || m != c.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", c.in, m, err, c.want)
		}
	}
	_, err := tuner.Parse("vera")
	if err == nil || !strings.Contains(err.Error(), `unknown method "vera" (known: singlora, lora, loraplus, dora, full, frozen`) {
		t.Errorf("Parse(vera): %v", err)
	}
	if _, err := tuner.Lookup("lora+"); err == nil {
		t.Error("Lookup accepts an alias; Config.Method holds names only")
	}
}

// TestTensorContract: every method's tensor names are the same for every layer shape and rank
// (the registry reads them once), shapes have the layer's sizes, and methods with tensors list
// an init, a peft_type that adapterconfig accepts, and train exactly their own tensors.
func TestTensorContract(t *testing.T) {
	specs := []tuner.LinearSpec{{Path: "a", In: 6, Out: 6}, {Path: "b", In: 7, Out: 3}, {Path: "c", In: 2, Out: 9, Layout: tuner.InOut}}
	for _, m := range tuner.All() {
		first := m.Tensors(specs[0], 1)
		for _, s := range specs {
			for _, r := range []int{1, 2, 5} {
				ts := m.Tensors(s, r)
				if len(ts) != len(first) {
					t.Fatalf("%s: %d tensors for %v r=%d, %d for %v r=1", m.Name(), len(ts), s, r, len(first), specs[0])
				}
				for i := range ts {
					if ts[i].Name != first[i].Name || ts[i].NoWeightSuffix != first[i].NoWeightSuffix {
						t.Errorf("%s: tensor %d is %+v for %v r=%d, %+v otherwise", m.Name(), i, ts[i], s, r, first[i])
					}
					for _, d := range ts[i].Shape {
						if d <= 0 {
							t.Errorf("%s: %s has shape %v", m.Name(), ts[i].Name, ts[i].Shape)
						}
					}
				}
			}
		}
		if len(first) == 0 {
			continue
		}
		if len(m.Inits()) == 0 || m.PeftType() == "" {
			t.Errorf("%s: inits %v, peft_type %q", m.Name(), m.Inits(), m.PeftType())
		}
		c := &adapterconfig.Config{PeftType: m.PeftType(), Settings: adapterconfig.Settings{R: 1, LoraAlpha: 1, TargetModules: []string{"all-linear"}}}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: adapterconfig refuses its peft_type: %v", m.Name(), err)
		}
		for _, ts := range first {
			if !m.Trainable("/enc/q/"+ts.Name) || !tuner.IsAdapterTensor(ts.Name) {
				t.Errorf("%s: own tensor %s: trainable %v, adapter tensor %v", m.Name(), ts.Name, m.Trainable("/enc/q/"+ts.Name), tuner.IsAdapterTensor(ts.Name))
			}
		}
		if m.Trainable("/enc/q/weight") || m.Trainable("/enc/q/bias") {
			t.Errorf("%s trains the base", m.Name())
		}
	}
	if !tuner.Full.Trainable("/enc/q/weight") || tuner.Frozen.Trainable("/classifier/weight") {
		t.Error("full must train every variable, frozen none")
	}
}

// TestFileRoundTrip: for each adapter method, the config it writes (ToFile) is claimed back by
// it and by no other method (ForFile), with the method's settings restored.
func TestFileRoundTrip(t *testing.T) {
	for _, m := range tuner.All() {
		if !tuner.HasAdapter(m.Name()) {
			continue
		}
		c := tuner.DefaultConfig(m.Name())
		c.Rank, c.Alpha, c.RampSteps, c.Seed = 4, 8, 30, 7
		if m.Name() == peft.LoRAPlus {
			c.LoRAPlusRatio = 4
		}
		f := &adapterconfig.Config{Settings: adapterconfig.Settings{R: c.Rank, LoraAlpha: c.Alpha, TargetModules: c.Targets}, Seed: c.Seed}
		m.ToFile(c, f)
		got, pc, err := tuner.ForFile(f)
		if err != nil {
			t.Fatalf("%s: %v", m.Name(), err)
		}
		if got.Name() != m.Name() || pc.Method != m.Name() || pc.Rank != 4 || pc.Alpha != 8 || pc.Seed != 7 || pc.Init != c.Init {
			t.Errorf("%s: read back as %s with %+v", m.Name(), got.Name(), pc)
		}
		if m.UsesRamp() != (pc.RampSteps == 30) {
			t.Errorf("%s: ramp %d read back (uses ramp: %v)", m.Name(), pc.RampSteps, m.UsesRamp())
		}
		if m.Name() == peft.LoRAPlus && pc.LoRAPlusRatio != 4 {
			t.Errorf("loraplus: λ %v read back", pc.LoRAPlusRatio)
		}
	}
	_, _, err := tuner.ForFile(&adapterconfig.Config{PeftType: "IA3"})
	if err == nil || !strings.Contains(err.Error(), `unsupported peft_type "IA3" (want "SINGLORA" or "LORA"`) {
		t.Errorf("IA3: %v", err)
	}
}

// TestConfigValidateInit: an init of another method names its owner and what this one accepts.
func TestConfigValidateInit(t *testing.T) {
	cases := []struct {
		m    peft.Method
		init peft.Init
		want string // "" = accepted
	}{
		{peft.SingLoRA, "", ""},
		{peft.SingLoRA, peft.InitKaimingDR, ""},
		{peft.LoRA, peft.InitKaiming, ""},
		{peft.SingLoRA, peft.InitKaiming, `init "kaiming" is for lora, loraplus, dora, not singlora (singlora accepts theory or kaiming-dr)`},
		{peft.DoRA, peft.InitTheory, `init "theory" is for singlora, not dora (dora accepts kaiming or gaussian)`},
		{peft.LoRA, "xavier", `unknown init "xavier" (lora accepts kaiming or gaussian)`},
	}
	for _, c := range cases {
		cfg := tuner.DefaultConfig(c.m)
		cfg.Init = c.init
		err := cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s init %q: %v", c.m, c.init, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s init %q: error %v, want one containing %q", c.m, c.init, err, c.want)
		}
	}
	cfg := tuner.DefaultConfig("vera")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `peft config: unknown method "vera" (known: singlora`) {
		t.Errorf("unknown method: %v", err)
	}
}

// fake is a registrable method for the registry's refusals.
type fake struct {
	*tuner.NoAdapter
	tensors []tuner.TensorSpec
	inits   []tuner.Init
	peft    string
}

func (f fake) Tensors(tuner.LinearSpec, int) []tuner.TensorSpec { return f.tensors }
func (f fake) Inits() []tuner.Init                              { return f.inits }
func (f fake) PeftType() string                                 { return f.peft }

func TestRegisterRefuses(t *testing.T) {
	named := func(name string, alias ...string) *tuner.NoAdapter {
		return &tuner.NoAdapter{Method: tuner.Method(name), Alias: alias}
	}
	mag := []tuner.TensorSpec{{Name: peft.NameMagnitude, Shape: []int{3}}} // DoRA's has NoWeightSuffix
	cases := []struct {
		name string
		t    tuner.Tuner
		want string
	}{
		{"taken name", named("lora"), `the name "lora" is taken by lora`},
		{"taken alias", named("lora-two", "LoRA+"), `the name "LoRA+" is taken by loraplus`},
		{"empty alias", named("x-empty", " "), "empty name or alias"},
		{"tensor suffix clash", fake{named("x-mag"), mag, []tuner.Init{"i"}, "X"}, "tensor lora_magnitude_vector is already registered with NoWeightSuffix true"},
		{"no init", fake{named("x-noinit"), []tuner.TensorSpec{{Name: "x_A", Shape: []int{1}}}, nil, "X"}, "must list at least one init"},
		{"no peft_type", fake{named("x-notype"), []tuner.TensorSpec{{Name: "x_A", Shape: []int{1}}}, []tuner.Init{"i"}, ""}, "needs a peft_type"},
	}
	for _, c := range cases {
		err := tuner.Register(c.t)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Register = %v, want an error containing %q", c.name, err, c.want)
		}
		if _, err := tuner.Lookup(c.t.Name()); err == nil && c.name != "taken name" {
			t.Errorf("%s: %s was registered anyway", c.name, c.t.Name())
		}
	}
}
