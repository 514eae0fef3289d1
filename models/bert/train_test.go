package bert

import (
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// TestSingLoRAClassifierTrains: SingLoRA on query/value plus the classification head that
// `singlora train` uses (classify.Task on the Encoder's pooled features, trained as a module to
// save) lowers the classification loss of a tiny BERT (gradients flow through erf GELU,
// LayerNorm, the pooler and the padding mask).
func TestSingLoRAClassifierTrains(t *testing.T) {
	m := tinyConfig(false, "BertModel")
	ck := tinyCheckpoint(m, "", true, false, 2)
	dir := t.TempDir()
	if err := ck.Write(dir, m, "F32", 1); err != nil {
		t.Fatal(err)
	}
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(7); err != nil { // dropout masks: the same run every time
		t.Fatal(err)
	}
	c, err := Load(dir, store)
	if err != nil {
		t.Fatal(err)
	}
	enc := newEncoder(c, nil, 0) // the ids below are given, so no tokenizer is needed
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.Targets = []string{"query", "value"}
	cfg.ModulesToSave = []string{classify.HeadScope}
	inj, err := peft.Inject(cfg, enc.Linears())
	if err != nil {
		t.Fatal(err)
	}
	task := &classify.Task{Enc: enc, Inj: inj, Store: store, NumClasses: 2, Labels: []string{"a", "b"}, FeatureScale: 1}
	if err := task.InitHead(1); err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	opt := optim.DefaultAdamW(1e-2)
	opt.GroupOf = inj.OptimizerGroups(0)
	st, err := train.NewStepper(be(t), store, task.Loss, opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	ids, mask := enc.PadBatch([][]int{{2, 10, 11, 3}, {2, 20, 21, 22, 3}, {2, 12, 3}, {2, 30, 31, 3}}, 1)
	labels := tensors.FromFlatDataAndDimensions([]int32{0, 1, 0, 1}, 4)
	var first, last float64
	for s := 0; s < 60; s++ {
		res, err := st.Step([]*tensors.Tensor{ids, mask, labels})
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			first = res.Loss
		}
		last = res.Loss
	}
	t.Logf("classification loss %.4f → %.4f", first, last)
	if !(last < 0.2*first) {
		t.Fatalf("loss did not fall: %.4f → %.4f", first, last)
	}
}
