package rpc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sourcegraph/jsonrpc2"
	"golang.org/x/sys/unix"
)

// Call is one request as a Handler sees it.
type Call struct {
	Method string
	Params json.RawMessage
	Peer   Peer
	// Conn is done when the connection closes.
	Conn   context.Context
	stream *Stream
	id     string
	taken  int
}

// Files hands over the descriptors passed with the request; the handler
// must close them before it returns (they count against the caller's
// descriptor budget until then).
func (c *Call) Files() []*os.File {
	files := c.stream.takeFDs(c.id)
	c.taken += len(files)
	return files
}

// Decode unmarshals the params into v, with a -32602 error on failure.
func (c *Call) Decode(v any) error {
	if len(c.Params) == 0 {
		return Errorf(CodeInvalidParams, "%s: params required", c.Method)
	}
	dec := json.NewDecoder(bytes.NewReader(c.Params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeInvalidParams, "%s: bad params: %v", c.Method, err)
	}
	return nil
}

// Handler serves calls. Calls of one connection are handled one at a time,
// in order; connections are served concurrently. The context a handler gets
// ends when the caller hangs up, when the call has run for
// Server.CallTimeout, or when the daemon stops; a handler must return
// promptly once it ends.
type Handler interface {
	Handle(ctx context.Context, c *Call) (any, error)
}

// Defaults of the server's bounds. Each can be changed in Server.
const (
	// DefaultCallTimeout bounds one call. The longest legitimate call is an
	// ingest.put of up to MaxFDs files: an hour is enough for hundreds of
	// GiB at disk speed. Bytes are bounded by the service (per-user
	// budgets), time by this.
	DefaultCallTimeout = time.Hour
	// DefaultMaxConns bounds connections in total, DefaultMaxConnsPerUID
	// per user: a user cannot take every slot.
	DefaultMaxConns       = 1024
	DefaultMaxConnsPerUID = 64
	// DefaultMaxFDsPerUID bounds the descriptors the daemon holds for one
	// user, across connections (received and not yet closed by a
	// handler). It is lowered to a quarter of RLIMIT_NOFILE if that is
	// smaller, and the total over all users to half of it, so users
	// cannot fill the daemon's descriptor table between them.
	DefaultMaxFDsPerUID = 4096
	// DefaultMaxInflight bounds calls being handled at once, across
	// connections: each may read up to 8 passed files at once, and a read
	// of a file that blocks (a FUSE file whose server never answers) holds
	// an OS thread, so this bounds threads too (the unit's TasksMax). Calls
	// over it wait for a slot without holding a thread.
	DefaultMaxInflight = 256
	// DefaultMaxFrameBytesPerUID bounds the bytes of one user's frames in
	// the daemon (being read, queued or handled), and
	// DefaultMaxFrameBytesTotal everyone's: frames are charged at their
	// announced length, so the daemon's memory for frames is bounded
	// whatever users send. Legitimate frames are kilobytes.
	DefaultMaxFrameBytesPerUID = 64 << 20
	DefaultMaxFrameBytesTotal  = 512 << 20
	// maxQueuedCalls is how many requests one connection may send ahead
	// of the one being handled; more are answered busy.
	maxQueuedCalls = 8
)

// Server accepts connections on a unix socket and serves them.
type Server struct {
	Handler  Handler
	Log      *slog.Logger
	MaxFrame int
	// ShutdownTimeout bounds how long Serve waits for in-flight calls once
	// its context ends.
	ShutdownTimeout time.Duration
	// CallTimeout bounds each call (DefaultCallTimeout if 0).
	CallTimeout time.Duration
	// MaxConns and MaxConnsPerUID bound open connections; a connection
	// over either is answered busy (-32004) and closed.
	MaxConns, MaxConnsPerUID int
	// MaxFDsPerUID and MaxFDsTotal bound the descriptors held for users;
	// a connection whose descriptors would pass either is closed. 0 means
	// the defaults derived from RLIMIT_NOFILE (see DefaultMaxFDsPerUID).
	MaxFDsPerUID, MaxFDsTotal int
	// MaxInflight bounds calls handled at once (DefaultMaxInflight if 0).
	MaxInflight int
	// MaxFrameBytesPerUID and MaxFrameBytesTotal bound frame bytes in
	// flight (defaults above, raised to MaxFrame if lower); a connection
	// whose frame would pass either is closed.
	MaxFrameBytesPerUID, MaxFrameBytesTotal int

	slots    chan struct{}
	mu       sync.Mutex
	conns    map[*jsonrpc2.Conn]struct{}
	users    map[uint32]*usage
	fdsTotal int
	memTotal int
	inflight sync.WaitGroup
	closing  bool // guarded by mu; set once shutdown begins
}

