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

	"golang.org/x/sys/unix"
)

// DefaultMaxFrame is the largest frame body a stream accepts.
const DefaultMaxFrame = 16 << 20

// MaxFDs is the most descriptors one frame may carry (the kernel's
// SCM_MAX_FD is 253).
const MaxFDs = 253

// Stream is a jsonrpc2.ObjectStream over a unix socket that frames messages
// LSP-style (Content-Length: N\r\n\r\n<json>, the VSCodeObjectCodec format)
// and can carry file descriptors with a frame: the descriptors travel as
// SCM_RIGHTS ancillary data and the frame says how many with an extra
// "Fds: N" header. It reads only with ReadMsgUnix, so no descriptor is ever
// dropped by a plain read, and queues received descriptors in arrival order.
//
// Frames larger than the limit are refused from their header, before any
// allocation. A frame whose body is not JSON, or not a JSON-RPC request or
// response, is answered with -32700 or -32600 by the stream itself and
// skipped: framing is intact, so one bad message does not end the connection.
type Stream struct {
	conn     *net.UnixConn
	maxFrame int

	rmu    sync.Mutex
	r      *bufio.Reader
	queued []int // received descriptors not yet claimed by a frame
	// current holds the descriptors of the frame last returned by
	// ReadObject, until TakeFDs claims them or the next read closes them.
	current []int

	wmu    sync.Mutex
	attach []int // descriptors for the next WriteObject
}

// NewStream wraps conn. maxFrame <= 0 means DefaultMaxFrame.
func NewStream(conn *net.UnixConn, maxFrame int) *Stream {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	s := &Stream{conn: conn, maxFrame: maxFrame}
	s.r = bufio.NewReaderSize(fdReader{s}, 64<<10)
	return s
}

// fdReader feeds the bufio.Reader through ReadMsgUnix, collecting
// descriptors as they arrive.
type fdReader struct{ s *Stream }

func (f fdReader) Read(p []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(MaxFDs*4))
	n, oobn, flags, _, err := f.s.conn.ReadMsgUnix(p, oob)
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for _, m := range msgs {
				fds, err := unix.ParseUnixRights(&m)
				if err == nil {
					for _, fd := range fds {
						unix.CloseOnExec(fd)
					}
					f.s.queued = append(f.s.queued, fds...)
				}
			}
		}
	}
	if n < 0 {
		n = 0
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

// ErrFrameTooLarge is returned when a frame's Content-Length exceeds the
// stream's limit.
var ErrFrameTooLarge = errors.New("rpc: frame too large")

// ReadObject reads the next JSON-RPC message into v.
func (s *Stream) ReadObject(v any) error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	closeFDs(s.current)
	s.current = nil
	for {
		body, nfds, err := s.readFrame()
		if err != nil {
			return err
		}
		if nfds > len(s.queued) {
			return fmt.Errorf("rpc: frame announces %d descriptors, %d arrived", nfds, len(s.queued))
		}
		fds := s.queued[:nfds:nfds]
		s.queued = s.queued[nfds:]
		if code, msg := checkMessage(body); code != 0 {
			closeFDs(fds)
			if err := s.writeError(code, msg, idOf(body)); err != nil {
				return err
			}
			continue
		}
		if err := json.Unmarshal(body, v); err != nil {
			closeFDs(fds)
			if err := s.writeError(-32600, "invalid request: "+err.Error(), idOf(body)); err != nil {
				return err
			}
			continue
		}
		s.current = fds
		return nil
	}
}

// TakeFDs hands the descriptors of the frame being handled to the caller,
// who must close them. Handlers run one at a time per connection, so the
// frame being handled is the one last read.
func (s *Stream) TakeFDs() []*os.File {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	files := make([]*os.File, len(s.current))
	for i, fd := range s.current {
		files[i] = os.NewFile(uintptr(fd), "fd"+strconv.Itoa(fd))
	}
	s.current = nil
	return files
}

func (s *Stream) readFrame() (body []byte, nfds int, err error) {
	length := -1
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return nil, 0, err
		}
		if len(line) > 1024 {
			return nil, 0, errors.New("rpc: header line too long")
		}
		line = strings.TrimRight(line, "\r\n")
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
	body = make([]byte, length)
	if _, err := readFull(s.r, body); err != nil {
		return nil, 0, fmt.Errorf("rpc: frame cut off: %w", err)
	}
	return body, nfds, nil
}

func readFull(r *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// checkMessage classifies a frame body: 0 when it is a JSON-RPC 2.0 message
// the connection can handle, otherwise the error code to answer with.
func checkMessage(body []byte) (int64, string) {
	if !json.Valid(body) {
		return -32700, "parse error: frame body is not JSON"
	}
	var m struct {
		Version *string          `json:"jsonrpc"`
		Method  *json.RawMessage `json:"method"`
		Result  *json.RawMessage `json:"result"`
		Error   *json.RawMessage `json:"error"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		return -32600, "invalid request: batches are not supported"
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return -32600, "invalid request: not a JSON object"
	}
	if m.Version == nil || *m.Version != "2.0" {
		return -32600, `invalid request: "jsonrpc" must be "2.0"`
	}
	if m.Method == nil && m.Result == nil && m.Error == nil {
		return -32600, "invalid request: no method"
	}
	if m.Method != nil {
		var name string
		if json.Unmarshal(*m.Method, &name) != nil || name == "" {
			return -32600, "invalid request: method must be a non-empty string"
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
	s.rmu.Lock()
	closeFDs(s.queued)
	closeFDs(s.current)
	s.queued, s.current = nil, nil
	s.rmu.Unlock()
	return err
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
