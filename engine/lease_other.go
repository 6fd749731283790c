//go:build !linux

package engine

// writeLease is never granted: macOS has no file leases (nothing tells that
// no other process has the file open), so adoption is off there and every
// file is copied into the store. (cas refuses to adopt there as well.)
func writeLease(fd int) (release func(), ok bool) { return nil, false }

// busyLease tells nothing on macOS: the watcher's quiet period stands in
// for a writer's close (watch/fsevents.go), and the identity check guards
// the content: a file that keeps changing while read is busy (read.go).
func busyLease(fd int) (release func(), busy bool) { return nil, false }
