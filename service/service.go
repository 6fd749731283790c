package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/roots"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/units"
)

// Config configures the service.
type Config struct {
	// Store is the shared store's root.
	Store string
	// State is the daemon's own directory (roots, audit log), mode 0700.
	State string
	// SharePrivate lets files without o+r into the shared store.
	SharePrivate bool
	Version      string
	Log          *slog.Logger
	// MaxManifest bounds a pinned manifest's size (default 256 MiB).
	MaxManifest int64
	// Remote is the team cache the daemon pulls from and pushes to (nil:
	// none).
	Remote *Remote

	// MaxSessionBytes bounds the bytes one ingest session may have the
	// daemon read, counted by each file's logical size (holes included:
	// the daemon reads and hashes them). A file that would cross it is
	// refused before it is read. Default 1 TiB.
	MaxSessionBytes int64
	// MaxSessionsPerUser bounds one user's ingest sessions in flight
	// (default 32); MaxRootsPerUser their pinned manifests (default 4096).
	MaxSessionsPerUser int
	MaxRootsPerUser    int
	// MinUserGrace is the smallest grace period a caller other than root
	// or vrift may sweep with (default 1h): no user can delete another
	// user's freshly stored, not yet pinned blobs.
	MinUserGrace time.Duration
	// AuditMaxBytes rotates the audit log at this size (default 64 MiB),
	// keeping AuditKeep old files (default 4).
	AuditMaxBytes int64
	AuditKeep     int
	// QuotaDefault limits every user's referenced bytes (0: no limit);
	// QuotaUsers overrides it per uid. See quota.go.
	QuotaDefault int64
	QuotaUsers   map[uint32]int64
	// MaxStoreBytes and MinFree are the store-wide limits (0: none): past
	// either, unreferenced blobs are swept oldest first, then new ingests
	// are refused.
	MaxStoreBytes int64
	MinFree       int64
}

// Defaults for the bounds above.
const (
	DefaultMaxManifest        = 256 << 20
	DefaultMaxSessionBytes    = 1 << 40
	DefaultMaxSessionsPerUser = 32
	DefaultMaxRootsPerUser    = 4096
	DefaultMinUserGrace       = time.Hour
	DefaultAuditMaxBytes      = 64 << 20
	DefaultAuditKeep          = 4
	// MaxPathLen bounds every path a client sends (PATH_MAX).
	MaxPathLen = 4096
)

