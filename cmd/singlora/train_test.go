package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/models/use"
)

// TestMain lets tests run the CLI as a real subprocess (so signals can be sent to it): the test
// binary re-executes itself with SINGLORA_RUN_MAIN=1 and the CLI's arguments.
func TestMain(m *testing.M) {
	if os.Getenv("SINGLORA_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func cli(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SINGLORA_RUN_MAIN=1")
	return cmd
}

// writeSentiment writes n labelled sentences from the demo data as JSONL.
func writeSentiment(t *testing.T, path string, n int) {
	t.Helper()
	var buf bytes.Buffer
	words := []string{"great", "awful", "lovely", "terrible", "fine", "bad", "superb", "boring"}
	for i := 0; i < n; i++ {
		label := []string{"pos", "neg"}[i%2]
		fmt.Fprintf(&buf, `{"text": "this was %s and %s, item %d", "label": %q}`+"\n", words[(i*3+i%2)%8], words[(i+1)%8], i, label)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func metricLines(t *testing.T, dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "wall_seconds")
		js, _ := json.Marshal(m)
		out = append(out, string(js))
	}
	return out
}

// TestTrainInterruptedBySignalResumesIdentically kills a training run with SIGINT mid-way, resumes
// it, and checks the final adapter and the metrics equal those of an uninterrupted run.
func TestTrainInterruptedBySignalResumesIdentically(t *testing.T) {
	if !use.Available() {
		t.Skip("USE-Lite weights not fetched: run singlora fetch")
	}
	if testing.Short() {
		t.Skip("trains the encoder three times")
	}
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 48)
	common := []string{"--data", dataPath, "--method", "singlora", "--steps", "24", "--batch", "4",
		"--eval-every", "8", "--checkpoint-every", "1", "--dropout", "0.1", "--quiet", "--seed", "7"}

	whole := filepath.Join(tmp, "whole")
	if out, err := cli(append([]string{"train", "--run", whole}, common...)...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}

	split := filepath.Join(tmp, "split")
	cmd := cli(append([]string{"train", "--run", split}, common...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForSteps(t, split, 5, cmd, &out)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("the interrupted run exited 0 (did it finish before the signal?):\n%s", out.String())
	}
	if !strings.Contains(out.String(), "interrupted") || !strings.Contains(out.String(), "resume with --resume "+split) {
		t.Fatalf("no interruption message naming the folder to resume:\n%s", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code after SIGINT: %d, want 130", code)
	}
	n := len(metricLines(t, split))
	if n >= 24 {
		t.Fatalf("the run finished (%d steps) before the signal: the test checks nothing", n)
	}
	if out, err := cli("train", "--resume", split, "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	a, err := os.ReadFile(filepath.Join(whole, "adapter", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(split, "adapter", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("the resumed run's adapter differs from the uninterrupted run's")
	}
	mw, ms := metricLines(t, whole), metricLines(t, split)
	if strings.Join(mw, "\n") != strings.Join(ms, "\n") {
		t.Fatalf("metrics differ:\nuninterrupted:\n%s\nresumed:\n%s", strings.Join(mw, "\n"), strings.Join(ms, "\n"))
	}
	t.Logf("interrupted after %d steps; resumed run identical", n)
}

func TestTrainBadInput(t *testing.T) {
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"text\": \"ok\", \"label\": \"a\"}\nnot json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"train"}, "no training data"},
		{[]string{"train", "--data", bad}, "bad.jsonl:2"},
		{[]string{"train", "--data", bad, "--method", "bogus"}, "unknown method"},
		{[]string{"train", "--data", bad, "--ramp", "x%"}, "ramp"},
		{[]string{"train", "--resume", filepath.Join(tmp, "nope")}, "resume"},
	} {
		out, err := cli(tc.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: err %v, output %q, want it to mention %q", tc.args, err, out, tc.want)
		}
	}
}

// TestClassifyMatchesEndOfTraining: "singlora classify" on a finished run (reloading the encoder,
// the saved adapter and head) predicts exactly what the run predicted at the end of training.
func TestClassifyMatchesEndOfTraining(t *testing.T) {
	if !use.Available() {
		t.Skip("USE-Lite weights not fetched: run singlora fetch")
	}
	for _, method := range []string{"singlora", "frozen"} {
		tmp := t.TempDir()
		dataPath := filepath.Join(tmp, "train.jsonl")
		writeSentiment(t, dataPath, 60)
		run := filepath.Join(tmp, "run")
		if out, err := cli("train", "--data", dataPath, "--method", method, "--steps", "6", "--batch", "8", "--val-fraction", "0.3", "--quiet", "--run", run).CombinedOutput(); err != nil {
			t.Fatalf("%s: train: %v\n%s", method, err, out)
		}
		b, err := os.ReadFile(filepath.Join(run, "val_predictions.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var want []map[string]string
		var texts []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var p map[string]string
			if err := json.Unmarshal([]byte(l), &p); err != nil {
				t.Fatal(err)
			}
			want = append(want, p)
			texts = append(texts, p["text"])
		}
		out, err := cli(append([]string{"classify", "--run", run}, texts...)...).Output()
		if err != nil {
			t.Fatalf("%s: classify: %v", method, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != len(want) {
			t.Fatalf("%s: %d predictions, want %d", method, len(lines), len(want))
		}
		for i, l := range lines {
			var got map[string]any
			if err := json.Unmarshal([]byte(l), &got); err != nil {
				t.Fatal(err)
			}
			if got["prediction"] != want[i]["prediction"] {
				t.Fatalf("%s: text %q: classify says %v, end of training said %v", method, texts[i], got["prediction"], want[i]["prediction"])
			}
		}
		emb, err := cli("embed", "--run", run, texts[0]).Output()
		if err != nil || !strings.Contains(string(emb), `"embedding":[`) {
			t.Fatalf("%s: embed: %v %s", method, err, emb)
		}
	}
}

// TestFlagsOverrideConfigFile: a flag given explicitly wins over the config file; flags left at
// their defaults do not override it.
func TestFlagsOverrideConfigFile(t *testing.T) {
	cfg := finetune.Default()
	cfg.LR, cfg.R, cfg.Method = 0.005, 4, "lora"
	var flags finetune.Config
	flags.R, flags.LR, flags.Method = 2, 1e-3, "singlora"
	apply(&cfg, flags, map[string]bool{"rank": true})
	if cfg.R != 2 || cfg.LR != 0.005 || cfg.Method != "lora" {
		t.Fatalf("after applying --rank only: %+v", cfg)
	}
}