// usage is what one user holds in the server.
type usage struct{ conns, fds, mem int }

func (u *usage) idle() bool { return u.conns == 0 && u.fds == 0 && u.mem == 0 }

// Limits reports the bounds Serve applies, defaults filled in.
func (s *Server) Limits() (maxConns, maxConnsPerUID, maxFDsPerUID, maxFDsTotal int, callTimeout time.Duration) {
	maxConns, maxConnsPerUID = s.MaxConns, s.MaxConnsPerUID
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	if maxConnsPerUID <= 0 {
		maxConnsPerUID = DefaultMaxConnsPerUID
	}
	nofile := 1024
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < 1<<30 {
		nofile = int(rl.Cur)
	}
	maxFDsPerUID, maxFDsTotal = s.MaxFDsPerUID, s.MaxFDsTotal
	if maxFDsPerUID <= 0 {
		maxFDsPerUID = min(DefaultMaxFDsPerUID, nofile/4)
	}
	if maxFDsTotal <= 0 {
		maxFDsTotal = nofile / 2
	}
	callTimeout = s.CallTimeout
	if callTimeout <= 0 {
		callTimeout = DefaultCallTimeout
	}
	return
}

// Serve accepts connections until ctx ends, then stops accepting, lets
// in-flight calls finish (up to ShutdownTimeout), and closes every
// connection. An accept that fails (EMFILE when the descriptor table is
// full) is retried with a growing pause, logged once per episode: the
// server keeps serving the connections it has and accepts again once
// descriptors are freed.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) error {
	maxConns, maxPerUID, fdsPerUID, fdsTotal, callTimeout := s.Limits()
	memPerUID := max(cmp.Or(s.MaxFrameBytesPerUID, DefaultMaxFrameBytesPerUID), s.maxFrame())
	memTotal := max(cmp.Or(s.MaxFrameBytesTotal, DefaultMaxFrameBytesTotal), s.maxFrame())
	s.mu.Lock()
	s.conns = map[*jsonrpc2.Conn]struct{}{}
	s.users = map[uint32]*usage{}
	inflight := s.MaxInflight
	if inflight <= 0 {
		inflight = DefaultMaxInflight
	}
	s.slots = make(chan struct{}, inflight)
	s.mu.Unlock()
	connCtx, cancelConns := context.WithCancel(context.Background())
	defer cancelConns()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var failures int
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			if failures == 0 {
				s.Log.Warn("accept failed; retrying with backoff", "err", err,
					"descriptor_table_full", errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE))
			}
			failures++
			pause := min(5*time.Millisecond<<min(failures, 8), time.Second)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
			continue
		}
		if failures > 0 {
			s.Log.Info("accept recovered", "failed_attempts", failures)
			failures = 0
		}
		s.serveConn(connCtx, conn, connLimits{maxConns: maxConns, maxPerUID: maxPerUID, fdsPerUID: fdsPerUID,
			fdsTotal: fdsTotal, memPerUID: memPerUID, memTotal: memTotal, callTimeout: callTimeout})
	}
	// Calls that arrive on open connections from now on are told to retry.
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	select {
	case <-done:
	case <-time.After(timeout):
		s.Log.Warn("shutdown: in-flight calls did not finish in time; closing their connections", "timeout", timeout)
	}
	cancelConns()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) maxFrame() int { return cmp.Or(max(s.MaxFrame, 0), DefaultMaxFrame) }

