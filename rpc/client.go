package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"

	"github.com/sourcegraph/jsonrpc2"
)

// Client is a connection to the daemon. Its calls are serialized, so that
// descriptors attached to a call travel with that call's frame.
type Client struct {
	mu     sync.Mutex
	stream *Stream
	conn   *jsonrpc2.Conn
}

// Dial connects to the daemon's socket.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	stream := NewStream(c.(*net.UnixConn), 0)
	return &Client{stream: stream, conn: jsonrpc2.NewConn(context.Background(), stream, noHandler{},
		// A daemon that hangs up is reported by the call that was waiting,
		// not also printed on stderr.
		jsonrpc2.SetLogger(log.New(io.Discard, "", 0)))}, nil
}

// Call invokes method and decodes its result. An error reply is an *Error:
// errors.Is(err, errdefs.ErrQuota) and the like tell its kind.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	return c.CallWithFiles(ctx, method, params, nil, result)
}

// CallWithFiles invokes method with files passed as descriptors.
func (c *Client) CallWithFiles(ctx context.Context, method string, params any, files []*os.File, result any) error {
	if len(files) > MaxFDs {
		return fmt.Errorf("rpc: %d descriptors in one call, at most %d", len(files), MaxFDs)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stream.AttachFDs(files)
	err := c.conn.Call(ctx, method, params, result)
	if errors.Is(err, jsonrpc2.ErrClosed) {
		return fmt.Errorf("%s: %w", method, ErrHungUp)
	}
	return fromWire(err)
}

// ErrHungUp is returned (wrapped) by a call on a connection the daemon
// closed: it stopped or restarted, and a new connection is needed.
var ErrHungUp = errors.New("the daemon hung up (stopped or restarted)")

// Close hangs up.
func (c *Client) Close() error { return c.conn.Close() }

// noHandler refuses the (never sent) requests from the daemon.
type noHandler struct{}

func (noHandler) Handle(ctx context.Context, conn *jsonrpc2.Conn, req *jsonrpc2.Request) {
	if !req.Notif {
		conn.ReplyWithError(ctx, req.ID, &jsonrpc2.Error{Code: CodeMethodNotFound, Message: "client serves no methods"})
	}
}
