//go:build !linux

package service

import "golang.org/x/sys/unix"

// reachFlags: without O_PATH, a non-blocking read-only open that follows
// no symlink in the last component and takes no controlling terminal.
const reachFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
