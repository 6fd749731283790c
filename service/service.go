package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/manifest"
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
	// MaxManifest bounds a pinned manifest's size.
	MaxManifest int64
	// Remote is the team cache the daemon pulls from and pushes to (nil:
	// none).
	Remote *Remote
}

// Service is the daemon's request handler.
type Service struct {
	cfg   Config
	store *cas.Store
	audit *auditLog
	self  uint32

	// gcLock is held shared by every operation that relies on a blob
	// staying (puts, pins) and exclusively by a sweep.
	gcLock sync.RWMutex

	mu       sync.Mutex
	sessions map[string]*session
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
	finished  bool
	connClose func() bool
}

// New opens the shared store and the state directory.
func New(cfg Config) (*Service, error) {
	if cfg.MaxManifest == 0 {
		cfg.MaxManifest = 1 << 30
	}
	// 0711: blobs are reachable by name, the store cannot be listed.
	store, err := cas.Open(cfg.Store, cas.Options{DirMode: 0o711})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.State, "roots"), 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := os.Chmod(cfg.State, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	audit, err := openAudit(filepath.Join(cfg.State, "audit.log"))
	if err != nil {
		return nil, err
	}
	// Temp files of a daemon that died are never going to be committed.
	if n, _ := store.CleanTemps(24 * time.Hour); n > 0 {
		cfg.Log.Info("removed temp files of a previous run", "count", n)
	}
	return &Service{cfg: cfg, store: store, audit: audit, self: uint32(os.Getuid()),
		sessions: map[string]*session{}}, nil
}

// Close releases the audit log.
func (s *Service) Close() error { return s.audit.close() }

// Handle implements rpc.Handler.
func (s *Service) Handle(ctx context.Context, c *rpc.Call) (any, error) {
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

func (s *Service) begin(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.BeginParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	sess := &session{id: newID(), peer: c.Peer, path: p.Path, batch: s.store.NewBatch(),
		started: time.Now(), keys: map[cas.Key]struct{}{}}
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	// A session ends with its connection: a client that dies mid-ingest
	// leaves no in-flight root behind.
	sess.connClose = context.AfterFunc(c.Conn, func() { s.endSession(sess, "disconnected") })
	s.cfg.Log.Info("ingest started", "uid", c.Peer.UID, "pid", c.Peer.PID, "path", p.Path, "session", sess.id)
	return rpc.BeginResult{Session: sess.id, Store: s.store.Root()}, nil
}

func (s *Service) session(c *rpc.Call, id string) (*session, error) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess == nil {
		return nil, rpc.Errorf(rpc.CodeNotFound, "no ingest session %q", id)
	}
	if sess.peer.UID != c.Peer.UID {
		return nil, rpc.Errorf(rpc.CodePermission, "session %q belongs to another user", id)
	}
	return sess, nil
}

