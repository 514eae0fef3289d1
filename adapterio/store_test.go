package adapterio

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
)

var storeSpecs = []peft.LinearSpec{
	{Path: "enc.layer.0.query", In: 6, Out: 6, Bias: true},
	{Path: "enc.layer.0.down", In: 8, Out: 4, Bias: true},
	{Path: "enc.layer.0.up", In: 4, Out: 8, Layout: peft.InOut},
}

// baseStore holds the base weights (same values for a given seed) and a classifier head.
func baseStore(t *testing.T, seed uint64) *model.Store {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	s := model.NewStore()
	for _, sp := range storeSpecs {
		dims := []int{sp.Out, sp.In}
		if sp.Layout == peft.InOut {
			dims = []int{sp.In, sp.Out}
		}
		if _, err := s.CreateVariable(sp.ScopePath()+"/weight", tensors.FromFlatDataAndDimensions(randVals(rng, sp.In*sp.Out, 1), dims...)); err != nil {
			t.Fatal(err)
		}
		if sp.Bias {
			if _, err := s.CreateVariable(sp.ScopePath()+"/bias", tensors.FromFlatDataAndDimensions(randVals(rng, sp.Out, 1), sp.Out)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.CreateVariable("/classifier/weight", tensors.FromFlatDataAndDimensions(make([]float32, 12), 2, 6)); err != nil {
		t.Fatal(err)
	}
	return s
}

func varValues(t *testing.T, s *model.Store, path string) []float32 {
	t.Helper()
	v := s.GetVariable(path)
	if v == nil {
		t.Fatalf("no variable %s", path)
	}
	vals, err := peft.Float32Values(v)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

func TestStoreRoundTrip(t *testing.T) {
	for _, m := range []peft.Method{peft.SingLoRA, peft.LoRA, peft.DoRA} {
		t.Run(string(m), func(t *testing.T) {
			cfg := peft.DefaultConfig(m)
			cfg.Rank, cfg.Alpha, cfg.RampSteps = 2, 4, 100
			cfg.ModulesToSave = []string{"classifier"}
			src := baseStore(t, 1)
			inj, err := peft.Inject(cfg, storeSpecs)
			if err != nil {
				t.Fatal(err)
			}
			if err := inj.Attach(src); err != nil {
				t.Fatal(err)
			}
			// "Train": change every adapter value, the head, and the step counter.
			rng := rand.New(rand.NewPCG(5, 5))
			want := map[string][]float32{}
			for _, sp := range inj.Targets() {
				for _, at := range peft.AdapterTensors(m, sp, cfg.Rank) {
					p := sp.ScopePath() + "/" + at.Name
					v := src.GetVariable(p)
					vals := randVals(rng, v.Shape().Size(), 1)
					if err := v.SetValue(tensors.FromFlatDataAndDimensions(vals, at.Shape...)); err != nil {
						t.Fatal(err)
					}
					want[p] = vals
				}
			}
			head := randVals(rng, 12, 1)
			if err := src.GetVariable("/classifier/weight").SetValue(tensors.FromFlatDataAndDimensions(head, 2, 6)); err != nil {
				t.Fatal(err)
			}
			want["/classifier/weight"] = head
			if err := optim.StepVar(src).SetValue(tensors.FromScalar(int64(137))); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "adapter")
			if err := SaveFromStore(dir, inj, src, "tiny-base"); err != nil {
				t.Fatal(err)
			}
			a, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if a.Config.BaseModel != "tiny-base" || a.Config.TrainedSteps != 137 && m == peft.SingLoRA {
				t.Errorf("config %+v", a.Config)
			}
			if m == peft.SingLoRA && a.Config.Ramp() != 1 {
				t.Errorf("u after 137 steps of T=100: %v", a.Config.Ramp())
			}
			if a.Config.FanInFanOut || !slices.Equal(a.Config.InOutModules, []string{"enc.layer.0.up"}) {
				t.Errorf("layout record: fan_in_fan_out=%v in_out_modules=%v", a.Config.FanInFanOut, a.Config.InOutModules)
			}

			dst := baseStore(t, 1)
			inj2, err := LoadIntoStore(dir, dst, storeSpecs)
			if err != nil {
				t.Fatal(err)
			}
			if inj2.Config.Method != m || inj2.Config.Rank != 2 || inj2.Config.RampSteps != cfg.RampSteps && m == peft.SingLoRA {
				t.Errorf("reloaded config %+v", inj2.Config)
			}
			if !slices.Equal(inj2.Config.Targets, cfg.Targets) {
				t.Errorf("targets %v, want %v", inj2.Config.Targets, cfg.Targets)
			}
			for p, vals := range want {
				if got := varValues(t, dst, p); !slices.Equal(got, vals) {
					t.Errorf("%s differs after reload", p)
				}
			}
			step, _ := optim.StepVar(dst).Value()
			if got := tensors.ToScalar[int64](step); got != 137 {
				t.Errorf("step %d, want 137", got)
			}
			for v := range dst.IterVariables() {
				p := v.Path()
				wantTrain := peft.IsAdapterVariable(p) || strings.HasPrefix(p, "/classifier/")
				if v.Trainable != wantTrain && v.DType().IsFloat() {
					t.Errorf("%s trainable=%v, want %v", p, v.Trainable, wantTrain)
				}
			}
			// Loading again over the same store overwrites (no duplicate/shape error).
			if _, err := LoadIntoStore(dir, dst, storeSpecs); err != nil {
				t.Errorf("second load: %v", err)
			}
		})
	}
}

func TestLoadIntoStoreErrors(t *testing.T) {
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.Rank = 2
	src := baseStore(t, 1)
	inj, err := peft.Inject(cfg, storeSpecs)
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(src); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := SaveFromStore(dir, inj, src, ""); err != nil {
		t.Fatal(err)
	}
	missing := slices.Clone(storeSpecs)
	missing[1].Path = "enc.layer.0.other"
	resized := slices.Clone(storeSpecs)
	resized[0].In, resized[0].Out = 5, 5
	for _, c := range []struct {
		name    string
		modules []peft.LinearSpec
		want    string
	}{
		{"missing module", missing, "module enc.layer.0.down is not a linear layer"},
		{"shape mismatch", resized, "module enc.layer.0.query is in=6 out=6 in the adapter but in=5 out=5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := model.NewStore()
			_, err := LoadIntoStore(dir, dst, c.modules)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if dst.NumVariables() != 0 {
				t.Errorf("failed load created %d variables", dst.NumVariables())
			}
		})
	}
}
