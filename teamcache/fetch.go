package teamcache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/pack"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/treefile"
)

// Fetcher downloads blobs into a store, each verified before it is stored.
// Concurrent identical reads through one Fetcher (the same blob, the same
// range of a pack) are coalesced into one download.
type Fetcher struct {
	Store  *cas.Store
	Remote remote.Backend
	group  singleflight.Group
	decs   sync.Pool // *zstd.Decoder
}

// fetchAttempts is how often a read cut off mid-body is tried (the client
// already retries failed requests).
const fetchAttempts = 3

// errMisplaced marks a blob that is not where it was looked for: the
// object is gone, or holds other bytes. The pull re-plans it from the
// remote's current pack indexes.
var errMisplaced = errors.New("not where the tree says")

// errBadFrame marks a frame that does not decode (the stream is intact,
// the bytes are not zstd or not this blob's): content that does not match
// its name, like a frame that decodes to other bytes.
var errBadFrame = fmt.Errorf("%w: the frame does not decode", cas.ErrMismatch)

// counters is what a fetch adds to a Result, shared by its goroutines:
// blobs stored and their bytes, and the bytes the remote served.
type counters struct {
	blobs, bytes, wire atomic.Int64
	report             func(int64)
}

// counted counts the bytes read through it into n.
type counted struct {
	r io.Reader
	n *atomic.Int64
}

func (c counted) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *counters) got(k cas.Key) {
	c.blobs.Add(1)
	c.report(c.bytes.Add(k.Size))
}

// FetchAll fetches every blob of t the store lacks and makes them durable,
// reading each where t says it is. A blob that is not there (its pack was
// repacked or collected since, its object is corrupt) is looked for once
// more where the remote's current pack indexes say. It adds to
// res.BlobsFetched, BytesFetched and Reused.
func (f *Fetcher) FetchAll(ctx context.Context, t *Tree, opts Options, res *Result) error {
	want := map[cas.Key]treefile.Where{}
	seen := map[cas.Key]bool{}
	var total int64
	for i, e := range t.Entries {
		k := e.Key()
		if e.Kind != manifest.File || seen[k] {
			continue
		}
		seen[k] = true
		if f.Store.Has(k) {
			res.Reused++
			continue
		}
		want[k] = t.Where[i]
		total += k.Size
	}
	c := &counters{report: opts.progress("pull", total)}
	batch := f.Store.NewBatch()
	defer batch.Discard()
	failed, err := f.fetch(ctx, batch, want, opts, c)
	if err == nil && len(failed) > 0 {
		failed, err = f.replan(ctx, batch, failed, opts, c)
	}
	res.BlobsFetched += c.blobs.Load()
	res.BytesFetched += c.wire.Load()
	res.StoredBytes += c.bytes.Load()
	if err == nil && len(failed) > 0 {
		err = failedError(failed)
	}
	if err != nil {
		return err
	}
	return batch.Flush()
}

// replan looks the failed blobs up in the remote's current indexes and
// fetches them from there; a blob found nowhere else fails for good.
func (f *Fetcher) replan(ctx context.Context, batch *cas.Batch, failed map[cas.Key]error, opts Options, c *counters) (map[cas.Key]error, error) {
	inv, err := LoadInventory(ctx, f.Remote, opts)
	if err != nil {
		return nil, err
	}
	want := map[cas.Key]treefile.Where{}
	still := map[cas.Key]error{}
	for k, why := range failed {
		if w, ok := inv.Where(k); ok {
			want[k] = w
		} else {
			still[k] = fmt.Errorf("%w; no pack index or object in %s has it", why, f.Remote)
		}
	}
	again, err := f.fetch(ctx, batch, want, opts, c)
	for k, why := range again {
		still[k] = why
	}
	return still, err
}

func failedError(failed map[cas.Key]error) error {
	keys := make([]cas.Key, 0, len(failed))
	for k := range failed {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name() < keys[j].Name() })
	e := &fetchError{n: len(keys)}
	for _, k := range keys {
		e.errs = append(e.errs, fmt.Errorf("blob %s: %w", k, failed[k]))
	}
	return e
}

// fetchError reports the blobs a pull could not fetch (the first few by
// name) and wraps every reason, so errors.Is sees cas.ErrMismatch,
// remote.ErrRange or remote.ErrNotFound.
type fetchError struct {
	n    int
	errs []error
}

