package cas

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBatchBacklog: while a flush runs, puts go on until batchBacklog
// blobs are pending, then wait for it: the pending set stays bounded
// however long a syncfs takes.
func TestBatchBacklog(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "store"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	b.flushing.Lock() // a flush that takes its time
	done := make(chan error)
	go func() {
		for i := range batchBacklog + 10 {
			if _, err := b.Put(context.Background(), strings.NewReader(fmt.Sprint(i)), false); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	pending := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.pending)
	}
	deadline := time.Now().Add(60 * time.Second)
	for pending() < batchBacklog {
		if time.Now().After(deadline) {
			t.Fatalf("%d pending after a minute", pending())
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("all puts returned during the flush (%v): %d pending", err, pending())
	case <-time.After(200 * time.Millisecond):
	}
	if n := pending(); n != batchBacklog {
		t.Fatalf("%d pending while the flush runs, want at most %d", n, batchBacklog)
	}
	b.flushing.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	n := 0
	s.Walk(context.Background(), func(Blob) error { n++; return nil })
	if n != batchBacklog+10 {
		t.Fatalf("%d blobs stored, want %d", n, batchBacklog+10)
	}
}
