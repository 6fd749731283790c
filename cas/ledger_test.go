package cas

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// walkCounts counts s by a walk: what the kept totals must equal.
func walkCounts(t *testing.T, s *Store) Counts {
	t.Helper()
	var c Counts
	if err := s.Walk(context.Background(), func(b Blob) error {
		c.Blobs++
		c.Bytes += b.Key.Size
		c.DiskBytes += b.DiskBytes
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

func openTotals(t *testing.T, root string) *Store {
	t.Helper()
	s, err := Open(root, Options{KeepTotals: true, Owner: OwnerDirect})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func putN(t *testing.T, s *Store, tag string, n int) {
	t.Helper()
	b := s.NewBatch()
	for i := range n {
		if _, err := b.Put(context.Background(), strings.NewReader(fmt.Sprintf("%s %d", tag, i)), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
}

func stored(t *testing.T, s *Store) StoredTotals {
	t.Helper()
	st, err := s.StoredTotals()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLedgerKeptAcrossProcesses: a new store starts at zero, trusted; two
// writers' changes (puts, a removal) both reach the totals file, which a
// third opener reads, trusted and equal to a walk, without walking.
func TestLedgerKeptAcrossProcesses(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	a := openTotals(t, root)
	if st := stored(t, a); !st.Trusted || st.Counts != (Counts{}) {
		t.Fatalf("new store: %+v, want trusted zero", st)
	}
	b := openTotals(t, root)
	putN(t, a, "a", 5)
	putN(t, b, "b", 3)
	putN(t, b, "a", 2) // content a already named: no change
	// A reader sees the writers as live; their saves may lag a second.
	c := openTotals(t, root)
	if st := stored(t, c); st.Writers != 2 || !st.Trusted {
		t.Fatalf("two live writers: %+v", st)
	}
	k := Key{}
	a.Walk(context.Background(), func(bl Blob) error { k = bl.Key; return nil })
	if err := a.Remove(k); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{a, b} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	want := walkCounts(t, c)
	if want.Blobs != 7 {
		t.Fatalf("walk: %+v, want 7 blobs", want)
	}
	if st := stored(t, c); !st.Trusted || st.Counts != want || st.Writers != 0 {
		t.Fatalf("after both closed: %+v, the walk %+v", st, want)
	}
	d := openTotals(t, root)
	if !d.TotalsTrusted() || d.Totals().Counts() != want {
		t.Fatalf("reopened: trusted %v, %+v, want %+v", d.TotalsTrusted(), d.Totals().Counts(), want)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, writersDir)); len(ents) != 0 {
		t.Fatalf("writer files left: %v", ents)
	}
}

// die is what a process's death does to its writer file: its lock goes,
// the file stays, and nothing more is saved.
func die(s *Store) {
	s.ledger.mu.Lock()
	s.ledger.marker.Close()
	s.ledger.marker = nil
	s.ledger.mu.Unlock()
}

// TestLedgerCrashMidUpdate: a writer that dies after naming blobs and
// before saving them (kill -9 mid-ingest) leaves the totals untrusted for
// every reader, until a recount, which saves the walk and removes the
// dead writer's file; a recount while another writer lives is not saved.
func TestLedgerCrashMidUpdate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	s := openTotals(t, root)
	putN(t, s, "saved", 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w := openTotals(t, root)
	w.ledger.lastSave = time.Now() // no save before the death
	putN(t, w, "lost", 3)
	die(w)

	r := openTotals(t, root)
	if r.TotalsTrusted() {
		t.Fatal("opened after a writer died unsaved: trusted")
	}
	if st := stored(t, r); st.Trusted {
		t.Fatalf("after a writer died unsaved: %+v trusted", st)
	}
	// A live writer keeps the recount from being saved.
	live := openTotals(t, root)
	putN(t, live, "live", 1)
	c, saved, err := r.RecountSaved(context.Background())
	if err != nil || saved {
		t.Fatalf("recount beside a live writer: saved %v, %v", saved, err)
	}
	if c != walkCounts(t, r) {
		t.Fatalf("recount %+v, walk %+v", c, walkCounts(t, r))
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	c, saved, err = r.RecountSaved(context.Background())
	if err != nil || !saved {
		t.Fatalf("recount alone: saved %v, %v", saved, err)
	}
	want := walkCounts(t, r)
	if c != want || want.Blobs != 8 {
		t.Fatalf("recount %+v, walk %+v (want 8 blobs)", c, want)
	}
	if st := stored(t, r); !st.Trusted || st.Counts != want {
		t.Fatalf("after the recount: %+v, want trusted %+v", st, want)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, writersDir)); len(ents) != 0 {
		t.Fatalf("the dead writer's file is left: %v", ents)
	}
	// Changes after the recount add to it.
	putN(t, r, "after", 2)
	r.Close()
	if st := stored(t, openTotals(t, root)); !st.Trusted || st.Counts != walkCounts(t, r) {
		t.Fatalf("after more puts: %+v, walk %+v", st, walkCounts(t, r))
	}
}

// TestLedgerUntrustedFile: a store whose totals file is missing (made
// before the ledger) or damaged is untrusted until a recount.
func TestLedgerUntrustedFile(t *testing.T) {
	for _, damage := range []string{"", "vrift-totals 1 x 1 2 3\n", "garbage"} {
		root := filepath.Join(t.TempDir(), "store")
		s := openTotals(t, root)
		putN(t, s, "x", 2)
		s.Close()
		p := filepath.Join(root, totalsFile)
		if damage == "" {
			os.Remove(p)
		} else if err := os.WriteFile(p, []byte(damage), 0o644); err != nil {
			t.Fatal(err)
		}
		r := openTotals(t, root)
		if r.TotalsTrusted() || stored(t, r).Trusted {
			t.Fatalf("totals file %q: trusted", damage)
		}
		// A writer's save does not make damaged totals trusted.
		putN(t, r, "y", 1)
		r.Close()
		r = openTotals(t, root)
		if r.TotalsTrusted() {
			t.Fatalf("totals file %q, then a save: trusted", damage)
		}
		if _, saved, err := r.RecountSaved(context.Background()); err != nil || !saved {
			t.Fatalf("recount: %v %v", saved, err)
		}
		if st := stored(t, r); !st.Trusted || st.Counts != walkCounts(t, r) || st.Blobs != 3 {
			t.Fatalf("totals file %q, recounted: %+v", damage, st)
		}
	}
}

// TestLedgerOtherOwner: a process of the other mode keeps no totals in a
// store it does not own (it would leave files the owner cannot open).
func TestLedgerOtherOwner(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	if _, err := Open(root, Options{KeepTotals: true, Owner: OwnerDaemon}); err != nil {
		t.Fatal(err)
	}
	s := openTotals(t, root) // direct
	if s.Totals() != nil {
		t.Fatal("direct mode keeps totals in a daemon's store")
	}
	if _, err := s.StoredTotals(); err != ErrNoTotals {
		t.Fatalf("StoredTotals: %v, want ErrNoTotals", err)
	}
}

// BenchmarkStoredTotals: what `vrift status` pays for the store's figures,
// whatever the store's size (one small file, the writers/ directory, two
// flocks), with two live writers registered.
func BenchmarkStoredTotals(b *testing.B) {
	root := filepath.Join(b.TempDir(), "store")
	var writers []*Store // alive: a collected Store's writer file unlocks
	for _, tag := range []string{"w1", "w2"} {
		s, err := Open(root, Options{KeepTotals: true})
		if err != nil {
			b.Fatal(err)
		}
		writers = append(writers, s)
		if _, err := s.Put(context.Background(), strings.NewReader(tag), false); err != nil {
			b.Fatal(err)
		}
	}
	s, err := Open(root, Options{KeepTotals: true})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if st, err := s.StoredTotals(); err != nil || st.Writers != 2 {
			b.Fatalf("%+v %v", st, err)
		}
	}
	runtime.KeepAlive(writers)
}
