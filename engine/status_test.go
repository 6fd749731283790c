package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/cas"
)

// TestDirectStatusKeptTotals: status reads the totals the store keeps
// (equal to a walk) after ingests and a gc; a process killed after
// storing blobs and before saving its totals (its writer file left
// unlocked) makes the next status recount and save them; --recount
// recounts anyway; a recount while another process writes is not saved.
func TestDirectStatusKeptTotals(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	store := filepath.Join(base, "store")
	p := filepath.Join(base, "p")
	writeFiles(t, p, map[string]string{"package.json": "{}", "lib/a.js": "a", "lib/b.js": "bb", "lib/c.js": "a"})
	status := func(recount bool) *StoreStatus {
		t.Helper()
		d, err := OpenDirect(store)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		st, err := d.Status(ctx, StatusOptions{Recount: recount})
		if err != nil {
			t.Fatal(err)
		}
		walk, err := ScanStore(ctx, d.Store)
		if err != nil {
			t.Fatal(err)
		}
		if st.Blobs != walk.Blobs || st.Bytes != walk.Bytes || st.DiskBytes != walk.DiskBytes {
			t.Fatalf("status %+v, a walk %+v", st, walk)
		}
		return st
	}
	ingest := func(opts IngestOptions) {
		t.Helper()
		d, err := OpenDirect(store)
		if err != nil {
			t.Fatal(err)
		}
		opts.Dir = filepath.Join(p, "lib")
		if _, err := d.Ingest(ctx, opts); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ingest(IngestOptions{Tier: Tier2})
	if st := status(false); st.Totals != TotalsKept || st.Blobs != 2 {
		t.Fatalf("after an ingest: %+v, want kept totals of 2 blobs (lib holds two contents)", st)
	}
	// An orphan, then gc removes it: the totals follow.
	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Store.Put(ctx, strings.NewReader("orphan"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := d.GC(ctx, GCOptions{}); err != nil { // grace keeps it
		t.Fatal(err)
	}
	if _, err := d.GC(ctx, GCOptions{Grace: 0}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if st := status(false); st.Totals != TotalsKept || st.Blobs != 2 {
		t.Fatalf("after gc: %+v, want kept totals of 2 blobs", st)
	}

	// Killed mid-ingest: blobs named, totals not saved, writer file left.
	d, err = OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Store.Put(ctx, strings.NewReader("stored by a process about to die"), false); err != nil {
		t.Fatal(err)
	}
	writers, _ := os.ReadDir(filepath.Join(store, "writers"))
	if len(writers) != 1 {
		t.Fatalf("writer files: %v, want this process's", writers)
	}
	// What kill -9 leaves: the file, unlocked, and totals without the put.
	dead := filepath.Join(store, "writers", writers[0].Name())
	if err := os.Rename(dead, dead+"-dead"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(dead + "-dead")
	os.WriteFile(dead, data, 0o600)
	os.Remove(dead + "-dead")
	if st := status(false); st.Totals != TotalsRecounted || st.Blobs != 3 {
		t.Fatalf("after a writer died: %+v, want 3 blobs recounted", st)
	}
	if st := status(false); st.Totals != TotalsKept {
		t.Fatalf("after the recount: %+v, want kept", st)
	}
	if st := status(true); st.Totals != TotalsRecounted {
		t.Fatalf("--recount: %+v", st)
	}
	// An ingest holds the store (shared): a recount now is a walk, not
	// saved.
	lock, err := d.Store.LockShared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := status(true); st.Totals != TotalsWalked {
		t.Fatalf("--recount beside an ingest: %+v, want walked", st)
	}
	lock.Unlock()
}

// TestLiveSet: every key added tests live, whatever the order and
// duplicates; keys never added do not (bar a 2^-64 collision).
func TestLiveSet(t *testing.T) {
	var live LiveSet
	var in, out []cas.Key
	for i := range 2000 {
		k := cas.Key{Size: int64(i % 7), Exec: i%3 == 0}
		k.Sum[0], k.Sum[1], k.Sum[9] = byte(i), byte(i>>8), byte(i*7)
		if i%2 == 0 {
			in = append(in, k)
			live.Add(k)
			live.Add(k)
		} else {
			out = append(out, k)
		}
	}
	if live.Len() != len(in) {
		t.Fatalf("Len %d, want %d", live.Len(), len(in))
	}
	for _, k := range in {
		if !live.Has(k) {
			t.Fatalf("%v added, not live", k)
		}
	}
	for _, k := range out {
		if live.Has(k) {
			t.Fatalf("%v never added, live", k)
		}
	}
}

// TestOverLimitsUntrusted: the direct-mode limit check (before every
// ingest, and every commit of a watcher) reads the kept totals; when they
// are untrusted it recounts once and saves them, so the next check walks
// nothing.
func TestOverLimitsUntrusted(t *testing.T) {
	ctx := context.Background()
	store := filepath.Join(t.TempDir(), "store")
	d, err := OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"one", "two"} {
		if _, err := d.Store.Put(ctx, strings.NewReader(c), false); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	// Untrusted: a dead writer's file.
	os.WriteFile(filepath.Join(store, "writers", "put-1-dead"), nil, 0o600)
	d, err = OpenDirect(store)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if st, _ := d.Store.StoredTotals(); st.Trusted {
		t.Fatal("trusted with a dead writer's file")
	}
	over, _, err := OverLimits(ctx, d.Store, StoreLimits{MaxBytes: 5})
	if err != nil || !over {
		t.Fatalf("6 bytes against max_bytes 5: over %v, %v", over, err)
	}
	if st, _ := d.Store.StoredTotals(); !st.Trusted || st.Bytes != 6 {
		t.Fatalf("after the check: %+v, want the recount saved", st)
	}
}
