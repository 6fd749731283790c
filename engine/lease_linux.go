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
