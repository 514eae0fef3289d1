package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/singlora/singlora/demo"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models/use"
	"github.com/singlora/singlora/peft"
)

// positionals is how many positional arguments each command takes ([lo, hi], hi < 0: no
// limit); TestEveryCommandIsListed keeps it complete.
var positionals = map[string][2]int{
	"bench": {0, 0}, "classify": {0, -1}, "demo": {0, 0}, "embed": {0, -1}, "experiment": {1, 1},
	"combine": {0, 0}, "export": {0, 0}, "fetch": {0, 0}, "generate": {0, 0}, "inspect": {1, 1}, "merge": {0, 0},
	"plot": {1, -1}, "pretrain": {0, 0}, "sweep": {0, 0}, "toy": {0, 0}, "train": {0, 0},
}

func commandNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func TestEveryCommandIsListed(t *testing.T) {
	for _, n := range commandNames() {
		if _, ok := positionals[n]; !ok {
			t.Errorf("command %s is not in the positionals table: add how many arguments it takes", n)
		}
	}
	for n := range positionals {
		if commands[n] == nil {
			t.Errorf("positionals lists %s, which is not a registered command", n)
		}
	}
}

// TestCommandHelp: "CMD -h" and "help CMD" print the command's summary, its examples and its
// flags, the same text, and exit 0.
func TestCommandHelp(t *testing.T) {
	for _, n := range commandNames() {
		c := commands[n]
		var outs []string
		for _, args := range [][]string{{n, "-h"}, {"help", n}, {n, "--help"}} {
			out, err := cli(args...).CombinedOutput()
			if err != nil {
				t.Errorf("%q: %v (want exit 0)\n%s", args, err, out)
				continue
			}
			s := string(out)
			want := []string{"singlora " + n + ": " + c.Summary + "\n", "\nExamples:\n", "\nFlags:\n"}
			for _, line := range strings.Split(strings.TrimSpace(c.Usage), "\n") {
				want = append(want, "  "+strings.TrimSpace(line)+"\n")
			}
			for _, w := range want {
				if !strings.Contains(s, w) {
					t.Errorf("%q printed\n%s\nwant it to contain %q", args, s, w)
				}
			}
			outs = append(outs, s)
		}
		for _, s := range outs[1:] {
			if s != outs[0] {
				t.Errorf("%s: -h, help and --help print different texts:\n%s\n---\n%s", n, outs[0], s)
			}
		}
	}
}

// isolate runs the test in an empty working directory with an empty cache, so that a command
// that failed to refuse its arguments could not read or write anything real.
func isolate(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("SINGLORA_CACHE", t.TempDir())
}

// TestPositionalCounts: every command refuses too few or too many positional arguments before
// it loads or writes anything ("demo extra" used to start a minutes-long job).
func TestPositionalCounts(t *testing.T) {
	isolate(t)
	for _, n := range commandNames() {
		lo, hi := positionals[n][0], positionals[n][1]
		var bad [][]string
		if lo > 0 {
			bad = append(bad, nil)
		}
		if hi >= 0 {
			args := make([]string, hi+1)
			for i := range args {
				args[i] = "extra"
			}
			if n == "experiment" {
				args[0] = "lr-robustness"
			}
			bad = append(bad, args)
		}
		for _, args := range bad {
			err := refusedQuickly(t, n, args)
			want := "want "
			if hi == 0 {
				want = "unexpected arguments [\"extra\"]: this command takes flags only"
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s %q: error %v, want %q", n, args, err, want)
			}
		}
	}
	if ents, _ := os.ReadDir("."); len(ents) > 0 {
		t.Errorf("the refused commands wrote %d entries into the working directory", len(ents))
	}
}

// refusedQuickly runs command n in-process and returns its error; one that does not return
// within seconds has started working instead of refusing its command line, and fails the test.
func refusedQuickly(t *testing.T, n string, args []string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- commands[n].Run(args) }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s %q has not returned after 20 s: it started working instead of refusing its arguments", n, args)
		return nil
	}
}

