// Package watch is live ingest (RFC-0043's third daemon job): a watcher
// that stores each file of a project as its writer closes it and records it
// in the project's manifest at once, so that the store never lags the tree
// and the ingest after `npm install` has nothing left to read.
//
// The watcher only decides what changed and when. Storing and recording go
// through engine.Store's Ingest, as a live refresh of the changed paths
// (engine/live.go): in direct mode into the user's store, in daemon mode by
// descriptors over the daemon's ingest.put, with every check of a normal
// ingest. Files are stored without touching them (tier2: a copy).
//
// Events come from inotify on Linux, one watch per directory, and from
// FSEvents on macOS, one recursive stream (fsevents.go). What a watcher
// cannot trust (a queue overflow, dropped events, a directory it could not
// watch) falls back to the incremental walk of the tree, never to silence.
package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/rpc"
)

// Options configure a watcher.
type Options struct {
	// Dir is the directory watched (a project or a subtree of one).
	Dir string
	// Store is where files go, in either mode.
	Store engine.Store
	// AllowOtherOwner, Warn: as for ingest.
	AllowOtherOwner bool
	Warn            func(string)
	// Quiet is how long a path must see no event before it is stored
	// (a trailing debounce: a file rewritten many times is stored once,
	// with its last content). CommitEvery is the least time between two
	// commits, unless MaxBatch paths are waiting.
	Quiet       time.Duration
	CommitEvery time.Duration
	MaxBatch    int
	// Progress, if set, receives the totals after every commit and every
	// second while anything waits.
	Progress func(Stats)
	// Ready, if set, runs once the watches are set and the start-up scan
	// is committed (systemd's READY=1).
	Ready func()
	// ProjectAfter, if set, projects the watched tree in place once it
	// has been quiet that long (project_after.go), by Method (symlinks
	// by default).
	ProjectAfter time.Duration
	Method       vfs.Method
}

// Stats are a watcher's running totals.
type Stats struct {
	// Queued is how many paths wait to be stored; Busy, how many of them
	// wait for another process to close them.
	Queued int `json:"queued"`
	Busy   int `json:"busy"`
	// Files and Bytes count what the watcher stored (read); Commits,
	// its manifest commits.
	Files   int64 `json:"files"`
	Bytes   int64 `json:"bytes"`
	Commits int64 `json:"commits"`
	// Paths counts the changed paths looked at (refreshed).
	Paths int64 `json:"paths"`
	// LagMS is the age of the oldest change not yet committed.
	LagMS int64 `json:"lag_ms"`
	// Overflows counts kernel queue overflows (FSEvents: dropped
	// events), each answered by a rescan.
	Overflows int64 `json:"overflows"`
	// Projected counts files the watcher projected (ProjectAfter), and
	// OwnDropped the events of its projections it recognised and dropped.
	Projected  int64 `json:"projected,omitempty"`
	OwnDropped int64 `json:"own_events_dropped,omitempty"`
	// Error is the last commit's error, if it failed.
	Error string `json:"error,omitempty"`
}

// source is the platform's event source.
type source interface {
	// AddTree watches the directory key and everything below it.
	AddTree(key string) error
	// Run reads events until Close.
	Run() error
	Close() error
}

// sink is what a source calls back on its Watcher: inotify's on Linux,
// FSEvents' translator on macOS (fsevents.go), a recorder in tests. The
// assertion keeps the calls one contract (and keeps other systems' builds
// from taking them for dead code).
type sink interface {
	abs(key string) string
	changed(key string)
	barrier(cookie string)
	overflowed()
	unwatched(key string, why error)
	holdOwn(key string, dir bool) bool
	ownEventsEnd(name string)
}

var _ sink = (*Watcher)(nil)

