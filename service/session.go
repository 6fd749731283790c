package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/rpc"
)

// session is one ingest in flight: its blobs are an in-flight GC root until
// the caller pins its manifest or hangs up.
type session struct {
	id      string
	peer    rpc.Peer
	path    string
	batch   *cas.Batch
	started time.Time

	mu sync.Mutex
	// keys are the session's blobs (engine.KeyHash: 8 bytes, not a
	// key's 48, and what the sweep's live set holds anyway): a 1M-file
	// ingest through the daemon held a map[cas.Key]struct{} of them.
	// The map costs about 32 bytes a distinct blob (31.5 MB of Go heap at
	// 1M, issue 22): what a daemon holds per file during an ingest,
	// besides the pin's 41 bytes a key (keyList) at its end.
	keys      map[uint64]struct{}
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
		started: time.Now(), keys: map[uint64]struct{}{}}
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
		return nil, errdefs.Newf(errdefs.ErrQuota, "ingest.begin: you have %d ingests in flight, the most the daemon allows per user", n)
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
		return nil, errdefs.Newf(errdefs.ErrNotFound, "no ingest session %q", sanitize(id))
	}
	if sess.peer.UID != c.Peer.UID {
		return nil, errdefs.Newf(errdefs.ErrPermission, "session %q belongs to another user", id)
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
