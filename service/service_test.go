package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/roots"
	"github.com/vrift/vrift/rpc"
)

// These tests serve the real service over real unix sockets with the real
// rpc package. The caller's identity is injected (asPeer) instead of coming
// from SO_PEERCRED, so they need no root; the root e2e tests in cmd/vrift
// run the same policies with real users.

const (
	aliceUID = 100001
	bobUID   = 100002
)

type harness struct {
	t     testing.TB
	dir   string
	svc   *Service
	socks atomic.Int32
}

// asPeer serves the service as if every call came from peer.
type asPeer struct {
	svc  *Service
	peer rpc.Peer
}

func (a asPeer) Handle(ctx context.Context, c *rpc.Call) (any, error) {
	c.Peer = a.peer
	return a.svc.Handle(ctx, c)
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	dir := t.TempDir()
	// Files the daemon must reach by path live under dir: make it
	// traversable like a world-reachable tree.
	os.Chmod(dir, 0o755)
	cfg.Store, cfg.State = filepath.Join(dir, "store"), filepath.Join(dir, "state")
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return &harness{t: t, dir: dir, svc: svc}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// client connects as uid (the daemon's own uid is an admin).
func (h *harness) client(uid uint32) *rpc.Client {
	t := h.t
	t.Helper()
	sock := filepath.Join(h.dir, fmt.Sprintf("s%d.sock", h.socks.Add(1)))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &rpc.Server{Handler: asPeer{h.svc, rpc.Peer{UID: uid, GID: uid, PID: 1}}, Log: slog.New(slog.DiscardHandler),
		ShutdownTimeout: time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	c, err := rpc.Dial(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); cancel(); <-done })
	return c
}

func (h *harness) self() uint32 { return uint32(os.Getuid()) }