func (e *fetchError) Error() string {
	var msgs []string
	for i, err := range e.errs {
		if i == 3 {
			msgs = append(msgs, fmt.Sprintf("and %d more", e.n-3))
			break
		}
		msgs = append(msgs, err.Error())
	}
	return fmt.Sprintf("%d blobs could not be fetched (not stored): %s", e.n, strings.Join(msgs, "; "))
}

func (e *fetchError) Unwrap() []error { return e.errs }

// fetch reads the wanted blobs as planned, jobs reads at a time. Blobs
// not where they were looked for come back in failed; other errors (the
// store, the network after retries, refused credentials) stop it.
func (f *Fetcher) fetch(ctx context.Context, batch *cas.Batch, want map[cas.Key]treefile.Where, opts Options, c *counters) (map[cas.Key]error, error) {
	plan := planFetch(want, opts.mergeGap(), opts.maxRange())
	var mu sync.Mutex
	failed := map[cas.Key]error{}
	note := func(fs map[cas.Key]error) {
		mu.Lock()
		for k, err := range fs {
			failed[k] = err
		}
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.jobs())
	for _, sp := range plan.spans {
		g.Go(func() error {
			key := fmt.Sprintf("range %s %d-%d", sp.pack, sp.off, sp.end)
			fs, err := f.shared(gctx, key, batch, func() (map[cas.Key]error, error) { return f.readSpan(gctx, batch, sp, c) })
			note(fs)
			return err
		})
	}
	objects := func(keys []cas.Key, kind string, key func(cas.Key) string, compressed bool) {
		for _, k := range keys {
			g.Go(func() error {
				fs, err := f.shared(gctx, kind+" "+k.Name(), batch, func() (map[cas.Key]error, error) {
					return f.readObject(gctx, batch, k, key(k), compressed, c)
				})
				note(fs)
				return err
			})
		}
	}
	objects(plan.zstd, "zstd", ZstdKey, true)
	objects(plan.legacy, "blob", BlobKey, false)
	err := g.Wait()
	return failed, err
}

type sharedResult struct {
	batch  *cas.Batch
	failed map[cas.Key]error
}

// shared runs fn once for all concurrent callers with the same key. A
// caller whose read was done by another's goes on only once that one's
// batch is durable, so it can rely on the blobs.
func (f *Fetcher) shared(ctx context.Context, key string, batch *cas.Batch, fn func() (map[cas.Key]error, error)) (map[cas.Key]error, error) {
	v, err, _ := f.group.Do(key, func() (any, error) {
		failed, err := fn()
		return sharedResult{batch: batch, failed: failed}, err
	})
	if err != nil {
		return nil, err
	}
	r := v.(sharedResult)
	if r.batch != batch {
		if err := r.batch.Flush(); err != nil {
			return nil, err
		}
	}
	return r.failed, nil
}

func (f *Fetcher) decoder() (*zstd.Decoder, error) {
	if d, ok := f.decs.Get().(*zstd.Decoder); ok {
		return d, nil
	}
	return pack.NewDecoder(0)
}

func (f *Fetcher) putDecoder(d *zstd.Decoder) {
	d.Reset(nil)
	f.decs.Put(d)
}

// streamErr remembers the first error of the stream it reads, so that a
// failure can be told apart: the network's (read again) or the content's
// (the bytes are wrong).
type streamErr struct {
	r   io.Reader
	err error
}

func (s *streamErr) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// tagged turns the decoder's errors into errBadFrame, unless the stream
// under it failed.
type tagged struct {
	r      io.Reader
	stream *streamErr
}

func (t tagged) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.stream.err == nil {
		err = fmt.Errorf("%w: %v", errBadFrame, err)
	}
	return n, err
}

// transient reports whether a failed read is worth another attempt.
func transient(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, remote.ErrAuth) && !errors.Is(err, remote.ErrRange) &&
		!errors.Is(err, remote.ErrNotFound)
}

func backoff(ctx context.Context, attempt int) {
	select {
	case <-time.After(time.Duration(200<<attempt) * time.Millisecond):
	case <-ctx.Done():
	}
}

