package adapterconfig

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const singloraJSON = `{"peft_type":"SINGLORA","r":2,"lora_alpha":4,"target_modules":["query"],"ramp_up_steps":10,
"trained_steps":5,"init":"theory","module_shapes":{"enc.query":[6,4]},"seed":3,"custom":{"x":1}}`

// edit returns singloraJSON with key set to value (or removed when value is nil).
func edit(t *testing.T, key string, value any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(singloraJSON), &m); err != nil {
		t.Fatal(err)
	}
	if value == nil {
		delete(m, key)
	} else {
		m[key] = value
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRoundTrip(t *testing.T) {
	c, err := Parse([]byte(singloraJSON))
	if err != nil {
		t.Fatal(err)
	}
	if c.PeftType != TypeSingLoRA || c.Scale() != 2 || c.Ramp() != 0.5 || c.ModuleShapes["enc.query"] != [2]int{6, 4} {
		t.Fatalf("parsed %+v (peft_type %s, scale %v, ramp %v)", c, c.PeftType, c.Scale(), c.Ramp())
	}
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(b)
	if err != nil {
		t.Fatalf("re-parse of %s: %v", b, err)
	}
	if string(c2.Extra["custom"]) != `{"x":1}` || c2.Seed != 3 || c2.TrainedSteps != 5 || c2.ModuleShapes["enc.query"] != [2]int{6, 4} {
		t.Errorf("round trip lost fields: %s", b)
	}
}

func TestParseModuleShapesOptional(t *testing.T) {
	for _, v := range []any{nil, map[string]any{}} {
		c, err := Parse(edit(t, "module_shapes", v))
		if err != nil {
			t.Fatalf("module_shapes %v: %v", v, err)
		}
		if len(c.ModuleShapes) != 0 {
			t.Errorf("module_shapes %v parsed as %v", v, c.ModuleShapes)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name  string
		key   string
		value any
		rs    bool
		want  string
	}{
		{"alpha overflows float32", "lora_alpha", 1e308, false, "lora_alpha 1e+308 is +Inf in float32"},
		{"alpha negative overflow", "lora_alpha", -1e39, false, "is -Inf in float32"},
		{"alpha underflows float32", "lora_alpha", 1e-50, false, "lora_alpha 1e-50 is 0 in float32"},
		{"scale underflows float32", "lora_alpha", 1.2e-45, false, "lora_alpha/r = 1.2e-45/2 = 6e-46 is 0 in float32"},
		{"rslora scale underflows", "lora_alpha", 9e-46, true, "lora_alpha/sqrt(r) = 9e-46/sqrt(2)"},
		{"alpha zero", "lora_alpha", 0, false, "lora_alpha must be a finite non-zero number"},
		{"dropout one", "lora_dropout", 1, false, "lora_dropout must be in [0, 1)"},
		{"dropout negative", "lora_dropout", -0.5, false, "lora_dropout must be in [0, 1)"},
		{"rank zero", "r", 0, false, "r must be ≥ 1"},
		{"unknown init", "init", "xavier", false, `unknown singlora init "xavier"`},
		{"bad shape", "module_shapes", map[string]any{"q": []int{0, 4}}, false, `module_shapes["q"]`},
		{"missing trained_steps", "trained_steps", nil, false, `missing required key "trained_steps"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := edit(t, c.key, c.value)
			if c.rs {
				b = []byte(strings.Replace(string(b), `"r":2`, `"r":2,"use_rslora":true`, 1))
			}
			_, err := Parse(b)
			if err == nil {
				t.Fatalf("accepted %s", b)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestNoGraphEngine keeps this package (and so its fuzz binary) free of GoMLX.
func TestNoGraphEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "gomlx") {
			t.Errorf("adapterconfig depends on %s; keep the file format free of the graph engine", dep)
		}
	}
}

// TestNarrowingKeys: exclude_modules, layers_to_transform and layers_pattern load in PEFT's forms
// (a regex string, one number, one name, or lists), survive a write and a re-read, are not
// written when unset (older files stay byte-identical), and a wrong type is an error naming the key.
func TestNarrowingKeys(t *testing.T) {
	for _, tc := range []struct {
		exclude, layers, pattern any
		wantExclude, wantPattern []string
		wantLayers               []int
	}{
		{".*\\.0\\..*", 3, "layers", []string{"re:.*\\.0\\..*"}, []string{"layers"}, []int{3}},
		{[]string{"up_proj", "down_proj"}, []int{0, 2}, []string{"layers", "h"}, []string{"up_proj", "down_proj"}, []string{"layers", "h"}, []int{0, 2}},
	} {
		b := edit(t, "exclude_modules", tc.exclude)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		m["layers_to_transform"], m["layers_pattern"] = tc.layers, tc.pattern
		b, _ = json.Marshal(m)
		c, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		check := func(c *Config, when string) {
			if strings.Join(c.ExcludeModules, "|") != strings.Join(tc.wantExclude, "|") || strings.Join(c.LayersPattern, "|") != strings.Join(tc.wantPattern, "|") ||
				len(c.LayersToTransform) != len(tc.wantLayers) || c.LayersToTransform[0] != tc.wantLayers[0] {
				t.Errorf("%s: exclude %q layers %v pattern %q; want %q %v %q", when, c.ExcludeModules, c.LayersToTransform, c.LayersPattern, tc.wantExclude, tc.wantLayers, tc.wantPattern)
			}
			if _, extra := c.Extra["exclude_modules"]; extra {
				t.Errorf("%s: exclude_modules kept as an unknown key", when)
			}
		}
		check(c, "parsed")
		out, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		check(c2, "re-read")
	}
	c, err := Parse([]byte(singloraJSON))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := c.MarshalJSON()
	for _, k := range []string{"exclude_modules", "layers_to_transform", "layers_pattern"} {
		if strings.Contains(string(out), k) {
			t.Errorf("%s written for a config without it: %s", k, out)
		}
		if _, err := Parse(edit(t, k, map[string]any{"x": 1})); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s as an object: error %v, want one naming the key", k, err)
		}
	}
}
