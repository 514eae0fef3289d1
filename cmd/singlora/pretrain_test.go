package main

import (
	"encoding/json"
	"github.com/singlora/singlora/corpora/corporatest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/pretrain"
)

// TestPretrainCLI: a tiny pretraining prints its folder, which generate and train --model read;
// the same flags again reuse it; --json prints the summary; --dry-run says it is cached.
func TestPretrainCLI(t *testing.T) {
	cache := corporatest.Cache(t)
	flags := []string{"pretrain", "--preset", "tiny", "--steps", "6", "--warmup", "1", "--eval-every", "3", "--cache", cache, "--quiet"}
	out, err := cli(flags...).Output()
	if err != nil {
		t.Fatalf("pretrain: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if filepath.Dir(dir) != filepath.Join(cache, "pretrain") {
		t.Fatalf("pretrain printed %q, want a folder under %s/pretrain", dir, cache)
	}
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json", pretrain.SummaryFile, pretrain.MetricsFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the folder lacks %s", f)
		}
	}
	again, err := cli(flags...).CombinedOutput()
	if err != nil || !strings.Contains(string(again), "reusing it") || !strings.Contains(string(again), dir) {
		t.Errorf("second run: %v\n%s", err, again)
	}
	js, err := cli(append(flags, "--json")...).Output()
	var s pretrain.Summary
	if err != nil || json.Unmarshal(js, &s) != nil || s.Steps != 6 || s.Config.Hidden != 32 || !(s.HeldOut.Perplexity > 1) {
		t.Errorf("--json: %v %+v", err, s)
	}
	dry, err := cli(append(flags, "--dry-run")...).Output()
	if err != nil || !strings.Contains(string(dry), "(cached)") || !strings.Contains(string(dry), "key "+s.Key) {
		t.Errorf("--dry-run: %v\n%s", err, dry)
	}
	gen, err := cli("generate", "--model", dir, "--prompt", "Fellow-Citizens of the Senate", "--max-new-tokens", "4").CombinedOutput()
	if err != nil || strings.TrimSpace(string(gen)) == "" {
		t.Errorf("generate --model: %v\n%s", err, gen)
	}
	data := filepath.Join(t.TempDir(), "pairs.jsonl")
	var lines []string
	for i := 0; i < 12; i++ {
		lines = append(lines, `{"prompt": "The state of the Union", "completion": " is strong."}`)
	}
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := cli("train", "--model", dir, "--data", data, "--method", "singlora", "--steps", "2", "--batch", "4",
		"--run", filepath.Join(t.TempDir(), "run"), "--quiet").CombinedOutput()
	if err != nil || !strings.Contains(string(tr), "2 steps") {
		t.Errorf("train --model: %v\n%s", err, tr)
	}
	ft := filepath.Join(t.TempDir(), "moby")
	msg, err := cli(append(flags, "--finetune-data", "moby-dick", "--out", ft, "--finetune-steps", "2")...).CombinedOutput()
	if err != nil || !strings.Contains(string(msg), "singlora sweep --config "+filepath.Join(ft, "sweep.json")) {
		t.Fatalf("--finetune-data: %v\n%s", err, msg)
	}
	var sc map[string]any
	if err := json.Unmarshal(readAll(t, filepath.Join(ft, "sweep.json")), &sc); err != nil || sc["model"] != dir || sc["task"] != "causal-lm" {
		t.Fatalf("sweep.json: %v %v", err, sc)
	}
	tr, err = cli("train", "--config", filepath.Join(ft, "sweep.json"), "--method", "lora", "--run", filepath.Join(t.TempDir(), "moby-run"), "--quiet").CombinedOutput()
	if err != nil || !strings.Contains(string(tr), "2 steps") || !strings.Contains(string(tr), "perplexity") {
		t.Errorf("train --config sweep.json: %v\n%s", err, tr)
	}
}

// TestPretrainFortunesCLI: --finetune-data fortunes writes a capped, balanced split of the real
// fortunes and a sweep.json that train --config runs as classification, with a test accuracy.
func TestPretrainFortunesCLI(t *testing.T) {
	if _, err := os.Stat(corpora.FortunesDir); err != nil {
		t.Skipf("%s: %v (apt-get install fortunes)", corpora.FortunesDir, err)
	}
	cache := corporatest.Cache(t)
	ft := filepath.Join(t.TempDir(), "fortunes")
	msg, err := cli("pretrain", "--preset", "tiny", "--steps", "2", "--warmup", "1", "--cache", cache, "--quiet",
		"--finetune-data", "fortunes", "--fortunes-per-class", "20", "--out", ft, "--finetune-steps", "2").CombinedOutput()
	if err != nil || !strings.Contains(string(msg), "84 train, 12 val, 24 test fortunes of 6 classes (chance 0.167)") {
		t.Fatalf("--finetune-data fortunes: %v\n%s", err, msg)
	}
	var sc map[string]any
	if err := json.Unmarshal(readAll(t, filepath.Join(ft, "sweep.json")), &sc); err != nil || sc["task"] != "classify" || sc["val"] != filepath.Join(ft, "val.jsonl") {
		t.Fatalf("sweep.json: %v %v", err, sc)
	}
	run := filepath.Join(t.TempDir(), "run")
	tr, err := cli("train", "--config", filepath.Join(ft, "sweep.json"), "--run", run, "--quiet").CombinedOutput()
	if err != nil || !strings.Contains(string(tr), "2 steps") {
		t.Fatalf("train --config sweep.json: %v\n%s", err, tr)
	}
	var s struct {
		Test   map[string]float64 `json:"test"`
		Labels []string           `json:"labels"`
	}
	if err := json.Unmarshal(readAll(t, filepath.Join(run, "summary.json")), &s); err != nil || len(s.Labels) != 6 {
		t.Errorf("summary.json: %v %+v", err, s)
	}
	if _, ok := s.Test["accuracy"]; !ok {
		t.Errorf("summary.json has no test accuracy: %+v", s)
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPretrainRefusesBadFlags(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--heads", "3"}, "--heads"},
		{[]string{"--kv-heads", "3"}, "--kv-heads"},
		{[]string{"--seed", "1,2"}, "one seed"},
		{[]string{"--preset", "huge"}, "--preset \"huge\": want one of small, tiny"},
		{[]string{"--warmup", "900", "--steps", "900"}, "--warmup"},
		{[]string{"--vocab", "100"}, "--vocab"},
		{[]string{"--finetune-data", "imdb", "--out", "x"}, "want moby-dick or fortunes"},
		{[]string{"--finetune-data", "fortunes", "--out", "x", "--fortunes", "/nonexistent"}, "/nonexistent/computers is missing: install Debian's fortunes"},
		{[]string{"--finetune-data", "fortunes", "--out", "x", "--fortunes-per-class", "-1"}, "--fortunes-per-class -1"},
		{[]string{"--finetune-data", "moby-dick", "--out", "x", "--fortunes", "/tmp"}, "for --finetune-data fortunes"},
		{[]string{"--finetune-data", "moby-dick"}, "needs --out"},
		{[]string{"--out", "x"}, "--finetune-data"},
	} {
		err := refusedQuickly(t, "pretrain", tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pretrain %q: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(os.Getenv("SINGLORA_CACHE")); len(ents) > 0 {
		t.Errorf("refused runs wrote %d entries into the cache", len(ents))
	}
}
