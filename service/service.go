package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/roots"
	"github.com/vrift/vrift/rpc"
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
	// TeamCache is the team cache the daemon pulls from and pushes to (nil:
	// none).
	TeamCache *TeamCache

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

// Service is the daemon's request handler. Its concerns live in their own
// files: sessions (session.go), puts and the privacy check (put.go), pins
// (pin.go), sweeps (sweep.go), quotas (quota.go), the usage RPC (usage.go)
// over the accounting store (accounting.go), status and verify
// (status.go), the team cache (teamcache.go), metrics (metrics.go) and the
// audit log (audit.go). The store keeps its own totals (cas.Totals).
//
// Lock order (a lock may be taken while holding those above it, never
// the other way):
//
//	sweeper.running     one sweep at a time (gc, store-limit sweep)
//	sweeper.gcLock      shared: a blob made live; exclusive: a sweep
//	sweeper.storeLock   the store's flock, exclusive during a sweep
//	verifying           one full verify at a time
//	accounting.mu       a pin's quota check and change; a recount
//	sweeper.copies      a pinned manifest copy open (LMDB)
//	Service.mu          the sessions map
//	session.mu          one session's figures and keys
//	accounting.wmu, cacheMu (inside the accounting)
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

	// sw owns the sweep locks (sweep.go).
	sw sweeper
	// verifying lets one full verify run at a time.
	verifying sync.Mutex

	// mu guards sessions and closed.
	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
	// ending counts endSession calls in progress, for Close to wait on.
	ending sync.WaitGroup

	// acct is the per-user accounting (accounting.go); metrics the
	// Prometheus families (metrics.go).
	acct    *accounting
	metrics *metrics
	// mem gives a long call's freed heap back when it ends (memory.go).
	mem releaser
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
	s := &Service{cfg: cfg, store: store, reg: reg, audit: audit, self: uint32(os.Getuid()), exe: exe,
		children: make(chan struct{}, maxChildren), childTimeout: childTimeout,
		sessions: map[string]*session{}, sw: sweeper{storeLock: lock, log: cfg.Log}}
	// The store's totals are loaded from the store (cas ledger) and kept
	// by it from now on, so no request walks the store. They are counted
	// here, under the lock, only when they cannot be trusted: the last
	// daemon (or a direct-mode process) died before saving them, or the
	// store predates them.
	if !store.TotalsTrusted() {
		start := time.Now()
		var c cas.Counts
		c, err = store.Recount(context.Background())
		cfg.Log.Info("recounted the store's totals (not saved by the last writer)", "blobs", c.Blobs, "took", time.Since(start))
	}
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
	if err := s.store.Close(); err != nil { // saves the store's totals
		s.cfg.Log.Warn("save the store's totals (the next start recounts)", "err", err)
	}
	s.sw.storeLock.Unlock()
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
	took := time.Since(start)
	s.metrics.observe(c.Method, err, took)
	s.mem.after(took, time.Now())
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
		return nil, errdefs.Newf(errdefs.ErrNeedDescriptors,
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
		return errdefs.Newf(errdefs.ErrInvalidArgument, "%s: path longer than %d bytes", what, MaxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return errdefs.Newf(errdefs.ErrInvalidArgument, "%s: path contains NUL", what)
	}
	return nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
