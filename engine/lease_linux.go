package engine

import "golang.org/x/sys/unix"

// writeLease takes a write lease on fd (F_SETLEASE): granted only when no
// other process has the file open, writable mappings included, and held
// until release, during which a new opener blocks (the kernel breaks the
// lease only after lease-break-time). ok is false when it cannot be had.
func writeLease(fd int) (release func(), ok bool) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		return nil, false
	}
	return func() { unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK) }, true
}

// busyLease is the watcher's test for a file still open elsewhere: a
// write lease refused with EAGAIN means another process has the file open
// (a writer that has not closed it yet, or a reader). Any other refusal
// (not the file's owner, a filesystem without leases) tells nothing: then
// release is nil and busy false, and the read's before-and-after identity
// check is what guards the content.
func busyLease(fd int) (release func(), busy bool) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		return nil, err == unix.EAGAIN
	}
	return func() { unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK) }, false
}
