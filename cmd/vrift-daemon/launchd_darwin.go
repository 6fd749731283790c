package main

/*
#include <stdlib.h>
#include <launch.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// launchdListeners returns the sockets launchd made for the plist's Sockets
// entry name (socket activation, launch_activate_socket(3)), or none (nil
// error) when this process was not started by launchd (ESRCH) or its job has
// no such entry (ENOENT). launchd binds the socket before the daemon runs,
// so a client connecting at boot waits instead of finding no socket. cgo
// costs nothing extra here: the daemon links LMDB's C already.
func launchdListeners(name string) ([]net.Listener, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var fds *C.int
	var cnt C.size_t
	if e := C.launch_activate_socket(cname, &fds, &cnt); e != 0 {
		err := syscall.Errno(e)
		if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("launch_activate_socket %q: %w", name, err)
	}
	defer C.free(unsafe.Pointer(fds))
	var ls []net.Listener
	for _, fd := range unsafe.Slice(fds, int(cnt)) {
		f := os.NewFile(uintptr(fd), name)
		l, err := net.FileListener(f) // dups fd
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("launchd socket %q: %w", name, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}
