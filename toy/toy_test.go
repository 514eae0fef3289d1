package toy

import (
	"testing"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/peft"
)

// TestAdaptersLearnAttentionToy: each adapter lowers the toy's loss on the pure-Go backend.
func TestAdaptersLearnAttentionToy(t *testing.T) {
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	steps := 150
	if testing.Short() {
		steps = 60
	}
	for _, m := range []peft.Method{peft.SingLoRA, peft.LoRA, peft.LoRAPlus, peft.DoRA} {
		rank := 4
		if m == peft.SingLoRA {
			rank = 8 // equal parameter budget: r·d vs LoRA's 2·r·d
		}
		losses, err := Run(be, Config{Method: m, Dim: 32, Rank: rank, TargetRank: 2, Steps: steps, LR: 3e-3, Batch: 8, Seq: 16, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		first, last := losses[0], losses[len(losses)-1]
		t.Logf("%s: loss %.4g → %.4g after %d steps", m, first, last, steps)
		if !(last < 0.5*first) {
			t.Errorf("%s did not learn: loss %.4g → %.4g", m, first, last)
		}
	}
}
