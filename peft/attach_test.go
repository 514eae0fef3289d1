package peft

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/peft/lora"
	"github.com/singlora/singlora/peft/tuner"
)

// shortInit is a test method (LoRA's behaviour otherwise) whose Init returns too few values.
type shortInit struct{ tuner.Tuner }

func (shortInit) Name() Method      { return "short-init-test" }
func (shortInit) Aliases() []string { return nil }
func (shortInit) PeftType() string  { return "SHORT_INIT_TEST" }
func (shortInit) Tensors(s LinearSpec, r int) []AdapterTensor {
	return []AdapterTensor{{Name: "short_A", Shape: []int{r, s.In}}}
}
func (shortInit) Init(Config, LinearSpec, func() ([]float32, error)) (map[string][]float32, error) {
	return map[string][]float32{"short_A": {1}}, nil
}

func init() {
	if err := tuner.Register(shortInit{lora.Tuner}); err != nil {
		panic(err)
	}
}

// TestAttachRefusesBadInit: a method whose Init does not fill a tensor's shape is an error that
// names the method, the module and the tensor, and creates no variable.
func TestAttachRefusesBadInit(t *testing.T) {
	spec := LinearSpec{Path: "lin", In: 4, Out: 3}
	store := model.NewStore()
	if _, err := store.CreateVariable("/lin/weight", tensors.FromFlatDataAndDimensions(make([]float32, 12), 3, 4)); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig("short-init-test")
	cfg.Rank = 2
	inj, err := Inject(cfg, []LinearSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	err = inj.Attach(store)
	if err == nil || !strings.Contains(err.Error(), "attach short-init-test adapter to lin: the method initialised short_A with 1 values, its shape [2 4] holds 8") {
		t.Fatalf("Attach: %v", err)
	}
	if store.GetVariable("/lin/short_A") != nil {
		t.Error("a variable was created")
	}
}

// TestModulesToSaveChecked: a modules_to_save pattern that is not a valid pattern is refused by
// Inject, and one that matches no variable by Attach (it would stay frozen and unsaved), naming
// the pattern and the model's top-level modules; a matching one trains, parents included.
func TestModulesToSaveChecked(t *testing.T) {
	for _, tc := range []struct {
		save         []string
		injErr, want string
	}{
		{[]string{"classifier"}, "", ""},
		{[]string{"re:class.*"}, "", ""},
		{[]string{"enc"}, "", ""}, // a parent scope: every variable under /enc
		{[]string{"re:("}, "modules_to_save: target pattern \"re:(\"", ""},
		{[]string{"all-linear"}, `modules_to_save "all-linear": name a module`, ""},
		{[]string{"classifier", "score", "head"}, "", `modules_to_save "score", "head" match no module of the model (its top-level modules: classifier, enc)`},
	} {
		store := model.NewStore()
		for _, p := range []string{"/enc/lin/weight", "/classifier/weight"} {
			if _, err := store.CreateVariable(p, tensors.FromFlatDataAndDimensions(make([]float32, 12), 3, 4)); err != nil {
				t.Fatal(err)
			}
		}
		cfg := DefaultConfig(LoRA)
		cfg.Rank, cfg.Targets, cfg.ModulesToSave = 2, []string{"lin"}, tc.save
		inj, err := Inject(cfg, []LinearSpec{{Path: "enc.lin", In: 4, Out: 3}})
		if tc.injErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.injErr) {
				t.Errorf("%v: Inject error %v, want %q", tc.save, err, tc.injErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.save, err)
		}
		err = inj.Attach(store)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: Attach error %v, want %q", tc.save, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.save, err)
		}
		wantHead := tc.save[0] != "enc"
		if got := store.GetVariable("/classifier/weight").Trainable; got != wantHead {
			t.Errorf("%v: classifier trainable %v, want %v", tc.save, got, wantHead)
		}
		if got := store.GetVariable("/enc/lin/weight").Trainable; got != !wantHead {
			t.Errorf("%v: enc.lin.weight trainable %v, want %v", tc.save, got, !wantHead)
		}
	}
}
