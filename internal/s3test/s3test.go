// Package s3test runs a real S3 server for tests: versitygw (pinned in
// tools/versitygw, built by scripts/versitygw.sh) over a posix directory on
// 127.0.0.1, with SigV4 authentication. It is never a fake: signatures,
// status codes and object storage are the real server's.
package s3test

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Credentials the test server accepts.
const (
	AccessKey = "vrifttestaccess"
	SecretKey = "vrift-test-secret-d0n0tpr1nt"
)

// Server is a running versitygw.
type Server struct {
	t    testing.TB
	bin  string
	Root string // the posix directory: Root/<bucket>/<key> are the objects
	Addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// Binary finds versitygw: $VRIFT_VERSITYGW, the cache scripts/versitygw.sh
// builds into, or PATH. Missing, the test skips with the reason, except
// under VRIFT_REQUIRE_ROOT (CI), where it fails.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the tests that run a real S3 server")
	}
	cands := []string{os.Getenv("VRIFT_VERSITYGW")}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache")
		}
	}
	cands = append(cands, filepath.Join(cache, "vrift", "bin", "versitygw"))
	if p, err := exec.LookPath("versitygw"); err == nil {
		cands = append(cands, p)
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if info, err := os.Stat(c); err == nil && info.Mode()&0o111 != 0 {
			return c
		}
	}
	msg := "versitygw (the real S3 server these tests use) not found: run scripts/versitygw.sh (make test does)"
	if os.Getenv("VRIFT_REQUIRE_ROOT") != "" {
		t.Fatal(msg + "; VRIFT_REQUIRE_ROOT is set, so this is a failure")
	}
	t.Skip(msg)
	return ""
}

// Start runs a server on a free port over a fresh directory, with bucket
// created, and stops it when the test ends.
func Start(t testing.TB, bucket string) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), Root: t.TempDir()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	l.Close()
	s.Start()
	t.Cleanup(s.Stop)
	if bucket != "" {
		// versitygw's posix backend: a bucket is a directory of Root.
		// Creating it through the API needs no extra client here.
		if err := os.Mkdir(filepath.Join(s.Root, bucket), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Endpoint is the server's URL.
func (s *Server) Endpoint() string { return "http://" + s.Addr }

// Env is the environment a client needs to reach the server (credentials
// as AWS_* variables, no credentials file or profile from the host).
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_PROFILE=", "AWS_SESSION_TOKEN=",
	}
}

// SetEnv sets Env for the rest of the test (for in-process clients).
func (s *Server) SetEnv(t testing.TB) {
	for _, kv := range s.Env() {
		k, v, _ := bytesCut(kv)
		t.Setenv(k, v)
	}
}

func bytesCut(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

// Start (re)starts the server process on the same port and directory and
// waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	s.log = &bytes.Buffer{}
	s.cmd = exec.Command(s.bin, "--port", s.Addr, "--access", AccessKey, "--secret", SecretKey, "posix", s.Root)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.Endpoint() + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Kill()
	s.t.Fatalf("versitygw did not answer on %s:\n%s", s.Addr, s.log)
}

// Kill stops the server abruptly (SIGKILL) and waits for it.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Stop stops the server.
func (s *Server) Stop() { s.Kill() }

// Log is what the server printed.
func (s *Server) Log() string { return s.log.String() }

// ObjectPath is the file holding object key of bucket.
func (s *Server) ObjectPath(bucket, key string) string {
	return filepath.Join(s.Root, bucket, filepath.FromSlash(key))
}

// Pid is the server's process id.
func (s *Server) Pid() string { return strconv.Itoa(s.cmd.Process.Pid) }
