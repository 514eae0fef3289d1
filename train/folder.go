package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/singlora/singlora/internal/atomicfile"
)

// LockFile is the file in a run folder that the process using the folder holds an exclusive
// lock on (flock); it contains that process's PID and start time. The kernel drops the lock when
// the process ends, however it ends, so a lock is never stale.
const LockFile = ".lock"

// FolderLock is an exclusive lock on a run folder.
type FolderLock struct {
	Dir string
	f   *os.File
}

// ErrFolderInUse is returned (wrapped) by LockFolder when another process holds the folder.
var ErrFolderInUse = errors.New("run folder in use")

// LockFolder takes the exclusive lock on the run folder dir (creating the folder), or fails at
// once with ErrFolderInUse naming the holder's PID. Two trainers on one folder would interleave
// their metrics and overwrite each other's checkpoints.
func LockFolder(dir string) (*FolderLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run folder %s is not writable: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run folder %s is not writable: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if fields := strings.Fields(string(holder)); len(fields) > 0 {
				if pid, err := strconv.Atoi(fields[0]); err == nil {
					who = fmt.Sprintf("process %d", pid)
					if len(fields) > 1 {
						who += " (since " + fields[1] + ")"
					}
				}
			}
			return nil, fmt.Errorf("%w: %s is used by %s; wait for it to finish or stop it, or choose another folder", ErrFolderInUse, dir, who)
		}
		return nil, fmt.Errorf("run folder %s: locking %s: %w", dir, LockFile, err)
	}
	// The lock is ours: record who holds it (for the message another process prints).
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%d %s\n", os.Getpid(), time.Now().Format(time.RFC3339))), 0)
	}
	return &FolderLock{Dir: dir, f: f}, nil
}

// Unlock releases the lock (the lock file stays; it is reused by the next holder).
func (l *FolderLock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

// ReadState reads a checkpoint folder's state.json; ok is false when the folder is not a
// complete checkpoint. SaveCheckpoint writes state.json last, so its presence marks a complete
// checkpoint.
func ReadState(dir string) (State, bool) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, CheckpointState))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	if _, err := os.Stat(filepath.Join(dir, CheckpointTensors)); err != nil {
		return st, false
	}
	return st, true
}

// RecoverCheckpoints repairs the checkpoint folder ckDir (RUN/checkpoints) after a process was
// killed while writing a checkpoint, and removes the temporary folders such a kill leaves. For
// each of last and best, the newest complete copy (highest step) becomes the folder: a
// temporary copy that was complete but not yet swapped in (a kill just before the swap, or
// between the two renames of a replace on a file system without an atomic exchange, which
// leaves no folder at all) wins over an older folder; every other temporary copy is removed. A
// folder that exists but is not a complete checkpoint is left alone (it was not written here). When
// best is older than last's record of the best step and last is that step (a kill between saving
// last and copying it to best), last is copied to best. It returns a note per repair. The caller
// must hold the run folder's lock.
func RecoverCheckpoints(ckDir string) ([]string, error) {
	entries, err := os.ReadDir(ckDir)
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("checkpoints %s: %w", ckDir, err)
	}
	var notes []string
	for _, name := range []string{LastDir, BestDir} {
		dst := filepath.Join(ckDir, name)
		var tmps []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), atomicfile.TempPrefix(name)) {
				tmps = append(tmps, filepath.Join(ckDir, e.Name()))
			}
		}
		sort.Strings(tmps)
		cur, curOK := ReadState(dst)
		_, statErr := os.Stat(dst)
		if curOK || os.IsNotExist(statErr) {
			best, bestStep := "", int64(-1)
			if curOK {
				bestStep = cur.Step
			}
			for _, t := range tmps {
				if st, ok := ReadState(t); ok && st.Step > bestStep {
					best, bestStep = t, st.Step
				}
			}
			if best != "" {
				if err := atomicfile.ReplaceDir(best, dst); err != nil {
					return notes, fmt.Errorf("checkpoints %s: restoring %s from %s: %w", ckDir, name, filepath.Base(best), err)
				}
				notes = append(notes, fmt.Sprintf("restored checkpoints/%s (step %d) from an interrupted write", name, bestStep))
			}
		}
		for _, t := range tmps {
			if _, err := os.Stat(t); err == nil {
				if err := os.RemoveAll(t); err != nil {
					return notes, fmt.Errorf("checkpoints %s: removing the stray %s: %w", ckDir, filepath.Base(t), err)
				}
			}
		}
	}
	last, lastOK := ReadState(filepath.Join(ckDir, LastDir))
	if lastOK && last.BestMetric != nil && last.BestStep == last.Step {
		best, bestOK := ReadState(filepath.Join(ckDir, BestDir))
		if !bestOK || best.Step != last.Step {
			if err := copyDir(filepath.Join(ckDir, LastDir), filepath.Join(ckDir, BestDir)); err != nil {
				return notes, fmt.Errorf("checkpoints %s: restoring best from last: %w", ckDir, err)
			}
			notes = append(notes, fmt.Sprintf("restored checkpoints/best (step %d) from checkpoints/last", last.Step))
		}
	}
	return notes, nil
}

// removeStrayTemps removes the temporary files and folders that atomic writes leave in the run
// folder dir when a process is killed before their rename (".<name>.tmp-*"): half-written files,
// and copies of RUN/adapter, which a run writes again from its best checkpoint when it ends.
func removeStrayTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if atomicfile.IsTemp(e.Name()) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}
