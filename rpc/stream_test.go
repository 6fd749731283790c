package rpc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// socketpair returns the two ends of a unix stream socketpair as
// *net.UnixConn.
func socketpair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

// sendRaw writes msg with n copies of a /dev/null descriptor attached, and
// closes its own copy: only the receiver then holds them.
func sendRaw(t *testing.T, c *net.UnixConn, msg string, n int) {
	t.Helper()
	var oob []byte
	if n > 0 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fds := make([]int, n)
		for i := range fds {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix([]byte(msg), oob, nil); err != nil {
		t.Fatal(err)
	}
}

func frame(body string, hdrs ...string) string {
	h := fmt.Sprintf("Content-Length: %d\r\n", len(body))
	for _, x := range hdrs {
		h += x + "\r\n"
	}
	return h + "\r\n" + body
}

const statusReq = `{"jsonrpc":"2.0","id":7,"method":"status"}`

// TestStreamFrames drives the stream's reader with well-formed and broken
// frames over a socketpair, and checks that no descriptor outlives it.
func TestStreamFrames(t *testing.T) {
	long := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name    string
		msg     string
		fds     int
		closeW  bool   // hang up after sending
		wantErr string // "" = the frame is read
		wantFDs int    // descriptors handed to the request's handler
		reply   string // the stream's own answer to the peer, if any
	}{
		{name: "request", msg: frame(statusReq)},
		{name: "request with descriptors", msg: frame(statusReq, "Fds: 2"), fds: 2, wantFDs: 2},
		{name: "header names any case", msg: frame(statusReq, "fDs: 1"), fds: 1, wantFDs: 1},
		{name: "Fds announced, none sent", msg: frame(statusReq, "Fds: 2"), wantErr: "announces 2 descriptors, 0 arrived"},
		{name: "Fds announced, fewer sent", msg: frame(statusReq, "Fds: 3"), fds: 2, wantErr: "announces 3 descriptors, 2 arrived"},
		{name: "descriptors without Fds header", msg: frame(statusReq), fds: 3, wantErr: ErrUnannouncedFDs.Error()},
		{name: "more descriptors than announced", msg: frame(statusReq, "Fds: 1"), fds: 3, wantErr: ErrUnannouncedFDs.Error()},
		{name: "Fds over the kernel limit", msg: frame(statusReq, "Fds: 300"), wantErr: "bad Fds header"},
		{name: "Fds negative", msg: frame(statusReq, "Fds: -1"), wantErr: "bad Fds header"},
		{name: "malformed header", msg: "Content-Length 5\r\n\r\nhello", wantErr: "malformed header"},
		{name: "bad Content-Length", msg: "Content-Length: many\r\n\r\n{}", wantErr: "bad Content-Length"},
		{name: "no Content-Length", msg: "Fds: 0\r\n\r\n{}", wantErr: "without Content-Length"},
		{name: "oversize frame", msg: "Content-Length: 1048577\r\n\r\n{", wantErr: ErrFrameTooLarge.Error()},
		{name: "header line too long", msg: "X-Long: " + long + "\r\n" + frame(statusReq), wantErr: "header line too long"},
		{name: "endless header", msg: strings.Repeat("X-A: b\r\n", 40), wantErr: "too many header lines"},
		{name: "cut-off frame", msg: "Content-Length: 100\r\n\r\n{\"jsonrpc\":", closeW: true, wantErr: "frame cut off"},
		{name: "cut-off frame with descriptors", msg: "Content-Length: 100\r\nFds: 2\r\n\r\n{\"jsonrpc\":", fds: 2, closeW: true, wantErr: "frame cut off"},
		{name: "hang-up", msg: "", closeW: true, wantErr: io.EOF.Error()},
		{name: "descriptors on a notification are closed", msg: frame(`{"jsonrpc":"2.0","method":"status"}`, "Fds: 2"), fds: 2},
		{name: "not JSON, answered and skipped", msg: frame(`{"jsonrpc":`, "Fds: 1") + frame(statusReq), fds: 1, reply: `"code":-32700`},
		{name: "not JSON-RPC 2.0, answered and skipped", msg: frame(`{"jsonrpc":"1.0","id":1}`) + frame(statusReq), reply: `"code":-32600`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := openFDs(t)
			a, b := socketpair(t)
			s := NewStream(a, 1<<20)
			if tc.msg != "" {
				sendRaw(t, b, tc.msg, tc.fds)
			}
			if tc.closeW {
				b.CloseWrite()
			}
			var got json.RawMessage
			done := make(chan error, 1)
			go func() { done <- s.ReadObject(&got) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("ReadObject did not return")
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ReadObject: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ReadObject: got error %v, want one containing %q", err, tc.wantErr)
			}
			if err == nil {
				files := s.takeFDs("7")
				if len(files) != tc.wantFDs {
					t.Errorf("request got %d descriptors, want %d", len(files), tc.wantFDs)
				}
				for _, f := range files {
					f.Close()
				}
			}
			if tc.reply != "" {
				b.SetReadDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(b).ReadString('}')
				if !strings.Contains(line, tc.reply) {
					t.Errorf("stream answered %q, want %s", line, tc.reply)
				}
			}
			s.Close()
			b.Close()
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open before, %d after: leaked", before, after)
			}
		})
	}
}

