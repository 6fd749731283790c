package rpc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/sourcegraph/jsonrpc2"
	"golang.org/x/sys/unix"
)

// DefaultMaxFrame is the largest frame body a stream accepts.
const DefaultMaxFrame = 16 << 20

// MaxFDs is the most descriptors one frame may carry (the kernel's
// SCM_MAX_FD is 253). It is also the most a stream holds that no frame has
// claimed yet.
const MaxFDs = 253

// maxHeaderLines bounds a frame's header: a peer cannot keep the reader
// busy with an endless header.
const maxHeaderLines = 32

// Errors that end a connection: the peer broke the framing rules, so which
// descriptor belongs to which frame is no longer known.
var (
	// ErrFrameTooLarge is returned when a frame's Content-Length exceeds
	// the stream's limit.
	ErrFrameTooLarge = errors.New("rpc: frame too large")
	// ErrUnannouncedFDs: descriptors arrived that no frame's Fds header
	// announced, or more than the stream holds for frames not yet read.
	ErrUnannouncedFDs = errors.New("rpc: descriptors not announced by an Fds header")
	// ErrFDBudget: the peer's user holds as many descriptors in the
	// daemon as it allows (see Server.MaxFDsPerUID).
	ErrFDBudget = errors.New("rpc: too many descriptors held for this user")
	// ErrMemBudget: the frames of the peer's user in the daemon (being
	// read, queued or handled) add up to the bytes it allows (see
	// Server.MaxFrameBytesPerUID).
	ErrMemBudget = errors.New("rpc: too many frame bytes in flight for this user")
)

// budget accounts what a stream holds (descriptors, frame bytes) against
// limits shared with other streams (the server's per-user and total
// limits).
type budget interface {
	acquire(n int) bool
	release(n int)
}

// Stream is a jsonrpc2.ObjectStream over a unix socket that frames messages
// LSP-style (Content-Length: N\r\n\r\n<json>, the VSCodeObjectCodec format)
// and can carry file descriptors with a frame: the descriptors travel as
// SCM_RIGHTS ancillary data and the frame says how many with an extra
// "Fds: N" header. It reads only with ReadMsgUnix, so no descriptor is ever
// dropped by a plain read.
//
// Descriptors are held in the order they arrive until a frame claims them;
// a request's descriptors are then kept under its id until its handler
// takes them (Call.Files). Descriptors no frame announces end the
// connection, so a peer cannot make the daemon hold descriptors it never
// hands to a handler.
//
// Frames larger than the limit are refused from their header; a frame's
// buffer grows as its body arrives, so a peer that announces a large frame
// and sends little pins little memory. A frame whose body is not JSON, or
// not a JSON-RPC request or response, is answered with -32700 or -32600 by
// the stream itself and skipped: framing is intact, so one bad message does
// not end the connection.
type Stream struct {
	conn     *net.UnixConn
	maxFrame int
	budget   budget // descriptors; nil: no limit beyond MaxFDs per stream
	mem      budget // frame bytes; nil: no limit beyond maxFrame

	rmu sync.Mutex // serializes reads
	r   *bufio.Reader

	fmu     sync.Mutex // guards the descriptor state below
	queued  []int      // received, not yet claimed by a frame
	pending map[string][]int
	memHeld map[string]int // frame bytes of requests not yet released
	closed  bool

	wmu    sync.Mutex
	attach []int // descriptors for the next WriteObject
}

// NewStream wraps conn. maxFrame <= 0 means DefaultMaxFrame.
func NewStream(conn *net.UnixConn, maxFrame int) *Stream {
	return newStream(conn, maxFrame, nil, nil)
}

func newStream(conn *net.UnixConn, maxFrame int, fds, mem budget) *Stream {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	s := &Stream{conn: conn, maxFrame: maxFrame, budget: fds, mem: mem, pending: map[string][]int{}, memHeld: map[string]int{}}
	s.r = bufio.NewReaderSize(fdReader{s}, 64<<10)
	return s
}

// fdReader feeds the bufio.Reader through ReadMsgUnix, collecting
// descriptors as they arrive.
type fdReader struct{ s *Stream }

func (f fdReader) Read(p []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(MaxFDs*4))
	n, oobn, flags, _, err := f.s.conn.ReadMsgUnix(p, oob)
	var fds []int
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if got, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	if n < 0 {
		n = 0
	}
	if len(fds) > 0 {
		for _, fd := range fds {
			unix.CloseOnExec(fd)
		}
		if ferr := f.s.receive(fds); ferr != nil {
			return n, ferr
		}
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return n, errors.New("rpc: descriptors truncated (MSG_CTRUNC): too many in one message")
	}
	if n == 0 && err == nil && len(p) > 0 {
		// A stream socket reads 0 bytes only when the peer has hung up.
		return 0, io.EOF
	}
	return n, err
}

