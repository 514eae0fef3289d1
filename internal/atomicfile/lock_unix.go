//go:build unix

package atomicfile

import (
	"errors"
	"os"
	"syscall"
)

func flock(f *os.File) (bool, error) {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, ErrInUse
		}
		return false, err
	}
	return true, nil
}
