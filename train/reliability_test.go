package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/singlora/singlora/internal/atomicfile"
)

// TestNonFiniteStepKeepsItsMetricLine: the step whose loss is NaN is recorded (as "NaN"), and
// when no checkpoint exists yet the message says so instead of pointing at one.
func TestNonFiniteStepKeepsItsMetricLine(t *testing.T) {
	dir := t.TempDir()
	data := newRegData(60, 8, 6)
	r := newRun(t, dir, data, 40)
	order := &ExampleOrder{Seed: 3, N: 60}
	data.poison = order.At(0) // in the first step
	_, err := r.Run(context.Background(), false)
	if !errors.Is(err, ErrNonFinite) {
		t.Fatalf("err = %v, want ErrNonFinite", err)
	}
	if strings.Contains(err.Error(), "last good checkpoint") || !strings.Contains(err.Error(), "no checkpoint was written") {
		t.Errorf("with no checkpoint yet the message must say so: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"loss":"NaN"`) && !strings.Contains(string(b), `"grad_norm":"NaN"`) {
		t.Fatalf("the diverged step's line is missing or not marked NaN:\n%s", b)
	}
	ms := readMetrics(t, dir)
	if len(ms) != 1 || ms[0].Step != 1 {
		t.Fatalf("metric lines %+v, want the one line of step 1", ms)
	}
}

// TestMetricsWriteErrorStopsTheRun: a failed metrics write (here ENOSPC from /dev/full) stops the
// run with an error naming the file and what is intact, instead of training on silently.
func TestMetricsWriteErrorStopsTheRun(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	dir := t.TempDir()
	if err := os.Symlink("/dev/full", filepath.Join(dir, MetricsFile)); err != nil {
		t.Fatal(err)
	}
	r := newRun(t, dir, newRegData(24, 8, 6), 6)
	_, err := r.Run(context.Background(), false)
	if err == nil {
		t.Fatal("the run ignored a failed metrics write")
	}
	for _, want := range []string{"writing the metrics of step 1", MetricsFile, "no space left", "no checkpoint was written yet"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should mention %q", err, want)
		}
	}
}

