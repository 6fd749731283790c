//go:build !linux

package watch

import (
	"errors"
	"fmt"
	"runtime"
)

// errWatchLimit is Linux's (inotify); defined here so the watcher builds.
var errWatchLimit = errors.New("watch limit reached")

// newSource: live ingest watches with inotify; macOS's FSEvents source is
// not built yet, so a watcher refuses to start there rather than watch
// nothing.
func newSource(*Watcher) (source, error) {
	return nil, fmt.Errorf("vrift watch is not available on %s yet (it needs Linux's inotify); run vrift ingest after changes instead", runtime.GOOS)
}
