package cas

import (
	"context"
	"os"
	"sync/atomic"
)

// Counts are a store's blob totals.
type Counts struct {
	Blobs int64
	// Bytes are the blobs' logical bytes.
	Bytes int64
	// DiskBytes is the space they occupy; a pending blob counts at its
	// logical size.
	DiskBytes int64
}

// Totals keeps a store's counts as blobs come and go, for a long-lived
// process (the daemon) that must not walk the store per request: its
// max_bytes check and its gauges read them. They are kept by the store
// itself, at the only places a blob is named or removed (publish, Remove,
// Quarantine) and at a batch's pending blobs (add, Flush, Discard), so no
// path that adds a blob can forget them (a team-cache pull once did).
//
// Pending blobs (put into a batch, not yet flushed) count at once, so an
// ingest's puts see the store grow before their batch is flushed; they are
// kept apart from named ones so that a recount (which sees only named
// blobs) leaves them in, and a discard takes them out again.
type Totals struct {
	named                      counts
	pendingBlobs, pendingBytes atomic.Int64
}

type counts struct{ blobs, bytes, disk atomic.Int64 }

func (c *counts) add(n, bytes, disk int64) {
	c.blobs.Add(n)
	c.bytes.Add(bytes)
	c.disk.Add(disk)
}

// namedCounts reads the named blobs' totals only.
func (t *Totals) namedCounts() Counts {
	if t == nil {
		return Counts{}
	}
	return Counts{Blobs: t.named.blobs.Load(), Bytes: t.named.bytes.Load(), DiskBytes: t.named.disk.Load()}
}

// PendingBytes are the bytes of blobs put into batches not yet flushed.
func (t *Totals) PendingBytes() int64 {
	if t == nil {
		return 0
	}
	return t.pendingBytes.Load()
}

// Counts reads the totals: named and pending blobs.
func (t *Totals) Counts() Counts {
	if t == nil {
		return Counts{}
	}
	pb := t.pendingBytes.Load()
	return Counts{Blobs: t.named.blobs.Load() + t.pendingBlobs.Load(), Bytes: t.named.bytes.Load() + pb,
		DiskBytes: t.named.disk.Load() + pb}
}

// Bytes is Counts().Bytes.
func (t *Totals) Bytes() int64 { return t.Counts().Bytes }

func (t *Totals) pending(n int, k Key) {
	if t != nil {
		t.pendingBlobs.Add(int64(n))
		t.pendingBytes.Add(int64(n) * k.Size)
	}
}

// published moves a pending blob of s to the named ones (added: the flush
// gave it its name) or drops it (another writer named the same content
// first, or the flush failed).
func (t *Totals) published(s *Store, k Key, disk int64, added bool) {
	if t == nil {
		return
	}
	t.pending(-1, k)
	t.added(s, k, disk, added)
}

// added counts blob k of s, just named (when added), taking disk bytes
// (its blocks when sealed; looked up when that is -1).
func (t *Totals) added(s *Store, k Key, disk int64, added bool) {
	if t != nil && added {
		if disk < 0 {
			disk = s.diskBytes(k)
		}
		t.named.add(1, k.Size, disk)
	}
}

func (t *Totals) removed(k Key, disk int64) {
	if t != nil {
		t.named.add(-1, -k.Size, -disk)
	}
}

// diskBytes is the space blob k occupies (its logical size if it cannot be
// stat'ed): one lstat per blob named or removed, only in a store that keeps
// totals, so that removals never take the disk total below what is there.
func (s *Store) diskBytes(k Key) int64 {
	if info, err := os.Lstat(s.Path(k)); err == nil {
		return diskBytes(info)
	}
	return k.Size
}

// fdDiskBytes is the space the open file f takes, for a blob about to be
// named: an fstat (no path lookup, unlike diskBytes: the lstat of every
// new blob's name cost 3% of a cold pull's CPU), -1 when it fails, 0 in a
// store that keeps no totals. The blocks of a file just written are known
// before its writeback (ext4 counts delayed allocations in st_blocks).
func (s *Store) fdDiskBytes(f *os.File) int64 {
	if s.totals == nil {
		return 0
	}
	info, err := f.Stat()
	if err != nil {
		return -1
	}
	return diskBytes(info)
}

// Totals returns the store's running totals, nil unless it was opened with
// Options.KeepTotals.
func (s *Store) Totals() *Totals { return s.totals }

// TotalsTrusted reports whether the totals loaded at open (or set by the
// last Recount) can be trusted (see ledger); false without KeepTotals.
func (s *Store) TotalsTrusted() bool { return s.totals != nil && s.trusted.Load() }

// Recount walks the store and sets the named blobs' totals from it (exact
// disk bytes again), and saves them as the store's totals on disk when no
// other process changed the store meanwhile (Saved). Pending blobs are left
// as they are. The caller holds the store's exclusive lock (a direct-mode
// process) or every writer but a batch's flush off (the daemon, at the end
// of a sweep: a blob a flush names during the walk may be missed until the
// next recount, never counted twice).
func (s *Store) Recount(ctx context.Context) (Counts, error) {
	c, _, err := s.RecountSaved(ctx)
	return c, err
}

// RecountSaved is Recount, also reporting whether the walk was saved as the
// store's totals (see ledger: not while another process is registered as a
// writer).
func (s *Store) RecountSaved(ctx context.Context) (Counts, bool, error) {
	l := s.ledger
	if l == nil {
		l = &ledger{s: s}
	}
	gen0 := l.gen()
	var c Counts
	err := s.Walk(ctx, func(b Blob) error {
		c.Blobs++
		c.Bytes += b.Key.Size
		c.DiskBytes += b.DiskBytes
		return nil
	})
	if err != nil {
		return c, false, err
	}
	if s.totals != nil {
		s.totals.named.blobs.Store(c.Blobs)
		s.totals.named.bytes.Store(c.Bytes)
		s.totals.named.disk.Store(c.DiskBytes)
	}
	saved, err := l.persistRecount(c, gen0)
	if saved && s.totals != nil {
		s.trusted.Store(true)
	}
	return c, saved, err
}
