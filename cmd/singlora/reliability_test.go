package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models/use"
	"github.com/singlora/singlora/train"
)

func needUSE(t *testing.T) {
	t.Helper()
	if !use.Available() {
		t.Skip("USE-Lite weights not fetched: run singlora fetch")
	}
}

// runSnapshot is what must be identical between an uninterrupted run and a killed-and-resumed
// one: every file of the run folder except wall-clock fields, the lock file and the logs.
func runSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if info.IsDir() {
			if atomicfile.IsTemp(info.Name()) {
				return fmt.Errorf("stray temporary folder %s", rel)
			}
			return nil
		}
		if atomicfile.IsTemp(info.Name()) {
			return fmt.Errorf("stray temporary file %s", rel)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch filepath.Base(rel) {
		case ".lock":
			return nil
		case "metrics.jsonl":
			snap[rel] = strings.Join(metricLines(t, dir), "\n")
		case "state.json", "summary.json":
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("%s: %v", rel, err)
			}
			delete(m, "wall_seconds")
			delete(m, "train_seconds")
			js, _ := json.Marshal(m)
			snap[rel] = string(js)
		default:
			snap[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func diffSnapshots(a, b map[string]string) []string {
	var diffs []string
	for k, v := range a {
		w, ok := b[k]
		switch {
		case !ok:
			diffs = append(diffs, k+" missing")
		case v != w:
			diffs = append(diffs, k+" differs")
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, k+" extra")
		}
	}
	return diffs
}

// newestCheckpoint returns the highest step of a complete "last" checkpoint under ckDir, in
// place or in a temporary copy a kill left (-1: none).
func newestCheckpoint(t *testing.T, ckDir string) int64 {
	t.Helper()
	newest := int64(-1)
	entries, _ := os.ReadDir(ckDir)
	for _, e := range entries {
		if e.Name() != "last" && !strings.HasPrefix(e.Name(), atomicfile.TempPrefix("last")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(ckDir, e.Name(), "state.json"))
		if err != nil {
			continue
		}
		var st struct{ Step int64 }
		if json.Unmarshal(b, &st) == nil && st.Step > newest {
			newest = st.Step
		}
	}
	return newest
}

// waitForSteps waits (up to 5 minutes) until the run folder's metrics.jsonl has n lines; if it
// does not, it kills cmd and fails with cmd's output.
func waitForSteps(t *testing.T, run string, n int, cmd *exec.Cmd, out *bytes.Buffer) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl")); bytes.Count(b, []byte("\n")) >= n {
			return
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("%s: no %d steps in 5 minutes:\n%s", run, n, out.String())
		}
	}
}

