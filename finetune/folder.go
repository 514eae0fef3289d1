package finetune

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/singlora/singlora/train"
)

// openRunFolder takes the run folder dir for a run: it locks it (so no second process can use
// it), checks that a fresh run starts in a folder that holds no run and a resumed one in a folder
// that does, checks the disk before anything is written, and then, for a fresh run, writes
// config.json and the given extra files. Nothing is written when a check fails. The lock is handed
// to the runner, which keeps it until the run ends; the caller releases it.
func openRunFolder(dir string, c Config, resume bool, r *train.Runner, files map[string][]byte) (*train.FolderLock, error) {
	lock, err := train.LockFolder(dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Unlock()
		}
	}()
	_, haveConfig := statOK(filepath.Join(dir, ConfigFile))
	if resume && !haveConfig {
		return nil, fmt.Errorf("resume %s: no %s: the folder holds no run singlora can resume", dir, ConfigFile)
	}
	if !resume {
		if haveConfig {
			return nil, fmt.Errorf("run folder %s already holds a run (%s): resume it with --resume %s, or choose another --run", dir, ConfigFile, dir)
		}
		for _, name := range []string{train.CheckpointDir, train.MetricsFile, SummaryFile, AdapterDir, HeadFile} {
			if fi, ok := statOK(filepath.Join(dir, name)); ok && (fi.IsDir() || fi.Size() > 0) {
				return nil, fmt.Errorf("run folder %s holds %s but no %s (not a run singlora can resume): choose another --run, or remove the folder", dir, name, ConfigFile)
			}
		}
	}
	if err := r.Preflight(); err != nil {
		return nil, err
	}
	if !resume {
		js, _ := json.MarshalIndent(c, "", "  ")
		if err := writeAtomic(filepath.Join(dir, ConfigFile), append(js, '\n')); err != nil {
			return nil, fmt.Errorf("run folder %s: %w", dir, err)
		}
	}
	// The extra files follow config.json (the mark of a run); a resumed run writes those a kill
	// kept from being written (they are derived from the config and the data).
	for name, b := range files {
		if _, ok := statOK(filepath.Join(dir, name)); ok && resume {
			continue
		}
		if err := writeAtomic(filepath.Join(dir, name), b); err != nil {
			if !resume {
				_ = os.Remove(filepath.Join(dir, ConfigFile))
			}
			return nil, fmt.Errorf("run folder %s: %w", dir, err)
		}
	}
	r.Lock = lock
	ok = true
	return lock, nil
}

func statOK(path string) (os.FileInfo, bool) {
	fi, err := os.Stat(path)
	return fi, err == nil
}