type connLimits struct {
	maxConns, maxPerUID, fdsPerUID, fdsTotal, memPerUID, memTotal int
	callTimeout                                                   time.Duration
}

// uidBudget charges what a connection holds (descriptors, or frame bytes
// if mem) to its user and to the server's total.
type uidBudget struct {
	s      *Server
	uid    uint32
	perUID int
	total  int
	mem    bool
}

// counters returns the user's and the total counter; called with s.mu.
func (b uidBudget) counters(u *usage) (*int, *int) {
	if b.mem {
		return &u.mem, &b.s.memTotal
	}
	return &u.fds, &b.s.fdsTotal
}

func (b uidBudget) acquire(n int) bool {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	u := b.s.users[b.uid]
	if u == nil {
		return false
	}
	mine, total := b.counters(u)
	if *mine+n > b.perUID || *total+n > b.total {
		return false
	}
	*mine += n
	*total += n
	return true
}

func (b uidBudget) release(n int) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	u := b.s.users[b.uid]
	if u == nil {
		return
	}
	mine, total := b.counters(u)
	*mine -= n
	*total -= n
	if u.idle() {
		delete(b.s.users, b.uid)
	}
}

// admit counts a new connection of uid, or refuses it over a limit.
func (s *Server) admit(uid uint32, lim connLimits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for _, u := range s.users {
		total += u.conns
	}
	u := s.users[uid]
	switch {
	case total >= lim.maxConns:
		return fmt.Errorf("the daemon has %d connections open, its limit", total)
	case u != nil && u.conns >= lim.maxPerUID:
		return fmt.Errorf("uid %d has %d connections open, the per-user limit", uid, u.conns)
	}
	if u == nil {
		u = &usage{}
		s.users[uid] = u
	}
	u.conns++
	return nil
}

func (s *Server) leave(uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[uid]; u != nil {
		u.conns--
		if u.idle() {
			delete(s.users, uid)
		}
	}
}

func (s *Server) serveConn(ctx context.Context, conn *net.UnixConn, lim connLimits) {
	peer, err := PeerOf(conn)
	if err != nil {
		s.Log.Warn("rejecting connection", "err", err)
		conn.Close()
		return
	}
	if err := s.admit(peer.UID, lim); err != nil {
		s.Log.Debug("refusing connection", "uid", peer.UID, "pid", peer.PID, "reason", err)
		// Tell the client why before hanging up; it may not be reading.
		conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		NewStream(conn, 0).writeError(CodeBusy, "busy: "+err.Error()+"; retry later", json.RawMessage("null"))
		conn.Close()
		return
	}
	stream := newStream(conn, s.MaxFrame, uidBudget{s: s, uid: peer.UID, perUID: lim.fdsPerUID, total: lim.fdsTotal},
		uidBudget{s: s, uid: peer.UID, perUID: lim.memPerUID, total: lim.memTotal, mem: true})
	conCtx, hangUp := context.WithCancel(ctx)
	sc := &serverConn{s: s, peer: peer, stream: stream, ctx: conCtx, timeout: lim.callTimeout,
		calls: make(chan *jsonrpc2.Request, maxQueuedCalls)}
	jc := jsonrpc2.NewConn(ctx, stream, sc, jsonrpc2.SetLogger(slogLogger{s.Log}))
	sc.jc = jc
	s.mu.Lock()
	s.conns[jc] = struct{}{}
	s.mu.Unlock()
	go sc.work()
	go func() {
		<-jc.DisconnectNotify()
		// The read loop ended (hang-up, protocol violation, shutdown):
		// cancel the call in flight and free the connection's slot.
		hangUp()
		stream.Close()
		s.mu.Lock()
		delete(s.conns, jc)
		s.mu.Unlock()
		s.leave(peer.UID)
	}()
}

