//go:build !linux && !darwin

package watch

import (
	"errors"
	"fmt"
	"runtime"
)

// errWatchLimit is Linux's (inotify); defined here so the watcher builds.
var errWatchLimit = errors.New("watch limit reached")

// newSource: live ingest watches with inotify on Linux and FSEvents on
// macOS; elsewhere a watcher refuses to start rather than watch nothing.
func newSource(*Watcher) (source, error) {
	return nil, fmt.Errorf("vrift watch is not available on %s (it needs Linux's inotify or macOS's FSEvents); run vrift ingest after changes instead", runtime.GOOS)
}
