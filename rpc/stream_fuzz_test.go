package rpc

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// streamPair returns a Stream reading one end of a real unix socketpair and
// the raw other end.
func streamPair(t testing.TB) (*Stream, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return NewStream(conn(fds[0]), 4096), conn(fds[1])
}

func openFDCount(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// FuzzStreamRead feeds arbitrary bytes (headers, Content-Length, Fds, body)
// to the frame reader over a real socket, with up to 3 descriptors passed
// along with them. The reader must not panic or hang, must end with an error
// once the peer hangs up, must only return frames that are JSON-RPC
// messages, and must leak no descriptor: every passed descriptor is either
// claimed or closed by the time the stream is closed.
func FuzzStreamRead(f *testing.F) {
	seeds := []string{
		"Content-Length: 2\r\n\r\n{}",
		"Content-Length: 40\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}",
		"Content-Length: 57\r\nFds: 1\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ingest.put\",\"params\":{}}",
		"Content-Length: 40\r\nFds: 3\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}",
		"Content-Length: 2147483648\r\n\r\n",
		"Content-Length: -1\r\n\r\n",
		"Content-Length: 10\r\n\r\n{\"a\":",
		"Fds: 254\r\nContent-Length: 2\r\n\r\n{}",
		"Fds: -1\r\nContent-Length: 2\r\n\r\n{}",
		"no colon here\r\n\r\n",
		"\r\n",
		"Content-Length: 7\r\n\r\n[1,2,3]",
		"Content-Length: 3\r\n\r\nabc",
		"content-length:   5  \r\nX-Other: y\r\n\r\n\"str\"Content-Length: 2\r\n\r\n{}",
		"Content-Length: 44\r\n\r\n{\"jsonrpc\":\"1.0\",\"id\":null,\"method\":\"status\"}",
		"Content-Length: 35\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":7}",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i%4))
	}
	f.Fuzz(func(t *testing.T, data []byte, nfds uint8) {
		before := openFDCount(t)
		s, peer := streamPair(t)
		// Drain whatever the stream answers (error responses), so its
		// writes never block.
		drained := make(chan struct{})
		go func() { io.Copy(io.Discard, peer); close(drained) }()
		var passed []int
		for range nfds % 4 {
			fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			passed = append(passed, fd)
		}
		var oob []byte
		if len(passed) > 0 {
			oob = unix.UnixRights(passed...)
		}
		if len(data) > 0 || oob != nil {
			msg := data
			if len(msg) == 0 {
				msg = []byte{'\n'} // descriptors need at least one byte
			}
			if _, _, err := peer.WriteMsgUnix(msg, oob, nil); err != nil {
				t.Fatal(err)
			}
		}
		closeFDs(passed) // the receiver has its own copies now
		peer.CloseWrite()
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("%d frames out of %d bytes", i, len(data))
			}
			var m json.RawMessage
			err := s.ReadObject(&m)
			if err != nil {
				break // a hang-up, or a broken frame that ends the stream
			}
			if code, msg := checkMessage(m); code != 0 {
				t.Fatalf("returned a frame that is not a JSON-RPC message (%s): %q", msg, m)
			}
			// Claim what a request carried, as the server does; anything
			// unclaimed must go with the stream's Close.
			if id, ok := requestID(m); ok {
				for _, f := range s.takeFDs(id) {
					f.Close()
				}
			}
		}
		s.Close()
		<-drained
		peer.Close()
		if after := openFDCount(t); after != before {
			t.Fatalf("descriptor leak: %d open before, %d after", before, after)
		}
	})
}
