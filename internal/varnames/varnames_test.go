package varnames_test

import (
	"testing"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/varnames"
	"github.com/singlora/singlora/optim"
)

func TestRoles(t *testing.T) {
	cases := []struct {
		path                                   string
		optimizer, internal, rng, book, isNorm bool
	}{
		{"/encoder/layer/0/attention/self/query/weight", false, false, false, false, false},
		{"/classifier/weight", false, false, false, false, false},
		{optim.StepPath, true, false, false, true, false},
		{optim.StatePrefix + "/m/encoder/query/singlora_A", true, false, false, true, false},
		{"/optim/accum/encoder/query/lora_B", true, false, false, true, false},
		{"/optimizer/weight", false, false, false, false, false}, // a model scope named like the prefix
		{"/" + model.RNGStateVariableName, false, true, true, true, false},
		{"/layer/#counter", false, true, false, true, false},
		{"/layer/#rngState", false, true, false, true, false}, // internal, but not the store's RNG
		{"/model/norm/weight", false, false, false, false, true},
		{"/model/layers/0/input_layernorm/weight", false, false, false, false, true},
		{"/encoder/layer/0/attention/output/LayerNorm/gamma", false, false, false, false, false},
	}
	for _, c := range cases {
		got := []bool{varnames.IsOptimizerState(c.path), varnames.IsInternal(c.path), varnames.IsRNGState(c.path),
			varnames.IsBookkeeping(c.path), varnames.IsNormalization(c.path)}
		want := []bool{c.optimizer, c.internal, c.rng, c.book, c.isNorm}
		for i, name := range []string{"IsOptimizerState", "IsInternal", "IsRNGState", "IsBookkeeping", "IsNormalization"} {
			if got[i] != want[i] {
				t.Errorf("%s(%q) = %v, want %v", name, c.path, got[i], want[i])
			}
		}
	}
}

// TestRNGStateIsGoMLXs: the store's RNG variable is where GoMLX creates it.
func TestRNGStateIsGoMLXs(t *testing.T) {
	s := model.NewStore()
	if err := s.SetRNGStateFromSeed(1); err != nil {
		t.Fatal(err)
	}
	found := false
	for v := range s.IterVariables() {
		if varnames.IsRNGState(v.Path()) {
			found = true
		}
	}
	if !found {
		t.Errorf("no store variable at %s after SetRNGStateFromSeed", varnames.RNGStatePath)
	}
}
