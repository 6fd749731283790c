package rpc

import "golang.org/x/sys/unix"

// peerOfFD uses LOCAL_PEERCRED and LOCAL_PEERPID, macOS's equivalents of
// SO_PEERCRED.
func peerOfFD(fd int) (Peer, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return Peer{}, err
	}
	p := Peer{UID: cred.Uid}
	if cred.Ngroups > 0 {
		p.GID = cred.Groups[0]
	}
	if pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
		p.PID = int32(pid)
	}
	return p, nil
}
