package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/errdefs"
)

// testHandler serves the methods the server tests need.
type testHandler struct {
	started chan struct{}    // a "block" call began
	ended   chan error       // a "block" call's context ended, with its error
	fds     chan int         // a "files" call took this many descriptors
	err     map[string]error // method -> error to return
}

func (h *testHandler) Handle(ctx context.Context, c *Call) (any, error) {
	switch c.Method {
	case "block":
		h.started <- struct{}{}
		<-ctx.Done()
		h.ended <- ctx.Err()
		return nil, ctx.Err()
	case "files":
		files := c.Files()
		for _, f := range files {
			f.Close()
		}
		h.fds <- len(files)
		return len(files), nil
	case "status":
		return "ok", nil
	}
	if err, ok := h.err[c.Method]; ok {
		return nil, err
	}
	return nil, Errorf(CodeMethodNotFound, "unknown method %q", c.Method)
}

// syncBuffer is a log sink the server writes to from its goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	*Server
	h      *testHandler
	socket string
	log    *syncBuffer
	stop   func()
}

// startServer serves a testHandler on a socket in a temp dir; configure
// adjusts the server's bounds before it starts.
func startServer(t *testing.T, configure func(*Server)) *testServer {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	h := &testHandler{started: make(chan struct{}, 4), ended: make(chan error, 4), fds: make(chan int, 16), err: map[string]error{}}
	log := &syncBuffer{}
	srv := &Server{Handler: h, Log: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ShutdownTimeout: time.Second}
	if configure != nil {
		configure(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	ts := &testServer{Server: srv, h: h, socket: socket, log: log}
	ts.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) dial(t *testing.T) *Client {
	t.Helper()
	c, err := Dial(context.Background(), ts.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (ts *testServer) rawDial(t *testing.T) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unix", ts.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// closedByPeer reports whether the server hung up on c (reading any
// replies first).
func closedByPeer(c *net.UnixConn) bool {
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF: io.Copy returns nil
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCallCancelledOnHangUp: a client that hangs up mid-call cancels the
// handler's context.
func TestCallCancelledOnHangUp(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.dial(t)
	go c.Call(context.Background(), "block", nil, nil)
	select {
	case <-ts.h.started:
	case <-time.After(5 * time.Second):
		t.Fatal("call never started")
	}
	c.Close()
	select {
	case err := <-ts.h.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler context ended with %v, want Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled 5s after the client hung up")
	}
}

// TestCallTimeout: a call that runs past CallTimeout is cancelled and the
// client told why.
func TestCallTimeout(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.CallTimeout = 200 * time.Millisecond })
	c := ts.dial(t)
	start := time.Now()
	err := c.Call(callCtx(t), "block", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "longer than the daemon's limit") {
		t.Fatalf("call: %v, want the per-call limit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("call returned after %s", d)
	}
	if !errors.Is(<-ts.h.ended, context.DeadlineExceeded) {
		t.Error("handler context did not end with DeadlineExceeded")
	}
	// The connection still serves.
	var res string
	if err := c.Call(callCtx(t), "status", nil, &res); err != nil || res != "ok" {
		t.Errorf("status after a timed-out call: %q, %v", res, err)
	}
}

// TestErrorMapping: handler errors wrapping errdefs sentinels reach the
// client with their code and message, and errors.Is works there.
func TestErrorMapping(t *testing.T) {
	ts := startServer(t, func(s *Server) {
		h := s.Handler.(*testHandler)
		h.err["quota"] = fmt.Errorf("link: manifest of 2 GiB: %w", errdefs.ErrQuota)
		h.err["notfound"] = Errorf(CodeNotFound, "no ingest session %q", "x")
		h.err["permission"] = fmt.Errorf("session: %w", errdefs.ErrPermission)
		h.err["busy"] = errdefs.ErrBusy
		h.err["fds"] = fmt.Errorf("ingest: %w", errdefs.ErrNeedDescriptors)
		h.err["internal"] = errors.New("disk on fire")
		h.err["kinded"] = errdefs.Newf(errdefs.ErrQuota, "the shared store is full: %v", errors.New("why"))
		h.err["invalid"] = errdefs.Newf(errdefs.ErrInvalidArgument, "gc: negative grace")
		h.err["untrusted"] = fmt.Errorf("remote pull: %w", fmt.Errorf("tree x: %w: not signed", errdefs.ErrUntrusted))
	})
	c := ts.dial(t)
	for _, tc := range []struct {
		method string
		code   int64
		is     error
		msg    string
	}{
		{"quota", CodeQuota, errdefs.ErrQuota, "link: manifest of 2 GiB: quota exceeded"},
		{"notfound", CodeNotFound, errdefs.ErrNotFound, `no ingest session "x"`},
		{"permission", CodePermission, errdefs.ErrPermission, "session: permission denied"},
		{"busy", CodeBusy, errdefs.ErrBusy, "busy"},
		{"fds", CodeNeedDescriptors, errdefs.ErrNeedDescriptors, "ingest: descriptors required"},
		{"internal", CodeInternalError, nil, "disk on fire"},
		// errdefs.Newf: the message exactly as written, the kind's code.
		{"kinded", CodeQuota, errdefs.ErrQuota, "the shared store is full: why"},
		{"invalid", CodeInvalidParams, errdefs.ErrInvalidArgument, "gc: negative grace"},
		{"untrusted", CodeUntrusted, errdefs.ErrUntrusted, "remote pull: tree x: untrusted tree: not signed"},
		{"nosuch", CodeMethodNotFound, nil, "unknown method"},
	} {
		err := c.Call(callCtx(t), tc.method, nil, nil)
		wrapped := fmt.Errorf("caller context: %w", err)
		if got := CodeOf(wrapped); got != tc.code {
			t.Errorf("%s: code %d, want %d (%v)", tc.method, got, tc.code, err)
		}
		if err == nil || err.Error() != tc.msg && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: message %v, want %q", tc.method, err, tc.msg)
		}
		for _, k := range kinds {
			if got, want := errors.Is(wrapped, k.err), k.err == tc.is; got != want {
				t.Errorf("%s: errors.Is(err, %v) = %v, want %v", tc.method, k.err, got, want)
			}
		}
	}
	if strings.Count(ts.log.String(), "call failed") != 1 {
		t.Errorf("want exactly the internal error logged as a failure; log:\n%s", ts.log)
	}
}

// TestConnLimits: connections over the per-user or total limit are told
// busy and closed; a slot freed is usable again.
func TestConnLimits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*Server)
	}{
		{"per uid", func(s *Server) { s.MaxConnsPerUID = 3 }},
		{"total", func(s *Server) { s.MaxConns = 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.configure)
			var open []*Client
			for range 3 {
				c := ts.dial(t)
				if err := c.Call(callCtx(t), "status", nil, nil); err != nil {
					t.Fatalf("connection within the limit: %v", err)
				}
				open = append(open, c)
			}
			c := ts.dial(t)
			err := c.Call(callCtx(t), "status", nil, nil)
			if err == nil {
				t.Fatal("a fourth connection was served")
			}
			raw := ts.rawDial(t)
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			reply, _ := io.ReadAll(raw)
			if !strings.Contains(string(reply), `"code":`+strconv.Itoa(CodeBusy)) {
				t.Errorf("refused connection got %q, want a busy error", reply)
			}
			open[0].Close()
			deadline := time.Now().Add(5 * time.Second)
			for {
				c := ts.dial(t)
				err := c.Call(callCtx(t), "status", nil, nil)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no slot freed 5s after a connection closed: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestUnannouncedDescriptorsCloseConnection: a connection that sends
// descriptors no Fds header announced is closed and they are released,
// while other connections are served.
func TestUnannouncedDescriptorsCloseConnection(t *testing.T) {
	before := openFDs(t)
	ts := startServer(t, nil)
	for range 3 {
		raw := ts.rawDial(t)
		sendRaw(t, raw, frame(`{"jsonrpc":"2.0","id":1,"method":"status"}`), 100)
		if !closedByPeer(raw) {
			t.Fatal("connection that sent 100 unannounced descriptors stays open")
		}
		raw.Close()
	}
	if err := ts.dial(t).Call(callCtx(t), "status", nil, nil); err != nil {
		t.Fatalf("another connection: %v", err)
	}
	ts.stop()
	if after := openFDs(t); after > before+2 {
		t.Errorf("%d descriptors open before, %d after the server stopped", before, after)
	}
}

// TestFDBudgetPerUID: a user's descriptors held across connections are
// capped; a connection passing the cap is closed; calls without
// descriptors and descriptors within the budget still work; the budget
// refills as descriptors are released.
func TestFDBudgetPerUID(t *testing.T) {
	before := openFDs(t)
	ts := startServer(t, func(s *Server) { s.MaxFDsPerUID = 300 })
	// A frame announcing 200 descriptors, its body never finished: they
	// stay held.
	holder := ts.rawDial(t)
	sendRaw(t, holder, "Content-Length: 1000\r\nFds: 200\r\n\r\n{", 200)
	time.Sleep(200 * time.Millisecond)
	second := ts.rawDial(t)
	sendRaw(t, second, "Content-Length: 1000\r\nFds: 200\r\n\r\n{", 200)
	if !closedByPeer(second) {
		t.Error("connection passing the user's descriptor budget stays open")
	}
	c := ts.dial(t)
	if err := c.Call(callCtx(t), "status", nil, nil); err != nil {
		t.Fatalf("call without descriptors: %v", err)
	}
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	var n int
	if err := c.CallWithFiles(callCtx(t), "files", nil, []*os.File{f, f}, &n); err != nil || n != 2 {
		t.Fatalf("call with 2 descriptors within the budget: %d, %v", n, err)
	}
	holder.Close()
	files := make([]*os.File, 250)
	for i := range files {
		files[i] = f
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.CallWithFiles(callCtx(t), "files", nil, files, &n)
		if err == nil && n == 250 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("budget not refilled after the holder hung up: %v", err)
		}
		c.Close()
		c = ts.dial(t)
		time.Sleep(20 * time.Millisecond)
	}
	c.Close()
	second.Close()
	ts.stop()
	if after := openFDs(t); after > before+2 {
		t.Errorf("%d descriptors open before, %d after the server stopped", before, after)
	}
}

// TestAcceptSurvivesEMFILE: with the descriptor table full, accept fails;
// the server logs it once, keeps retrying, and serves the waiting client
// once descriptors are free.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	ts := startServer(t, nil)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(openFDs(t) + 64)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	var fillers []*os.File
	defer func() {
		for _, f := range fillers {
			f.Close()
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fillers = append(fillers, f)
	}
	// One slot for the client's socket; the server then cannot accept.
	fillers[len(fillers)-1].Close()
	fillers = fillers[:len(fillers)-1]
	conn, err := net.Dial("unix", ts.socket)
	if err != nil {
		t.Fatalf("dial with one descriptor free: %v", err)
	}
	defer conn.Close()
	time.Sleep(500 * time.Millisecond)
	for _, f := range fillers {
		f.Close()
	}
	fillers = nil
	reply := make(chan string, 1)
	go func() {
		fmt.Fprint(conn, frame(statusReq))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 200)
		n, _ := conn.Read(b)
		reply <- string(b[:n])
	}()
	if r := <-reply; !strings.Contains(r, `"result":"ok"`) {
		t.Fatalf("client waiting through EMFILE got %q; log:\n%s", r, ts.log)
	}
	log := ts.log.String()
	if n := strings.Count(log, "accept failed"); n != 1 {
		t.Errorf("accept failures logged %d times, want once per episode; log:\n%s", n, log)
	}
	if !strings.Contains(log, "accept recovered") {
		t.Errorf("recovery not logged; log:\n%s", log)
	}
}

// TestIdleConnectionsPinNoThreads: blocked reads on client sockets wait in
// Go's netpoller, not in OS threads: 200 idle connections add no thread
// per connection.
func TestIdleConnectionsPinNoThreads(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.MaxConnsPerUID = 300 })
	threads := func() int {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Skip(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n
			}
		}
		t.Skip("no Threads in /proc/self/status")
		return 0
	}
	before := threads()
	for range 200 {
		raw := ts.rawDial(t)
		fmt.Fprint(raw, "Content-Length: 10\r\n\r\n{") // a read that blocks
	}
	time.Sleep(300 * time.Millisecond)
	if grew := threads() - before; grew > 20 {
		t.Errorf("200 blocked connections added %d threads", grew)
	}
}