// TestStreamDescriptorsFollowRequests: a pipelining peer's descriptors go
// to the request that announced them, whichever order handlers take them.
func TestStreamDescriptorsFollowRequests(t *testing.T) {
	before := openFDs(t)
	a, b := socketpair(t)
	s := NewStream(a, 0)
	sendRaw(t, b, frame(`{"jsonrpc":"2.0","id":1,"method":"m"}`, "Fds: 1"), 1)
	sendRaw(t, b, frame(`{"jsonrpc":"2.0","id":"two","method":"m"}`, "Fds: 3"), 3)
	var m json.RawMessage
	for range 2 {
		if err := s.ReadObject(&m); err != nil {
			t.Fatal(err)
		}
	}
	two := s.takeFDs(`"two"`)
	one := s.takeFDs("1")
	if len(two) != 3 || len(one) != 1 {
		t.Errorf("requests got %d and %d descriptors, want 1 and 3", len(one), len(two))
	}
	for _, f := range append(one, two...) {
		f.Close()
	}
	s.Close()
	b.Close()
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}

// TestStreamFrameMemory: a peer that announces a large frame and sends a
// few bytes of it makes the stream allocate about what arrived, not the
// announced length.
func TestStreamFrameMemory(t *testing.T) {
	a, b := socketpair(t)
	defer b.Close()
	s := NewStream(a, 64<<20)
	defer s.Close()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	start := ms.TotalAlloc
	sendRaw(t, b, "Content-Length: 60000000\r\n\r\n{\"jsonrpc\":\"2.0\"", 0)
	done := make(chan error, 1)
	go func() {
		var m json.RawMessage
		done <- s.ReadObject(&m)
	}()
	time.Sleep(300 * time.Millisecond) // the reader has the bytes and waits for more
	runtime.ReadMemStats(&ms)
	if grew := ms.TotalAlloc - start; grew > 4<<20 {
		t.Errorf("reading 40 bytes of a frame announced as 60 MB allocated %d bytes", grew)
	}
	b.Close()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "cut off") {
		t.Errorf("ReadObject after hang-up: %v", err)
	}
}

// TestStreamQueueBound: descriptors sent ahead of frames are held only up
// to MaxFDs; past that the stream fails.
func TestStreamQueueBound(t *testing.T) {
	before := openFDs(t)
	a, b := socketpair(t)
	s := NewStream(a, 0)
	// Two messages of 200 descriptors each, with bytes that never finish
	// a header: the second passes the bound.
	sendRaw(t, b, "C", 200)
	sendRaw(t, b, "o", 200)
	done := make(chan error, 1)
	go func() {
		var m json.RawMessage
		done <- s.ReadObject(&m)
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ReadObject still waiting with 400 descriptors held and no frame")
	}
	if !errors.Is(err, ErrUnannouncedFDs) {
		t.Errorf("ReadObject: %v, want ErrUnannouncedFDs", err)
	}
	s.Close()
	b.Close()
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}
