package adapterio

import (
	"testing"

	"github.com/singlora/singlora/peft"
)

// FuzzParseConfig: no input panics, and an accepted config survives marshal → parse.
func FuzzParseConfig(f *testing.F) {
	a := newAdapter(f, peft.SingLoRA, testSpecs, 2, 2, true, 10, 3, 1)
	a.Config.ModuleShapes = map[string][2]int{"enc.layer.0.query": {6, 6}}
	b, _ := a.Config.MarshalJSON()
	f.Add(b)
	l := newAdapter(f, peft.DoRA, testSpecs, 2, 2, false, 0, 0, 1)
	b, _ = l.Config.MarshalJSON()
	f.Add(b)
	f.Add([]byte(`{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":"q_proj|v_proj","modules_to_save":null,"rank_pattern":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		out, err := c.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		c2, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if c2.R != c.R || c2.PeftType != c.PeftType || c2.Method() != c.Method() || c2.TrainedSteps != c.TrainedSteps && c.PeftType == TypeSingLoRA {
			t.Fatalf("round trip changed the config")
		}
	})
}
