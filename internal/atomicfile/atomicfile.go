// Package atomicfile writes files and folders so that a reader — or a process started after a
// kill at any instant — sees either the old version or the complete new one, never a mix.
//
// Files are written to a synced temporary sibling (".<name>.tmp-*") and renamed into place.
// Folders are built complete in a temporary sibling and swapped in with ReplaceDir. A kill leaves
// at most those temporary siblings behind; IsTemp recognises them so that their owner can clean
// them up. The package imports nothing but the standard library and x/sys.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// TempPrefix is the name prefix of the temporary siblings of name.
func TempPrefix(name string) string { return "." + name + ".tmp-" }

// IsTemp reports whether a file or folder name is a temporary sibling left by this package
// (".<name>.tmp-<random>", possibly with ".old").
func IsTemp(name string) bool { return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") }

// WriteFile writes data to path via a synced temporary file in the same folder and a rename.
// On error nothing is left behind and an existing file at path is unchanged.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, TempPrefix(filepath.Base(path))+"*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = Rename(name, path); err != nil {
		return err
	}
	SyncDir(dir)
	return nil
}

// TempDir creates an empty temporary sibling folder of dst (mode 0755) to build dst's new
// version in; hand it to ReplaceDir when complete.
func TempDir(dst string) (string, error) {
	dst = filepath.Clean(dst)
	tmp, err := os.MkdirTemp(filepath.Dir(dst), TempPrefix(filepath.Base(dst)))
	if err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// ErrNoExchange means the file system cannot swap two folders atomically.
var ErrNoExchange = errors.New("atomic exchange not supported")

// ReplaceDir moves the complete folder tmp (a sibling of dst, e.g. from TempDir) to dst. An
// existing dst is swapped with tmp in one atomic exchange (Linux renameat2 RENAME_EXCHANGE) and
// the old copy, now at tmp, removed. Where the file system cannot exchange, dst is renamed aside
// to tmp+".old", tmp renamed to dst, and the old copy removed: a kill between those two renames
// leaves no dst but two complete copies, which the owner must put back (train.RecoverCheckpoints
// does for checkpoints). On error the caller still owns tmp and dst is unchanged.
func ReplaceDir(tmp, dst string) error {
	parent := filepath.Dir(dst)
	SyncDir(tmp)
	if _, err := os.Stat(dst); err == nil {
		err := Exchange(tmp, dst)
		if err == nil {
			SyncDir(parent)
			_ = os.RemoveAll(tmp) // the old copy
			return nil
		}
		if !errors.Is(err, ErrNoExchange) {
			return err
		}
		old := tmp + ".old"
		if err := Rename(dst, old); err != nil {
			return err
		}
		if err := Rename(tmp, dst); err != nil {
			_ = os.Rename(old, dst)
			return err
		}
		SyncDir(parent)
		_ = os.RemoveAll(old)
		return nil
	}
	if err := Rename(tmp, dst); err != nil {
		return err
	}
	SyncDir(parent)
	return nil
}

// Rename is os.Rename with the test kill points around it (see KillEnv).
func Rename(from, to string) error {
	killPoint()
	err := os.Rename(from, to)
	killPoint()
	return err
}

// SyncDir flushes a folder's entries (renames) to disk; errors are ignored (not every file system
// supports it).
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
