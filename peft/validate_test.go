package peft

import (
	"strings"
	"testing"
)

// TestValidateFloat32Alpha: a training config whose lora_alpha or scaling is not representable in
// float32 (the precision of the graph) is refused before any graph is built.
func TestValidateFloat32Alpha(t *testing.T) {
	cases := []struct {
		alpha float64
		rank  int
		want  string
	}{
		{1e308, 8, "lora_alpha 1e+308 is +Inf in float32"},
		{1e-50, 8, "lora_alpha 1e-50 is 0 in float32"},
		{1.2e-45, 2, "lora_alpha/r"},
	}
	for _, m := range []Method{SingLoRA, LoRA, DoRA} {
		for _, c := range cases {
			cfg := DefaultConfig(m)
			cfg.Alpha, cfg.Rank = c.alpha, c.rank
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "peft config: ") {
				t.Errorf("%s alpha=%v r=%d: error %v, want one mentioning %q", m, c.alpha, c.rank, err, c.want)
			}
		}
	}
	if err := DefaultConfig(SingLoRA).Validate(); err != nil {
		t.Errorf("default config refused: %v", err)
	}
}

func TestTrainsBase(t *testing.T) {
	for _, m := range []Method{SingLoRA, LoRA, LoRAPlus, DoRA, Full, Frozen} {
		if got, want := TrainsBase(m), m == Full; got != want {
			t.Errorf("TrainsBase(%s) = %v, want %v", m, got, want)
		}
	}
	if TrainsBase("no-such-method") {
		t.Error("an unknown method trains nothing")
	}
}
