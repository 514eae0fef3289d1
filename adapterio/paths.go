package adapterio

import (
	"fmt"
	"os"
	"path/filepath"
)

// SamePath reports whether paths a and b name the same file or folder: their cleaned absolute
// forms are equal, or both exist and are the same file (os.SameFile, which sees through symbolic
// links and other names of one folder).
func SamePath(a, b string) (bool, error) {
	aa, err := filepath.Abs(a)
	if err != nil {
		return false, fmt.Errorf("path %s: %w", a, err)
	}
	ab, err := filepath.Abs(b)
	if err != nil {
		return false, fmt.Errorf("path %s: %w", b, err)
	}
	if aa == ab {
		return true, nil
	}
	sa, errA := os.Stat(aa)
	sb, errB := os.Stat(ab)
	if errA != nil || errB != nil { // a path that cannot be opened is not an existing file
		return false, nil
	}
	return os.SameFile(sa, sb), nil
}
