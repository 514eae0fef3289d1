package atomicfile

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// NoExchangeEnv, set to 1, turns the atomic exchange off (ReplaceDir then uses two renames), for
// file systems that misbehave with it and for the tests of the recovery of that path.
const NoExchangeEnv = "SINGLORA_NO_RENAME_EXCHANGE"

// Exchange swaps the folders (or files) a and b atomically with renameat2(RENAME_EXCHANGE); it
// returns ErrNoExchange where the file system or kernel cannot.
func Exchange(a, b string) error {
	if os.Getenv(NoExchangeEnv) == "1" {
		return ErrNoExchange
	}
	killPoint()
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		return ErrNoExchange
	}
	killPoint()
	return err
}