// TestFlagsAfterPositionals: flags may follow positional arguments, and "--" ends the flags.
func TestFlagsAfterPositionals(t *testing.T) {
	tmp := t.TempDir()
	a := plotRun(t, filepath.Join(tmp, "a"), "", `{"step":1,"loss":1}`, `{"step":2,"loss":0.5}`)
	b := plotRun(t, filepath.Join(tmp, "b"), "", `{"step":1,"loss":2}`, `{"step":2,"loss":1.5}`)
	out := filepath.Join(tmp, "p")
	if err := runPlot([]string{a, "--metric", "loss", b, "--out", out}, new(bytes.Buffer)); err != nil {
		t.Fatalf("plot r1 --metric loss r2 --out p: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "loss.svg")); err != nil {
		t.Errorf("plot r1 ... --out p wrote no p/loss.svg: %v", err)
	}

	_, _, adapter, _, _ := fixture(t)
	var buf bytes.Buffer
	if err := runInspect([]string{adapter, "--json"}, &buf); err != nil {
		t.Fatalf("inspect DIR --json: %v", err)
	}
	if !json.Valid(buf.Bytes()) {
		t.Errorf("inspect DIR --json printed %q, not JSON", buf.String())
	}

	// classify/embed TEXT --run R --checkpoint best: the run after the text is the one loaded
	// (without it the error would be "--run is required"); after "--" a flag is a text.
	missing := filepath.Join(tmp, "no-such-run")
	for _, args := range [][]string{
		{"a lovely film", "--run", missing, "--checkpoint", "best"},
		{"--run", missing, "--", "--checkpoint"},
	} {
		for name, run := range map[string]func([]string) error{
			"classify": func(a []string) error { return runClassify(a, strings.NewReader(""), io.Discard, io.Discard) },
			"embed":    func(a []string) error { return runEmbed(a, strings.NewReader(""), io.Discard, io.Discard) },
		} {
			err := run(args)
			if err == nil || !strings.Contains(err.Error(), missing) {
				t.Errorf("%s %q: error %v, want one about loading %s", name, args, err, missing)
			}
		}
	}
}

// TestListFlagsAndAliases: --method, --seed and --lr take lists (comma-separated or repeated)
// where a command runs several, and the plural spellings are aliases of them.
func TestListFlagsAndAliases(t *testing.T) {
	isolate(t)
	names := func(ms []demo.MethodSpec) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	for _, args := range [][]string{{"--method", "lora,dora"}, {"--methods", "lora,dora"}, {"--method", "lora", "--methods", "dora"}} {
		d, err := parseDemo(args)
		if err != nil {
			t.Fatalf("demo %q: %v", args, err)
		}
		if got := names(d.opts.Methods); !reflect.DeepEqual(got, []string{"lora", "dora"}) {
			t.Errorf("demo %q: methods %q, want lora, dora", args, got)
		}
	}
	d, err := parseDemo(nil)
	if err != nil || !reflect.DeepEqual(names(d.opts.Methods), []string{"frozen", "lora", "singlora"}) || d.opts.Alpha != 0 || d.opts.Epochs != 3 {
		t.Fatalf("demo defaults: %+v, %v", d, err)
	}
	if d, err = parseDemo([]string{"--alpha", "16", "--epochs", "0.5", "--seed", "4"}); err != nil || d.opts.Alpha != 16 || d.opts.Epochs != 0.5 || d.opts.Seed != 4 {
		t.Fatalf("demo --alpha 16 --epochs 0.5 --seed 4: %+v, %v", d, err)
	}

	grid := func(args ...string) []string {
		t.Helper()
		cells, _, err := parseSweep(append(args, "--data", "train.jsonl", "--out", "sw"))
		if err != nil {
			t.Fatalf("sweep %q: %v", args, err)
		}
		var out []string
		for _, c := range cells {
			out = append(out, fmt.Sprintf("%s %g %d", c.Cfg.Method, c.Cfg.LR, c.Cfg.Seed))
		}
		return out
	}
	want := []string{"lora 0.001 4", "lora 0.001 5", "lora 0.002 4", "lora 0.002 5", "dora 0.001 4", "dora 0.001 5", "dora 0.002 4", "dora 0.002 5"}
	for _, args := range [][]string{
		{"--method", "lora,dora", "--lr", "1e-3,2e-3", "--seed", "4,5"},
		{"--methods", "lora,dora", "--lrs", "1e-3,2e-3", "--seeds", "4,5"},
		{"--method", "lora", "--method", "dora", "--lr", "1e-3", "--lr", "2e-3", "--seed", "4", "--seed", "5"},
	} {
		if got := grid(args...); !reflect.DeepEqual(got, want) {
			t.Errorf("sweep %q: cells %q, want %q", args, got, want)
		}
	}
	if got := grid(); len(got) != 2*4*3 {
		t.Errorf("sweep defaults: %d cells, want 2 methods × 4 lrs × 3 seeds", len(got))
	}

	for _, args := range [][]string{{"--method", "dora,lora", "--seed", "2,3"}, {"--methods", "dora", "--seeds", "2", "--method", "lora", "--seed", "3"}} {
		a, err := parseToy(args)
		if err != nil {
			t.Fatalf("toy %q: %v", args, err)
		}
		if !reflect.DeepEqual(a.methods, []peft.Method{peft.DoRA, peft.LoRA}) || !reflect.DeepEqual(a.seeds, []uint64{2, 3}) {
			t.Errorf("toy %q: methods %v seeds %v, want [dora lora] [2 3]", args, a.methods, a.seeds)
		}
	}

	for _, args := range [][]string{{"lr-robustness", "--seed", "7,8", "--lr", "1e-3"}, {"--seeds", "7", "--seeds", "8", "lr-robustness", "--lrs", "1e-3"}} {
		e, err := parseExperiment(args)
		if err != nil {
			t.Fatalf("experiment %q: %v", args, err)
		}
		if e.exp.Name != "lr-robustness" || !reflect.DeepEqual(e.seeds, []uint64{7, 8}) || !reflect.DeepEqual(e.lrs, []float64{1e-3}) || *e.sf.out != filepath.Join("runs", "exp-lr-robustness") {
			t.Errorf("experiment %q: %s seeds %v lrs %v out %s", args, e.exp.Name, e.seeds, e.lrs, *e.sf.out)
		}
	}

	// bench: the alias reaches the workload list (which refuses the method before running).
	if err := runBench([]string{"--preset", "layer", "--methods", "dora"}); err == nil || !strings.Contains(err.Error(), `method "dora"`) {
		t.Errorf("bench --methods dora: %v, want the layer preset to refuse dora", err)
	}
}

// TestOneValueFlags: where a command runs one method or seed, a list (or a second use) is an
// error that names the command taking several; a plural spelling suggests the flag.
func TestOneValueFlags(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"train", "--method", "lora,singlora"}, []string{`invalid value "lora,singlora" for flag -method`, "takes one method, not a list", "singlora sweep --method"}},
		{[]string{"train", "--method", "lora", "--method", "dora"}, []string{"given twice (lora, then dora)", "singlora sweep"}},
		{[]string{"train", "--seed", "1,2"}, []string{"takes one seed", "singlora sweep --seed 1,2,3"}},
		{[]string{"train", "--methods", "lora"}, []string{"unknown flag --methods: did you mean --method?"}},
		{[]string{"train", "--seeds", "1"}, []string{"did you mean --seed?"}},
		{[]string{"train", "--bogus"}, []string{"unknown flag --bogus", "see singlora train -h"}},
		{[]string{"demo", "--seed", "1,2"}, []string{"takes one seed", "singlora experiment NAME --seed 1,2,3"}},
		{[]string{"generate", "--seed", "1,2", "--model", "x", "--prompt-ids", "1"}, []string{"takes one seed", "once per seed"}},
		{[]string{"sweep", "--seed", "1,x", "--out", "o", "--data", "d"}, []string{`--seed "x": want a whole number`}},
		{[]string{"sweep", "--lr", "0", "--out", "o", "--data", "d"}, []string{`--lr "0": want a learning rate`}},
		{[]string{"sweep", "--method", "lora,bogus", "--out", "o", "--data", "d"}, []string{"--method:", "bogus"}},
		{[]string{"toy", "--method", "bogus"}, []string{"--method:", "bogus"}},
		{[]string{"merge", "--base", "b"}, []string{"--adapter and --out are missing"}},
		{[]string{"demo", "--cache", ""}, []string{"--cache is empty"}},
	} {
		err := refusedQuickly(t, tc.args[0], tc.args[1:])
		if err == nil {
			t.Errorf("%q: no error", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not contain %q", tc.args, err, w)
			}
		}
	}
}