// killedBySIGKILL reports whether err is a process that died of SIGKILL.
func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// TestKillAtEveryRenameResumesIdentically SIGKILLs training at every kill point of its file
// writes — just before and just after every rename and folder exchange (config.json, head.json,
// metrics, each checkpoint file, the checkpoint folder swaps, the best-checkpoint copy, the
// final adapter) — then resumes it, and checks the run folder ends byte-identical to an
// uninterrupted run's, with no temporary files left. It runs twice: with the atomic folder
// exchange, and with the two-rename fallback whose gap RecoverCheckpoints must repair.
func TestKillAtEveryRenameResumesIdentically(t *testing.T) {
	needUSE(t)
	if testing.Short() {
		t.Skip("trains the encoder about 200 times")
	}
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 40)
	common := []string{"--data", dataPath, "--method", "singlora", "--steps", "3", "--batch", "8",
		"--eval-every", "2", "--checkpoint-every", "1", "--dropout", "0.1", "--quiet", "--seed", "5"}
	whole := filepath.Join(tmp, "whole")
	if out, err := cli(append([]string{"train", "--run", whole}, common...)...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	want := runSnapshot(t, whole)
	for _, mode := range []struct {
		name string
		env  []string
	}{
		{"exchange", nil},
		{"two-renames", []string{atomicfile.NoExchangeEnv + "=1"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			for k := 1; ; k++ {
				if k > 500 {
					t.Fatal("more than 500 kill points: the loop does not end")
				}
				dir := filepath.Join(tmp, fmt.Sprintf("%s-%d", mode.name, k))
				cmd := cli(append([]string{"train", "--run", dir}, common...)...)
				cmd.Env = append(append(cmd.Env, mode.env...), fmt.Sprintf("%s=%d", atomicfile.KillEnv, k))
				out, err := cmd.CombinedOutput()
				if err == nil {
					if k < 20 {
						t.Fatalf("only %d kill points were reached: the hook is not wired", k-1)
					}
					t.Logf("%s: killed and resumed at each of %d kill points", mode.name, k-1)
					return
				}
				if !killedBySIGKILL(err) {
					t.Fatalf("kill point %d: the run failed instead of being killed: %v\n%s", k, err, out)
				}
				// What a user does next: resume, or run the same command again when the kill came
				// before the run was recorded (no config.json yet).
				resume := cli("train", "--resume", dir, "--quiet")
				if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
					resume = cli(append([]string{"train", "--run", dir}, common...)...)
				}
				resume.Env = append(resume.Env, mode.env...)
				saved := newestCheckpoint(t, filepath.Join(dir, "checkpoints"))
				out, err = resume.CombinedOutput()
				if err != nil {
					t.Fatalf("kill point %d: resume failed: %v\n%s", k, err, out)
				}
				// Identical output alone would not show it: a deterministic run started over
				// from step 0 ends identical too. The resume must start from the newest
				// complete checkpoint the kill left (a lost checkpoint is lost work).
				from := int64(0)
				if m := regexp.MustCompile(`resuming from step (\d+)`).FindSubmatch(out); m != nil {
					from, _ = strconv.ParseInt(string(m[1]), 10, 64)
				}
				if from < saved {
					t.Fatalf("kill point %d: a complete checkpoint of step %d existed, but the run went on from step %d:\n%s", k, saved, from, out)
				}
				if d := diffSnapshots(want, runSnapshot(t, dir)); len(d) > 0 {
					t.Fatalf("kill point %d: the resumed run differs from the uninterrupted one: %s", k, strings.Join(d, ", "))
				}
				_ = os.RemoveAll(dir)
			}
		})
	}
}

// TestOneTrainerPerFolder: a second trainer on a folder in use refuses at once, naming the
// holder's PID, and writes nothing; the first run is unharmed.
func TestOneTrainerPerFolder(t *testing.T) {
	needUSE(t)
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 48)
	run := filepath.Join(tmp, "run")
	first := cli("train", "--data", dataPath, "--run", run, "--steps", "300", "--batch", "8", "--quiet", "--checkpoint-every", "1")
	var out1 bytes.Buffer
	first.Stdout, first.Stderr = &out1, &out1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Process.Kill() }()
	waitForSteps(t, run, 2, first, &out1)
	cfgBefore, _ := os.ReadFile(filepath.Join(run, "config.json"))
	for _, args := range [][]string{
		{"train", "--data", dataPath, "--run", run, "--steps", "4", "--lr", "0.5", "--quiet"},
		{"train", "--resume", run, "--quiet"},
	} {
		out, err := cli(args...).CombinedOutput()
		if err == nil {
			t.Fatalf("%v: a second trainer on a folder in use succeeded:\n%s", args, out)
		}
		want := fmt.Sprintf("used by process %d", first.Process.Pid)
		if !strings.Contains(string(out), want) {
			t.Errorf("%v: the refusal should name the holder (%q):\n%s", args, want, out)
		}
	}
	if cfgAfter, _ := os.ReadFile(filepath.Join(run, "config.json")); !bytes.Equal(cfgBefore, cfgAfter) {
		t.Error("the refused trainer changed config.json")
	}
	if err := first.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	if !strings.Contains(out1.String(), "resume with --resume "+run) {
		t.Errorf("the interrupted first run should say how to resume it:\n%s", out1.String())
	}
	// The lock went with the process: the folder can be taken again.
	l, err := train.LockFolder(run)
	if err != nil {
		t.Fatalf("after the first run ended: %v", err)
	}
	l.Unlock()
}