// file writes content to a 0644 file under the harness dir.
func (h *harness) file(name, content string) string {
	h.t.Helper()
	p := filepath.Join(h.dir, "files", name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// sparse makes a 0644 file of size bytes, all hole.
func (h *harness) sparse(name string, size int64) string {
	h.t.Helper()
	p := filepath.Join(h.dir, "files", name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		h.t.Skipf("cannot make a %d-byte sparse file here: %v", size, err)
	}
	return p
}

func begin(t *testing.T, c *rpc.Client) string {
	t.Helper()
	var br rpc.BeginResult
	if err := c.Call(context.Background(), rpc.MethodIngestBegin, rpc.BeginParams{Path: "/proj"}, &br); err != nil {
		t.Fatal(err)
	}
	return br.Session
}

func put(ctx context.Context, c *rpc.Client, session string, paths ...string) ([]rpc.PutResult, error) {
	var files []*os.File
	params := rpc.PutParams{Session: session}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		files = append(files, f)
		params.Files = append(params.Files, rpc.PutFile{Name: p})
	}
	var res rpc.PutResults
	err := c.CallWithFiles(ctx, rpc.MethodIngestPut, params, files, &res)
	return res.Results, err
}

func mustPut(t *testing.T, c *rpc.Client, session string, paths ...string) []rpc.PutResult {
	t.Helper()
	res, err := put(context.Background(), c, session, paths...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Error != "" {
			t.Fatalf("put %s: %s", paths[i], r.Error)
		}
	}
	return res
}

// writeManifest creates an LMDB manifest with one file entry per content.
func writeManifest(t testing.TB, path string, sizes map[string]int64, contents ...string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	m, err := manifest.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Update(func(w *manifest.Writer) error {
		if err := w.Put(manifest.RootPath, manifest.Entry{Kind: manifest.Dir, Mode: 0o755}); err != nil {
			return err
		}
		for i, c := range contents {
			k := keyOf(c)
			if err := w.Put(fmt.Sprintf("f%05d", i), manifest.Entry{Kind: manifest.File, Mode: 0o644, Size: k.Size, Sum: k.Sum}); err != nil {
				return err
			}
		}
		for name, size := range sizes {
			if err := w.Put(name, manifest.Entry{Kind: manifest.File, Mode: 0o644, Size: size}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	os.Remove(path + "-lock")
	os.Chmod(path, 0o644)
}

func keyOf(content string) cas.Key {
	h := cas.NewHasher()
	h.Write([]byte(content))
	k := cas.Key{Size: int64(len(content))}
	h.Sum(k.Sum[:0])
	return k
}

func link(c *rpc.Client, manifestPath, session string) (rpc.LinkResult, error) {
	f, err := os.Open(manifestPath)
	if err != nil {
		return rpc.LinkResult{}, err
	}
	defer f.Close()
	var res rpc.LinkResult
	err = c.CallWithFiles(context.Background(), rpc.MethodLink, rpc.LinkParams{ManifestPath: manifestPath, Session: session},
		[]*os.File{f}, &res)
	return res, err
}

func temps(t *testing.T, h *harness) int {
	t.Helper()
	e, err := os.ReadDir(filepath.Join(h.dir, "store", "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// bounded runs f and fails if it takes longer than d.
func bounded(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v: it is stuck behind another user's put", what, d)
	}
}

func code(err error) int64 { return rpc.CodeOf(err) }

// TestPutDoesNotStallOthers (H5): while alice's put reads a huge sparse
// file, bob's gc, ingest and link finish in bounded time, and alice's
// hang-up stops her read and removes its temp file.
func TestPutDoesNotStallOthers(t *testing.T) {
	h := newHarness(t, Config{})
	big := h.sparse("huge.bin", 1<<40)
	alice, bob := h.client(aliceUID), h.client(bobUID)
	sess := begin(t, alice)
	putDone := make(chan error, 1)
	go func() { _, err := put(context.Background(), alice, sess, big); putDone <- err }()
	if !waitFor(10*time.Second, func() bool { return temps(t, h) > 0 }) {
		t.Fatal("alice's put never started writing")
	}

	bounded(t, "bob's gc", 10*time.Second, func() error {
		return bob.Call(context.Background(), rpc.MethodGC, rpc.GCParams{Grace: time.Hour}, &rpc.GCResult{})
	})
	small := h.file("bob/a.txt", "bob's file")
	mpath := filepath.Join(h.dir, "bob", "proj", ".vrift", "manifest.lmdb")
	writeManifest(t, mpath, nil, "bob's file")
	bounded(t, "bob's ingest and link", 10*time.Second, func() error {
		bs := begin(t, bob)
		if _, err := put(context.Background(), bob, bs, small); err != nil {
			return err
		}
		res, err := link(bob, mpath, bs)
		if err == nil && len(res.Missing) != 0 {
			err = fmt.Errorf("missing %v", res.Missing)
		}
		return err
	})
	select {
	case err := <-putDone:
		t.Fatalf("alice's put of 1 TiB ended early: %v", err)
	default:
	}
}

// TestHangUpStopsPut (H5): a caller that hangs up mid-put stops the
// daemon's read of its descriptor and leaves no temp file. It needs the rpc
// server to cancel a call's context when its connection closes (branch
// sec-rpc): jsonrpc2 runs a connection's handler on its read loop, so
// without that nothing notices the hang-up until the call returns.
func TestHangUpStopsPut(t *testing.T) {
	h := newHarness(t, Config{})
	big := h.sparse("huge.bin", 1<<40)
	alice := h.client(aliceUID)
	sess := begin(t, alice)
	go put(context.Background(), alice, sess, big)
	if !waitFor(10*time.Second, func() bool { return temps(t, h) > 0 }) {
		t.Fatal("alice's put never started writing")
	}
	alice.Close()
	if !waitFor(10*time.Second, func() bool { return temps(t, h) == 0 }) {
		t.Fatal("alice hung up, but the daemon still reads her file (its temp file stays)")
	}
}

// TestPutBudget (H5): a file larger than the session's byte budget is
// refused before it is read, sparse or not.
func TestPutBudget(t *testing.T) {
	h := newHarness(t, Config{MaxSessionBytes: 1 << 30})
	monster := h.sparse("monster.bin", 8<<40)
	alice := h.client(aliceUID)
	sess := begin(t, alice)
	var res []rpc.PutResult
	bounded(t, "put of an 8 TiB sparse file", 5*time.Second, func() error {
		var err error
		res, err = put(context.Background(), alice, sess, monster)
		return err
	})
	if len(res) != 1 || !strings.Contains(res[0].Error, "budget") {
		t.Fatalf("8 TiB sparse file not refused by the budget: %+v", res)
	}
	// Within the budget is fine; the budget is the session's, not the file's.
	half := h.sparse("half.bin", 600<<20)
	mustPut(t, alice, sess, half)
	res, _ = put(context.Background(), alice, sess, h.sparse("half2.bin", 600<<20))
	if len(res) != 1 || !strings.Contains(res[0].Error, "budget") {
		t.Fatalf("second 600 MiB file in a 1 GiB session not refused: %+v", res)
	}
}

// TestPutRacingSessionEnd (Low): a put from another connection into a
// session that ends mid-read leaves no temp file behind.
func TestPutRacingSessionEnd(t *testing.T) {
	h := newHarness(t, Config{})
	big := h.sparse("big.bin", 64<<30)
	owner, other := h.client(aliceUID), h.client(aliceUID)
	sess := begin(t, owner)
	putDone := make(chan error, 1)
	go func() { _, err := put(context.Background(), other, sess, big); putDone <- err }()
	if !waitFor(10*time.Second, func() bool { return temps(t, h) > 0 }) {
		t.Fatal("the put never started writing")
	}
	owner.Close() // ends the session
	select {
	case <-putDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the put into an ended session went on reading")
	}
	time.Sleep(100 * time.Millisecond)
	if n := temps(t, h); n != 0 {
		t.Fatalf("%d temp files leaked by a put racing its session's end", n)
	}
}

// TestNewIsTheCallersView (M1): put answers `new` from the caller's own
// view, so they do not reveal what other users stored.
func TestNewIsTheCallersView(t *testing.T) {
	h := newHarness(t, Config{})
	alice, bob := h.client(aliceUID), h.client(bobUID)
	shared := h.file("x.txt", "content both users have")
	as := begin(t, alice)
	a := mustPut(t, alice, as, shared)
	if err := alice.Call(context.Background(), rpc.MethodIngestFlush, rpc.SessionParams{Session: as}, nil); err != nil {
		t.Fatal(err)
	}
	bs := begin(t, bob)
	b := mustPut(t, bob, bs, shared)
	if !a[0].New || !b[0].New {
		t.Fatalf("bob learnt alice stored his content first: alice %+v, bob %+v", a[0], b[0])
	}
	if again := mustPut(t, bob, bs, shared); again[0].New {
		t.Errorf("bob's second put of the same content in one session says new")
	}
	if a[0].Blob != b[0].Blob {
		t.Errorf("no dedup: %s vs %s", a[0].Blob, b[0].Blob)
	}
	if err := bob.Call(context.Background(), rpc.MethodIngestFlush, rpc.SessionParams{Session: bs}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "store", keyOf("content both users have").RelPath())); err != nil {
		t.Fatal(err)
	}
}

// TestUnreachableIsPrivate (M1): a world-readable file the daemon cannot
// reach by the path the client names (or another inode at that path, or a
// symlink) stays private.
func TestUnreachableIsPrivate(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.client(aliceUID)
	sess := begin(t, alice)
	real := h.file("real.txt", "reachable")
	other := h.file("other.txt", "another inode")
	link := filepath.Join(h.dir, "files", "link.txt")
	os.Symlink(real, link)
	f, _ := os.Open(real)
	defer f.Close()
	for _, tc := range []struct {
		name    string
		private bool
	}{{real, false}, {other, true}, {link, true}, {"relative.txt", true}, {filepath.Join(h.dir, "nope"), true}} {
		var res rpc.PutResults
		err := alice.CallWithFiles(context.Background(), rpc.MethodIngestPut,
			rpc.PutParams{Session: sess, Files: []rpc.PutFile{{Name: tc.name}}}, []*os.File{f}, &res)
		if err != nil {
			t.Fatal(err)
		}
		if res.Results[0].Private != tc.private {
			t.Errorf("descriptor of %s named %s: private %v, want %v", real, tc.name, res.Results[0].Private, tc.private)
		}
	}
}

// TestScopeOfStatusVerify (M1, M2): only root and vrift get the store-wide
// counters and the store-wide verify.
func TestScopeOfStatusVerify(t *testing.T) {
	h := newHarness(t, Config{})
	alice, bob, admin := h.client(aliceUID), h.client(bobUID), h.client(h.self())
	mpath := filepath.Join(h.dir, "alice", "m.lmdb")
	writeManifest(t, mpath, nil, "b")
	s2 := begin(t, alice)
	mustPut(t, alice, s2, h.file("b.txt", "b"))
	if _, err := link(alice, mpath, s2); err != nil {
		t.Fatal(err)
	}
	begin(t, bob)
	var st rpc.StatusResult
	if err := admin.Call(context.Background(), rpc.MethodStatus, nil, &st); err != nil || st.Blobs != 1 || st.Sessions != 1 {
		t.Errorf("admin status: %+v %v", st, err)
	}
	var vr rpc.VerifyResult
	if err := admin.Call(context.Background(), rpc.MethodVerify, nil, &vr); err != nil || vr.Blobs != 1 {
		t.Errorf("admin verify: %+v %v", vr, err)
	}
	if err := alice.Call(context.Background(), rpc.MethodStatus, nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blobs != 0 || st.Bytes != 0 || st.DiskBytes != 0 || st.Sessions != 0 || len(st.Roots) != 1 {
		t.Errorf("a user's status shows store-wide figures or others' sessions: %+v", st)
	}
	vr = rpc.VerifyResult{}
	if err := alice.Call(context.Background(), rpc.MethodVerify, nil, &vr); err != nil || vr.Blobs != 0 || vr.Roots != 1 {
		t.Errorf("a user's verify re-hashed the store (or skipped their root): %+v %v", vr, err)
	}
}

// TestGCPolicy (H5, Low): users sweep with at least the minimum grace, one
// gc runs at a time, and --drop-stale is for admins.
func TestGCPolicy(t *testing.T) {
	h := newHarness(t, Config{})
	bob, admin := h.client(bobUID), h.client(h.self())
	ctx := context.Background()
	if err := bob.Call(ctx, rpc.MethodGC, rpc.GCParams{Grace: 0}, &rpc.GCResult{}); code(err) != rpc.CodePermission {
		t.Errorf("bob's gc with no grace: %v", err)
	}
	if err := bob.Call(ctx, rpc.MethodGC, rpc.GCParams{Grace: time.Hour, DropStale: true}, &rpc.GCResult{}); code(err) != rpc.CodePermission {
		t.Errorf("bob's gc --drop-stale: %v", err)
	}
	if err := bob.Call(ctx, rpc.MethodGC, rpc.GCParams{Grace: time.Hour}, &rpc.GCResult{}); err != nil {
		t.Errorf("bob's gc with 1h grace: %v", err)
	}
	if err := admin.Call(ctx, rpc.MethodGC, rpc.GCParams{Grace: 0}, &rpc.GCResult{}); err != nil {
		t.Errorf("admin gc with no grace: %v", err)
	}
	h.svc.sw.running.Lock()
	err := bob.Call(ctx, rpc.MethodGC, rpc.GCParams{Grace: time.Hour}, &rpc.GCResult{})
	h.svc.sw.running.Unlock()
	if code(err) != rpc.CodeBusy {
		t.Errorf("gc while another runs: %v", err)
	}
}

// TestDropStale (Low): an admin's gc --drop-stale drops roots whose pinned
// copy the daemon can no longer read, and only those.
func TestDropStale(t *testing.T) {
	h := newHarness(t, Config{})
	alice, admin := h.client(aliceUID), h.client(h.self())
	good, bad := filepath.Join(h.dir, "a", "good.lmdb"), filepath.Join(h.dir, "a", "bad.lmdb")
	writeManifest(t, good, nil)
	writeManifest(t, bad, nil)
	for _, m := range []string{good, bad} {
		if _, err := link(alice, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	copyOf := filepath.Join(h.dir, "state", "roots", fmt.Sprint(aliceUID), roots.ID(bad)+".lmdb")
	if err := os.Truncate(copyOf, 100); err != nil {
		t.Fatal(err)
	}
	var res rpc.GCResult
	if err := admin.Call(context.Background(), rpc.MethodGC, rpc.GCParams{Grace: time.Hour, DropStale: true}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.DroppedRoots) != 1 || !strings.Contains(res.DroppedRoots[0], bad) || res.Roots != 1 {
		t.Fatalf("drop-stale: %+v", res)
	}
}

// TestUnreadableRootRecord: a root record the daemon cannot read is left
// out of status and usage (and a restart), stops every sweep (it may name
// any manifest, so its copy may hold any blob), and an admin's
// --drop-stale drops it with its copy.
func TestUnreadableRootRecord(t *testing.T) {
	h := newHarness(t, Config{})
	alice := h.client(aliceUID)
	ctx := context.Background()
	good := filepath.Join(h.dir, "a", "good.lmdb")
	writeManifest(t, good, nil, "kept")
	if _, err := link(alice, good, ""); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.dir, "state", "roots", fmt.Sprint(aliceUID))
	torn := roots.ID("/home/alice/torn/.vrift/manifest.lmdb")
	if err := os.WriteFile(filepath.Join(dir, torn+".json"), []byte(`{"uid":`), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, torn+".lmdb"), []byte("a copy"), 0o600)
	var st rpc.StatusResult
	if err := alice.Call(ctx, rpc.MethodStatus, nil, &st); err != nil || len(st.Roots) != 1 {
		t.Fatalf("status with an unreadable record: %+v, %v", st, err)
	}
	// A restart reads the accounting's roots past it.
	cfg := h.svc.cfg
	h.svc.Close()
	var err error
	var admin *rpc.Client
	if h.svc, err = New(cfg); err != nil {
		t.Fatalf("restart with an unreadable record: %v", err)
	}
	defer h.svc.Close()
	admin = h.client(h.self())
	if err := admin.Call(ctx, rpc.MethodGC, rpc.GCParams{Grace: 0}, &rpc.GCResult{}); err == nil || !strings.Contains(err.Error(), "unreadable root record") {
		t.Fatalf("gc with an unreadable record: %v", err)
	}
	var res rpc.GCResult
	if err := admin.Call(ctx, rpc.MethodGC, rpc.GCParams{Grace: 0, DropStale: true}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.DroppedRoots) != 1 || !strings.Contains(res.DroppedRoots[0], torn) || res.Roots != 1 {
		t.Fatalf("drop-stale of an unreadable record: %+v", res)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, torn+"*")); len(left) != 0 {
		t.Errorf("left of the dropped record: %v", left)
	}
}

// TestBounds (M2): sessions and roots per user, path length, manifest size
// and sparseness, size overflow, and audit-log rotation are bounded.
func TestBounds(t *testing.T) {
	h := newHarness(t, Config{MaxSessionsPerUser: 2, MaxRootsPerUser: 2, MaxManifest: 8 << 20,
		AuditMaxBytes: 2048, AuditKeep: 2})
	ctx := context.Background()
	alice, bob := h.client(aliceUID), h.client(bobUID)

	t.Run("sessions", func(t *testing.T) {
		begin(t, alice)
		begin(t, alice)
		if err := alice.Call(ctx, rpc.MethodIngestBegin, rpc.BeginParams{Path: "/p"}, &rpc.BeginResult{}); code(err) != rpc.CodeQuota {
			t.Errorf("third session: %v", err)
		}
		begin(t, bob) // others are not affected
	})
	t.Run("path", func(t *testing.T) {
		long := "/" + strings.Repeat("a", MaxPathLen)
		if err := bob.Call(ctx, rpc.MethodIngestBegin, rpc.BeginParams{Path: long}, &rpc.BeginResult{}); code(err) != rpc.CodeInvalidParams {
			t.Errorf("begin with a %d-byte path: %v", len(long), err)
		}
	})
	t.Run("roots", func(t *testing.T) {
		for i := range 3 {
			m := filepath.Join(h.dir, "bob", fmt.Sprintf("m%d.lmdb", i))
			writeManifest(t, m, nil)
			_, err := link(bob, m, "")
			if i < 2 && err != nil {
				t.Fatal(err)
			}
			if i == 2 && code(err) != rpc.CodeQuota {
				t.Errorf("third root: %v", err)
			}
		}
		// Re-pinning an existing root is not a new one.
		if _, err := link(bob, filepath.Join(h.dir, "bob", "m0.lmdb"), ""); err != nil {
			t.Errorf("re-pin: %v", err)
		}
	})
	t.Run("manifest size and sparseness", func(t *testing.T) {
		m := filepath.Join(h.dir, "carol", "m.lmdb")
		writeManifest(t, m, nil, "x")
		os.Truncate(m, 6<<20) // a sparse tail of zeros
		carol := h.client(100003)
		if _, err := link(carol, m, ""); err != nil {
			t.Fatal(err)
		}
		var st syscallStat
		if err := statBlocks(filepath.Join(h.dir, "state", "roots", "100003", roots.ID(m)+".lmdb"), &st); err != nil {
			t.Fatal(err)
		}
		if st.size != 6<<20 || st.blocks*512 > 1<<20 {
			t.Errorf("pinned copy of a 6 MiB sparse manifest: size %d, %d bytes on disk", st.size, st.blocks*512)
		}
		os.Truncate(m, 9<<20)
		if _, err := link(carol, m, ""); code(err) != rpc.CodeQuota {
			t.Errorf("9 MiB manifest with an 8 MiB cap: %v", err)
		}
	})
	t.Run("size overflow", func(t *testing.T) {
		m := filepath.Join(h.dir, "dave", "m.lmdb")
		writeManifest(t, m, map[string]int64{"a": 1 << 62, "b": 1 << 62, "c": 1 << 62})
		_, err := link(h.client(100004), m, "")
		if code(err) != rpc.CodeInvalidParams || !strings.Contains(err.Error(), "overflow") {
			t.Errorf("manifest whose sizes overflow: %v", err)
		}
	})
	t.Run("audit rotation", func(t *testing.T) {
		for i := range 40 {
			c := h.client(uint32(100010 + i))
			var br rpc.BeginResult
			// Control characters in a client-claimed path are neutralised.
			if err := c.Call(ctx, rpc.MethodIngestBegin, rpc.BeginParams{Path: "/p\n{\"uid\":0}\x1b[2J"}, &br); err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		state := filepath.Join(h.dir, "state")
		waitFor(5*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(state, "audit.log.2"))
			b, _ := os.ReadFile(filepath.Join(state, "audit.log"))
			return err == nil && strings.Contains(string(b), "100049")
		})
		for _, n := range []string{"audit.log", "audit.log.1", "audit.log.2"} {
			info, err := os.Stat(filepath.Join(state, n))
			if err != nil || info.Size() > 2048 {
				t.Errorf("%s: %v %v", n, info, err)
			}
		}
		if _, err := os.Stat(filepath.Join(state, "audit.log.3")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("audit.log.3 kept: %v", err)
		}
		b, _ := os.ReadFile(filepath.Join(state, "audit.log.1"))
		if !strings.Contains(string(b), `"client_path":"/p?{\"uid\":0}?[2J"`) || strings.ContainsRune(string(b), 0x1b) {
			t.Errorf("client-claimed path not marked and sanitised:\n%s", b)
		}
	})
}

// TestStoreLockKeepsDirectGCOut (issue 9's hazard): while the daemon runs,
// a direct-mode process on its store cannot take the store lock
// exclusively (a direct gc cannot see the daemon's roots), and the
// daemon's own sweep still runs.
func TestStoreLockKeepsDirectGCOut(t *testing.T) {
	h := newHarness(t, Config{})
	direct, err := cas.Open(filepath.Join(h.dir, "store"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if l, err := direct.LockExclusive(ctx, nil); err == nil {
		l.Unlock()
		t.Fatal("a direct-mode process took the daemon's store lock exclusively")
	}
	admin := h.client(h.self())
	if err := admin.Call(context.Background(), rpc.MethodGC, rpc.GCParams{Grace: 0}, &rpc.GCResult{}); err != nil {
		t.Fatal(err)
	}
	// A direct-mode ingest (shared) can still run beside the daemon.
	l, err := direct.LockShared(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
}

// TestAuditWriteFailuresCounted: a failed audit write is counted and
// logged, not ignored.
func TestAuditWriteFailuresCounted(t *testing.T) {
	h := newHarness(t, Config{})
	h.svc.audit.mu.Lock()
	h.svc.audit.f.Close() // every later write fails
	h.svc.audit.mu.Unlock()
	c := h.client(aliceUID)
	begin(t, c)
	c.Close()
	if !waitFor(5*time.Second, func() bool { return h.svc.AuditFailures() == 1 }) {
		t.Fatalf("audit failures: %d, want 1", h.svc.AuditFailures())
	}
}
