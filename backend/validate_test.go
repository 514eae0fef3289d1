package backend

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestValidate: configurations this binary cannot run are refused by Validate (and so by New,
// before the backend's own constructor, which panics on an unknown name), with an error that
// says what to do; the go backend is always accepted.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	for _, ok := range []string{"go", DefaultConfig, "go:ops_sequential"} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", ok, err)
		}
	}
	type bad struct{ config, want string }
	cases := []bad{
		{"tpu", `unknown backend "tpu"; want go`},
		{"", `unknown backend ""`},
	}
	if XLALinked {
		cases = append(cases,
			bad{"xla", "names no PJRT plugin"},
			bad{"xla:,tf32=false", "names no PJRT plugin"},
			bad{"xla:/nonexistent/pjrt_c_api_cuda_plugin.so", "no such file"},
			bad{"xla:plugins/x.so", "is relative; give it as an absolute path"},
			bad{"xla:" + dir, "is a folder"},
		)
	} else {
		for _, c := range []string{"xla:cuda", "xla:/opt/plugin.so", "stablehlo:cpu"} {
			cases = append(cases, bad{c, `built without the XLA backend (the default build is pure Go); build bin/singlora-xla with "make build-xla"`})
		}
	}
	for _, c := range cases {
		err := Validate(c.config)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%q) = %v, want an error containing %q", c.config, err, c.want)
			continue
		}
		start := time.Now()
		if b, err := New(c.config); err == nil || !strings.Contains(err.Error(), c.want) {
			if b != nil {
				b.Finalize()
			}
			t.Errorf("New(%q) = %v, want Validate's error", c.config, err)
		} else if d := time.Since(start); d > 5*time.Second {
			t.Errorf("New(%q) took %v to fail", c.config, d)
		}
	}
	if XLALinked {
		// A plugin name is searched for when the backend is created, not by Validate.
		if err := Validate("xla:cuda,tf32=false"); err != nil {
			t.Errorf("Validate(xla:cuda,tf32=false) = %v, want nil", err)
		}
		f := filepath.Join(dir, "pjrt_c_api_x_plugin.so")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Validate("xla:" + f); err != nil {
			t.Errorf("Validate of an existing plugin path = %v, want nil", err)
		}
	}
}
