package service

import "golang.org/x/sys/unix"

// reachFlags open a path only to learn which inode it names: O_PATH opens
// no file for I/O, so naming a device or a FIFO has no side effect, and
// O_NOFOLLOW refuses a symlink in the last component.
const reachFlags = unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
