package sweep

import (
	"os/exec"
	"syscall"
)

// ParentDeathSignal is what a trainer gets when its sweep dies: SIGUSR1, which singlora treats as
// "checkpoint and stop" and never as "abort" when it comes again (the kernel repeats a parent-death
// signal each time a subreaper the orphan was handed to ends, see prctl(2)); a repeated SIGTERM
// would abort the trainer before its checkpoint is written.
const ParentDeathSignal = syscall.SIGUSR1

// stopWithParent makes the kernel signal the trainer when the sweep process dies, however it
// dies (SIGKILL included): the trainer then checkpoints and stops, and the next sweep resumes it.
func stopWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: ParentDeathSignal}
}
