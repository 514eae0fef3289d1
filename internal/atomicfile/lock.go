package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrInUse means another process holds dst's lock (Lock): it is writing dst's new version now.
var ErrInUse = errors.New("being written by another process")

// LockName is the name of dst's lock file, a sibling of dst (".<name>.lock"); it stays in place
// after the lock is released (removing it would race with a process opening it).
func LockName(name string) string { return "." + name + ".lock" }

// Lock takes the exclusive lock of dst for the time a writer builds dst's new version: a
// non-blocking flock of the sibling LockName(dst), created if missing. While it is held no other
// Lock(dst) succeeds (the error wraps ErrInUse), so the holder may remove the temporary siblings
// a killed writer left (CleanTemps). unlock releases it; a killed holder's lock is released by
// the kernel. Where flock is not available Lock always succeeds and gives no exclusion (ok is
// false): do not call CleanTemps then.
func Lock(dst string) (unlock func(), ok bool, err error) {
	dst = filepath.Clean(dst)
	path := filepath.Join(filepath.Dir(dst), LockName(filepath.Base(dst)))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, false, fmt.Errorf("%s: the folder %s is not writable (creating the lock %s: %w)", dst, filepath.Dir(path), filepath.Base(path), err)
		}
		return nil, false, fmt.Errorf("lock file %s: %w", path, err)
	}
	ok, err = flock(f)
	if err != nil {
		_ = f.Close()
		if errors.Is(err, ErrInUse) {
			return nil, false, fmt.Errorf("%s is %w (lock %s held): wait for it to finish or write elsewhere", dst, ErrInUse, path)
		}
		return nil, false, fmt.Errorf("lock file %s: %w", path, err)
	}
	return func() { _ = f.Close() }, ok, nil
}

// CleanTemps removes the temporary siblings of dst (TempPrefix(dst)…: files and folders) that a
// killed writer left behind and returns their names. If dst is missing and one of them is a
// complete previous copy (".old", left by a kill between ReplaceDir's two renames on a file
// system without exchange), it is renamed back to dst; several such copies are all kept. Call it only holding Lock(dst) with
// ok true: another writer's temporary files are otherwise indistinguishable from a dead one's.
func CleanTemps(dst string) ([]string, error) {
	dst = filepath.Clean(dst)
	dir, base := filepath.Dir(dst), filepath.Base(dst)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	prefix := TempPrefix(base)
	var temps, olds []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, prefix) {
			temps = append(temps, n)
			if strings.HasSuffix(n, ".old") {
				olds = append(olds, n)
			}
		}
	}
	if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) && len(olds) > 0 {
		if len(olds) > 1 { // which is newest is unknown: keep them all for a person to choose
			temps = slices.DeleteFunc(temps, func(n string) bool { return slices.Contains(olds, n) })
		} else {
			if err := Rename(filepath.Join(dir, olds[0]), dst); err != nil {
				return nil, fmt.Errorf("putting back %s: %w", olds[0], err)
			}
			SyncDir(dir)
			temps = slices.DeleteFunc(temps, func(n string) bool { return n == olds[0] })
		}
	}
	var removed []string
	for _, n := range temps {
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return removed, fmt.Errorf("removing the stale %s: %w", n, err)
		}
		removed = append(removed, n)
	}
	return removed, nil
}
