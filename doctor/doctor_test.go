package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/remote"
)

// procSys writes a fake /proc/sys with the given values.
func procSys(t *testing.T, vals map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range vals {
		p := filepath.Join(dir, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func direct(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	return Config{Mode: "direct", Reason: "test", Store: filepath.Join(dir, "store"), Project: dir, Version: "dev",
		ProcSys: procSys(t, map[string]string{"fs/protected_hardlinks": "1", "fs/inotify/max_user_watches": "192546",
			"fs/inotify/max_user_instances": "128", "kernel/osrelease": "6.18.0"}),
		Getenv: func(string) string { return "" }}
}

func find(t *testing.T, r Report, id string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no %s check in %+v", id, r)
	return Check{}
}

func want(t *testing.T, r Report, id string, st Status, substr string) {
	t.Helper()
	c := find(t, r, id)
	if c.Status != st || !strings.Contains(c.Message, substr) {
		t.Errorf("%s check: %s %q; want %s containing %q", id, c.Status, c.Message, st, substr)
	}
	if st != OK && c.Fix == "" {
		t.Errorf("%s check %s without a fix", id, c.Status)
	}
}

// TestDirectOK: a fresh direct-mode store passes; an unknown FUSE device
// only warns, and the run is OK.
func TestDirectOK(t *testing.T) {
	cfg := direct(t)
	cfg.DevFuse = filepath.Join(t.TempDir(), "fuse")
	r := Run(context.Background(), cfg)
	want(t, r, CheckStore, OK, "not created yet")
	want(t, r, CheckHardlinks, OK, "no effect here")
	want(t, r, CheckInotify, OK, "192546 watches")
	want(t, r, CheckRemote, OK, "no team cache")
	if !r.OK {
		t.Errorf("report not OK: %+v", r)
	}
}

// TestNoFUSE: a missing /dev/fuse, or something else in its place (as
// when /dev/null is bind-mounted over it), warns; with --require fuse the
// run fails.
func TestNoFUSE(t *testing.T) {
	for _, dev := range []string{filepath.Join(t.TempDir(), "missing"), "/dev/null"} {
		cfg := direct(t)
		cfg.DevFuse = dev
		r := Run(context.Background(), cfg)
		want(t, r, CheckFUSE, Warn, "vrift mount will not work")
		if !r.OK {
			t.Errorf("%s: a FUSE warning failed a run that does not require it", dev)
		}
		cfg.Require = []string{CheckFUSE}
		r = Run(context.Background(), cfg)
		want(t, r, CheckFUSE, Fail, dev)
		if r.OK {
			t.Errorf("%s: --require fuse did not fail the run", dev)
		}
	}
}

// TestFullStore: a full filesystem, and free space under min_free, fail
// the store check and the run.
func TestFullStore(t *testing.T) {
	cfg := direct(t)
	os.MkdirAll(cfg.Store, 0o755)
	cfg.Statfs = func(p string, s *unix.Statfs_t) error {
		if err := unix.Statfs(p, s); err != nil {
			return err
		}
		s.Bavail = 0
		return nil
	}
	r := Run(context.Background(), cfg)
	want(t, r, CheckStore, Fail, "the filesystem is full")
	if r.OK {
		t.Error("full store: run OK")
	}

	cfg = direct(t)
	cfg.MinFree = 1 << 62
	r = Run(context.Background(), cfg)
	want(t, r, CheckStore, Fail, "under min_free")
	if r.OK {
		t.Error("store under min_free: run OK")
	}
}

// TestDaemonStore: a direct-mode store a daemon owns fails.
func TestDaemonStore(t *testing.T) {
	cfg := direct(t)
	os.MkdirAll(cfg.Store, 0o755)
	os.WriteFile(filepath.Join(cfg.Store, "owner"), []byte("daemon\n"), 0o444)
	r := Run(context.Background(), cfg)
	want(t, r, CheckStore, Fail, "daemon's store")
}

// staleSocket leaves a socket file nobody listens on (a daemon that died).
func staleSocket(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "daemon.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	return p
}

// TestNoDaemon: a socket that exists with no daemon behind it fails the
// socket check and the run (the CLI would refuse, not switch stores).
func TestNoDaemon(t *testing.T) {
	cfg := direct(t)
	cfg.Mode, cfg.Socket = "daemon", staleSocket(t)
	r := Run(context.Background(), cfg)
	want(t, r, CheckSocket, Fail, "connection refused")
	want(t, r, CheckStore, Fail, "no store to check")
	if r.OK {
		t.Error("no daemon: run OK")
	}
}

// TestSocketPermission: a socket this user may not write to fails. Root
// writes through any mode; cmd/vrift's TestDoctorDaemon runs this case as
// a real user against a real daemon.
func TestSocketPermission(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Log("as root the mode does not stop a connect; TestDoctorDaemon (cmd/vrift) covers it as alice")
		return
	}
	p := filepath.Join(t.TempDir(), "daemon.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(p, 0o000)
	cfg := direct(t)
	cfg.Mode, cfg.Socket = "daemon", p
	r := Run(context.Background(), cfg)
	want(t, r, CheckSocket, Fail, "permission denied")
}

// TestHardlinksDaemonMode: protected_hardlinks=1 warns in daemon mode for
// a user (the blobs are vrift's); 0 does not.
func TestHardlinksDaemonMode(t *testing.T) {
	cfg := direct(t)
	cfg.Mode = "daemon"
	if os.Geteuid() != 0 {
		c := checkHardlinks(cfg)
		if c.Status != Warn || !strings.Contains(c.Message, "refused in daemon mode") {
			t.Errorf("daemon mode, protected_hardlinks=1: %+v", c)
		}
	}
	cfg.ProcSys = procSys(t, map[string]string{"fs/protected_hardlinks": "0"})
	if c := checkHardlinks(cfg); c.Status != OK || !strings.Contains(c.Message, "= 0") {
		t.Errorf("protected_hardlinks=0: %+v", c)
	}
}

// TestInotifyLow: limits too low for vrift watch on a large tree warn.
func TestInotifyLow(t *testing.T) {
	cfg := direct(t)
	cfg.ProcSys = procSys(t, map[string]string{"fs/inotify/max_user_watches": "8192", "fs/inotify/max_user_instances": "128"})
	want(t, Run(context.Background(), cfg), CheckInotify, Warn, "8192 watches")
}

// TestReflink: ext4 or tmpfs (this machine's /tmp) has no reflinks; an
// injected btrfs does, unless the store is elsewhere.
func TestReflink(t *testing.T) {
	cfg := direct(t)
	var s unix.Statfs_t
	if err := unix.Statfs(cfg.Project, &s); err != nil {
		t.Fatal(err)
	}
	if !reflinkFS(&s) {
		want(t, Run(context.Background(), cfg), CheckReflink, Warn, "no reflinks")
	}
	cfg.Statfs = func(p string, s *unix.Statfs_t) error {
		*s = unix.Statfs_t{Type: 0x9123683e, Bavail: 1 << 20, Bsize: 4096}
		if p != cfg.Project {
			s.Fsid.Val[0] = 1
		}
		return nil
	}
	if c := checkReflink(cfg, ""); c.Status != OK || !strings.Contains(c.Message, "btrfs") {
		t.Errorf("btrfs project: %+v", c)
	}
	if c := checkReflink(cfg, "/elsewhere"); c.Status != Warn || !strings.Contains(c.Message, "another filesystem") {
		t.Errorf("btrfs project, store elsewhere: %+v", c)
	}
}

// TestRemote: no credentials warn; credentials present and an unreachable
// endpoint warn; a reachable one is OK. No secret appears in the report,
// not even one in the endpoint's or URL's userinfo.
func TestRemote(t *testing.T) {
	const secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
	cfg := direct(t)
	cfg.Remote = remote.Config{URL: "s3://akid:" + secret + "@team/cache", Endpoint: "http://akid:" + secret + "@127.0.0.1:7070"}
	env := map[string]string{"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "none")}
	cfg.Getenv = func(k string) string { return env[k] }
	var dialed string
	cfg.Dial = func(_, addr string) error { dialed = addr; return nil }
	r := Run(context.Background(), cfg)
	want(t, r, CheckRemote, Warn, "no credentials")

	env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "AKIDEXAMPLE", secret
	r = Run(context.Background(), cfg)
	want(t, r, CheckRemote, OK, "endpoint reachable")
	if dialed != "127.0.0.1:7070" {
		t.Errorf("dialed %q, want 127.0.0.1:7070", dialed)
	}
	cfg.Dial = func(_, addr string) error { return &net.OpError{Op: "dial", Err: errors.New("connection refused")} }
	r = Run(context.Background(), cfg)
	want(t, r, CheckRemote, Warn, "unreachable")
	cfg.Require = []string{CheckRemote}
	if Run(context.Background(), cfg).OK {
		t.Error("--require remote with an unreachable endpoint: run OK")
	}
	js, _ := json.Marshal(r)
	if strings.Contains(string(js), secret) {
		t.Errorf("the report shows the secret: %s", js)
	}
}
