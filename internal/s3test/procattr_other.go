//go:build !linux

package s3test

import "syscall"

// dieWithParent is a no-op: only Linux can tie a child's life to its
// parent's; elsewhere the test's Cleanup stops the server.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
