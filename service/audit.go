package service

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// auditEntry is one line of the audit log: every write to the shared store.
type auditEntry struct {
	Time         time.Time `json:"time"`
	UID          uint32    `json:"uid"`
	PID          int32     `json:"pid"`
	Method       string    `json:"method"`
	Path         string    `json:"path,omitempty"`
	Files        int64     `json:"files,omitempty"`
	Private      int64     `json:"private,omitempty"`
	BlobsAdded   int64     `json:"blobs_added,omitempty"`
	BytesAdded   int64     `json:"bytes_added,omitempty"`
	BlobsRemoved int64     `json:"blobs_removed,omitempty"`
	BytesRemoved int64     `json:"bytes_removed,omitempty"`
	Result       string    `json:"result"`
}

// auditLog appends JSON lines to a file only the daemon can read.
type auditLog struct {
	mu sync.Mutex
	f  *os.File
}

func openAudit(path string) (*auditLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &auditLog{f: f}, nil
}

func (a *auditLog) write(e auditEntry) {
	e.Time = time.Now().UTC()
	line, _ := json.Marshal(e)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.f.Write(append(line, '\n'))
	a.f.Sync()
}

func (a *auditLog) close() error { return a.f.Close() }