// TestToyRanks: --rank is LoRA's rank; every method trains at the rank with LoRA's adapter
// parameter count (SingLoRA 2r, as before), unless --singlora-rank says otherwise.
func TestToyRanks(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want map[peft.Method]int
	}{
		{nil, map[peft.Method]int{peft.LoRA: 4, peft.LoRAPlus: 4, peft.DoRA: 4, peft.SingLoRA: 8}},
		{[]string{"--rank", "3"}, map[peft.Method]int{peft.LoRA: 3, peft.DoRA: 3, peft.SingLoRA: 6}},
		{[]string{"--rank", "3", "--singlora-rank", "5"}, map[peft.Method]int{peft.LoRA: 3, peft.SingLoRA: 5}},
	} {
		a, err := parseToy(tc.args)
		if err != nil {
			t.Fatalf("toy %q: %v", tc.args, err)
		}
		for m, r := range tc.want {
			if got := a.rankOf(m); got != r {
				t.Errorf("toy %q: %s at rank %d, want %d", tc.args, m, got, r)
			}
		}
	}
	spec := peft.LinearSpec{In: 128, Out: 128}
	if s, l := peft.AdapterParams(peft.SingLoRA, spec, equalRank(peft.SingLoRA, 128, 4)), peft.AdapterParams(peft.LoRA, spec, 4); s != l {
		t.Errorf("SingLoRA at the equal rank has %d parameters, LoRA r=4 %d", s, l)
	}
	if _, err := parseToy([]string{"--rank", "0"}); err == nil || !strings.Contains(err.Error(), "--rank 0") {
		t.Errorf("toy --rank 0: %v", err)
	}
}

