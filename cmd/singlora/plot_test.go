package main

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func plotRun(t *testing.T, dir, config string, lines ...string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644)
	}
	if err := os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPlotCommand(t *testing.T) {
	tmp := t.TempDir()
	a := plotRun(t, filepath.Join(tmp, "a"), `{"method":"singlora","lr":0.001}`,
		`{"step":1,"loss":1.0,"lr":0.001,"u":0.1,"grad_norm":2}`,
		`{"step":2,"loss":0.8,"lr":0.001,"u":0.2,"grad_norm":1.5,"eval":{"accuracy":0.7,"loss":0.9}}`,
		`{"step":3,"loss":0.6,"lr":0.001,"u":0.3,"grad_norm":1.2,"eval":{"accuracy":0.8,"loss":0.7}}`)
	b := plotRun(t, filepath.Join(tmp, "b"), `{"method":"lora","lr":0.0001}`,
		`{"step":1,"loss":1.1,"lr":0.0001,"grad_norm":2}`,
		`{"step":2,"loss":0.9,"lr":0.0001,"grad_norm":1.8,"eval":{"accuracy":0.6,"f1":0.5}}`)
	out := filepath.Join(tmp, "plots")
	var buf bytes.Buffer
	if err := runPlot([]string{"--out", out, "--smooth", "0.5", a, b}, &buf); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(out)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	want := []string{"eval.accuracy.png", "eval.accuracy.svg", "eval.f1.png", "eval.f1.svg", "eval.loss.png", "eval.loss.svg", "loss.png", "loss.svg"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}
	svg, _ := os.ReadFile(filepath.Join(out, "loss.svg"))
	if err := xml.Unmarshal(svg, new(struct{})); err != nil || !bytes.Contains(svg, []byte(`data-name="singlora"`)) ||
		!bytes.Contains(svg, []byte(`data-name="lora"`)) {
		t.Errorf("loss.svg: %v", err)
	}
	f, _ := os.Open(filepath.Join(out, "eval.accuracy.png"))
	if _, err := png.Decode(f); err != nil {
		t.Errorf("eval.accuracy.png: %v", err)
	}
	f.Close()
	if !strings.Contains(buf.String(), "loss.svg and") {
		t.Errorf("output %q", buf.String())
	}

	// Chosen metrics, comma-separated and repeated, and a sweep.
	out2 := filepath.Join(tmp, "p2")
	if err := runPlot([]string{"--metric", "lr,u", "--metric", "eval.accuracy", "--sweep", "--out", out2, a, b}, &buf); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"lr.svg", "u.png", "eval.accuracy.svg", "sweep-eval.accuracy.svg", "sweep-eval.accuracy.png", "sweep-lr.png"} {
		if _, err := os.Stat(filepath.Join(out2, n)); err != nil {
			t.Error(err)
		}
	}
}

func TestPlotCommandErrors(t *testing.T) {
	tmp := t.TempDir()
	a := plotRun(t, filepath.Join(tmp, "a"), "", `{"step":1,"loss":1}`, `{"step":2,"loss":0.5}`)
	bad := plotRun(t, filepath.Join(tmp, "bad"), "", `{"step":1,"loss":1}`, `oops`, `{"step":3}`)
	noLoss := plotRun(t, filepath.Join(tmp, "noloss"), "", `{"step":1,"lr":1}`)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "run folders"},
		{[]string{filepath.Join(tmp, "missing")}, "no metrics.jsonl"},
		{[]string{a, bad}, "metrics.jsonl:2:"},
		{[]string{"--metric", "eval.acc", a}, `unknown metric "eval.acc"; available: loss`},
		{[]string{noLoss}, "available: lr"},
		{[]string{"--smooth", "1.5", a}, "smoothing"},
		{[]string{"--sweep", a}, "lr"},
	}
	for _, tc := range tests {
		err := runPlot(append([]string{"--out", filepath.Join(tmp, "o")}, tc.args...), new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("plot %q: error %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
	if got := fileName("eval/weird name"); got != "eval_weird_name" {
		t.Errorf("fileName = %q", got)
	}
}