// TestMaxInflight: calls over the in-flight limit wait for a slot rather
// than fail, and run once one frees.
func TestMaxInflight(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.MaxInflight = 1 })
	blocker := ts.dial(t)
	go blocker.Call(context.Background(), "block", nil, nil)
	<-ts.h.started
	done := make(chan error, 1)
	go func() { done <- ts.dial(t).Call(callCtx(t), "status", nil, nil) }()
	select {
	case err := <-done:
		t.Fatalf("a second call ran while the only slot was taken: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	blocker.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiting call: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting call did not run after the slot freed")
	}
}

// TestFrameBytesPerUID: a user's frames in flight are bounded in bytes:
// a connection whose frame would pass the budget is closed, a small call
// still works, and the budget refills when the holder hangs up.
func TestFrameBytesPerUID(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.MaxFrame = 1 << 20; s.MaxFrameBytesPerUID = 1 << 20 })
	holder := ts.rawDial(t)
	fmt.Fprint(holder, "Content-Length: 900000\r\n\r\n{") // announced, never finished
	time.Sleep(200 * time.Millisecond)
	second := ts.rawDial(t)
	fmt.Fprint(second, "Content-Length: 200000\r\n\r\n{")
	if !closedByPeer(second) {
		t.Error("connection whose frame passes the user's byte budget stays open")
	}
	c := ts.dial(t)
	if err := c.Call(callCtx(t), "status", nil, nil); err != nil {
		t.Fatalf("small call within the budget: %v", err)
	}
	holder.Close()
	pad := map[string]string{"pad": strings.Repeat("x", 200000)}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := ts.dial(t)
		err := c.Call(callCtx(t), "status", pad, nil)
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("byte budget not refilled after the holder hung up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every call's bytes were released.
	ts.Server.mu.Lock()
	defer ts.Server.mu.Unlock()
	if ts.Server.memTotal > 200 {
		t.Errorf("%d frame bytes still charged with no call in flight", ts.Server.memTotal)
	}
}