func (c *Config) setDefaults() {
	if c.MaxManifest <= 0 {
		c.MaxManifest = DefaultMaxManifest
	}
	if c.MaxSessionBytes <= 0 {
		c.MaxSessionBytes = DefaultMaxSessionBytes
	}
	if c.MaxSessionsPerUser <= 0 {
		c.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if c.MaxRootsPerUser <= 0 {
		c.MaxRootsPerUser = DefaultMaxRootsPerUser
	}
	if c.MinUserGrace <= 0 {
		c.MinUserGrace = DefaultMinUserGrace
	}
	if c.AuditMaxBytes <= 0 {
		c.AuditMaxBytes = DefaultAuditMaxBytes
	}
	if c.AuditKeep <= 0 {
		c.AuditKeep = DefaultAuditKeep
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Service is the daemon's request handler.
type Service struct {
	cfg   Config
	store *cas.Store
	// reg holds the pinned roots (<state>/roots, package roots).
	reg   *roots.Registry
	audit *auditLog
	self  uint32
	// exe is this program, re-executed to walk untrusted manifests;
	// children bounds how many such walks run at once.
	exe          string
	children     chan struct{}
	childTimeout time.Duration

	// gcLock is held shared, briefly, by every step that makes a blob
	// live (a put recording its key in its session, a pin publishing its
	// root) and exclusively by a sweep. Nothing holds it while reading a
	// caller's descriptor: a read can take hours, and a waiting sweep
	// would block every new reader behind it (sync.RWMutex).
	gcLock sync.RWMutex
	// storeLock is the store's flock(2), held shared for the daemon's
	// whole life and exclusive during a sweep, so that a direct-mode
	// process on the daemon's store (which cannot see the daemon's roots)
	// cannot sweep it while the daemon runs.
	storeLock *cas.Lock
	// sweeping lets one gc run at a time; others are told to retry.
	sweeping sync.Mutex
	// verifying lets one full verify run at a time.
	verifying sync.Mutex
	// copies is held while a root's manifest copy is open (gc marking,
	// verify): LMDB forbids one process opening the same environment
	// twice at once, and concurrent calls did crash the daemon (SIGSEGV in
	// mdb_txn_begin, TestServiceConcurrentRootReads).
	copies sync.Mutex

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
	// ending counts endSession calls in progress, for Close to wait on.
	ending sync.WaitGroup

	// acct is the per-user accounting (usage.go); metrics the Prometheus
	// families (metrics.go). The store's totals are the store's own
	// (cas.Totals): every path that names or removes a blob keeps them.
	acct    *accounting
	metrics *metrics
	// lastFutileSweep (guarded by sweeping) is when a store-wide limit
	// sweep last failed to bring the store under its limits.
	lastFutileSweep time.Time
}

// session is one ingest in flight: its blobs are an in-flight GC root until
// the caller pins its manifest or hangs up.
type session struct {
	id      string
	peer    rpc.Peer
	path    string
	batch   *cas.Batch
	started time.Time

	mu        sync.Mutex
	keys      map[cas.Key]struct{}
	newBlobs  int64
	newBytes  int64
	files     int64
	private   int64
	bytesRead int64 // logical bytes charged against MaxSessionBytes
	// quotaBytes is what the session adds to its user's referenced bytes.
	quotaBytes int64
	refused    bool // over quota: refused once
	finished   bool
	connClose  func() bool
	// puts counts puts in flight; endSession cancels them (ctx) and waits
	// for them before it discards the batch, so a put racing the end of
	// its session (from another connection) leaves no temp file behind.
	puts   sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// enter registers a put; false once the session has ended.
func (sess *session) enter() bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.finished {
		return false
	}
	sess.puts.Add(1)
	return true
}

// flush makes the session's blobs durable: they stay in the store
// whatever becomes of the session.
func (sess *session) flush() error { return sess.batch.Flush() }

// charge reserves n logical bytes of the session's budget.
func (sess *session) charge(n, max int64) bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if n < 0 || n > max-sess.bytesRead {
		return false
	}
	sess.bytesRead += n
	return true
}

// New opens the shared store and the state directory.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	// 0711: blobs are reachable by name, the store cannot be listed.
	store, err := cas.Open(cfg.Store, cas.Options{DirMode: 0o711, Owner: cas.OwnerDaemon, KeepTotals: true})
	if err != nil {
		return nil, err
	}
	reg, err := roots.Open(filepath.Join(cfg.State, "roots"))
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := os.Chmod(cfg.State, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable (to read manifests in a child): %w", err)
	}
	audit, err := openAudit(filepath.Join(cfg.State, "audit.log"), cfg.AuditMaxBytes, cfg.AuditKeep, cfg.Log)
	if err != nil {
		return nil, err
	}
	// Held shared from now on; a direct-mode gc on this store waits.
	lockCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	lock, err := store.LockShared(lockCtx)
	cancel()
	if err != nil {
		audit.close()
		return nil, fmt.Errorf("store %s is locked exclusively (a direct-mode gc?): %w", cfg.Store, err)
	}
	// Temp files of a daemon that died are never going to be committed.
	if n, _ := store.CleanTemps(24 * time.Hour); n > 0 {
		cfg.Log.Info("removed temp files of a previous run", "count", n)
	}
	s := &Service{cfg: cfg, store: store, reg: reg, audit: audit, self: uint32(os.Getuid()), storeLock: lock, exe: exe,
		children: make(chan struct{}, maxChildren), childTimeout: childTimeout,
		sessions: map[string]*session{}}
	// The store's totals are counted once here, under the lock, and kept
	// by the store from now on, so no request walks the store.
	_, err = store.Recount(context.Background())
	if err == nil {
		err = s.openUsage(context.Background())
	}
	if err != nil {
		lock.Unlock()
		audit.close()
		if s.acct != nil {
			s.acct.close()
		}
		return nil, err
	}
	s.metrics = newMetrics(s)
	return s, nil
}

// Close ends the sessions still open (their unflushed blobs go) and
// releases the audit log and the store lock.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	open := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		open = append(open, sess)
	}
	s.mu.Unlock()
	for _, sess := range open {
		s.finishSession(sess, "daemon stopped")
	}
	s.ending.Wait()
	s.storeLock.Unlock()
	s.acct.close()
	return s.audit.close()
}

// AuditFailures is how many audit lines could not be written.
func (s *Service) AuditFailures() int64 { return s.audit.Failures() }

// Handle implements rpc.Handler.
func (s *Service) Handle(ctx context.Context, c *rpc.Call) (any, error) {
	// A call ends with its connection: a caller that hangs up stops its
	// read, its pin or its sweep.
	if c.Conn != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(c.Conn, cancel)
		defer stop()
	}
	start := time.Now()
	res, err := s.handle(ctx, c)
	s.metrics.observe(c.Method, err, time.Since(start))
	return res, err
}

