package cas

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func linkThenRemove(oldpath, newpath string) error {
	if err := os.Link(oldpath, newpath); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			return le.Err
		}
		return err
	}
	return os.Remove(oldpath)
}

// tempPrefix names temp files after the writing process, so that a later
// process can tell an abandoned temp file from one still being written.
func tempPrefix() string { return "put-" + strconv.Itoa(os.Getpid()) + "-" }

// CleanTemps removes temp files left by writers that are gone: those whose
// process no longer exists, and any older than maxAge. It returns how many it
// removed.
func (s *Store) CleanTemps(maxAge time.Duration) (int, error) {
	dir := filepath.Join(s.root, tmpDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("clean temps: %w", err)
	}
	removed := 0
	for _, e := range entries {
		if !staleTemp(e, maxAge) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			removed++
		}
	}
	return removed, nil
}

func staleTemp(e fs.DirEntry, maxAge time.Duration) bool {
	if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > maxAge {
		return true
	}
	rest, ok := strings.CutPrefix(e.Name(), "put-")
	if !ok {
		return false
	}
	pidStr, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