// Watcher watches one project directory.
type Watcher struct {
	opts    Options
	dir     string // absolute watched directory
	root    string // project root
	subtree string // key of dir
	t       *tree.Tree
	lock    *Lock

	mu       sync.Mutex
	wake     chan struct{}
	dirty    map[string]time.Time // key -> its last event
	busy     map[string]retry
	cookies  []string
	rescan   bool
	polled   map[string]bool // directories that could not be watched
	stats    Stats
	srcErr   error
	lastPoll time.Time
	// limitWarned: the watch limit is reported once, not per directory.
	limitWarned bool
	// lastEvent is the time of the latest change; storedSinceProjection
	// is set by a commit and cleared by a projection; own holds the
	// events of a projection in progress; storeRoot is where projections
	// point (project_after.go).
	lastEvent             time.Time
	failDelay             time.Duration
	retryAt               time.Time
	storedSinceProjection bool
	own                   ownEvents
	storeRoot             string

	// beforeRead, a test hook, runs before each read of the event queue.
	beforeRead func()
}

type retry struct {
	at    time.Time
	delay time.Duration
}

// Defaults: a file is stored 50 ms after its last event, and commits come
// at most every 250 ms or per 1,024 paths, so an idle tree's change is
// recorded within about 100 ms and a busy install commits four times a
// second, not per file.
const (
	DefaultQuiet       = 50 * time.Millisecond
	DefaultCommitEvery = 250 * time.Millisecond
	DefaultMaxBatch    = 1024
	// busyRetry is the first wait for a file another process holds open,
	// doubling up to busyRetryMax: its writer's close is evented, so
	// this only catches a holder that closes without writing.
	busyRetry    = 200 * time.Millisecond
	busyRetryMax = 5 * time.Second
	// pollEvery rescans the directories that could not be watched.
	pollEvery = 2 * time.Second
	// commitEvery splits a scan's manifest commit (engine's CommitEvery):
	// LMDB holds a transaction's dirty pages in memory until it commits.
	commitEvery = 4096
)

// New sets a watcher up: it resolves the project, takes the project's
// watcher lock (refused while another watcher holds it) and opens the
// event source. Run starts it.
func New(opts Options) (*Watcher, error) {
	if opts.Quiet <= 0 {
		opts.Quiet = DefaultQuiet
	}
	if opts.CommitEvery <= 0 {
		opts.CommitEvery = DefaultCommitEvery
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	dir, root, _, subtree, err := engine.Target(opts.Dir, "")
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", opts.Dir, err)
	}
	t, err := tree.Open(root)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", opts.Dir, err)
	}
	if err := t.CheckOwner(opts.AllowOtherOwner); err != nil {
		t.Close()
		return nil, fmt.Errorf("watch %s: %w", opts.Dir, err)
	}
	w := &Watcher{opts: opts, dir: dir, root: root, subtree: subtree, t: t,
		wake: make(chan struct{}, 1), dirty: map[string]time.Time{}, busy: map[string]retry{}, polled: map[string]bool{}}
	if w.lock, err = TakeLock(root); err != nil {
		t.Close()
		return nil, fmt.Errorf("watch %s: %w", opts.Dir, err)
	}
	return w, nil
}

// Root is the project root; Dir the watched directory.
func (w *Watcher) Root() string { return w.root }
func (w *Watcher) Dir() string  { return w.dir }

func (w *Watcher) abs(key string) string {
	if key == manifest.RootPath {
		return w.root
	}
	return filepath.Join(w.root, filepath.FromSlash(key))
}