// TestInspectJSON: inspect --json describes adapters, safetensors files and models as one JSON
// object each, with the numbers the text shows.
func TestInspectJSON(t *testing.T) {
	_, base, adapter, _, _ := fixture(t)
	decode := func(args ...string) map[string]any {
		t.Helper()
		var buf bytes.Buffer
		if err := runInspect(append(args, "--json"), &buf); err != nil {
			t.Fatalf("inspect %q --json: %v", args, err)
		}
		if n := strings.Count(strings.TrimSpace(buf.String()), "\n"); n != 0 {
			t.Errorf("inspect %q --json: %d lines, want one", args, n+1)
		}
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("inspect %q --json: %v\n%s", args, err, buf.String())
		}
		return m
	}
	check := func(what string, m map[string]any, want map[string]any) {
		t.Helper()
		for k, v := range want {
			if !reflect.DeepEqual(m[k], v) {
				t.Errorf("%s: %q = %#v, want %#v", what, k, m[k], v)
			}
		}
	}
	a := decode(adapter)
	check("adapter", a, map[string]any{"kind": "adapter", "method": "singlora", "peft_type": "SINGLORA", "r": 2.0, "lora_alpha": 4.0,
		"scaling": 2.0, "u": 0.5, "trained_steps": 5.0, "ramp_up_steps": 10.0, "init": "theory", "adapter_params": 10.0,
		"adapted_base_params": 15.0, "target_modules": []any{"proj"},
		"modules": []any{map[string]any{"path": "blk.proj", "in": 5.0, "out": 3.0, "r": 2.0, "lora_alpha": 4.0, "scaling": 2.0, "adapter_params": 10.0, "base_params": 15.0}}, "bias": "none"})
	w, _ := a["weights"].(map[string]any)
	check("adapter weights", w, map[string]any{"params": 10.0,
		"tensors": []any{map[string]any{"name": "base_model.model.blk.proj.singlora_A.weight", "dtype": "F32", "shape": []any{5.0, 2.0}}}})

	f := decode(base)
	check("safetensors", f, map[string]any{"kind": "safetensors", "path": base, "params": 20.0, "metadata": map[string]any{"format": "pt"}})
	if ts, _ := f["tensors"].([]any); len(ts) != 2 {
		t.Errorf("safetensors: tensors %v, want 2", f["tensors"])
	}

	m := decode(tinyLlamaDir(t))
	check("model", m, map[string]any{"kind": "model", "architecture": "llama", "package": "models/llama", "tasks": []any{"classify", "causal-lm"},
		"tokenizer": "tokenizer.json", "vocab_size": 20.0, "max_positions": 2048.0, "max_positions_key": "max_position_embeddings",
		"eos_token_id": 19.0, "linear_weights": 1920.0, "params": 2288.0})
	if ls, _ := m["linear_layers"].([]any); len(ls) != 7 {
		t.Errorf("model: %d linear layers, want 7", len(ls))
	}
}

