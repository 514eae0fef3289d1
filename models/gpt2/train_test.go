package gpt2

import (
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// TestSingLoRATrainsConv1D: SingLoRA on the non-square Conv1D c_attn ([in, out] = [48, 144])
// and c_fc lowers a tiny GPT-2's completion loss, and greedy generation reproduces a completion.
// The config's dropouts (0.1, GPT-2's defaults) are active in training, so the store's RNG is
// seeded: unseeded, the final loss of one run in a few dozen stayed above the bound.
func TestSingLoRATrainsConv1D(t *testing.T) {
	ck := tinyCheckpoint("transformer.", 6)
	dir := t.TempDir()
	if err := ck.Write(dir, tinyConfig("GPT2LMHeadModel"), "F32", 1); err != nil {
		t.Fatal(err)
	}
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(1); err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir, store)
	if err != nil {
		t.Fatal(err)
	}
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.Targets = []string{"c_attn", "c_fc"}
	inj, err := peft.Inject(cfg, Linears(c))
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	prompts, completions := [][]int{{0, 3, 4}, {0, 9}}, [][]int{{40, 41, 42}, {43, 44, 45, 46}}
	ids, targets, mask, err := lm.CausalBatch(prompts, completions, 8, 0)
	if err != nil {
		t.Fatal(err)
	}
	opt := optim.DefaultAdamW(1e-2)
	opt.WeightDecay = 0
	opt.GroupOf = inj.OptimizerGroups(0)
	st, err := train.NewStepper(be(t), store, LossFn(c, inj), opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	var first, last float64
	for s := 0; s < 100; s++ {
		res, err := st.Step([]*tensors.Tensor{ids, targets, mask})
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			first = res.Loss
		}
		last = res.Loss
	}
	t.Logf("completion loss %.4f → %.4f", first, last)
	if !(last < 0.1*first) {
		t.Fatalf("loss did not fall: %.4f → %.4f", first, last)
	}
	gen, err := NewGenerator(be(t), store, c, inj, 8)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		got, err := gen.Generate(p, len(completions[i]), lm.SampleOptions{}, -1)
		if err != nil {
			t.Fatal(err)
		}
		for j := range got {
			if got[j] != completions[i][j] {
				t.Fatalf("prompt %v: generated %v, trained on %v", p, got, completions[i])
			}
		}
	}
}
