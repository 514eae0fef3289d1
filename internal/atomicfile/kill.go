package atomicfile

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// KillEnv names the test hook that proves crash safety: with SINGLORA_KILL_AT=K the process
// sends itself SIGKILL at the K-th kill point, counted over the whole process. There is a kill
// point just before and just after every rename and exchange this package makes, so a test can
// stop a writer at each boundary where the on-disk state changes, then check that the next run
// recovers; a test finds the number of kill points by raising K until a run ends normally.
// Unset (the normal case), a kill point costs one comparison.
const KillEnv = "SINGLORA_KILL_AT"

var (
	killAt     = parseKillAt()
	killPoints atomic.Int64
)

func parseKillAt() int64 {
	n, err := strconv.ParseInt(os.Getenv(KillEnv), 10, 64)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

func killPoint() {
	if killAt == 0 {
		return
	}
	if killPoints.Add(1) == killAt {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is delivered before anything else runs
	}
}
