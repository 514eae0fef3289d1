package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/data"
	"github.com/singlora/singlora/demo"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models/use"
)

// TestInputTexts: positional texts win; otherwise the non-blank lines of stdin; a read error or a
// line over the limit is reported (with its line number) before "no texts".
func TestInputTexts(t *testing.T) {
	huge := strings.Repeat("x", maxLineBytes+1)
	tests := []struct {
		name  string
		args  []string
		stdin io.Reader
		want  []string
		err   string
	}{
		{"arguments", []string{"a b", "c"}, strings.NewReader("ignored\n"), []string{"a b", "c"}, ""},
		{"stdin lines", nil, strings.NewReader("  one \n\n two\r\nthree"), []string{"one", "two", "three"}, ""},
		{"blank stdin", nil, strings.NewReader("\n \n"), nil, "no texts"},
		{"line over the limit", nil, strings.NewReader("ok\n" + huge + "\nlater\n"), nil, "standard input: line 2 is longer than 16 MiB"},
		{"only a line over the limit", nil, strings.NewReader(huge), nil, "line 1 is longer than 16 MiB, the limit for one text"},
		{"read error after lines", nil, io.MultiReader(strings.NewReader("a\nb\n"), iotest.ErrReader(errors.New("disk on fire"))), nil, "reading line 3: disk on fire"},
		{"read error at once", nil, iotest.ErrReader(errors.New("disk on fire")), nil, "reading line 1: disk on fire"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := inputTexts(tc.args, tc.stdin)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestClassifyDemoRun: "classify" and "embed" work on the demo's run folders (which hold no
// RUN/adapter: the best checkpoint is used, and stderr says so), reproduce the demo's test
// accuracy, take --checkpoint, and note texts longer than the encoder's 128 tokens.
func TestClassifyDemoRun(t *testing.T) {
	cache := fetch.CacheDir()
	if !use.Available() || !fetch.Sentiment.Present(cache) {
		t.Skip("demo data not fetched: run singlora fetch")
	}
	if testing.Short() {
		t.Skip("trains the encoder twice")
	}
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	specs, err := demo.ParseMethods("frozen,singlora")
	if err != nil {
		t.Fatal(err)
	}
	const seed, maxEval = 3, 40
	runDir := filepath.Join(t.TempDir(), "demo")
	res, err := demo.Run(context.Background(), demo.Options{RunDir: runDir, CacheDir: cache, Methods: specs, Epochs: 1,
		BatchSize: 16, Rank: 4, HeadLR: 1e-2, Seed: seed, Quiet: true, Out: io.Discard, Backend: be, MaxTrain: 32, MaxEval: maxEval})
	if err != nil {
		t.Fatal(err)
	}
	// The demo's test split, as a data file.
	examples, err := demo.Sentences(cache)
	if err != nil {
		t.Fatal(err)
	}
	splits, err := data.StratifiedSplit(examples, []float64{0.7, 0.1, 0.2}, seed)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, e := range splits[2][:maxEval] {
		js, _ := json.Marshal(map[string]any{"text": e.Text, "label": json.Number(e.Label)})
		sb.Write(append(js, '\n'))
	}
	testFile := filepath.Join(t.TempDir(), "test.jsonl")
	if err := os.WriteFile(testFile, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a truly wonderful film ", 60)

	for _, m := range res.Methods {
		run := filepath.Join(runDir, m.Name)
		best := filepath.Join(run, "checkpoints", "best")
		last := filepath.Join(run, "checkpoints", "last")
		if m.Name == "singlora" {
			best, last = filepath.Join(best, "adapter"), filepath.Join(last, "adapter")
		}
		var out, errOut strings.Builder
		if err := runClassify([]string{"--run", run, "--data", testFile}, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("%s: classify --data: %v\n%s", m.Name, err, errOut.String())
		}
		t.Logf("%s: classify --data: %s", m.Name, errOut.String())
		// By default: RUN/adapter (written when a run finishes, as the demo's runs do), else best.
		auto := "classify: weights from " + best + " (checkpoint of step"
		if m.Name == "singlora" {
			auto = "classify: weights from " + filepath.Join(run, "adapter") + "\n"
		}
		for _, want := range []string{auto, fmt.Sprintf("accuracy %.4f on %d examples", m.TestAccuracy, maxEval)} {
			if !strings.Contains(errOut.String(), want) {
				t.Errorf("%s: classify stderr %q does not contain %q", m.Name, errOut.String(), want)
			}
		}
		if n := strings.Count(out.String(), "\n"); n != maxEval {
			t.Errorf("%s: %d output lines, want %d", m.Name, n, maxEval)
		}

		out.Reset()
		errOut.Reset()
		if err := runClassify([]string{"--run", run, "--checkpoint", "last"}, strings.NewReader("fine\n"+long+"\n"), &out, &errOut); err != nil {
			t.Fatalf("%s: classify --checkpoint last: %v", m.Name, err)
		}
		for _, want := range []string{"classify: weights from " + last + " (checkpoint of step 2)",
			"warning: 1 of 2 texts are longer than the encoder's limit of 128 tokens and were clipped to it\n"} {
			if !strings.Contains(errOut.String(), want) {
				t.Errorf("%s: classify stderr %q does not contain %q", m.Name, errOut.String(), want)
			}
		}
		var pred struct {
			Prediction string    `json:"prediction"`
			LogProbs   []float64 `json:"log_probs"`
		}
		if err := json.Unmarshal([]byte(strings.SplitN(out.String(), "\n", 2)[0]), &pred); err != nil || len(pred.LogProbs) != 2 || (pred.Prediction != "0" && pred.Prediction != "1") {
			t.Errorf("%s: prediction %+v, %v (output %q)", m.Name, pred, err, out.String())
		}

		out.Reset()
		errOut.Reset()
		if err := runEmbed([]string{"--run", run, "--checkpoint", "best", "some text"}, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("%s: embed: %v", m.Name, err)
		}
		if !strings.Contains(out.String(), `"embedding":[`) || !strings.Contains(errOut.String(), "embed: weights from "+best) {
			t.Errorf("%s: embed printed %.80q, stderr %q", m.Name, out.String(), errOut.String())
		}
	}

	// Several runs on one base: --run NAME=RUN repeated and --active; each run's lines equal the
	// run classified alone (the same adapter run under two names, and its best checkpoint).
	sing := filepath.Join(runDir, "singlora")
	classifyOut := func(args ...string) (string, string, error) {
		var out, errOut strings.Builder
		err := runClassify(append(args, "fine", "dull"), strings.NewReader(""), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	aloneOut, _, err := classifyOut("--run", sing)
	if err != nil {
		t.Fatal(err)
	}
	bestOut, _, err := classifyOut("--run", sing, "--checkpoint", "best")
	if err != nil {
		t.Fatal(err)
	}
	both, stderr, err := classifyOut("--run", "a="+sing, "--run", "b="+sing, "--active", "b,a")
	if err != nil {
		t.Fatalf("two runs: %v\n%s", err, stderr)
	}
	withRun := func(lines, name string) string {
		var sb strings.Builder
		for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			m["run"] = name
			b, _ := json.Marshal(m)
			sb.Write(append(b, '\n'))
		}
		return sb.String()
	}
	if want := withRun(aloneOut, "b") + withRun(aloneOut, "a"); both != want {
		t.Errorf("two runs printed\n%s\nwant\n%s", both, want)
	}
	if one, _, err := classifyOut("--run", "a="+sing, "--run", "b="+sing, "--active", "a", "--checkpoint", "best"); err != nil || one != bestOut {
		t.Errorf("--active a --checkpoint best printed %q (%v), want %q", one, err, bestOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--run", "a=" + sing, "--run", "b=" + sing}, "choose with --active"},
		{[]string{"--run", "a=" + sing, "--run", "f=" + filepath.Join(runDir, "frozen"), "--active", "a"}, "classify it on its own"},
		{[]string{"--run", "a=" + sing, "--active", "z"}, "no --run of that name"},
	} {
		if _, _, err := classifyOut(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