// Run watches until ctx is done, then stores and commits what is queued
// and returns. A failure to set up (no watches to be had) is returned at
// once; a failing commit is reported and retried, not fatal.
func (w *Watcher) Run(ctx context.Context) (err error) {
	defer w.t.Close()
	defer w.lock.Release()
	src, err := newSource(w)
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.dir, err)
	}
	defer src.Close()
	// Cookies made before the cookie directory was watched (a syncer
	// that found the lock already taken) are answered like later ones.
	for _, c := range w.lock.cookies() {
		w.barrier(c)
	}
	if err := src.AddTree(w.subtree); err != nil {
		return fmt.Errorf("watch %s: %w", w.dir, err)
	}
	srcDone := make(chan struct{})
	go func() {
		defer close(srcDone)
		if err := src.Run(); err != nil {
			w.mu.Lock()
			w.srcErr = err
			w.mu.Unlock()
			w.poke()
		}
	}()
	defer func() {
		src.Close()
		<-srcDone
	}()
	w.lock.WriteState(State{PID: os.Getpid(), Since: time.Now().UTC(), Dir: w.dir, Mode: w.opts.Store.Mode(), Starting: true})

	// The start-up scan: the incremental walk catches up with whatever
	// changed while no watcher ran. Events during it are stored after.
	if _, err := w.store(ctx, nil); err != nil {
		return fmt.Errorf("watch %s: start-up scan: %w", w.dir, err)
	}
	since := time.Now().UTC()
	w.writeState(since)
	if w.opts.Ready != nil {
		w.opts.Ready()
	}

	tick := time.NewTicker(w.opts.Quiet / 2)
	defer tick.Stop()
	lastCommit := time.Time{}
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			// Drain: everything seen so far, quiet or not.
			w.round(context.WithoutCancel(ctx), true)
			w.report()
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.srcErr != nil {
				return fmt.Errorf("watch %s: %w", w.dir, w.srcErr)
			}
			return nil
		case <-tick.C:
		case <-w.wake:
		}
		w.mu.Lock()
		srcErr := w.srcErr
		w.mu.Unlock()
		if srcErr != nil {
			if !errors.Is(srcErr, rpc.ErrHungUp) {
				w.round(context.WithoutCancel(ctx), true)
			}
			return fmt.Errorf("watch %s: %w", w.dir, srcErr)
		}
		if time.Since(w.lastPoll) > pollEvery {
			w.poll(src)
		}
		if w.pending(lastCommit) {
			if w.round(ctx, false) {
				lastCommit = time.Now()
			}
			w.report()
			w.writeState(since)
			lastReport = time.Now()
		} else if err := w.projectQuiet(ctx); err != nil {
			w.opts.Warn(err.Error())
			w.mu.Lock()
			w.stats.Error = err.Error()
			w.mu.Unlock()
			w.report()
			w.writeState(since)
			lastReport = time.Now()
		} else if time.Since(lastReport) > time.Second {
			w.report()
			w.writeState(since)
			lastReport = time.Now()
		}
	}
}

// changed records an event for key (from the source's goroutine).
func (w *Watcher) changed(key string) {
	w.mu.Lock()
	w.dirty[key] = time.Now()
	w.lastEvent = w.dirty[key]
	n := len(w.dirty)
	w.mu.Unlock()
	if n >= w.opts.MaxBatch {
		w.poke()
	}
}

// barrier records a sync cookie: everything evented before it is stored
// and committed before it is answered.
func (w *Watcher) barrier(name string) {
	w.mu.Lock()
	w.cookies = append(w.cookies, name)
	w.mu.Unlock()
	w.poke()
}

// overflowed answers lost events (inotify's queue overflow, FSEvents'
// UserDropped/KernelDropped) with a rescan of the whole watched tree (the
// incremental walk: stat speed for unchanged files).
func (w *Watcher) overflowed() {
	w.mu.Lock()
	w.rescan = true
	w.stats.Overflows++
	w.mu.Unlock()
	w.opts.Warn("events were lost (the kernel's event queue overflowed, or FSEvents dropped some): rescanning " + w.dir)
	w.poke()
}