// readSpan reads one range of a pack and stores each frame in it,
// verified. A read cut off mid-way is retried from the first frame not yet
// stored. Frames that do not decode to their blob, or a pack that is gone,
// are returned as failed.
func (f *Fetcher) readSpan(ctx context.Context, batch *cas.Batch, sp span, c *counters) (map[cas.Key]error, error) {
	failed := map[cas.Key]error{}
	dec, err := f.decoder()
	if err != nil {
		return nil, err
	}
	defer f.putDecoder(dec)
	where := func(fr frame) string {
		return fmt.Sprintf("%s/%s bytes %d-%d", f.Remote, PackKey(sp.pack), fr.off, fr.end()-1)
	}
	i := 0
	for attempt := 0; i < len(sp.frames); attempt++ {
		start := sp.frames[i].off
		rc, err := f.Remote.GetRange(ctx, PackKey(sp.pack), start, sp.end-start)
		if errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrRange) {
			// Gone, or shorter than the tree says: look again in the
			// current indexes (a server that ignores ranges fails there
			// too, with this reason).
			for _, fr := range sp.frames[i:] {
				failed[fr.k] = fmt.Errorf("%s: %w: %w", where(fr), errMisplaced, err)
			}
			return failed, nil
		}
		if err != nil {
			if attempt+1 < fetchAttempts && transient(ctx, err) {
				backoff(ctx, attempt)
				continue
			}
			return failed, err
		}
		stream := &streamErr{r: bufio.NewReaderSize(counted{rc, &c.wire}, 256<<10)}
		pos := start
		for ; i < len(sp.frames); i++ {
			fr := sp.frames[i]
			if _, err := io.CopyN(io.Discard, stream, fr.off-pos); err != nil {
				break
			}
			content, done, err := pack.Frame(dec, stream, fr.length, fr.k.Size)
			if err == nil {
				_, err = batch.PutFetched(ctx, tagged{content, stream}, fr.k)
				// The rest of the frame, if the decoder stopped short; a
				// failure shows in stream.err.
				_ = done()
			}
			if stream.err != nil {
				break // the network's: read again from this frame
			}
			if err != nil {
				if !errors.Is(err, cas.ErrMismatch) && !errors.Is(err, errBadFrame) {
					rc.Close()
					return failed, fmt.Errorf("blob %s: %w", fr.k, err)
				}
				failed[fr.k] = fmt.Errorf("%s: %w: %w", where(fr), errMisplaced, err)
			} else {
				c.got(fr.k)
			}
			pos = fr.end()
		}
		rc.Close()
		if i < len(sp.frames) {
			if attempt+1 >= fetchAttempts || !transient(ctx, stream.err) {
				return failed, fmt.Errorf("%s: %w", where(sp.frames[i]), stream.err)
			}
			backoff(ctx, attempt)
		}
	}
	return failed, nil
}

// readObject stores the blob k from the object key: a zstd frame (a large
// blob) or version 1's raw bytes.
func (f *Fetcher) readObject(ctx context.Context, batch *cas.Batch, k cas.Key, key string, compressed bool, c *counters) (map[cas.Key]error, error) {
	failed := map[cas.Key]error{}
	for attempt := 0; ; attempt++ {
		err := f.readObjectOnce(ctx, batch, k, key, compressed, &c.wire)
		switch {
		case err == nil:
			c.got(k)
			return failed, nil
		case errors.Is(err, remote.ErrNotFound) || errors.Is(err, cas.ErrMismatch) || errors.Is(err, errBadFrame):
			failed[k] = fmt.Errorf("object %s/%s: %w: %w", f.Remote, key, errMisplaced, err)
			return failed, nil
		case attempt+1 < fetchAttempts && transient(ctx, err):
			backoff(ctx, attempt)
		default:
			return failed, fmt.Errorf("blob %s: %w", k, err)
		}
	}
}

func (f *Fetcher) readObjectOnce(ctx context.Context, batch *cas.Batch, k cas.Key, key string, compressed bool, wire *atomic.Int64) error {
	rc, err := f.Remote.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	stream := &streamErr{r: counted{rc, wire}}
	var r io.Reader = stream
	if compressed {
		dec, err := f.decoder()
		if err != nil {
			return err
		}
		defer f.putDecoder(dec)
		if err := dec.Reset(stream); err != nil {
			return err
		}
		r = tagged{io.LimitReader(dec, k.Size+1), stream}
	}
	_, err = batch.PutFetched(ctx, r, k)
	if stream.err != nil {
		return stream.err
	}
	return err
}
