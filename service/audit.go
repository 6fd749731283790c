package service

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// auditEntry is one line of the audit log: every write to the shared store.
// Fields named client_* are what the client claimed (a path it says it
// ingested): the daemon never opened them and they prove nothing.
type auditEntry struct {
	Time         time.Time `json:"time"`
	UID          uint32    `json:"uid"`
	PID          int32     `json:"pid"`
	Method       string    `json:"method"`
	ClientPath   string    `json:"client_path,omitempty"`
	Files        int64     `json:"files,omitempty"`
	Private      int64     `json:"private,omitempty"`
	BlobsAdded   int64     `json:"blobs_added,omitempty"`
	BytesAdded   int64     `json:"bytes_added,omitempty"`
	BlobsRemoved int64     `json:"blobs_removed,omitempty"`
	BytesRemoved int64     `json:"bytes_removed,omitempty"`
	DroppedRoots int       `json:"dropped_roots,omitempty"`
	Result       string    `json:"result"`
}

// auditLog appends JSON lines to a file only the daemon can read. It
// rotates by size (audit.log -> audit.log.1 -> ... -> audit.log.<keep>, the
// oldest dropped), so no caller can fill the daemon's disk through it, and
// it never ignores a failed write: it logs it and counts it.
type auditLog struct {
	mu       sync.Mutex
	path     string
	f        *os.File
	size     int64
	maxBytes int64
	keep     int
	log      *slog.Logger
	failures int64
}

func openAudit(path string, maxBytes int64, keep int, log *slog.Logger) (*auditLog, error) {
	a := &auditLog{path: path, maxBytes: maxBytes, keep: keep, log: log}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *auditLog) open() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	a.f, a.size = f, info.Size()
	return nil
}

// rotate shifts the numbered files up by one and starts a new log.
func (a *auditLog) rotate() error {
	if err := a.f.Close(); err != nil {
		a.log.Warn("audit log: close before rotation failed", "err", err)
	}
	os.Remove(a.path + "." + strconv.Itoa(a.keep))
	for i := a.keep - 1; i >= 1; i-- {
		os.Rename(a.path+"."+strconv.Itoa(i), a.path+"."+strconv.Itoa(i+1))
	}
	if a.keep > 0 {
		if err := os.Rename(a.path, a.path+"."+strconv.Itoa(1)); err != nil {
			a.log.Warn("audit log: rotation failed", "err", err)
		}
	} else {
		os.Remove(a.path)
	}
	return a.open()
}

// sanitize makes a client-supplied string safe to show: control characters
// (newlines, terminal escapes) become \u escapes and the length is bounded.
func sanitize(s string) string {
	const max = 4096
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
}

func (a *auditLog) write(e auditEntry) {
	e.Time = time.Now().UTC()
	e.ClientPath = sanitize(e.ClientPath)
	e.Result = sanitize(e.Result)
	line, err := json.Marshal(e)
	if err != nil {
		a.fail(err)
		return
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.maxBytes > 0 && a.size+int64(len(line)) > a.maxBytes && a.size > 0 {
		if err := a.rotate(); err != nil {
			a.failLocked(err)
			return
		}
	}
	n, err := a.f.Write(line)
	a.size += int64(n)
	if err == nil {
		err = a.f.Sync()
	}
	if err != nil {
		a.failLocked(err)
	}
}

func (a *auditLog) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failLocked(err)
}

func (a *auditLog) failLocked(err error) {
	a.failures++
	a.log.Error("audit log write failed", "err", err, "failures", a.failures)
}

// Failures is how many audit lines could not be written.
func (a *auditLog) Failures() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failures
}

func (a *auditLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
