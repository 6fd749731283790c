package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/sourcegraph/jsonrpc2"
)

// Call is one request as a Handler sees it.
type Call struct {
	Method string
	Params json.RawMessage
	Peer   Peer
	// Conn is done when the connection closes.
	Conn   context.Context
	stream *Stream
}

// Files hands over the descriptors passed with the request; the handler
// must close them.
func (c *Call) Files() []*os.File { return c.stream.TakeFDs() }

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
// in order; connections are served concurrently.
type Handler interface {
	Handle(ctx context.Context, c *Call) (any, error)
}

// Server accepts connections on a unix socket and serves them.
type Server struct {
	Handler  Handler
	Log      *slog.Logger
	MaxFrame int
	// ShutdownTimeout bounds how long Serve waits for in-flight calls once
	// its context ends.
	ShutdownTimeout time.Duration

	mu       sync.Mutex
	conns    map[*jsonrpc2.Conn]struct{}
	inflight sync.WaitGroup
	closing  bool // guarded by mu; set once shutdown begins
}

// Serve accepts connections until ctx ends, then stops accepting, lets
// in-flight calls finish (up to ShutdownTimeout), and closes every
// connection.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) error {
	s.conns = map[*jsonrpc2.Conn]struct{}{}
	connCtx, cancelConns := context.WithCancel(context.Background())
	defer cancelConns()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			s.Log.Warn("accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.serveConn(connCtx, conn)
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

func (s *Server) serveConn(ctx context.Context, conn *net.UnixConn) {
	peer, err := PeerOf(conn)
	if err != nil {
		s.Log.Warn("rejecting connection", "err", err)
		conn.Close()
		return
	}
	stream := NewStream(conn, s.MaxFrame)
	conCtx, hangUp := context.WithCancel(ctx)
	h := jsonrpc2.HandlerWithError(func(ctx context.Context, _ *jsonrpc2.Conn, req *jsonrpc2.Request) (any, error) {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return nil, Errorf(CodeBusy, "the daemon is shutting down; retry")
		}
		s.inflight.Add(1)
		s.mu.Unlock()
		defer s.inflight.Done()
		c := &Call{Method: req.Method, Peer: peer, Conn: conCtx, stream: stream}
		if req.Params != nil {
			c.Params = *req.Params
		}
		// Descriptors nobody claimed must not leak.
		defer func() {
			for _, f := range stream.TakeFDs() {
				f.Close()
			}
		}()
		res, err := s.Handler.Handle(ctx, c)
		if err != nil {
			var je *jsonrpc2.Error
			if !errors.As(err, &je) {
				s.Log.Error("call failed", "method", req.Method, "uid", peer.UID, "pid", peer.PID, "err", err)
				err = Errorf(CodeInternalError, "%v", err)
			}
		}
		return res, err
	}).SuppressErrClosed()
	jc := jsonrpc2.NewConn(ctx, stream, h, jsonrpc2.SetLogger(slogLogger{s.Log}))
	s.mu.Lock()
	s.conns[jc] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-jc.DisconnectNotify()
		hangUp()
		s.mu.Lock()
		delete(s.conns, jc)
		s.mu.Unlock()
	}()
}

// slogLogger routes jsonrpc2's protocol messages (a peer that hung up, a
// frame too large) to the daemon's log at debug level.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(format string, v ...any) {
	s.l.Debug("jsonrpc2", "msg", fmt.Sprintf(format, v...))
}
