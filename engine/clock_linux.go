package engine

import "golang.org/x/sys/unix"

// clockProbe reads the filesystem's clock as the ctime of a new unnamed
// file (O_TMPFILE: no directory changes) in the tree's root directory, and
// returns it with the filesystem's device.
func (in *ingester) clockProbe() (int64, uint64, error) {
	fd, err := unix.Openat(in.t.FD(), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, err
	}
	return unix.TimespecToNsec(st.Ctim), uint64(st.Dev), nil
}
