package peftdef

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestPatternLookup: keys match the end of a module path on a dot boundary as regular
// expressions, and the first matching key in order wins (PEFT's get_pattern_key).
func TestPatternLookup(t *testing.T) {
	p := Pattern[int]{
		{`layers\.0\.self_attn\.q_proj`, 16},
		{"q_proj", 4},
		{"experts.*.w1", 2},
		{"mlp", 3},
	}
	for _, c := range []struct {
		module string
		want   int
		key    string
		ok     bool
	}{
		{"model.layers.0.self_attn.q_proj", 16, `layers\.0\.self_attn\.q_proj`, true},
		{"model.layers.10.self_attn.q_proj", 4, "q_proj", true}, // "layers.10" is not "layers.0"
		{"q_proj", 4, "q_proj", true},                           // the whole path
		{"model.layers.1.self_attn.xq_proj", 0, "", false},      // not on a dot boundary
		{"model.layers.1.self_attn.q_proj_extra", 0, "", false}, // the key must reach the end
		{"model.layers.1.moe.experts.3.w1", 2, "experts.*.w1", true},
		{"model.layers.1.mlp.up_proj", 0, "", false}, // "mlp" must end the path
		{"model.layers.1.mlp", 3, "mlp", true},
	} {
		v, key, ok := p.Lookup(c.module)
		if v != c.want || key != c.key || ok != c.ok {
			t.Errorf("Lookup(%q) = %d, %q, %v; want %d, %q, %v", c.module, v, key, ok, c.want, c.key, c.ok)
		}
	}
}

// TestPatternJSONAndYAML: the object form keeps key order both ways; a rank pattern takes
// integers (8.0 included, as Python may write them), an alpha pattern any numbers.
func TestPatternJSONAndYAML(t *testing.T) {
	in := `{"z_proj": 8.0, "a_proj": 2, "m\\.0\\.k": 4}`
	var p Pattern[int]
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	want := Pattern[int]{{"z_proj", 8}, {"a_proj", 2}, {`m\.0\.k`, 4}}
	if !slices.Equal(p, want) {
		t.Fatalf("parsed %v, want %v", p, want)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"z_proj":8,"a_proj":2,"m\\.0\\.k":4}` {
		t.Fatalf("marshalled %s", got)
	}
	for _, bad := range []string{`{"q": 2.5}`, `{"q": "8"}`, `[1, 2]`, `{"q": 1e20}`} {
		var q Pattern[int]
		if err := json.Unmarshal([]byte(bad), &q); err == nil {
			t.Errorf("rank pattern %s accepted: %v", bad, q)
		}
	}
	var a Pattern[float64]
	if err := json.Unmarshal([]byte(`{"q": 2.5, "k": 16}`), &a); err != nil || !slices.Equal(a, Pattern[float64]{{"q", 2.5}, {"k", 16}}) {
		t.Fatalf("alpha pattern %v, %v", a, err)
	}
	var null Pattern[int]
	if err := json.Unmarshal([]byte(`null`), &null); err != nil || null != nil {
		t.Fatalf("null: %v, %v", null, err)
	}

	var y struct {
		P Pattern[int] `yaml:"p"`
	}
	if err := yaml.Unmarshal([]byte("p:\n  z_proj: 8\n  a_proj: 2\n"), &y); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(y.P, Pattern[int]{{"z_proj", 8}, {"a_proj", 2}}) {
		t.Fatalf("yaml %v", y.P)
	}
	out, err := yaml.Marshal(y)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "p:\n    z_proj: 8\n    a_proj: 2\n" {
		t.Fatalf("yaml out %q", got)
	}
}

func TestParsePatternAndCheck(t *testing.T) {
	p, err := ParsePattern[int]("q_proj=16, v_proj=4")
	if err != nil || !slices.Equal(p, Pattern[int]{{"q_proj", 16}, {"v_proj", 4}}) {
		t.Fatalf("ParsePattern: %v, %v", p, err)
	}
	if p.String() != "q_proj=16,v_proj=4" {
		t.Fatalf("String %q", p.String())
	}
	for _, c := range []struct{ in, want string }{
		{"q_proj", "want module=value pairs"},
		{"q_proj=x", "not a number"},
		{"q_proj=1.5", "integer rank"},
		{"=3", "want module=value pairs"},
	} {
		if _, err := ParsePattern[int](c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParsePattern(%q): %v, want %q", c.in, err, c.want)
		}
	}
	for _, c := range []struct {
		p    Pattern[float64]
		want string
	}{
		{Pattern[float64]{{"(", 1}}, "not a regular expression"},
		{Pattern[float64]{{"", 1}}, "empty key"},
		{Pattern[float64]{{"q", 0}}, "finite non-zero"},
		{Pattern[float64]{{"q", 1e39}}, "float32"},
		{Pattern[float64]{{"q", 1}, {"q", 2}}, "twice"},
	} {
		if err := c.p.Check("alpha_pattern"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%v): %v, want %q", c.p, err, c.want)
		}
	}
	if err := (Pattern[int]{{"q", 0}}).Check("rank_pattern"); err == nil {
		t.Error("rank 0 accepted")
	}
}
