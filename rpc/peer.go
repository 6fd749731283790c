package rpc

import (
	"fmt"
	"net"
)

// Peer is the identity of the process at the other end of a connection, as
// the kernel reports it (SO_PEERCRED): it cannot be forged by the client.
type Peer struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	PID int32  `json:"pid"`
}

// PeerOf returns the credentials of conn's peer.
func PeerOf(conn *net.UnixConn) (Peer, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var p Peer
	var serr error
	err = raw.Control(func(fd uintptr) { p, serr = peerOfFD(int(fd)) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	return p, nil
}
