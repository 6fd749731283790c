package fs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
)

// prefetcher warms the blobs of a directory's files once one of them is
// opened through the view: it opens each (loading the store's fan-out
// directories and the blob's inode) and asks the kernel to read its
// content ahead, several at a time.
//
// Why: a program reading a tree from disk finds a directory's files
// together (one directory block, neighbouring inodes), but through the
// view each file is a blob in its own blake3/ab/cd directory, so a cold
// read of every file walked two cold directories and an inode per file,
// one at a time (the reader waits for each). This disk serves parallel
// reads far better than serial ones: the fixture's 22,293 blobs read cold
// took 19-25 s by one cat and 7.5-10 s by eight (load 6). Warming a
// directory's files at its first open turns the reader's serial misses
// into parallel ones. What a reader opens is what it is about to read
// (Node opens a package's package.json before its index.js; cat, tar and
// cp read every file), and the cost of a guess that is wrong is bounded:
// small files only, a few hundred per directory, each directory once.
//
// Reading further ahead did not pay: a window that followed the reader in
// the manifest's key order across directories (64 files from the opened
// file's directory on, doubling up to 1,024 while the reader stayed inside
// it, restarted at each jump) read the fixture's every file cold at
// 1.78-1.89x disk against this 1.73x, and made Node's require() of 15
// packages 1.42-1.46x disk against 1.27-1.31x (scripts/bench-fuse.sh, 4
// rounds each, alternated, quiet machine): the extra blobs it warmed cost
// this disk more than the reader's waits it saved.
type prefetcher struct {
	m         *manifest.Manifest
	storeRoot string
	dirs      chan string
	blobs     chan blobAhead

	mu   sync.Mutex
	seen map[string]struct{}

	// warmed counts blobs opened ahead (tests, and the figures above).
	warmed atomic.Int64
}

type blobAhead struct {
	path string
	size int64
}

const (
	// prefetchWorkers open blobs in parallel: eight were 2.5x faster
	// than one on the fixture's cold blobs (above).
	prefetchWorkers = 8
	// prefetchFiles and prefetchMaxSize bound a directory's warming:
	// larger files are read sequentially, where the kernel's own
	// readahead does the job.
	prefetchFiles   = 512
	prefetchMaxSize = 256 << 10
	// prefetchSeen bounds the directories remembered as warmed; past it
	// the set starts again (a directory may then be warmed twice).
	prefetchSeen = 1 << 16
)

// startPrefetch starts v's prefetcher; stop ends it and returns once it
// no longer reads the manifest.
func (v *View) startPrefetch() (stop func()) {
	p := &prefetcher{m: v.m, storeRoot: v.storeRoot, dirs: make(chan string, 64),
		blobs: make(chan blobAhead, 2*prefetchFiles), seen: make(map[string]struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.list(ctx) })
	for range prefetchWorkers {
		wg.Go(func() { p.warm(ctx) })
	}
	v.prefetch = p
	return func() { cancel(); wg.Wait() }
}

// opened tells the prefetcher that a file of directory dir was opened.
// It never waits: a directory offered while the queue is full is skipped.
func (p *prefetcher) opened(dir string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if _, ok := p.seen[dir]; ok {
		p.mu.Unlock()
		return
	}
	if len(p.seen) >= prefetchSeen {
		clear(p.seen)
	}
	p.seen[dir] = struct{}{}
	p.mu.Unlock()
	select {
	case p.dirs <- dir:
	default:
		p.forget(dir)
	}
}

func (p *prefetcher) forget(dir string) {
	p.mu.Lock()
	delete(p.seen, dir)
	p.mu.Unlock()
}

// reset forgets every directory warmed: after a re-ingest their files may
// be other blobs.
func (p *prefetcher) reset() {
	if p == nil {
		return
	}
	p.mu.Lock()
	clear(p.seen)
	p.mu.Unlock()
}

// list reads each offered directory's files from the manifest and queues
// their blobs.
func (p *prefetcher) list(ctx context.Context) {
	for {
		var dir string
		select {
		case <-ctx.Done():
			return
		case dir = <-p.dirs:
		}
		n := 0
		p.m.Children(dir, func(_ string, e manifest.Entry) error {
			if e.Kind != manifest.File || e.Size == 0 || e.Size > prefetchMaxSize {
				return nil
			}
			select {
			case p.blobs <- blobAhead{cas.BlobPath(p.storeRoot, e.Key()), e.Size}:
			case <-ctx.Done():
				return ctx.Err()
			}
			if n++; n == prefetchFiles {
				return errEnough
			}
			return nil
		})
	}
}

// errEnough ends a listing early.
var errEnough = errors.New("enough files queued")

// warm opens queued blobs and asks for their content ahead.
func (p *prefetcher) warm(ctx context.Context) {
	for {
		var b blobAhead
		select {
		case <-ctx.Done():
			return
		case b = <-p.blobs:
		}
		fd, err := unix.Open(b.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // missing or unreadable: the open itself will say
		}
		readAhead(fd, b.size)
		unix.Close(fd)
		p.warmed.Add(1)
	}
}
