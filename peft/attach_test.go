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