// TestTrainRefusesBadFlags: every out-of-range flag is an error naming the flag, before
// anything is written (no run folder appears).
func TestTrainRefusesBadFlags(t *testing.T) {
	needUSE(t)
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 80)
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--steps", "-3"}, "--steps -3"},
		{[]string{"--epochs", "-1"}, "--epochs -1"},
		{[]string{"--early-metric", "f1"}, `--early-metric "f1"`},
		{[]string{"--head-lr", "-1"}, "--head-lr -1"},
		{[]string{"--lr", "NaN"}, "--lr NaN"},
		{[]string{"--alpha", "-8"}, "--alpha -8"},
		{[]string{"--alpha", "1e308"}, "--alpha 1e+308"},
		{[]string{"--patience", "-1"}, "--patience -1"},
		{[]string{"--eval-every", "-1"}, "--eval-every -1"},
		{[]string{"--checkpoint-every", "-1"}, "--checkpoint-every -1"},
		{[]string{"--weight-decay", "-0.1"}, "--weight-decay -0.1"},
		{[]string{"--clip", "-1"}, "--clip -1"},
		{[]string{"--val-fraction", "1"}, "--val-fraction 1"},
		{[]string{"--batch", "100000"}, "--batch 100000 is larger than the 72 training examples"},
		{[]string{"--rank", "100000"}, "--rank 100000 is wider than layer"},
		{[]string{"--rank", "600"}, "lower --rank to at most 256"},
	} {
		run := filepath.Join(tmp, "run")
		args := append([]string{"train", "--data", dataPath, "--run", run, "--steps", "2", "--quiet"}, tc.flags...)
		out, err := cli(args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: err %v, want an error mentioning %q:\n%s", tc.flags, err, tc.want, out)
		}
		if _, err := os.Stat(filepath.Join(run, "config.json")); err == nil {
			t.Errorf("%v: the refused run wrote config.json", tc.flags)
		}
		_ = os.RemoveAll(run)
	}
}

// TestRefusedTrainWritesNothing: a folder holding checkpoints but no config.json is refused
// before config.json or head.json are written.
func TestRefusedTrainWritesNothing(t *testing.T) {
	needUSE(t)
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 40)
	run := filepath.Join(tmp, "run")
	if err := os.MkdirAll(filepath.Join(run, "checkpoints", "last"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := cli("train", "--data", dataPath, "--run", run, "--steps", "2", "--quiet").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "holds checkpoints but no config.json") {
		t.Fatalf("err %v, want a refusal naming what the folder holds:\n%s", err, out)
	}
	for _, f := range []string{"config.json", "head.json", "metrics.jsonl"} {
		if _, err := os.Stat(filepath.Join(run, f)); err == nil {
			t.Errorf("the refused run wrote %s", f)
		}
	}
}

