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
		p := filepath.Join(dir, e.Name())
		giveBack(p, e.Name())
		if err := os.Remove(p); err == nil {
			removed++
		}
	}
	return removed, nil
}

// giveBack returns an adopted file whose writer died before publishing it
// to its user: the temp link's inode still has the user's link too, made
// read-only by the adoption, so it gets the mode its name recorded back.
// (One that was published is a blob, read-only for good; a failed ingest
// that lives to see its failure undoes its own adoptions.)
func giveBack(path, name string) {
	rest, ok := strings.CutPrefix(name, "put-")
	if !ok {
		return
	}
	_, seq, _ := strings.Cut(rest, "-")
	seq, ok = strings.CutPrefix(seq, adoptTag)
	if !ok {
		return
	}
	_, modeStr, ok := strings.Cut(seq, "-")
	if !ok {
		return
	}
	mode, err := strconv.ParseUint(modeStr, 8, 32)
	if err != nil || mode > 0o7777 {
		return
	}
	// By descriptor, opened without following a symlink: the chmod must
	// reach the temp link's own inode and nothing a symlink points at.
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Nlink < 2 {
		return
	}
	syscall.Fchmod(fd, uint32(mode))
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
