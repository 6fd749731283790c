package cas

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
)

// A batch is flushed once it holds this many blobs, or its puts wrote this
// many bytes (which the flush's syncfs then writes out).
const (
	batchBlobs = 2048
	batchBytes = 256 << 20
	// batchBacklog bounds the blobs pending while a flush runs (see add).
	batchBacklog = 4 * batchBlobs
)

// lockNow takes mu, waiting; for a condition with TryLock (see add).
func lockNow(mu *sync.Mutex) bool { mu.Lock(); return true }

// Batch stores many blobs with one sync per batch instead of one fsync per
// blob. Its puts write and seal temp files; Flush makes them durable with a
// single syncfs(2) and only then gives them their names, so a crash still
// never leaves a named blob with unsynced content. On a disk that bills
// writes, per-blob fsyncs cost a journal commit each: about a quarter more
// bytes written for a node_modules tree.
//
// Blobs put through a batch become visible under their names at the next
// Flush; callers must Flush before relying on them (before a manifest names
// them). A Batch is safe for concurrent use.
type Batch struct {
	s       *Store
	mu      sync.Mutex
	pending map[Key]sealed
	bytes   int64
	// inFlush holds the blobs the running Flush is publishing: until they
	// have their names, puts of the same content must still see them.
	inFlush  map[Key]sealed
	flushing sync.Mutex
}

// NewBatch starts a batch of puts.
func (s *Store) NewBatch() *Batch { return &Batch{s: s, pending: map[Key]sealed{}} }

// Put is Store.Put without the durability: the blob is durable and named
// after the next Flush. New reports content neither stored nor pending.
func (b *Batch) Put(ctx context.Context, r io.Reader, exec bool) (PutResult, error) {
	return b.put(ctx, r, exec, nil, nil)
}

// PutGuarded is Put with the existence check wrapped by guard, which must
// call has(k) and may do more around it: the daemon records the key as in
// use under its sweep lock there, so content found present cannot be swept
// before the caller relies on it, while the (possibly long) read of r runs
// without any lock.
func (b *Batch) PutGuarded(ctx context.Context, r io.Reader, exec bool, guard func(k Key, has func(Key) bool) bool) (PutResult, error) {
	return b.put(ctx, r, exec, guard, nil)
}

// PutChecked is Put with a check that runs once all of r is read and
// before the content is kept: when check fails (say, the source file
// changed while it was read), the temp is discarded and check's error
// returned, so no blob is ever named from content that was never the
// file's. A nil check always passes.
func (b *Batch) PutChecked(ctx context.Context, r io.Reader, exec bool, check func() error) (PutResult, error) {
	return b.put(ctx, r, exec, nil, check)
}

func (b *Batch) put(ctx context.Context, r io.Reader, exec bool, guard func(k Key, has func(Key) bool) bool, check func() error) (PutResult, error) {
	present := b.has
	if guard != nil {
		present = func(k Key) bool { return guard(k, b.has) }
	}
	tmp, k, err := b.s.write(ctx, r, exec, present)
	if err != nil {
		return PutResult{Key: k}, b.s.full(err)
	}
	if check != nil {
		if err := check(); err != nil {
			if tmp != nil {
				discard(tmp)
			}
			return PutResult{}, err
		}
	}
	if tmp == nil {
		return PutResult{Key: k}, nil
	}
	sl, err := b.s.seal(tmp, k)
	if err != nil {
		return PutResult{}, b.s.full(err)
	}
	return b.add(k, sl, k.Size)
}

// add makes the sealed temp file pending as k, unless k is pending already
// (another goroutine of this batch stored the same content: it is
// removed). written is how many bytes the put wrote (an adopted file's
// are the user's: none). A full batch is flushed on the way, by one
// goroutine: the others carry on rather than queue up behind it to flush
// the few blobs that arrived meanwhile, each at two syncfs (that doubled
// the flushes of an adopting ingest of the npm fixture: 29, now 12).
func (b *Batch) add(k Key, sl sealed, written int64) (PutResult, error) {
	b.mu.Lock()
	_, dup := b.pending[k]
	if _, flushing := b.inFlush[k]; flushing {
		dup = true
	}
	if dup {
		b.mu.Unlock()
		os.Remove(sl.name)
		return PutResult{Key: k}, nil
	}
	b.pending[k] = sl
	b.bytes += written
	b.s.totals.pending(1, k)
	full := len(b.pending) >= batchBlobs || b.bytes >= batchBytes
	// Past batchBacklog blobs the put waits for the running flush and
	// then flushes: a flush's syncfs on a busy disk took long enough for
	// the others to pile up 27 MB of pending names (a 1M-file cold ingest
	// at a load average of 8; issue 22).
	backlog := len(b.pending) >= batchBacklog
	b.mu.Unlock()
	if full && (b.flushing.TryLock() || backlog && lockNow(&b.flushing)) {
		err := b.s.full(b.flushHeld())
		b.flushing.Unlock()
		if err != nil {
			return PutResult{}, err
		}
	}
	return PutResult{Key: k, New: true}, nil
}

func (b *Batch) has(k Key) bool { return b.pendingHas(k) || b.s.Has(k) }

// pendingHas reports whether k was put through b and is not yet named.
func (b *Batch) pendingHas(k Key) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.pending[k]
	if _, flushing := b.inFlush[k]; flushing {
		ok = true
	}
	return ok
}

// Flush makes every pending blob durable and gives it its name. When it
// returns nil, every blob put so far is durable, name included.
func (b *Batch) Flush() error { return b.s.full(b.flush()) }

func (b *Batch) flush() error {
	b.flushing.Lock()
	defer b.flushing.Unlock()
	return b.flushHeld()
}

// flushHeld is flush with b.flushing held.
func (b *Batch) flushHeld() error {
	b.mu.Lock()
	items := b.pending
	b.pending, b.bytes, b.inFlush = map[Key]sealed{}, 0, items
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlush = nil
		b.mu.Unlock()
	}()
	if len(items) == 0 {
		return nil
	}
	// Contents first: no name may appear before its bytes are on disk.
	if err := b.s.Sync(); err != nil {
		b.discard(items)
		return err
	}
	var errs []error
	for k, sl := range items {
		added, err := b.s.publish(sl.name, k)
		b.s.totals.published(b.s, k, sl.disk, added)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Then the names; then the totals (at most once a second; one that
	// fails is retried at Close, and if that fails too the store's totals
	// are recounted by the next reader).
	if err := b.s.Sync(); err != nil {
		return err
	}
	b.s.ledger.save(false)
	return nil
}

// Discard drops every pending blob; for a batch whose work failed.
func (b *Batch) Discard() {
	b.mu.Lock()
	items := b.pending
	b.pending, b.bytes = map[Key]sealed{}, 0
	b.mu.Unlock()
	b.discard(items)
}

func (b *Batch) discard(items map[Key]sealed) {
	for k, sl := range items {
		os.Remove(sl.name)
		b.s.totals.published(b.s, k, 0, false)
	}
}