// unwatched records a directory that could not be watched (no watches
// left, or not readable yet): it is rescanned every pollEvery instead,
// and watched once it can be.
func (w *Watcher) unwatched(key string, why error) {
	w.mu.Lock()
	w.polled[key] = true
	w.dirty[key] = time.Now()
	warn := !w.limitWarned || !errors.Is(why, errWatchLimit)
	if errors.Is(why, errWatchLimit) {
		w.limitWarned = true
	}
	w.mu.Unlock()
	if warn {
		w.opts.Warn(fmt.Sprintf("%v; rescanning %s every %s until it can be watched", why, w.abs(key), pollEvery))
	}
}

func (w *Watcher) poll(src source) {
	w.lastPoll = time.Now()
	w.mu.Lock()
	keys := make([]string, 0, len(w.polled))
	for k := range w.polled {
		keys = append(keys, k)
	}
	w.polled = map[string]bool{}
	w.mu.Unlock()
	for _, k := range keys {
		if err := src.AddTree(k); err != nil {
			w.mu.Lock()
			w.polled[k] = true // warned already
			w.mu.Unlock()
		}
		w.changed(k)
	}
}

func (w *Watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pending reports whether a round should run now.
func (w *Watcher) pending(lastCommit time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cookies) > 0 || w.rescan {
		return true
	}
	if len(w.dirty)+len(w.busy) == 0 {
		return false
	}
	if time.Now().Before(w.retryAt) {
		return false // the store refused the last commit: not every tick
	}
	return time.Since(lastCommit) >= w.opts.CommitEvery || len(w.dirty) >= w.opts.MaxBatch
}

// round stores and commits the paths that are ripe (all of them when
// all is set, or a sync cookie waits) and answers the cookies taken with
// them. It reports whether it committed.
func (w *Watcher) round(ctx context.Context, all bool) bool {
	now := time.Now()
	w.mu.Lock()
	cookies := w.cookies
	w.cookies = nil
	all = all || len(cookies) > 0
	var paths []string
	if w.rescan {
		w.rescan = false
		paths = []string{w.subtree}
		w.dirty = map[string]time.Time{}
		// A sync cookie made while the queue was full was lost with the
		// other events: the cookie directory says which wait.
		cookies = append(cookies, w.lock.cookies()...)
		all = true
	}
	for k, at := range w.dirty {
		if all || now.Sub(at) >= w.opts.Quiet {
			paths = append(paths, k)
			delete(w.dirty, k)
		}
	}
	for k, r := range w.busy {
		if all || !now.Before(r.at) {
			paths = append(paths, k)
		}
	}
	w.mu.Unlock()
	if len(paths) == 0 {
		w.answer(cookies, nil)
		return false
	}
	res, err := w.storeSplit(ctx, paths)
	if errors.Is(err, rpc.ErrHungUp) {
		// Every commit so far named only blobs the daemon had made
		// durable; what is queued is still in the tree, and the next
		// watcher's start-up scan stores it.
		w.mu.Lock()
		w.srcErr = fmt.Errorf("%w; restart vrift watch: its start-up scan stores what is left", err)
		w.mu.Unlock()
		w.answer(cookies, err)
		return false
	}
	if err != nil {
		// Nothing was recorded: the paths wait for the next round.
		w.mu.Lock()
		for _, k := range paths {
			if _, ok := w.dirty[k]; !ok {
				w.dirty[k] = now
			}
		}
		w.stats.Error = err.Error()
		// A full store or a quota stays so for a while: retried after
		// 1 s, doubling up to a minute, and reported each time.
		w.failDelay = min(max(2*w.failDelay, time.Second), time.Minute)
		w.retryAt = time.Now().Add(w.failDelay)
		w.mu.Unlock()
		w.opts.Warn(fmt.Sprintf("%v (nothing recorded; retrying in %s)", err, w.failDelay))
		w.answer(cookies, err)
		return false
	}
	w.mu.Lock()
	w.stats.Error = ""
	w.failDelay, w.retryAt = 0, time.Time{}
	busyNow := map[string]bool{}
	for _, k := range res.Busy {
		busyNow[k] = true
		r, ok := w.busy[k]
		if !ok {
			r.delay = busyRetry
		} else {
			r.delay = min(2*r.delay, busyRetryMax)
		}
		r.at = time.Now().Add(r.delay)
		w.busy[k] = r
	}
	for _, k := range paths {
		if !busyNow[k] {
			delete(w.busy, k)
		}
	}
	w.mu.Unlock()
	w.answer(cookies, nil)
	return true
}

