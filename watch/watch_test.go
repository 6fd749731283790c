package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/internal/manifesttest"
	"github.com/vrift/vrift/manifest"
)

func TestMain(m *testing.M) {
	if runtime.GOOS != "linux" {
		fmt.Println("vrift watch needs inotify (Linux): nothing to test here")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// env is one project watched in direct mode.
type env struct {
	t         testing.TB
	store     string
	proj, dir string
	w         *Watcher
	cancel    func()
	done      chan error
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newEnv(t testing.TB) *env {
	base := t.TempDir()
	e := &env{t: t, store: filepath.Join(base, "store"), proj: filepath.Join(base, "p")}
	write(t, filepath.Join(e.proj, "package.json"), "{}")
	e.dir = filepath.Join(e.proj, "node_modules")
	write(t, filepath.Join(e.dir, "old/index.js"), "old")
	return e
}

func (e *env) start(hook func()) { e.startWith(Options{}, hook) }

func (e *env) startWith(opts Options, hook func()) {
	t := e.t
	s, err := engine.OpenDirect(e.store)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	opts.Dir, opts.Store, opts.Ready = e.dir, s, func() { close(ready) }
	opts.Warn = func(m string) { t.Log("warning:", m) }
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.beforeRead = hook
	ctx, cancel := context.WithCancel(context.Background())
	e.w, e.cancel, e.done = w, cancel, make(chan error, 1)
	go func() { e.done <- w.Run(ctx) }()
	select {
	case <-ready:
	case err := <-e.done:
		t.Fatalf("watcher stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("watcher not ready after 30 s")
	}
	t.Cleanup(func() { e.stop() })
}

func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	if err := <-e.done; err != nil {
		e.t.Errorf("watcher: %v", err)
	}
}

func (e *env) sync() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Sync(ctx, e.dir); err != nil {
		e.t.Fatal(err)
	}
}

// snapshot is the watched subtree's manifest entries.
func (e *env) snapshot() map[string]manifest.Entry {
	e.t.Helper()
	return manifesttest.Entries(e.t, e.proj, "node_modules")
}

// checkEqualsIngest: the manifest the watcher committed is what a full
// ingest records, and that ingest reads no file.
func (e *env) checkEqualsIngest() {
	t := e.t
	t.Helper()
	live := e.snapshot()
	s, err := engine.OpenDirect(e.store)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Ingest(context.Background(), engine.IngestOptions{Dir: e.dir, Tier: engine.Tier2})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReadFiles != 0 {
		t.Errorf("the ingest after sync read %d files (%d bytes), want none", res.ReadFiles, res.ReadBytes)
	}
	manifesttest.Same(t, "the watcher's manifest against an ingest's", e.snapshot(), live)
}

func (e *env) entry(key string) (manifest.Entry, bool) {
	en, ok := e.snapshot()[key]
	return en, ok
}

// TestWatchStoresClosedFiles: files written, renamed over, deleted and
// moved in and out are recorded as an ingest would record them.
func TestWatchStoresClosedFiles(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	if _, ok := e.entry("node_modules/old/index.js"); !ok {
		t.Fatal("the start-up scan did not record the tree")
	}
	outside := filepath.Join(filepath.Dir(e.proj), "outside")
	write(t, filepath.Join(outside, "moved/in/deep.js"), "deep")
	for i := range 50 {
		write(t, filepath.Join(e.dir, fmt.Sprintf("pkg%d/index.js", i%5), fmt.Sprintf("f%d.js", i)), fmt.Sprint(i))
	}
	// npm's way: a temp name renamed over the final one.
	write(t, filepath.Join(e.dir, "pkg0/.package.json.tmp"), `{"v":2}`)
	os.Rename(filepath.Join(e.dir, "pkg0/.package.json.tmp"), filepath.Join(e.dir, "pkg0/package.json"))
	os.Rename(filepath.Join(outside, "moved"), filepath.Join(e.dir, "moved"))
	os.Rename(filepath.Join(e.dir, "old"), filepath.Join(outside, "old"))
	os.Symlink("pkg1", filepath.Join(e.dir, "alias"))
	os.RemoveAll(filepath.Join(e.dir, "pkg4"))
	e.sync()
	snap := e.snapshot()
	for _, want := range []string{"node_modules/pkg0/package.json", "node_modules/moved/in/deep.js", "node_modules/alias", "node_modules/pkg3/index.js/f48.js"} {
		if _, ok := snap[want]; !ok {
			t.Errorf("%s not recorded", want)
		}
	}
	for p := range snap {
		if strings.Contains(p, ".tmp") || manifest.Within(p, "node_modules/old") || manifest.Within(p, "node_modules/pkg4") {
			t.Errorf("%s recorded, but gone", p)
		}
	}
	// A directory moved within the tree keeps its watch under its new name.
	os.Rename(filepath.Join(e.dir, "moved"), filepath.Join(e.dir, "renamed"))
	e.sync()
	write(t, filepath.Join(e.dir, "renamed/in/later.js"), "later")
	e.sync()
	if _, ok := e.entry("node_modules/renamed/in/later.js"); !ok {
		t.Error("a file written in a directory renamed within the tree was not recorded")
	}
	e.checkEqualsIngest()
}

// TestWatchIngestAfterQuiet: once a watched tree has been quiet past the
// racy window, the ingest after it commits nothing: the watcher recorded
// every entry as that ingest records it, directories included (one
// without symlinks carries no identity either way; one with symlinks was
// vouched for after the watcher's commit).
func TestWatchIngestAfterQuiet(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	write(t, filepath.Join(e.dir, "old/more.js"), "more") // an existing directory changes
	write(t, filepath.Join(e.dir, "new/index.js"), "new")
	// A directory with a symlink: vouched for after the watcher's commit.
	if err := os.Symlink("index.js", filepath.Join(e.dir, "new/main.js")); err != nil {
		t.Fatal(err)
	}
	e.sync()
	e.stop()
	time.Sleep(2100 * time.Millisecond) // engine's racyWindow, and a margin
	before := txnID(t, e.proj)
	e.checkEqualsIngest()
	if after := txnID(t, e.proj); after != before {
		t.Errorf("the ingest after a quiet watched tree committed (manifest transaction %d, then %d)", before, after)
	}
}

func txnID(t *testing.T, proj string) uint64 {
	t.Helper()
	m, err := manifest.Open(manifest.PathFor(proj))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var id uint64
	if err := m.View(func(r *manifest.Reader) error { id = r.TxnID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestWatchRewrites: a file rewritten 100 times within a second ends with
// its last content (a trailing debounce, never the first event).
func TestWatchRewrites(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	p := filepath.Join(e.dir, "hot.js")
	for i := range 100 {
		write(t, p, fmt.Sprintf("version %d", i))
		time.Sleep(8 * time.Millisecond)
	}
	e.sync()
	en, ok := e.entry("node_modules/hot.js")
	if !ok || en.Size != int64(len("version 99")) {
		t.Fatalf("rewritten file recorded as %+v", en)
	}
	e.checkEqualsIngest()
}

// TestWatchOpenWriter: a file still open for writing is not stored until
// its writer closes it.
func TestWatchOpenWriter(t *testing.T) {
	e := newEnv(t)
	e.start(nil)
	f, err := os.Create(filepath.Join(e.dir, "open.log"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("partial")
	f.Sync()
	time.Sleep(300 * time.Millisecond)
	e.sync()
	if en, ok := e.entry("node_modules/open.log"); ok {
		t.Fatalf("a file open for writing was recorded: %+v", en)
	}
	if st := e.w.Stats(); st.Busy != 1 {
		t.Errorf("stats while a writer holds the file: %+v", st)
	}
	f.WriteString(" and the rest")
	f.Close()
	e.sync()
	en, ok := e.entry("node_modules/open.log")
	if !ok || en.Size != int64(len("partial and the rest")) {
		t.Fatalf("closed file recorded as %+v (%v)", en, ok)
	}
	e.checkEqualsIngest()
}

// TestWatchOverflow: with the event reader held, more files are made than
// the kernel's queue holds; once released, the overflow is seen and
// answered by a rescan that loses no file.
func TestWatchOverflow(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	var held bool
	e.start(func() {
		if held {
			<-release
		}
	})
	max := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		fmt.Sscan(string(b), &max)
	}
	if max > 100000 {
		t.Skipf("fs.inotify.max_queued_events is %d: too many files to overflow it", max)
	}
	held = true
	// Let the reader block in the hook (it runs before each read).
	write(t, filepath.Join(e.dir, "wake.js"), "x")
	time.Sleep(200 * time.Millisecond)
	n := max/2 + 100 // each file makes at least CREATE and CLOSE_WRITE
	for i := range n {
		// Into a directory watched already: one made now would get its
		// watch only once the reader runs again.
		write(t, filepath.Join(e.dir, "old", fmt.Sprintf("f%d", i)), "x")
	}
	close(release)
	e.sync()
	if st := e.w.Stats(); st.Overflows == 0 {
		t.Errorf("no overflow seen after %d files with the reader held", n)
	}
	snap := e.snapshot()
	for i := range n {
		if _, ok := snap[fmt.Sprintf("node_modules/old/f%d", i)]; !ok {
			t.Fatalf("file %d lost to the overflow", i)
		}
	}
	e.checkEqualsIngest()
}

// TestWatchLockAndSync: a second watcher is refused naming the first's
// pid; sync without a watcher says so; status shows the holder.
func TestWatchLockAndSync(t *testing.T) {
	e := newEnv(t)
	if err := Sync(context.Background(), e.dir); !errors.Is(err, ErrNoWatcher) || !strings.Contains(err.Error(), "vrift watch") {
		t.Fatalf("sync without a watcher: %v", err)
	}
	if _, ok, _ := Status(e.dir); ok {
		t.Fatal("status: a watcher is said to run before any started")
	}
	e.start(nil)
	s, _ := engine.OpenDirect(e.store)
	_, err := New(Options{Dir: e.dir, Store: s})
	if !errors.Is(err, ErrWatched) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second watcher: %v", err)
	}
	st, ok, err := Status(e.dir)
	if err != nil || !ok || st.PID != os.Getpid() || st.Since.IsZero() {
		t.Fatalf("status: %+v %v %v", st, ok, err)
	}
	e.stop()
	if _, ok, _ := Status(e.dir); ok {
		t.Fatal("status: a watcher is said to run after it stopped")
	}
	if err := Sync(context.Background(), e.dir); !errors.Is(err, ErrNoWatcher) {
		t.Fatalf("sync after the watcher stopped: %v", err)
	}
}

// TestWatchMissingDir: a directory that is not there, or not a directory.
func TestWatchMissingDir(t *testing.T) {
	base := t.TempDir()
	s, _ := engine.OpenDirect(filepath.Join(base, "store"))
	if _, err := New(Options{Dir: filepath.Join(base, "nope"), Store: s}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing dir: %v", err)
	}
	write(t, filepath.Join(base, "file"), "x")
	if _, err := New(Options{Dir: filepath.Join(base, "file"), Store: s}); err == nil {
		t.Error("a file was accepted as the directory to watch")
	}
}

// BenchmarkCommitLag measures, on an idle watched tree, the time from a
// file's close to the commit that records it, one file per iteration
// (make bench: -benchtime 200x), and reports its median and 99th
// percentile.
func BenchmarkCommitLag(b *testing.B) {
	e := newEnv(b)
	e.start(nil)
	m, err := manifest.Open(manifest.PathFor(e.proj))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	lags := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		p := filepath.Join(e.dir, fmt.Sprintf("lag%d.js", i))
		write(b, p, fmt.Sprint(i))
		closed := time.Now()
		key := fmt.Sprintf("node_modules/lag%d.js", i)
		for {
			var ok bool
			m.View(func(r *manifest.Reader) error { _, ok, err = r.Get(key); return err })
			if ok {
				break
			}
			if time.Since(closed) > 10*time.Second {
				b.Fatalf("%s not committed after 10 s", key)
			}
			time.Sleep(2 * time.Millisecond)
		}
		lags = append(lags, time.Since(closed))
		b.StopTimer()
		time.Sleep(time.Duration(100+i%7*37) * time.Millisecond) // idle between files, off the tick's beat
		b.StartTimer()
	}
	slices.Sort(lags)
	n := len(lags)
	b.ReportMetric(float64(lags[n/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lags[n*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(lags[n-1].Milliseconds()), "max-ms")
}

// TestWatchProjectAfter: a tree quiet for ProjectAfter is projected in
// place (symlinks into the store), and the watcher looks at none of the
// events its projection makes; a user's change during it is still stored.
func TestWatchProjectAfter(t *testing.T) {
	e := newEnv(t)
	e.startWith(Options{ProjectAfter: 300 * time.Millisecond}, nil)
	for i := range 200 {
		write(t, filepath.Join(e.dir, fmt.Sprintf("p%d/f%d.js", i%10, i)), fmt.Sprint(i))
	}
	e.sync()
	before := e.w.Stats()
	deadline := time.Now().Add(30 * time.Second)
	for e.w.Stats().Projected < 201 { // and old/index.js
		if time.Now().After(deadline) {
			t.Fatalf("not projected after 30 s: %+v", e.w.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.sync()
	time.Sleep(200 * time.Millisecond)
	e.sync()
	after := e.w.Stats()
	if after.Paths != before.Paths {
		t.Errorf("the watcher looked at %d paths after its own projection (own events dropped: %d)", after.Paths-before.Paths, after.OwnDropped)
	}
	if after.OwnDropped == 0 {
		t.Error("no own event recognised")
	}
	if fi, err := os.Lstat(filepath.Join(e.dir, "p3/f13.js")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("not projected: %v %v", fi, err)
	}
	// The user's own change after it is seen as ever.
	write(t, filepath.Join(e.dir, "p3/late.js"), "late")
	e.sync()
	if _, ok := e.entry("node_modules/p3/late.js"); !ok {
		t.Error("a file written after the projection was not recorded")
	}
}

// TestStatusBeforeStateIsPublished: a lock held with no state yet, or with
// a dead watcher's state left behind (kill -9), reads as starting, never as
// a watcher whose start-up scan is done.
func TestStatusBeforeStateIsPublished(t *testing.T) {
	e := newEnv(t)
	_, root, _, _, err := engine.Target(e.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := TakeLock(root)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if st, ok, err := Status(e.dir); err != nil || !ok || !st.Starting {
		t.Fatalf("held, no state: %+v %v %v, want starting", st, ok, err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	l.WriteState(State{PID: dead.Process.Pid, Since: time.Now().UTC(), Dir: e.dir})
	if st, ok, err := Status(e.dir); err != nil || !ok || !st.Starting {
		t.Fatalf("held, a dead watcher's state: %+v %v %v, want starting", st, ok, err)
	}
	l.WriteState(State{PID: os.Getpid(), Since: time.Now().UTC(), Dir: e.dir})
	if st, ok, err := Status(e.dir); err != nil || !ok || st.Starting || st.PID != os.Getpid() {
		t.Fatalf("held, its own state: %+v %v %v", st, ok, err)
	}
}
