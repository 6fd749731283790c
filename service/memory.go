package service

import (
	"runtime/debug"
	"sync/atomic"
	"time"
)

// longCall is how long a call must have run for its garbage to be worth
// giving back to the kernel at once (releaser): the calls that allocate
// tens of MB at 1M files (a pin, a recount, a gc) take seconds; a release is one full collection of what is live (a few
// milliseconds for an idle daemon, and at most one every releaseEvery
// during a busy ingest).
const longCall = 250 * time.Millisecond

// releaseEvery bounds how often a release runs: each is a full collection.
const releaseEvery = 10 * time.Second

// releaser returns the heap a long call freed to the kernel when the call
// ends, rather than when the runtime's background scavenger gets to it.
// At 1M files the daemon's anonymous memory stayed at 94-160 MB for tens
// of seconds after an ingest whose live heap had fallen to 1 MB, and a gc
// started in that window peaked at 277-326 MB where one started later
// peaked at 152-197 MB (make bench-scale, issue 22). With it, the
// daemon was back to 78 MB (10 MB anonymous) the moment the re-ingest
// after a 1M-file ingest ended.
type releaser struct {
	last atomic.Int64 // unix nanoseconds of the last release
	free func()       // debug.FreeOSMemory; a test counts instead
}

// after is called when a call that ran for took ends; it reports whether
// it started a release.
func (r *releaser) after(took time.Duration, now time.Time) bool {
	if took < longCall {
		return false
	}
	last := r.last.Load()
	if last != 0 && now.UnixNano()-last < int64(releaseEvery) {
		return false
	}
	if !r.last.CompareAndSwap(last, now.UnixNano()) {
		return false // another call's end is releasing
	}
	free := r.free
	if free == nil {
		free = debug.FreeOSMemory
	}
	// Not on the caller's time: its answer goes out first.
	go free()
	return true
}
