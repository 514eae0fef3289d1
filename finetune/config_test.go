package finetune

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigFiles(t *testing.T) {
	dir := t.TempDir()
	yml := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(yml, []byte("method: lora\nlr: 0.005\nr: 4\ntarget_modules: [query, value]\nramp: \"2%\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := c.LoadFile(yml); err != nil {
		t.Fatal(err)
	}
	if c.Method != "lora" || c.LR != 0.005 || c.R != 4 || strings.Join(c.TargetModules, ",") != "query,value" || c.Ramp != "2%" || c.Batch != 32 {
		t.Fatalf("YAML config not applied over the defaults: %+v", c)
	}
	js := filepath.Join(dir, "run.json")
	if err := os.WriteFile(js, []byte(`{"method": "singlora", "batch_size": 8}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadFile(js); err != nil || c.Method != "singlora" || c.Batch != 8 || c.LR != 0.005 {
		t.Fatalf("JSON overlay: %v %+v", err, c)
	}
	for name, body := range map[string]string{"typo.yaml": "lerning_rate: 1\n", "typo.json": `{"lerning_rate": 1}`, "bad.json": `{"lr": "x"}`} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c := Default()
		if err := c.LoadFile(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
}

func TestResolveSteps(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		total int64
		want  int64
		bad   bool
	}{{"1%", 1000, 10, false}, {"0.5%", 1000, 5, false}, {"8%", 198, 16, false}, {"200", 1000, 200, false}, {"0.01", 1000, 10, false}, {"0", 50, 0, false},
		{"x", 1, 0, true}, {"-3", 1, 0, true}, {"150%", 1, 0, true}, {"1.5", 1, 0, true}} {
		got, err := resolveSteps(tc.spec, tc.total, "ramp")
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("resolveSteps(%q, %d) = %d, %v; want %d (error %v)", tc.spec, tc.total, got, err, tc.want, tc.bad)
		}
	}
}