// receive queues descriptors that just arrived, or closes them and fails
// when the stream or the peer's user already holds too many.
func (s *Stream) receive(fds []int) error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	switch {
	case s.closed:
		closeFDs(fds)
		return net.ErrClosed
	case len(s.queued)+len(fds) > MaxFDs:
		closeFDs(fds)
		return fmt.Errorf("%w: %d held for frames not yet read", ErrUnannouncedFDs, len(s.queued)+len(fds))
	case s.budget != nil && !s.budget.acquire(len(fds)):
		closeFDs(fds)
		return ErrFDBudget
	}
	s.queued = append(s.queued, fds...)
	return nil
}

// claim takes a frame's nfds descriptors from the queue. Called with rmu
// held, after the frame's body was read: the frame's descriptors came with
// its first bytes, so they have arrived. Descriptors left in the queue are
// legitimate only if they came with bytes still buffered (the next frame's).
func (s *Stream) claim(nfds int) ([]int, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if nfds > len(s.queued) {
		return nil, fmt.Errorf("rpc: frame announces %d descriptors, %d arrived", nfds, len(s.queued))
	}
	fds := s.queued[:nfds:nfds]
	s.queued = s.queued[nfds:]
	if len(s.queued) > 0 && s.r.Buffered() == 0 {
		extra := len(s.queued)
		s.dropLocked(fds)
		s.dropLocked(s.queued)
		s.queued = nil
		return nil, fmt.Errorf("%w: %d more than the frame announced", ErrUnannouncedFDs, extra)
	}
	return fds, nil
}

// dropLocked closes descriptors the stream holds and returns them to the
// budget.
func (s *Stream) dropLocked(fds []int) {
	closeFDs(fds)
	if s.budget != nil && len(fds) > 0 {
		s.budget.release(len(fds))
	}
}

func (s *Stream) drop(fds []int) {
	s.fmu.Lock()
	s.dropLocked(fds)
	s.fmu.Unlock()
}

// ReadObject reads the next JSON-RPC message into v. The frame bytes of a
// request stay charged to the budget until the server calls releaseMem
// (its call ended); others are released at once.
func (s *Stream) ReadObject(v any) error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for {
		body, nfds, err := s.readFrame()
		if err != nil {
			return err
		}
		size := len(body)
		fds, err := s.claim(nfds)
		if err != nil {
			s.releaseBytes(size)
			return err
		}
		if code, msg := checkMessage(body); code != 0 {
			s.drop(fds)
			s.releaseBytes(size)
			if err := s.writeError(code, msg, idOf(body)); err != nil {
				return err
			}
			continue
		}
		if err := json.Unmarshal(body, v); err != nil {
			s.drop(fds)
			s.releaseBytes(size)
			if err := s.writeError(CodeInvalidRequest, "invalid request: "+err.Error(), idOf(body)); err != nil {
				return err
			}
			continue
		}
		return s.hold(body, fds)
	}
}

func (s *Stream) releaseBytes(n int) {
	if s.mem != nil && n > 0 {
		s.mem.release(n)
	}
}

// releaseMem releases the frame bytes of request id: the server calls it
// once the request's call has ended (or was refused).
func (s *Stream) releaseMem(id string) {
	s.fmu.Lock()
	n := s.memHeld[id]
	delete(s.memHeld, id)
	s.fmu.Unlock()
	s.releaseBytes(n)
}

// hold keeps a request's descriptors under its id until its handler takes
// them, and its frame bytes until its call ends. Only requests (with an id)
// take descriptors: others are closed.
func (s *Stream) hold(body []byte, fds []int) error {
	id, ok := requestID(body)
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if !ok {
		s.dropLocked(fds)
		s.releaseBytes(len(body))
		return nil
	}
	if _, dup := s.memHeld[id]; dup {
		s.dropLocked(fds)
		s.releaseBytes(len(body))
		return fmt.Errorf("rpc: request id %s sent again while in flight", id)
	}
	s.memHeld[id] = len(body)
	if len(fds) == 0 {
		return nil
	}
	if s.closed {
		s.dropLocked(fds)
		return nil
	}
	s.pending[id] = fds
	return nil
}

// requestID is the key of a request's descriptors: jsonrpc2.ID's String of
// its id; false for a response or a notification.
func requestID(body []byte) (string, bool) {
	var m struct {
		ID     *jsonrpc2.ID     `json:"id"`
		Method *json.RawMessage `json:"method"`
	}
	if json.Unmarshal(body, &m) != nil || m.ID == nil || m.Method == nil {
		return "", false
	}
	return m.ID.String(), true
}

// takeFDs hands the descriptors passed with request id to the caller, who
// must close them and then release them with releaseFDs.
func (s *Stream) takeFDs(id string) []*os.File {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	fds := s.pending[id]
	delete(s.pending, id)
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "fd"+strconv.Itoa(fd))
	}
	return files
}

// releaseFDs returns n taken descriptors, now closed, to the budget.
func (s *Stream) releaseFDs(n int) {
	if s.budget != nil && n > 0 {
		s.budget.release(n)
	}
}