func (s *Service) handle(ctx context.Context, c *rpc.Call) (any, error) {
	switch c.Method {
	case rpc.MethodStatus:
		return s.status(ctx, c)
	case rpc.MethodIngest:
		var p rpc.IngestParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return nil, rpc.Errorf(rpc.CodeNeedDescriptors,
			"ingest %s: the daemon never opens paths on a caller's behalf (it would read files as vrift, not as you); "+
				"open the files yourself and pass the descriptors with ingest.begin/ingest.put (see docs/protocol.md), "+
				"or run `vrift ingest`, which does", p.Path)
	case rpc.MethodIngestBegin:
		return s.begin(ctx, c)
	case rpc.MethodIngestPut:
		return s.put(ctx, c)
	case rpc.MethodIngestFlush:
		return s.flush(c)
	case rpc.MethodLink:
		return s.link(ctx, c)
	case rpc.MethodGC:
		return s.gc(ctx, c)
	case rpc.MethodVerify:
		return s.verify(ctx, c)
	case rpc.MethodRemotePull:
		return s.remotePull(ctx, c)
	case rpc.MethodRemotePush:
		return s.remotePush(ctx, c)
	case rpc.MethodUsage:
		return s.usage(ctx, c)
	case rpc.MethodMetrics:
		return s.metricsCall(ctx, c)
	}
	return nil, rpc.Errorf(rpc.CodeMethodNotFound, "unknown method %q", c.Method)
}

// admin reports whether the caller may see everything: root or the
// daemon's own user.
func (s *Service) admin(p rpc.Peer) bool { return p.UID == 0 || p.UID == s.self }

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// checkPath bounds a client-supplied path: absolute, at most MaxPathLen
// bytes, no NUL.
func checkPath(what, p string) error {
	switch {
	case len(p) > MaxPathLen:
		return rpc.Errorf(rpc.CodeInvalidParams, "%s: path longer than %d bytes", what, MaxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return rpc.Errorf(rpc.CodeInvalidParams, "%s: path contains NUL", what)
	}
	return nil
}

func (s *Service) begin(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.BeginParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	if err := checkPath("ingest.begin", p.Path); err != nil {
		return nil, err
	}
	if err := s.checkBegin(ctx, c.Peer.UID); err != nil {
		return nil, err
	}
	sess := &session{id: newID(), peer: c.Peer, path: p.Path, batch: s.store.NewBatch(),
		started: time.Now(), keys: map[cas.Key]struct{}{}}
	sess.ctx, sess.cancel = context.WithCancel(context.Background())
	s.mu.Lock()
	n := 0
	for _, o := range s.sessions {
		if o.peer.UID == c.Peer.UID {
			n++
		}
	}
	if n >= s.cfg.MaxSessionsPerUser {
		s.mu.Unlock()
		sess.cancel()
		return nil, rpc.Errorf(rpc.CodeQuota, "ingest.begin: you have %d ingests in flight, the most the daemon allows per user", n)
	}
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	// A session ends with its connection: a client that dies mid-ingest
	// leaves no in-flight root behind.
	sess.connClose = context.AfterFunc(c.Conn, func() { s.endSession(sess, "disconnected") })
	s.cfg.Log.Info("ingest started", "uid", c.Peer.UID, "pid", c.Peer.PID, "client_path", sanitize(p.Path), "session", sess.id)
	return rpc.BeginResult{Session: sess.id, Store: s.store.Root()}, nil
}

func (s *Service) session(c *rpc.Call, id string) (*session, error) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return nil, rpc.Errorf(rpc.CodeNotFound, "no ingest session %q", sanitize(id))
	}
	if sess.peer.UID != c.Peer.UID {
		return nil, rpc.Errorf(rpc.CodePermission, "session %q belongs to another user", id)
	}
	return sess, nil
}

// endSession audits and forgets a session, discarding anything unflushed.
// It waits for the session's puts in flight (their contexts end with the
// connection), so none adds a temp file after the discard.
func (s *Service) endSession(sess *session, result string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return // Close ends it
	}
	s.ending.Add(1)
	s.mu.Unlock()
	defer s.ending.Done()
	s.finishSession(sess, result)
}

func (s *Service) finishSession(sess *session, result string) {
	sess.mu.Lock()
	if sess.finished {
		sess.mu.Unlock()
		return
	}
	sess.finished = true
	sess.mu.Unlock()
	sess.cancel()
	sess.puts.Wait()
	if result != "ok" {
		sess.batch.Discard()
	}
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.mu.Unlock()
	s.audit.write(auditEntry{UID: sess.peer.UID, PID: sess.peer.PID, Method: rpc.MethodIngest, ClientPath: sess.path,
		BlobsAdded: sess.newBlobs, BytesAdded: sess.newBytes, Files: sess.files, Private: sess.private, Result: result})
}