// serverConn runs one connection's calls, one at a time, in a goroutine of
// its own: the read loop keeps reading meanwhile, so it sees a hang-up at
// once and cancels the call in flight.
type serverConn struct {
	s       *Server
	peer    Peer
	stream  *Stream
	jc      *jsonrpc2.Conn
	ctx     context.Context
	timeout time.Duration
	calls   chan *jsonrpc2.Request
}

// Handle is called by the read loop: it queues the request.
func (sc *serverConn) Handle(ctx context.Context, jc *jsonrpc2.Conn, req *jsonrpc2.Request) {
	if req.Notif {
		return
	}
	select {
	case sc.calls <- req:
	default:
		sc.stream.dropFDs(req.ID.String())
		sc.stream.releaseMem(req.ID.String())
		jc.ReplyWithError(ctx, req.ID, Errorf(CodeBusy, "busy: %d calls already queued on this connection", maxQueuedCalls))
	}
}

func (sc *serverConn) work() {
	defer sc.drain()
	for {
		select {
		case <-sc.ctx.Done():
			return
		case req := <-sc.calls:
			id := req.ID.String()
			if sc.ctx.Err() != nil {
				sc.stream.dropFDs(id)
				sc.stream.releaseMem(id)
				return
			}
			res, err := sc.call(req)
			sc.stream.releaseMem(id)
			if sc.ctx.Err() != nil {
				return // nobody to answer
			}
			if err != nil {
				sc.jc.ReplyWithError(sc.ctx, req.ID, sc.wireError(req, err))
			} else {
				sc.jc.Reply(sc.ctx, req.ID, res)
			}
		}
	}
}

// drain releases what queued calls that will never run hold.
func (sc *serverConn) drain() {
	for {
		select {
		case req := <-sc.calls:
			sc.stream.dropFDs(req.ID.String())
			sc.stream.releaseMem(req.ID.String())
		default:
			return
		}
	}
}

func (sc *serverConn) call(req *jsonrpc2.Request) (any, error) {
	s := sc.s
	id := req.ID.String()
	// Descriptors nobody claimed must not leak.
	defer sc.stream.dropFDs(id)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, Errorf(CodeBusy, "the daemon is shutting down; retry")
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()
	ctx, cancel := context.WithTimeoutCause(sc.ctx, sc.timeout,
		fmt.Errorf("%w: the call ran longer than the daemon's limit of %s", context.DeadlineExceeded, sc.timeout))
	defer cancel()
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for one of the daemon's %d call slots: %w", req.Method, cap(s.slots), context.Cause(ctx))
	}
	c := &Call{Method: req.Method, Peer: sc.peer, Conn: sc.ctx, stream: sc.stream, id: id}
	if req.Params != nil {
		c.Params = *req.Params
	}
	res, err := s.Handler.Handle(ctx, c)
	sc.stream.releaseFDs(c.taken)
	if err != nil && ctx.Err() != nil && errCanceled(err) {
		// Say which limit ended the call, not just "context canceled".
		err = fmt.Errorf("%s: %w", req.Method, context.Cause(ctx))
	}
	return res, err
}

func (sc *serverConn) wireError(req *jsonrpc2.Request, err error) *jsonrpc2.Error {
	if w := toWire(err); w != nil {
		return w
	}
	if errors.Is(err, context.DeadlineExceeded) {
		sc.s.Log.Warn("call timed out", "method", req.Method, "uid", sc.peer.UID, "pid", sc.peer.PID, "err", err)
		return Errorf(CodeInternalError, "%v", err)
	}
	if errors.Is(err, context.Canceled) {
		// The daemon is stopping (a hang-up gets no answer at all).
		return Errorf(CodeBusy, "%v; retry", err)
	}
	sc.s.Log.Error("call failed", "method", req.Method, "uid", sc.peer.UID, "pid", sc.peer.PID, "err", err)
	return Errorf(CodeInternalError, "%v", err)
}

// slogLogger routes jsonrpc2's protocol messages (a peer that hung up, a
// frame too large) to the daemon's log at debug level.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(format string, v ...any) {
	s.l.Debug("jsonrpc2", "msg", fmt.Sprintf(format, v...))
}
