package s3test

import "syscall"

// dieWithParent makes the server get SIGKILL when the test process dies
// (PR_SET_PDEATHSIG), so a crashed test leaves no server behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