// endSession audits and forgets a session, discarding anything unflushed.
func (s *Service) endSession(sess *session, result string) {
	sess.mu.Lock()
	if sess.finished {
		sess.mu.Unlock()
		return
	}
	sess.finished = true
	sess.mu.Unlock()
	if result != "ok" {
		sess.batch.Discard()
	}
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.mu.Unlock()
	s.audit.write(auditEntry{UID: sess.peer.UID, PID: sess.peer.PID, Method: rpc.MethodIngest, Path: sess.path,
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
	s.gcLock.RLock()
	defer s.gcLock.RUnlock()
	results := make([]rpc.PutResult, len(files))
	var g errgroup.Group
	g.SetLimit(8)
	for i, f := range files {
		g.Go(func() error {
			results[i] = s.putOne(ctx, sess, f, p.Files[i])
			return nil
		})
	}
	g.Wait()
	return rpc.PutResults{Results: results}, nil
}

// putOne copies one passed descriptor into the store. It reads through the
// descriptor with pread, never by path, so it sees exactly what the caller
// could read.
func (s *Service) putOne(ctx context.Context, sess *session, f *os.File, meta rpc.PutFile) rpc.PutResult {
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
	if st.Mode&0o004 == 0 && !s.cfg.SharePrivate {
		sess.mu.Lock()
		sess.private++
		sess.mu.Unlock()
		return rpc.PutResult{Private: true}
	}
	res, err := sess.batch.Put(ctx, io.NewSectionReader(f, 0, math.MaxInt64), meta.Exec)
	if err != nil {
		return rpc.PutResult{Error: err.Error()}
	}
	sess.mu.Lock()
	sess.keys[res.Key] = struct{}{}
	if res.New {
		sess.newBlobs++
		sess.newBytes += res.Key.Size
	}
	sess.mu.Unlock()
	return rpc.PutResult{Blob: res.Key.Name(), New: res.New}
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
	s.gcLock.RLock()
	defer s.gcLock.RUnlock()
	if err := sess.batch.Flush(); err != nil {
		return nil, fmt.Errorf("flush: %w", err)
	}
	return struct{}{}, nil
}

// rootRecord is the sidecar of a pinned manifest copy.
type rootRecord struct {
	UID          uint32    `json:"uid"`
	ManifestPath string    `json:"manifest_path"`
	Files        int64     `json:"files"`
	Bytes        int64     `json:"bytes"`
	PinnedAt     time.Time `json:"pinned_at"`
	copyPath     string
}

func (s *Service) rootDir(uid uint32) string {
	return filepath.Join(s.cfg.State, "roots", strconv.FormatUint(uint64(uid), 10))
}

func rootID(manifestPath string) string {
	sum := sha256.Sum256([]byte(manifestPath))
	return hex.EncodeToString(sum[:16])
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
	var sess *session
	if p.Session != "" {
		var err error
		if sess, err = s.session(c, p.Session); err != nil {
			return nil, err
		}
	}
	s.gcLock.RLock()
	defer s.gcLock.RUnlock()
	if sess != nil {
		if err := sess.batch.Flush(); err != nil {
			return nil, fmt.Errorf("link: flush: %w", err)
		}
	}
	rec, res, err := s.pin(ctx, c.Peer.UID, p.ManifestPath, files[0])
	if err != nil {
		if sess != nil {
			s.endSession(sess, "error: "+err.Error())
		}
		return nil, err
	}
	if sess != nil {
		sess.connClose()
		s.endSession(sess, "ok")
	}
	s.cfg.Log.Info("pinned manifest", "uid", c.Peer.UID, "manifest", rec.ManifestPath, "files", rec.Files, "missing", len(res.Missing))
	return res, nil
}

func (s *Service) pin(ctx context.Context, uid uint32, manifestPath string, src *os.File) (rootRecord, rpc.LinkResult, error) {
	dir := s.rootDir(uid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return rootRecord{}, rpc.LinkResult{}, err
	}
	id := rootID(manifestPath)
	tmp, err := os.CreateTemp(dir, id+".*.tmp")
	if err != nil {
		return rootRecord{}, rpc.LinkResult{}, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(io.NewSectionReader(src, 0, math.MaxInt64), s.cfg.MaxManifest+1))
	if err == nil && n > s.cfg.MaxManifest {
		err = rpc.Errorf(rpc.CodeQuota, "link: manifest larger than %d bytes", s.cfg.MaxManifest)
	}
	if err == nil {
		err = tmp.Sync()
	}
	tmp.Close()
	if err != nil {
		return rootRecord{}, rpc.LinkResult{}, err
	}
	// Validate before it replaces the previous pin.
	res := rpc.LinkResult{Missing: []string{}}
	rec := rootRecord{UID: uid, ManifestPath: manifestPath, PinnedAt: time.Now().UTC()}
	m, err := manifest.Open(tmp.Name())
	if err != nil {
		return rootRecord{}, rpc.LinkResult{}, rpc.Errorf(rpc.CodeInvalidParams, "link: not a vrift manifest: %v", err)
	}
	err = m.View(func(r *manifest.Reader) error {
		return r.Walk(manifest.RootPath, func(p string, e manifest.Entry) error {
			if e.Kind == manifest.File {
				rec.Files++
				rec.Bytes += e.Size
				if !s.store.Has(e.Key()) && len(res.Missing) < 1000 {
					res.Missing = append(res.Missing, e.Key().Name())
				}
			}
			return ctx.Err()
		})
	})
	m.Close()
	os.Remove(tmp.Name() + "-lock")
	if err != nil {
		return rootRecord{}, rpc.LinkResult{}, rpc.Errorf(rpc.CodeInvalidParams, "link: unreadable manifest: %v", err)
	}
	res.Files, res.Store = rec.Files, s.store.Root()
	final := filepath.Join(dir, id+".lmdb")
	if err := os.Rename(tmp.Name(), final); err != nil {
		return rootRecord{}, rpc.LinkResult{}, err
	}
	side, _ := json.Marshal(rec)
	if err := writeFileAtomic(filepath.Join(dir, id+".json"), side); err != nil {
		return rootRecord{}, rpc.LinkResult{}, err
	}
	return rec, res, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// roots lists pinned manifests: the caller's own, or everyone's for all.
func (s *Service) roots(uid uint32, all bool) ([]rootRecord, error) {
	var dirs []string
	if all {
		entries, err := os.ReadDir(filepath.Join(s.cfg.State, "roots"))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			dirs = append(dirs, filepath.Join(s.cfg.State, "roots", e.Name()))
		}
	} else {
		dirs = []string{s.rootDir(uid)}
	}
	var out []rootRecord
	for _, d := range dirs {
		matches, _ := filepath.Glob(filepath.Join(d, "*.json"))
		for _, side := range matches {
			b, err := os.ReadFile(side)
			if err != nil {
				continue
			}
			var rec rootRecord
			if json.Unmarshal(b, &rec) != nil {
				continue
			}
			rec.copyPath = side[:len(side)-len(".json")] + ".lmdb"
			out = append(out, rec)
		}
	}
	return out, nil
}

func (s *Service) status(ctx context.Context, c *rpc.Call) (any, error) {
	st, err := engine.ScanStore(ctx, s.store)
	if err != nil {
		return nil, err
	}
	recs, err := s.roots(c.Peer.UID, s.admin(c.Peer))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	res := rpc.StatusResult{Mode: "daemon", Version: s.cfg.Version, Store: s.store.Root(), Blobs: st.Blobs,
		Bytes: st.Bytes, DiskBytes: st.DiskBytes, Roots: []rpc.Root{}, Caller: c.Peer}
	for _, r := range recs {
		res.Roots = append(res.Roots, rpc.Root{UID: r.UID, ManifestPath: r.ManifestPath, Files: r.Files, Bytes: r.Bytes, PinnedAt: r.PinnedAt})
		if r.UID == c.Peer.UID {
			res.Usage.Roots++
			res.Usage.Files += r.Files
			res.Usage.Bytes += r.Bytes
		}
	}
	s.mu.Lock()
	res.Sessions = len(s.sessions)
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
	res := rpc.GCResult{DryRun: p.DryRun, DroppedRoots: []string{}}
	// A caller drops only their own roots.
	for _, mp := range p.Drop {
		base := filepath.Join(s.rootDir(c.Peer.UID), rootID(mp))
		if _, err := os.Stat(base + ".json"); err != nil {
			continue
		}
		res.DroppedRoots = append(res.DroppedRoots, mp)
		if !p.DryRun {
			os.Remove(base + ".json")
			os.Remove(base + ".lmdb")
		}
	}
	s.gcLock.Lock()
	defer s.gcLock.Unlock()
	recs, err := s.roots(0, true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	live := map[cas.Key]struct{}{}
	for _, r := range recs {
		if err := engine.MarkLive(ctx, r.copyPath, live); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("gc: %w (nothing deleted)", err)
		}
		res.Roots++
	}
	// In-flight ingests are roots too.
	s.mu.Lock()
	for _, sess := range s.sessions {
		sess.mu.Lock()
		for k := range sess.keys {
			live[k] = struct{}{}
		}
		sess.mu.Unlock()
	}
	s.mu.Unlock()
	var er engine.GCResult
	if err := engine.Sweep(ctx, s.store, live, p.Grace, p.DryRun, &er); err != nil {
		return nil, err
	}
	res.Removed, res.FreedBytes, res.Kept, res.KeptYoung = er.Removed, er.FreedBytes, er.Kept, er.KeptYoung
	if !p.DryRun {
		s.audit.write(auditEntry{UID: c.Peer.UID, PID: c.Peer.PID, Method: rpc.MethodGC,
			BlobsRemoved: er.Removed, BytesRemoved: er.FreedBytes, Result: "ok"})
	}
	return res, nil
}

func (s *Service) verify(ctx context.Context, c *rpc.Call) (any, error) {
	var vr engine.VerifyResult
	if err := engine.VerifyBlobs(ctx, s.store, false, &vr); err != nil {
		return nil, err
	}
	res := rpc.VerifyResult{Blobs: vr.Blobs, Bytes: vr.Bytes, Corrupt: append([]string{}, vr.Corrupt...), Missing: []string{}}
	recs, _ := s.roots(c.Peer.UID, s.admin(c.Peer))
	for _, r := range recs {
		if err := engine.VerifyRoot(ctx, s.store, r.copyPath, &vr); err != nil {
			return nil, err
		}
		res.Roots++
	}
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
