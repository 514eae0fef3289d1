package backend

import (
	"io"
	"os"
	"strings"
	"testing"
)

func TestConfigOverrides(t *testing.T) {
	t.Setenv("SINGLORA_BACKEND", "")
	t.Setenv("GOMLX_BACKEND", "")
	if got := Config(); got != DefaultConfig {
		t.Errorf("Config() = %q, want DefaultConfig %q", got, DefaultConfig)
	}
	t.Setenv("GOMLX_BACKEND", "go:ops_sequential")
	if got := Config(); got != "go:ops_sequential" {
		t.Errorf("with GOMLX_BACKEND: Config() = %q", got)
	}
	t.Setenv("SINGLORA_BACKEND", "go")
	if got := Config(); got != "go" {
		t.Errorf("SINGLORA_BACKEND must win over GOMLX_BACKEND: Config() = %q", got)
	}
}

// captureStdout returns what fn writes to os.Stdout.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = old }()
	fn()
	w.Close()
	out, _ := io.ReadAll(r)
	return string(out)
}

func TestParallelismOptionIsQuiet(t *testing.T) {
	for _, tc := range []struct {
		config string
		want   int
	}{
		{"go:parallelism=-1", -1},
		{"go:parallelism=3,ops_sequential", 3},
		{"go:ops_parallel,parallelism=0", 0},
		{"go", 0}, // default: 2×GOMAXPROCS, checked below
	} {
		var par int
		var ok bool
		out := captureStdout(t, func() {
			b, err := New(tc.config)
			if err != nil {
				t.Fatal(err)
			}
			par, ok = Parallelism(b)
			b.Finalize()
		})
		if out != "" {
			t.Errorf("New(%q) wrote to stdout: %q", tc.config, out)
		}
		if !ok {
			t.Fatalf("New(%q): cannot read the pool's parallelism", tc.config)
		}
		if tc.config == "go" {
			if par <= 0 {
				t.Errorf("New(%q): parallelism %d, want the bounded default", tc.config, par)
			}
			continue
		}
		if par != tc.want {
			t.Errorf("New(%q): parallelism %d, want %d", tc.config, par, tc.want)
		}
	}
	if _, err := New("go:parallelism=x"); err == nil || !strings.Contains(err.Error(), "parallelism") {
		t.Errorf("bad parallelism value: err = %v, want the backend's error", err)
	}
	if _, err := New("go:no_such_option"); err == nil {
		t.Errorf("unknown option accepted")
	}
}

func TestGetIsShared(t *testing.T) {
	a, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Get()
	if a != b {
		t.Errorf("Get() returned two different backends")
	}
}