// TestResumeBeforeFirstCheckpoint: a run stopped before its first checkpoint (here: killed at
// the first rename of a checkpoint) leaves config.json; retrying it the way the message says
// (--resume) starts it again from step 0 and ends like an uninterrupted run. Running the same
// command again says to resume.
func TestResumeBeforeFirstCheckpoint(t *testing.T) {
	needUSE(t)
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 40)
	common := []string{"--data", dataPath, "--steps", "3", "--batch", "8", "--quiet", "--seed", "3"}
	whole := filepath.Join(tmp, "whole")
	if out, err := cli(append([]string{"train", "--run", whole}, common...)...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	run := filepath.Join(tmp, "run")
	// Kill points 1-4 are config.json's and head.json's renames; 5 is just before the first
	// checkpoint file's rename.
	cmd := cli(append([]string{"train", "--run", run}, common...)...)
	cmd.Env = append(cmd.Env, atomicfile.KillEnv+"=5")
	if out, err := cmd.CombinedOutput(); !killedBySIGKILL(err) {
		t.Fatalf("want the run killed: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(run, "config.json")); err != nil {
		t.Fatal("config.json should exist after the kill")
	}
	out, err := cli(append([]string{"train", "--run", run}, common...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "resume it with --resume "+run) {
		t.Fatalf("running the same command again: %v, want the resume hint:\n%s", err, out)
	}
	out, err = cli("train", "--resume", run, "--quiet").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "starting the run again from step 0") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if d := diffSnapshots(runSnapshot(t, whole), runSnapshot(t, run)); len(d) > 0 {
		t.Fatalf("the restarted run differs: %s", strings.Join(d, ", "))
	}
}

// TestResumeFromAnotherDirectory: config.json records absolute data paths, so --resume works
// from any working directory; --resume refuses flags that would change the run.
func TestResumeFromAnotherDirectory(t *testing.T) {
	needUSE(t)
	tmp := t.TempDir()
	writeSentiment(t, filepath.Join(tmp, "train.jsonl"), 40)
	cmd := cli("train", "--data", "train.jsonl", "--run", "run", "--steps", "4", "--batch", "8", "--quiet", "--checkpoint-every", "1")
	cmd.Dir = tmp
	cache := "SINGLORA_CACHE=" + fetch.CacheDir() // the folder walk from tmp finds no go.mod
	cmd.Env = append(cmd.Env, atomicfile.KillEnv+"=12", cache)
	if out, err := cmd.CombinedOutput(); !killedBySIGKILL(err) {
		t.Fatalf("want the run killed mid-way: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(tmp, "run", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), filepath.Join(tmp, "train.jsonl")) {
		t.Fatalf("config.json should name the data by its absolute path:\n%s", b)
	}
	run := filepath.Join(tmp, "run")
	if out, err := cli("train", "--resume", run, "--lr", "0.1").CombinedOutput(); err == nil || !strings.Contains(string(out), "--lr cannot change it") {
		t.Fatalf("--resume with --lr: %v, want a refusal:\n%s", err, out)
	}
	other := cli("train", "--resume", run, "--quiet")
	other.Dir = t.TempDir()
	other.Env = append(other.Env, cache)
	if out, err := other.CombinedOutput(); err != nil {
		t.Fatalf("resume from another directory: %v\n%s", err, out)
	}
}

// TestNewRunName: default run folders started in the same second get distinct names.
func TestNewRunName(t *testing.T) {
	base := filepath.Join(t.TempDir(), "runs", "singlora-20261202-000000")
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		name, err := newRunName(base)
		if err != nil {
			t.Fatal(err)
		}
		if seen[name] {
			t.Fatalf("%s handed out twice", name)
		}
		seen[name] = true
	}
	if !seen[base] || !seen[base+"-2"] || !seen[base+"-3"] {
		t.Fatalf("names %v, want %s, -2, -3", seen, base)
	}
}

// TestKilledSweepStopsItsTrainers: SIGKILL of a sweep takes its trainer down too (it gets the
// parent-death signal, checkpoints and exits, freeing the folder), and running the sweep again
// resumes it. (With SIGTERM as that signal it failed ~1 run in 5: the kernel sent it twice, and
// the second aborted the trainer before its checkpoint.)
func TestKilledSweepStopsItsTrainers(t *testing.T) {
	needUSE(t)
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 48)
	out := filepath.Join(tmp, "sweep")
	args := []string{"sweep", "--data", dataPath, "--methods", "singlora", "--lrs", "1e-3", "--seeds", "1",
		"--steps", "60", "--batch", "8", "--out", out}
	sw := cli(args...)
	var log bytes.Buffer
	sw.Stdout, sw.Stderr = &log, &log
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	cell := filepath.Join(out, "singlora-lr0.001-s1")
	waitForSteps(t, cell, 2, sw, &log)
	if err := sw.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = sw.Wait()
	for deadline := time.Now().Add(time.Minute); ; {
		l, err := train.LockFolder(cell)
		if err == nil {
			l.Unlock()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the sweep was killed its trainer still holds the folder: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	first, _ := os.ReadFile(filepath.Join(out, "singlora-lr0.001-s1.log"))
	if !strings.Contains(string(first), "checkpoint saved") {
		t.Fatalf("the killed sweep's trainer did not checkpoint and stop:\n%s", first)
	}
	if b, err := cli(args...).CombinedOutput(); err != nil {
		t.Fatalf("running the sweep again: %v\n%s", err, b)
	}
	b, _ := os.ReadFile(filepath.Join(out, "singlora-lr0.001-s1.log"))
	if !strings.Contains(string(b), "resuming from step") {
		t.Fatalf("the second sweep should have resumed the trainer's checkpoint:\n%s", b)
	}
}

// TestTrainWithoutValidation: --val-fraction 0 trains, keeps the final weights and says so.
func TestTrainWithoutValidation(t *testing.T) {
	needUSE(t)
	tmp := t.TempDir()
	dataPath := filepath.Join(tmp, "train.jsonl")
	writeSentiment(t, dataPath, 24)
	out, err := cli("train", "--data", dataPath, "--run", filepath.Join(tmp, "run"), "--steps", "2", "--batch", "8", "--val-fraction", "0", "--quiet").Output()
	if err != nil || !strings.Contains(string(out), "no validation set (the final weights are kept)") || strings.Contains(string(out), "validation ,") {
		t.Fatalf("err %v, summary line %q", err, out)
	}
}
