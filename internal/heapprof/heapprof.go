// Package heapprof writes a heap profile at a process's peak, for finding
// what holds memory in a long operation (make bench-scale's memory rows):
// a profile at exit shows what is left, not what the peak held.
package heapprof

import (
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// Start samples the live heap every 200 ms and, each time it is 10% past
// the last profile's, rewrites the heap profile at path. The returned stop
// writes a last one if the heap is then past the peak, and ends sampling.
// An empty path does nothing.
func Start(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	done := make(chan struct{})
	ended := make(chan struct{})
	var peak uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > peak+peak/10 {
			peak = ms.HeapAlloc
			write(path)
		}
	}
	go func() {
		defer close(ended)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() { close(done); <-ended }
}

func write(path string) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return
	}
	if pprof.Lookup("heap").WriteTo(f, 0) == nil && f.Close() == nil {
		os.Rename(tmp, path)
		return
	}
	f.Close()
	os.Remove(tmp)
}
