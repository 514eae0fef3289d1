package adapterconfig

import (
	"testing"
)

// FuzzParseConfig: no input panics, and an accepted config survives marshal → parse unchanged in
// the fields that decide what the adapter computes.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		singloraJSON,
		`{"peft_type":"LORA","r":2,"lora_alpha":2,"target_modules":"all-linear","use_dora":true,"bias":"none","fan_in_fan_out":true}`,
		`{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":"q_proj|v_proj","modules_to_save":null,"rank_pattern":{}}`,
		`{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["query","value"],"loraplus_lr_ratio":16,"in_out_modules":["value"]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		out, err := c.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if c2.R != c.R || c2.PeftType != c.PeftType || loraVariant(c2) != loraVariant(c) || c2.Scale() != c.Scale() ||
			c.PeftType == TypeSingLoRA && (c2.TrainedSteps != c.TrainedSteps || c2.Ramp() != c.Ramp() || len(c2.ModuleShapes) != len(c.ModuleShapes)) {
			t.Fatalf("round trip changed the config:\n%s\n→\n%s", data, out)
		}
	})
}

// loraVariant is what tells LoRA, LoRA+ and DoRA apart in a LORA config (use_dora, and
// loraplus_lr_ratio > 0); other types have none.
func loraVariant(c *Config) [2]bool {
	if c.PeftType != TypeLoRA {
		return [2]bool{}
	}
	return [2]bool{c.UseDora, c.LoraPlusRatio > 0}
}
