package sweep

import (
	"os/exec"
	"syscall"
)

// stopWithParent makes the kernel send the trainer SIGTERM when the sweep process dies, however
// it dies (SIGKILL included): the trainer then checkpoints and stops, and the next sweep resumes it.
func stopWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
