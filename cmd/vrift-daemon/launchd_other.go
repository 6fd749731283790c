//go:build !darwin

package main

import "net"

// launchdListeners finds no launchd sockets: launchd is macOS's (systemd's
// socket activation is used on Linux).
func launchdListeners(name string) ([]net.Listener, error) { return nil, nil }
