package cas

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestTotalsFollowEveryPath: whatever adds or removes a blob (Put, a
// batch's put, flush and discard, two batches naming the same content,
// PutExpect, Remove, Quarantine) leaves the totals equal to a walk.
func TestTotalsFollowEveryPath(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "store"), Options{KeepTotals: true})
	if err != nil {
		t.Fatal(err)
	}
	// Blobs present before the first recount are counted by it.
	pre, err := s.Put(ctx, strings.NewReader("before the recount"), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recount(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(what string, pending int64) {
		t.Helper()
		var walk Counts
		if err := s.Walk(ctx, func(b Blob) error {
			walk.Blobs++
			walk.Bytes += b.Key.Size
			walk.DiskBytes += b.DiskBytes
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		got := s.Totals().Counts()
		if got.Blobs != walk.Blobs+pending || got.Bytes < walk.Bytes || (pending == 0 && got != walk) {
			t.Fatalf("%s: totals %+v, the walk %+v plus %d pending", what, got, walk, pending)
		}
	}
	check("recount", 0)
	if _, err := s.Put(ctx, strings.NewReader("put"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, strings.NewReader("put"), false); err != nil {
		t.Fatal(err)
	}
	check("put twice", 0)

	b1, b2 := s.NewBatch(), s.NewBatch()
	for _, b := range []*Batch{b1, b2} {
		if _, err := b.Put(ctx, strings.NewReader("in both batches"), false); err != nil {
			t.Fatal(err)
		}
	}
	check("two pending copies", 2)
	if err := b1.Flush(); err != nil {
		t.Fatal(err)
	}
	check("one flushed", 1)
	if err := b2.Flush(); err != nil {
		t.Fatal(err)
	}
	check("the other flushed onto the same name", 0)

	b3 := s.NewBatch()
	if _, err := b3.Put(ctx, strings.NewReader("discarded"), false); err != nil {
		t.Fatal(err)
	}
	want := keyOfString("expected")
	if _, err := b3.PutExpect(ctx, strings.NewReader("expected"), want); err != nil {
		t.Fatal(err)
	}
	if _, err := b3.PutExpect(ctx, strings.NewReader("not what it claims"), keyOfString("claimed")); err == nil {
		t.Fatal("a mismatching download was stored")
	}
	check("pending", 2)
	b3.Discard()
	check("discarded", 0)

	if err := s.Remove(pre.Key); err != nil {
		t.Fatal(err)
	}
	check("removed", 0)
	r, err := s.Put(ctx, strings.NewReader("to quarantine"), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Quarantine(r.Key); err != nil {
		t.Fatal(err)
	}
	check("quarantined", 0)
	if got := s.Totals().Counts(); got.Blobs != 2 || got.Bytes != int64(len("put")+len("in both batches")) {
		t.Fatalf("totals %+v, want the 2 blobs left", got)
	}
	// A store opened without KeepTotals keeps none.
	if openTestStore(t).Totals() != nil {
		t.Fatal("totals without KeepTotals")
	}
}

func keyOfString(s string) Key {
	h := NewHasher()
	h.Write([]byte(s))
	k := Key{Size: int64(len(s))}
	h.Sum(k.Sum[:0])
	return k
}