// storeSplit stores paths; when that fails for another reason than the
// store itself (which fails every path alike), it stores each half on its
// own, so that one path that cannot be read (a directory made unreadable)
// holds back only itself: it is reported and retried with the busy ones.
func (w *Watcher) storeSplit(ctx context.Context, paths []string) (*engine.IngestResult, error) {
	res, err := w.store(ctx, paths)
	if err == nil || !splittable(err) {
		return res, err
	}
	if len(paths) == 1 {
		// One path that cannot be read now: set aside and retried with
		// the busy ones, not a failed commit.
		w.opts.Warn(err.Error())
		return &engine.IngestResult{Busy: paths}, nil
	}
	half := len(paths) / 2
	a, err := w.storeSplit(ctx, paths[:half])
	if err != nil {
		return nil, err
	}
	b, err := w.storeSplit(ctx, paths[half:])
	if err != nil {
		return nil, err
	}
	a.Busy = append(a.Busy, b.Busy...)
	return a, nil
}

// splittable reports whether err may be one path's own (unreadable,
// gone mid-read) rather than the store's (full, over quota, hung up).
func splittable(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EIO) ||
		errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENAMETOOLONG)
}

// store runs one live refresh (nil paths: the whole watched tree).
func (w *Watcher) store(ctx context.Context, paths []string) (*engine.IngestResult, error) {
	if paths != nil && slices.Contains(paths, w.subtree) {
		paths = []string{w.subtree} // a rescan covers the rest
	}
	opts := engine.IngestOptions{Dir: w.dir, Tier: engine.Tier2, Mode: engine.Solid, Paths: paths, SkipBusy: true,
		AllowOtherOwner: w.opts.AllowOtherOwner, Warn: w.opts.Warn, CommitEvery: commitEvery}
	res, err := w.opts.Store.Ingest(ctx, opts)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.stats.Files += res.ReadFiles
	w.stats.Bytes += res.ReadBytes
	w.stats.Commits++
	w.stats.Paths += int64(len(paths))
	w.storedSinceProjection = w.storedSinceProjection || res.ReadFiles > 0
	w.storeRoot = res.Store
	if paths == nil {
		for _, k := range res.Busy {
			w.busy[k] = retry{at: time.Now().Add(busyRetry), delay: busyRetry}
		}
	}
	w.mu.Unlock()
	return res, nil
}

// answer acknowledges sync cookies: the syncer waits for its cookie to go,
// and finds the error beside it if the commit failed.
func (w *Watcher) answer(cookies []string, err error) {
	for _, c := range cookies {
		if err != nil {
			writeAt(w.lock.dirFD, c+errSuffix, []byte(err.Error()))
		}
		unix.Unlinkat(w.lock.dirFD, c, 0)
	}
}

// Stats returns the running totals.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Queued = len(w.dirty) + len(w.busy)
	s.Busy = len(w.busy)
	var oldest time.Time
	for _, at := range w.dirty {
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	if !oldest.IsZero() {
		s.LagMS = time.Since(oldest).Milliseconds()
	}
	return s
}

func (w *Watcher) report() {
	if w.opts.Progress != nil {
		w.opts.Progress(w.Stats())
	}
}

func (w *Watcher) writeState(since time.Time) {
	s := w.Stats()
	w.lock.WriteState(State{PID: os.Getpid(), Since: since, Dir: w.dir, Mode: w.opts.Store.Mode(),
		Backlog: s.Queued, Busy: s.Busy, Files: s.Files, Bytes: s.Bytes, Error: s.Error})
}