func (s *Service) put(ctx context.Context, c *rpc.Call) (any, error) {
	files := c.Files()
	defer closeAll(files)
	var p rpc.PutParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	if len(p.Files) != len(files) {
		return nil, rpc.Errorf(rpc.CodeInvalidParams, "ingest.put: %d files described, %d descriptors passed", len(p.Files), len(files))
	}
	sess, err := s.session(c, p.Session)
	if err != nil {
		return nil, err
	}
	if !sess.enter() {
		return nil, rpc.Errorf(rpc.CodeNotFound, "ingest session %q has ended", p.Session)
	}
	defer sess.puts.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(sess.ctx, cancel)()
	results := make([]rpc.PutResult, len(files))
	var g errgroup.Group
	g.SetLimit(8)
	for i, f := range files {
		g.Go(func() error {
			var err error
			results[i], err = s.putOne(ctx, sess, f, p.Files[i])
			return err
		})
	}
	// A quota or store-limit refusal fails the whole call with -32003, so
	// the client stops before it touches the project.
	// The session ends: its blobs, unpinned, are garbage, and no longer
	// count against the user's quota. (Ended in the background: ending
	// waits for this put.)
	if err := g.Wait(); err != nil {
		sess.connClose()
		go s.endSession(sess, "refused: "+err.Error())
		return nil, err
	}
	return rpc.PutResults{Results: results}, nil
}