// dropFDs closes the descriptors of request id that no handler took.
func (s *Stream) dropFDs(id string) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.dropLocked(s.pending[id])
	delete(s.pending, id)
}

func (s *Stream) readFrame() (body []byte, nfds int, err error) {
	length := -1
	for lines := 0; ; lines++ {
		if lines == maxHeaderLines {
			return nil, 0, errors.New("rpc: too many header lines")
		}
		// ReadSlice, not ReadString: a line without a newline must not
		// grow without bound.
		raw, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(raw) > 1024 {
			return nil, 0, errors.New("rpc: header line too long")
		}
		if err != nil {
			return nil, 0, err
		}
		line := strings.TrimRight(string(raw), "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, 0, fmt.Errorf("rpc: malformed header %q", line)
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return nil, 0, fmt.Errorf("rpc: bad Content-Length %q", value)
			}
			if n > int64(s.maxFrame) {
				return nil, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, s.maxFrame)
			}
			length = int(n)
		case "fds":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > MaxFDs {
				return nil, 0, fmt.Errorf("rpc: bad Fds header %q", value)
			}
			nfds = n
		}
	}
	if length < 0 {
		return nil, 0, errors.New("rpc: frame without Content-Length")
	}
	if s.mem != nil && !s.mem.acquire(length) {
		return nil, 0, fmt.Errorf("%w: a frame of %d bytes", ErrMemBudget, length)
	}
	// The buffer grows as the body arrives (bytes.Buffer doubles): a peer
	// announcing 16 MiB and sending 10 bytes costs 10 bytes, not 16 MiB.
	var buf bytes.Buffer
	if length <= 64<<10 {
		buf.Grow(length)
	}
	if _, err := io.CopyN(&buf, s.r, int64(length)); err != nil {
		s.releaseBytes(length)
		return nil, 0, fmt.Errorf("rpc: frame cut off: %w", err)
	}
	return buf.Bytes(), nfds, nil
}

// checkMessage classifies a frame body: 0 when it is a JSON-RPC 2.0 message
// the connection can handle, otherwise the error code to answer with.
func checkMessage(body []byte) (int64, string) {
	if !json.Valid(body) {
		return CodeParseError, "parse error: frame body is not JSON"
	}
	var m struct {
		Version *string          `json:"jsonrpc"`
		Method  *json.RawMessage `json:"method"`
		Result  *json.RawMessage `json:"result"`
		Error   *json.RawMessage `json:"error"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		return CodeInvalidRequest, "invalid request: batches are not supported"
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return CodeInvalidRequest, "invalid request: not a JSON object"
	}
	if m.Version == nil || *m.Version != "2.0" {
		return CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`
	}
	if m.Method == nil && m.Result == nil && m.Error == nil {
		return CodeInvalidRequest, "invalid request: no method"
	}
	if m.Method != nil {
		var name string
		if json.Unmarshal(*m.Method, &name) != nil || name == "" {
			return CodeInvalidRequest, "invalid request: method must be a non-empty string"
		}
	}
	return 0, ""
}

func idOf(body []byte) json.RawMessage {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &m) != nil || len(m.ID) == 0 {
		return json.RawMessage("null")
	}
	return m.ID
}

func (s *Stream) writeError(code int64, msg string, id json.RawMessage) error {
	resp := map[string]any{
		"jsonrpc": "2.0",
		"id":      id,
		"error":   map[string]any{"code": code, "message": msg},
	}
	return s.WriteObject(resp)
}

// AttachFDs makes the next WriteObject carry files. The caller must
// serialize it with that write (the Client does).
func (s *Stream) AttachFDs(files []*os.File) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.attach = s.attach[:0]
	for _, f := range files {
		s.attach = append(s.attach, int(f.Fd()))
	}
}

// WriteObject writes obj as one frame, with any attached descriptors.
func (s *Stream) WriteObject(obj any) error {
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	fds := s.attach
	s.attach = nil
	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "Content-Length: %d\r\n", len(body))
	if len(fds) > 0 {
		fmt.Fprintf(&hdr, "Fds: %d\r\n", len(fds))
	}
	hdr.WriteString("\r\n")
	msg := append(hdr.Bytes(), body...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	// The descriptors go with the first write; the rest of a large frame
	// follows as plain data.
	n, _, err := s.conn.WriteMsgUnix(msg, oob, nil)
	for err == nil && n < len(msg) {
		var m int
		m, err = s.conn.Write(msg[n:])
		n += m
	}
	return err
}

// Close closes the connection and any descriptors nobody claimed.
func (s *Stream) Close() error {
	err := s.conn.Close()
	s.fmu.Lock()
	s.closed = true
	s.dropLocked(s.queued)
	s.queued = nil
	for id, fds := range s.pending {
		s.dropLocked(fds)
		delete(s.pending, id)
	}
	s.fmu.Unlock()
	return err
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