// TestTrainJSON: train --json prints the run's summary as one JSON object, and nothing else, on
// stdout; --dry-run --json prints the parameter report.
func TestTrainJSON(t *testing.T) {
	if !use.Available() {
		t.Skip("USE-Lite weights not fetched: run singlora fetch")
	}
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 40)
	run := filepath.Join(tmp, "run")
	args := []string{"train", "--data", dataPath, "--steps", "2", "--batch", "8", "--quiet", "--json", "--show-params"}
	out, err := cli(append(args, "--run", run)...).Output()
	if err != nil {
		t.Fatalf("train --json: %v\n%s", err, out)
	}
	var s struct {
		Run string `json:"run"`
		finetune.Summary
	}
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("train --json printed %q: %v", out, err)
	}
	if s.Run != run || s.Steps != 2 || s.Method != "singlora" || s.TrainableParams <= 0 || s.TrainableParams >= s.TotalParams {
		t.Errorf("train --json: %+v", s)
	}
	if _, ok := s.Val["accuracy"]; !ok {
		t.Errorf("train --json: no validation accuracy in %s", out)
	}
	b, err := os.ReadFile(filepath.Join(run, finetune.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var file finetune.Summary
	if err := json.Unmarshal(b, &file); err != nil || !reflect.DeepEqual(file, s.Summary) {
		t.Errorf("train --json's summary %+v differs from %s's %+v (%v)", s.Summary, finetune.SummaryFile, file, err)
	}

	out, err = cli(append(args, "--run", filepath.Join(tmp, "dry"), "--dry-run")...).Output()
	if err != nil {
		t.Fatalf("train --dry-run --json: %v\n%s", err, out)
	}
	var p struct {
		DryRun    bool `json:"dry_run"`
		Trainable int  `json:"trainable_params"`
		Total     int  `json:"total_params"`
		Layers    []struct {
			Path      string `json:"path"`
			Trainable int    `json:"trainable_params"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("train --dry-run --json printed %q: %v", out, err)
	}
	sum := 0
	for _, l := range p.Layers {
		sum += l.Trainable
	}
	if !p.DryRun || len(p.Layers) == 0 || sum == 0 || sum > p.Trainable || p.Trainable != s.TrainableParams || p.Total != s.TotalParams {
		t.Errorf("train --dry-run --json: %+v (the run had %d of %d trainable)", p, s.TrainableParams, s.TotalParams)
	}
}

// TestDemoJSON: demo --json prints results.json's object on stdout; --alpha and a fractional
// --epochs reach the runs' configs.
func TestDemoJSON(t *testing.T) {
	if !use.Available() || !fetch.Sentiment.Present(fetch.CacheDir()) {
		t.Skip("demo data not fetched: run singlora fetch")
	}
	if testing.Short() {
		t.Skip("trains the encoder twice")
	}
	run := filepath.Join(t.TempDir(), "demo")
	out, err := cli("demo", "--run", run, "--method", "frozen,singlora", "--max-train", "32", "--max-eval", "20", "--batch", "16",
		"--epochs", "0.5", "--alpha", "3", "--rank", "2", "--quiet", "--json").Output()
	if err != nil {
		t.Fatalf("demo --json: %v\n%s", err, out)
	}
	var got, file demo.Results
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("demo --json printed %q: %v", out, err)
	}
	b, err := os.ReadFile(filepath.Join(run, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &file); err != nil || !reflect.DeepEqual(got, file) {
		t.Errorf("demo --json printed %+v, results.json holds %+v (%v)", got, file, err)
	}
	if len(got.Methods) != 2 || got.Methods[0].Name != "frozen" || got.Methods[1].Name != "singlora" || got.Split["train"] != 32 ||
		got.Split["test"] != 20 || got.Config["alpha"] != 3.0 || got.Config["epochs"] != 0.5 {
		t.Fatalf("demo --json: %+v", got)
	}
	for _, m := range got.Methods {
		c, err := finetune.LoadRunConfig(filepath.Join(run, m.Name))
		if err != nil {
			t.Fatal(err)
		}
		// 32 sentences in batches of 16: 2 steps an epoch, so half an epoch is one step.
		if m.Steps != 1 || c.Steps != 1 || c.LoraAlpha != 3 || c.R != 2 || c.Epochs != 0.5 || c.EvalEvery != 2 {
			t.Errorf("%s: %d steps, config %+v", m.Name, m.Steps, c)
		}
	}
}
