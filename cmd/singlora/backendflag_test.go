package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/singlora/singlora/backend"
)

// TestTakeBackendFlag: --backend is taken out of the arguments wherever it stands before "--",
// in every spelling, and sets SINGLORA_BACKEND; after "--" it is an argument.
func TestTakeBackendFlag(t *testing.T) {
	for _, tc := range []struct {
		args, want []string
		env        string
	}{
		{[]string{"bench", "--preset", "layer"}, []string{"bench", "--preset", "layer"}, "unset"},
		{[]string{"--backend", "go", "bench"}, []string{"bench"}, "go"},
		{[]string{"bench", "--backend=go:ops_sequential", "--json"}, []string{"bench", "--json"}, "go:ops_sequential"},
		{[]string{"train", "-backend", "go", "--steps", "3"}, []string{"train", "--steps", "3"}, "go"},
		{[]string{"plot", "--", "--backend", "x"}, []string{"plot", "--", "--backend", "x"}, "unset"},
		{[]string{"--backend", "go:ops_sequential", "bench", "--backend", "go"}, []string{"bench"}, "go"},
	} {
		t.Setenv("SINGLORA_BACKEND", "unset")
		got, err := takeBackendFlag(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: args %q, want %q", tc.args, got, tc.want)
		}
		if env := os.Getenv("SINGLORA_BACKEND"); env != tc.env {
			t.Errorf("%q: SINGLORA_BACKEND=%q, want %q", tc.args, env, tc.env)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--backend"}, "--backend needs a value"},
		{[]string{"bench", "--backend", "tpu"}, `unknown backend "tpu"`},
	} {
		t.Setenv("SINGLORA_BACKEND", "unset")
		if _, err := takeBackendFlag(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.args, err, tc.want)
		}
		if env := os.Getenv("SINGLORA_BACKEND"); env != "unset" {
			t.Errorf("%q: a refused --backend set SINGLORA_BACKEND=%q", tc.args, env)
		}
	}
}

// TestBackendErrors: asked for the XLA backend, a binary built without it (the default build,
// which this test binary is) says so and how to get one, at once (exit 2 for the flag, before
// any work; 1 for SINGLORA_BACKEND, when the command first needs the backend); every command's
// -h lists the global flag.
func TestBackendErrors(t *testing.T) {
	if backend.XLALinked {
		t.Skip("built with the XLA backend (tag xla)")
	}
	want := `built without the XLA backend (the default build is pure Go); build bin/singlora-xla with "make build-xla"`
	out, err := cli("bench", "--preset", "layer", "--backend", "xla:cuda").CombinedOutput()
	if code := exitCodeOf(err); code != 2 || !strings.Contains(string(out), "singlora: --backend: ") || !strings.Contains(string(out), want) {
		t.Errorf("bench --backend xla:cuda: exit %d\n%s\nwant exit 2 and %q", code, out, want)
	}
	cmd := cli("bench", "--preset", "layer", "--steps", "1", "--warmup", "0", "--inproc")
	cmd.Env = append(cmd.Env, "SINGLORA_BACKEND=xla:cuda")
	out, err = cmd.CombinedOutput()
	if code := exitCodeOf(err); code != 1 || !strings.Contains(string(out), "singlora bench: ") || !strings.Contains(string(out), want) {
		t.Errorf("SINGLORA_BACKEND=xla:cuda bench: exit %d\n%s\nwant exit 1 and %q", code, out, want)
	}
	out, err = cli("fetch", "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Global flag:\n  --backend CONFIG") {
		t.Errorf("fetch -h: %v\n%s\nwant the global --backend flag listed", err, out)
	}
}

// exitCodeOf is the exit status of a finished command (0 when err is nil, -1 when it did not run).
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		return ee.ExitCode()
	}
	return -1
}