// reachable reports whether the daemon itself can reach, by the path the
// client named, the very inode the client passed: then the file is
// reachable by anyone (the daemon has no more rights than any user, bar
// its own files), and sharing its content reveals nothing. A 0644 file in
// a 0700 home is not: the daemon cannot traverse the home.
func reachable(name string, st *unix.Stat_t) bool {
	if !filepath.IsAbs(name) || len(name) > MaxPathLen || strings.IndexByte(name, 0) >= 0 {
		return false
	}
	fd, err := unix.Open(name, reachFlags, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var got unix.Stat_t
	if err := unix.Fstat(fd, &got); err != nil {
		return false
	}
	return got.Dev == st.Dev && got.Ino == st.Ino
}

// errFileGrew: more bytes than fstat reported arrived through the
// descriptor; the blob would not be the file the budget was charged for.
var errFileGrew = errors.New("the file grew while the daemon read it; retry")

// putOne copies one passed descriptor into the store. It reads through the
// descriptor with pread, never by path, so it sees exactly what the caller
// could read. No lock is held while it reads: the key is recorded in the
// session (an in-flight GC root) under the sweep lock in the same short
// critical section that checks whether the blob exists.
func (s *Service) putOne(ctx context.Context, sess *session, f *os.File, meta rpc.PutFile) (rpc.PutResult, error) {
	res := s.putFile(ctx, sess, f, meta)
	if res.Error != "" || res.Private || res.Blob == "" {
		return res, nil
	}
	k, err := cas.ParseName(res.Blob)
	if err != nil {
		return res, nil
	}
	if res.New {
		if err := s.chargeKey(sess, k); err != nil {
			return res, err
		}
	}
	if err := s.checkStore(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// putFile stores one passed descriptor (see putOne).
func (s *Service) putFile(ctx context.Context, sess *session, f *os.File, meta rpc.PutFile) rpc.PutResult {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return rpc.PutResult{Error: "fstat: " + err.Error()}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return rpc.PutResult{Error: "not a regular file"}
	}
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil || flags&unix.O_ACCMODE == unix.O_WRONLY {
		return rpc.PutResult{Error: "descriptor not open for reading"}
	}
	sess.mu.Lock()
	sess.files++
	sess.mu.Unlock()
	s.metrics.ingestFiles.Inc()
	// Shared only when world-readable and world-reachable by its path.
	if !s.cfg.SharePrivate && (st.Mode&0o004 == 0 || !reachable(meta.Name, &st)) {
		sess.mu.Lock()
		sess.private++
		sess.mu.Unlock()
		s.metrics.ingestPrivate.Inc()
		return rpc.PutResult{Private: true}
	}
	if !sess.charge(st.Size, s.cfg.MaxSessionBytes) {
		return rpc.PutResult{Error: fmt.Sprintf("refused: %d bytes would exceed this ingest's budget of %d bytes "+
			"(sparse holes count: the daemon reads them)", st.Size, s.cfg.MaxSessionBytes)}
	}
	var firstSeen bool
	guard := func(k cas.Key, has func(cas.Key) bool) bool {
		s.gcLock.RLock()
		defer s.gcLock.RUnlock()
		sess.mu.Lock()
		_, seen := sess.keys[k]
		sess.keys[k] = struct{}{}
		sess.mu.Unlock()
		firstSeen = !seen
		return has(k)
	}
	// One byte past the size fstat reported tells a growing file.
	res, err := sess.batch.PutGuarded(ctx, io.NewSectionReader(f, 0, st.Size+1), meta.Exec, guard)
	if err == nil && res.Key.Size > st.Size {
		err = errFileGrew
	}
	if err != nil {
		return rpc.PutResult{Error: err.Error()}
	}
	sess.mu.Lock()
	if res.New {
		sess.newBlobs++
		sess.newBytes += res.Key.Size
	}
	sess.mu.Unlock()
	s.metrics.ingestReadBytes.Add(float64(st.Size))
	if res.New {
		s.metrics.ingestNewBlobs.Inc()
		s.metrics.ingestNewBytes.Add(float64(res.Key.Size))
	} else {
		s.metrics.ingestReused.Inc()
	}
	// New is answered from the caller's own view (first time in this
	// session), never from the store's: the store's answer would tell the
	// caller whether someone else stored this content.
	return rpc.PutResult{Blob: res.Key.Name(), New: firstSeen}
}

func (s *Service) flush(c *rpc.Call) (any, error) {
	var p rpc.SessionParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	sess, err := s.session(c, p.Session)
	if err != nil {
		return nil, err
	}
	// No sweep lock: every pending key is already live in the session.
	if err := sess.flush(); err != nil {
		return nil, fmt.Errorf("flush: %w", err)
	}
	return struct{}{}, nil
}

// link pins the caller's manifest: the daemon keeps its own copy (it cannot
// read the caller's, which lives in a home directory and whose LMDB lock
// file it could not open), so the copy is a GC root owned by the caller.
func (s *Service) link(ctx context.Context, c *rpc.Call) (any, error) {
	files := c.Files()
	defer closeAll(files)
	var p rpc.LinkParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	if len(files) != 1 {
		return nil, rpc.Errorf(rpc.CodeNeedDescriptors, "link: pass the manifest as exactly one descriptor (got %d)", len(files))
	}
	if !filepath.IsAbs(p.ManifestPath) {
		return nil, rpc.Errorf(rpc.CodeInvalidParams, "link: manifest_path must be absolute")
	}
	if err := checkPath("link", p.ManifestPath); err != nil {
		return nil, err
	}
	var sess *session
	if p.Session != "" {
		var err error
		if sess, err = s.session(c, p.Session); err != nil {
			return nil, err
		}
		if err := sess.flush(); err != nil {
			return nil, fmt.Errorf("link: flush: %w", err)
		}
	}
	rec, res, err := s.pin(ctx, c.Peer.UID, p.ManifestPath, files[0], sess)
	if err != nil {
		if sess != nil {
			s.endSession(sess, "error: "+err.Error())
		}
		return nil, err
	}
	if sess != nil {
		sess.connClose()
		s.endSession(sess, "ok")
		s.metrics.pins.WithLabelValues("ingest").Inc()
	} else {
		s.metrics.pins.WithLabelValues("link").Inc()
	}
	s.cfg.Log.Info("pinned manifest", "uid", c.Peer.UID, "client_path", sanitize(rec.ManifestPath), "files", rec.Files, "missing", len(res.Missing))
	return res, nil
}

// pin copies the caller's manifest (sparsely, bounded by MaxManifest),
// validates it, and publishes it as the caller's root. Copying and parsing
// run without the sweep lock; only checking which blobs are present and
// publishing the root run under it, so a sweep can neither delete a blob
// reported present before the root holds it, nor wait on a slow caller.
func (s *Service) pin(ctx context.Context, uid uint32, manifestPath string, src *os.File, sess *session) (roots.Record, rpc.LinkResult, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return roots.Record{}, rpc.LinkResult{}, rpc.Errorf(rpc.CodeInvalidParams, "link: the manifest descriptor is not a regular file")
	}
	if st.Size > s.cfg.MaxManifest {
		return roots.Record{}, rpc.LinkResult{}, rpc.Errorf(rpc.CodeQuota, "link: manifest of %d bytes is larger than the %d the daemon accepts", st.Size, s.cfg.MaxManifest)
	}
	id := roots.ID(manifestPath)
	if _, err := s.reg.Get(uid, id); err != nil {
		// Not a re-pin: a new root takes a slot.
		n, err := s.reg.Count(uid)
		if err != nil {
			return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: %w", err)
		}
		if n >= s.cfg.MaxRootsPerUser {
			return roots.Record{}, rpc.LinkResult{}, rpc.Errorf(rpc.CodeQuota,
				"link: you have %d pinned manifests, the most the daemon allows per user; drop some with vrift gc", n)
		}
	}
	tmp, err := s.reg.TempCopy(uid, id)
	if err != nil {
		return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = copySparse(ctx, tmp, src, s.cfg.MaxManifest)
	if err == nil {
		err = tmp.Sync()
	}
	tmp.Close()
	if err != nil {
		return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: copy manifest: %w", err)
	}
	if err := checkLMDB(tmp.Name()); err != nil {
		return roots.Record{}, rpc.LinkResult{}, rpc.Errorf(rpc.CodeInvalidParams, "link: not a vrift manifest: %v", err)
	}
	rec := roots.Record{UID: uid, ManifestPath: manifestPath, PinnedAt: time.Now().UTC()}
	keys, err := s.walkInChild(ctx, tmp.Name(), &rec)
	os.Remove(tmp.Name() + "-lock")
	if err != nil {
		return roots.Record{}, rpc.LinkResult{}, rpc.Errorf(rpc.CodeInvalidParams, "link: unreadable manifest: %v", err)
	}
	res := rpc.LinkResult{Missing: []string{}, Files: rec.Files, Store: s.store.Root()}

	s.gcLock.RLock()
	defer s.gcLock.RUnlock()
	for _, k := range keys {
		if !s.store.Has(k) && len(res.Missing) < 1000 {
			res.Missing = append(res.Missing, k.Name())
		}
		if err := ctx.Err(); err != nil {
			return roots.Record{}, rpc.LinkResult{}, err
		}
	}
	// The quota check and the accounting's update run under the
	// accounting's lock, so two pins of one user cannot both pass a check
	// that only one of them fits. The session being pinned no longer
	// counts in flight: its blobs are in keys.
	s.acct.mu.Lock()
	defer s.acct.mu.Unlock()
	delta, err := s.acct.Delta(uid, id, keys)
	if err != nil {
		return roots.Record{}, rpc.LinkResult{}, err
	}
	lim := s.limit(uid)
	used := s.acct.User(uid).Referenced + s.inFlight(uid, sess)
	if lim > 0 && delta > 0 && used+delta > lim {
		return roots.Record{}, rpc.LinkResult{}, s.quotaError("pinning "+sanitize(manifestPath), uid, used, lim, delta)
	}
	if lim > 0 && float64(used+delta) >= warnFraction*float64(lim) {
		res.Warning = fmt.Sprintf("you use %s of your %s quota on the shared store (%.0f%%)",
			units.FormatSize(used+delta), units.FormatSize(lim), 100*float64(used+delta)/float64(lim))
	}
	if err := s.reg.Put(rec, tmp.Name()); err != nil {
		return roots.Record{}, rpc.LinkResult{}, fmt.Errorf("link: %w", err)
	}
	// A crash before this commits leaves the accounting's record of this
	// root older than the root's record: the next start recounts.
	if err := s.acct.AddRoot(uid, id, rec.PinnedAt.UnixNano(), rec.Files, keys); err != nil {
		return roots.Record{}, rpc.LinkResult{}, err
	}
	return rec, res, nil
}

// walkKeys walks a manifest and calls fn once per distinct file key,
// filling rec's totals with checked arithmetic: sizes come from the client
// and a crafted manifest must not overflow them. It runs C LMDB on the
// file: call it in-process only on a copy already walked by a child.
func walkKeys(ctx context.Context, path string, rec *roots.Record, fn func(cas.Key) error) error {
	m, err := manifest.Open(path)
	if err != nil {
		return err
	}
	defer m.Close()
	seen := map[cas.Key]struct{}{}
	return m.View(func(r *manifest.Reader) error {
		return r.Walk(manifest.RootPath, func(p string, e manifest.Entry) error {
			if e.Kind != manifest.File {
				return ctx.Err()
			}
			if e.Size < 0 || rec.Bytes > math.MaxInt64-e.Size {
				return fmt.Errorf("%s: file sizes overflow", sanitize(p))
			}
			rec.Files++
			rec.Bytes += e.Size
			k := e.Key()
			if _, dup := seen[k]; !dup {
				seen[k] = struct{}{}
				if err := fn(k); err != nil {
					return err
				}
			}
			return ctx.Err()
		})
	})
}

// copySparse copies src into dst, at most max bytes (more is a quota
// error), leaving runs of zeros as holes: a sparse manifest stays sparse.
func copySparse(ctx context.Context, dst, src *os.File, max int64) error {
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := src.ReadAt(buf, off)
		if n > 0 {
			if off+int64(n) > max {
				return rpc.Errorf(rpc.CodeQuota, "link: manifest larger than %d bytes", max)
			}
			for p := 0; p < n; p += 64 << 10 {
				chunk := buf[p:min(n, p+64<<10)]
				if allZero(chunk) {
					continue
				}
				if _, err := dst.WriteAt(chunk, off+int64(p)); err != nil {
					return err
				}
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return dst.Truncate(off)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// records lists pinned roots: uid's own, or everyone's for all. Records it
// cannot read are left out and logged: what lists roots for display must
// not fail on one bad file (sweeps use sweepRoots, which refuse).
func (s *Service) records(uid uint32, all bool) ([]roots.Record, error) {
	var recs []roots.Record
	var bad []roots.BadRecord
	var err error
	if all {
		recs, bad, err = s.reg.ListAll()
	} else {
		recs, bad, err = s.reg.List(uid)
	}
	for _, b := range bad {
		s.cfg.Log.Warn("unreadable root record skipped (gc refuses to sweep until gc --drop-stale drops it)", "err", b.Err)
	}
	return s.pinned(recs), err
}

// pinned keeps the records with a pinned copy: a record of a manifest in
// place names a user's file, which the daemon never reads (nothing it
// writes makes one; this guards its state directory against a hand-made
// one).
func (s *Service) pinned(recs []roots.Record) []roots.Record {
	out := recs[:0]
	for _, r := range recs {
		if r.HasCopy() {
			out = append(out, r)
		} else {
			s.cfg.Log.Warn("root record without a pinned copy ignored", "uid", r.UID, "id", r.ID)
		}
	}
	return out
}

// sweepRoots lists every pinned root for a sweep, which an unreadable
// record refuses: it may pin any blob.
func (s *Service) sweepRoots() ([]roots.Record, error) {
	recs, bad, err := s.reg.ListAll()
	if err != nil {
		return nil, err
	}
	if err := roots.CheckBad(bad); err != nil {
		return nil, fmt.Errorf("%w; root or vrift can drop it with vrift gc --drop-stale", err)
	}
	return s.pinned(recs), nil
}

// status answers everyone with their own roots and sessions. Only root and
// vrift get the store-wide counters: they walk the whole store, and they
// would tell a user when anyone else adds content.
func (s *Service) status(ctx context.Context, c *rpc.Call) (any, error) {
	admin := s.admin(c.Peer)
	res := rpc.StatusResult{Mode: "daemon", Version: s.cfg.Version, Store: s.store.Root(), Roots: []rpc.Root{}, Caller: c.Peer}
	if admin {
		st, err := engine.ScanStore(ctx, s.store)
		if err != nil {
			return nil, err
		}
		res.Blobs, res.Bytes, res.DiskBytes, res.StoreCounted = st.Blobs, st.Bytes, st.DiskBytes, true
	}
	recs, err := s.records(c.Peer.UID, admin)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		res.Roots = append(res.Roots, rpc.Root{UID: r.UID, ManifestPath: r.ManifestPath, Files: r.Files, Bytes: r.Bytes, PinnedAt: r.PinnedAt})
		if r.UID == c.Peer.UID {
			res.Usage.Roots++
			res.Usage.Files += r.Files
			res.Usage.Bytes += r.Bytes
		}
	}
	s.mu.Lock()
	for _, sess := range s.sessions {
		if admin || sess.peer.UID == c.Peer.UID {
			res.Sessions++
		}
	}
	s.mu.Unlock()
	return res, nil
}

func (s *Service) gc(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.GCParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	if p.Grace < 0 {
		return nil, rpc.Errorf(rpc.CodeInvalidParams, "gc: negative grace")
	}
	admin := s.admin(c.Peer)
	if !admin && p.Grace < s.cfg.MinUserGrace {
		return nil, rpc.Errorf(rpc.CodePermission, "gc: a grace period below %s is for root and vrift only "+
			"(younger blobs may be another user's ingest not yet pinned)", s.cfg.MinUserGrace)
	}
	if p.DropStale && !admin {
		return nil, rpc.Errorf(rpc.CodePermission, "gc: --drop-stale is for root and vrift only")
	}
	if len(p.Drop) > s.cfg.MaxRootsPerUser {
		return nil, rpc.Errorf(rpc.CodeInvalidParams, "gc: %d roots to drop, more than a user can have", len(p.Drop))
	}
	if !s.sweeping.TryLock() {
		return nil, rpc.Errorf(rpc.CodeBusy, "gc: another gc is running; retry when it ends")
	}
	defer s.sweeping.Unlock()
	res := rpc.GCResult{DryRun: p.DryRun, DroppedRoots: []string{}}
	// A caller drops only their own roots.
	for _, mp := range p.Drop {
		if checkPath("gc", mp) != nil {
			continue
		}
		id := roots.ID(mp)
		if _, err := s.reg.Get(c.Peer.UID, id); err != nil {
			continue
		}
		res.DroppedRoots = append(res.DroppedRoots, mp)
		if !p.DryRun {
			if err := s.dropRoot(c.Peer.UID, id); err != nil {
				return nil, fmt.Errorf("gc: %w", err)
			}
		}
	}
	if p.DropStale {
		stale, err := s.dropStale(p.DryRun)
		if err != nil {
			return nil, err
		}
		res.DroppedRoots = append(res.DroppedRoots, stale...)
	}
	s.gcLock.Lock()
	defer s.gcLock.Unlock()
	// Keep direct-mode writers on this store out while blobs go.
	if err := s.storeLock.Convert(ctx, true); err != nil {
		s.storeLock.Convert(context.Background(), false)
		return nil, rpc.Errorf(rpc.CodeBusy, "gc: the store is in use by a direct-mode process: %v", err)
	}
	defer func() {
		if err := s.storeLock.Convert(context.Background(), false); err != nil {
			s.cfg.Log.Error("store lock: back to shared failed", "err", err)
		}
	}()
	recs, err := s.sweepRoots()
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	copies := s.copyPaths(recs)
	// In-flight ingests are roots too.
	sessions := func(live map[cas.Key]struct{}) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, sess := range s.sessions {
			sess.mu.Lock()
			for k := range sess.keys {
				live[k] = struct{}{}
			}
			sess.mu.Unlock()
		}
	}
	var er engine.GCResult
	start := time.Now()
	s.copies.Lock()
	_, err = engine.Collect(ctx, s.store, copies, sessions, p.Grace, p.DryRun, &er)
	s.copies.Unlock()
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	if !p.DryRun {
		s.metrics.gcRuns.WithLabelValues("gc").Inc()
		s.metrics.gcRemovedBlobs.Add(float64(er.Removed))
		s.metrics.gcRemovedBytes.Add(float64(er.FreedBytes))
		s.metrics.gcDuration.Observe(time.Since(start).Seconds())
		// The sweep walked the store anyway: recount its totals (exact
		// disk bytes again) while the sweep lock still holds writers.
		if _, err := s.store.Recount(ctx); err != nil {
			s.cfg.Log.Warn("gc: recount the store's totals", "err", err)
		}
	}
	res.Roots = er.Roots
	res.Removed, res.FreedBytes, res.Kept, res.KeptYoung = er.Removed, er.FreedBytes, er.Kept, er.KeptYoung
	if !p.DryRun {
		s.audit.write(auditEntry{UID: c.Peer.UID, PID: c.Peer.PID, Method: rpc.MethodGC, DroppedRoots: len(res.DroppedRoots),
			BlobsRemoved: er.Removed, BytesRemoved: er.FreedBytes, Result: "ok"})
	}
	return res, nil
}

// dropStale drops every user's roots whose pinned copy the daemon can no
// longer read as a manifest (removed, truncated or corrupted on disk), and
// root records it cannot read (which stop every sweep). It cannot tell
// whether a user's own manifest still exists (it cannot read home
// directories); a root is stale when its pinned copy, which alone decides
// what the sweep keeps, is unreadable.
func (s *Service) dropStale(dry bool) ([]string, error) {
	recs, bad, err := s.reg.ListAll()
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, r := range recs {
		cp := s.reg.CopyPath(r)
		if checkLMDB(cp) == nil {
			var tmp roots.Record
			_, err := s.walkInChild(context.Background(), cp, &tmp)
			os.Remove(cp + "-lock")
			if err == nil {
				continue
			}
		}
		dropped = append(dropped, fmt.Sprintf("uid %d: %s", r.UID, r.ManifestPath))
		if !dry {
			if err := s.dropRoot(r.UID, r.ID); err != nil {
				return nil, err
			}
		}
	}
	for _, b := range bad {
		dropped = append(dropped, fmt.Sprintf("uid %d: unreadable root record %s", b.UID, b.ID))
		if !dry {
			if err := s.dropRoot(b.UID, b.ID); err != nil {
				return nil, err
			}
		}
	}
	return dropped, nil
}

// dropRoot removes uid's root id: its record and pinned copy, then its
// figures from the accounting.
func (s *Service) dropRoot(uid uint32, id string) error {
	if err := s.reg.Remove(uid, id); err != nil {
		return err
	}
	return s.acct.DropRoot(uid, id)
}

// copyPaths lists the pinned copies of recs (from records or sweepRoots:
// each has one).
func (s *Service) copyPaths(recs []roots.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, s.reg.CopyPath(r))
	}
	return out
}

// verify re-hashes the whole store for root and vrift (one at a time); any
// other caller gets their own roots checked for missing blobs, which costs
// what their roots cost, not what the store does.
func (s *Service) verify(ctx context.Context, c *rpc.Call) (any, error) {
	admin := s.admin(c.Peer)
	if admin {
		if !s.verifying.TryLock() {
			return nil, rpc.Errorf(rpc.CodeBusy, "verify: another verify is running; retry when it ends")
		}
		defer s.verifying.Unlock()
	}
	recs, _ := s.records(c.Peer.UID, admin)
	s.copies.Lock()
	vr, err := engine.Check(ctx, s.store, s.copyPaths(recs), admin, false)
	s.copies.Unlock()
	if err != nil {
		return nil, err
	}
	res := rpc.VerifyResult{Blobs: vr.Blobs, Bytes: vr.Bytes, Corrupt: append([]string{}, vr.Corrupt...), Missing: []string{}, Roots: vr.Roots}
	for _, m := range vr.Missing {
		res.Missing = append(res.Missing, m.Blob+" ("+m.Path+")")
	}
	return res, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