// TestDiskFullCheckpointSaysWhatIsIntact: a checkpoint write that fails with ENOSPC mid-run
// stops with a message naming the intact checkpoint and the resume command; the resumed run
// then ends like an uninterrupted one.
func TestDiskFullCheckpointSaysWhatIsIntact(t *testing.T) {
	whole := t.TempDir()
	rw := newRun(t, whole, newRegData(24, 8, 6), 9)
	if _, err := rw.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := newRun(t, dir, newRegData(24, 8, 6), 9)
	r.SaveExtra = func(tmp string) error {
		if CurrentStep(r.Store) == 8 {
			return &os.PathError{Op: "write", Path: filepath.Join(tmp, "adapter"), Err: syscall.ENOSPC}
		}
		return nil
	}
	_, err := r.Run(context.Background(), false)
	if err == nil {
		t.Fatal("a failed checkpoint write was ignored")
	}
	for _, want := range []string{"saving the checkpoint of step 8", "no space left", "the checkpoint of step 5", "is intact", "--resume " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should mention %q", err, want)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, CheckpointDir))
	for _, e := range entries {
		if atomicfile.IsTemp(e.Name()) {
			t.Errorf("the failed write left %s", e.Name())
		}
	}
	r2 := newRun(t, dir, newRegData(24, 8, 6), 9)
	if _, err := r2.Run(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	mw, _ := json.Marshal(readMetrics(t, whole))
	mg, _ := json.Marshal(readMetrics(t, dir))
	if string(mw) != string(mg) {
		t.Fatalf("metrics after the disk-full stop and resume differ:\n%v\n%v", mw, mg)
	}
}

// TestDiskNeedCountsExistingCheckpoints: a folder that already holds last and best needs room
// for one more checkpoint (the temporary copy of a replace), not three.
func TestDiskNeedCountsExistingCheckpoints(t *testing.T) {
	dir := t.TempDir()
	r := newRun(t, dir, newRegData(24, 8, 6), 5)
	ck := filepath.Join(dir, CheckpointDir)
	fresh := r.diskNeed(ck)
	if _, err := r.Run(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	one := r.checkpointBytes(ck)
	if got := r.diskNeed(ck); got != one {
		t.Errorf("with last and best present the need is %d bytes, want one checkpoint (%d)", got, one)
	}
	if fresh <= one {
		t.Errorf("a fresh folder needs %d bytes, want more than one checkpoint's %d", fresh, one)
	}
}

// TestRecoverCheckpoints covers the states a kill during a checkpoint write can leave.
func TestRecoverCheckpoints(t *testing.T) {
	write := func(t *testing.T, dir string, step int64, complete bool) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, CheckpointTensors), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if complete {
			js := fmt.Sprintf(`{"step": %d, "best_metric": 1, "best_step": %d}`, step, step)
			if err := os.WriteFile(filepath.Join(dir, CheckpointState), []byte(js), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	type ck struct {
		name     string
		step     int64
		complete bool
	}
	for _, tc := range []struct {
		name     string
		have     []ck
		wantLast int64 // -1: none
		wantBest int64
	}{
		{"clean", []ck{{"last", 4, true}, {"best", 4, true}}, 4, 4},
		{"gap between the two renames", []ck{{".last.tmp-1", 5, true}, {".last.tmp-1.old", 4, true}, {"best", 4, true}}, 5, 5},
		{"kill before the swap", []ck{{"last", 4, true}, {".last.tmp-1", 5, true}, {"best", 4, true}}, 5, 5},
		{"after the exchange, old copy not yet removed", []ck{{"last", 5, true}, {".last.tmp-1", 4, true}, {"best", 5, true}}, 5, 5},
		{"incomplete copy", []ck{{"last", 4, true}, {".last.tmp-1", 5, false}, {"best", 4, true}}, 4, 4},
		{"best not yet copied", []ck{{"last", 6, true}, {"best", 4, true}}, 6, 6},
		{"first checkpoint's gap", []ck{{".last.tmp-1", 1, true}}, 1, 1},
		{"only an incomplete first copy", []ck{{".last.tmp-1", 1, false}}, -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ckDir := filepath.Join(t.TempDir(), CheckpointDir)
			for _, c := range tc.have {
				write(t, filepath.Join(ckDir, c.name), c.step, c.complete)
			}
			if _, err := RecoverCheckpoints(ckDir); err != nil {
				t.Fatal(err)
			}
			for _, w := range []struct {
				dir  string
				step int64
			}{{LastDir, tc.wantLast}, {BestDir, tc.wantBest}} {
				st, ok := ReadState(filepath.Join(ckDir, w.dir))
				switch {
				case w.step < 0 && ok:
					t.Errorf("%s: step %d, want none", w.dir, st.Step)
				case w.step >= 0 && (!ok || st.Step != w.step):
					t.Errorf("%s: step %d (complete %v), want %d", w.dir, st.Step, ok, w.step)
				}
			}
			entries, _ := os.ReadDir(ckDir)
			for _, e := range entries {
				if atomicfile.IsTemp(e.Name()) {
					t.Errorf("stray %s left", e.Name())
				}
			}
		})
	}
}

// TestLockFolder: a second lock on a held folder fails at once with ErrFolderInUse and the
// holder's PID; after Unlock it succeeds.
func TestLockFolder(t *testing.T) {
	dir := t.TempDir()
	l, err := LockFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockFolder(dir)
	if !errors.Is(err, ErrFolderInUse) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second lock: %v, want ErrFolderInUse naming PID %d", err, os.Getpid())
	}
	r := newRun(t, dir, newRegData(8, 8, 6), 2)
	if _, err := r.Run(context.Background(), false); !errors.Is(err, ErrFolderInUse) {
		t.Fatalf("a run in a locked folder: %v, want ErrFolderInUse", err)
	}
	l.Unlock()
	l2, err := LockFolder(dir)
	if err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
	l2.Unlock()
}
