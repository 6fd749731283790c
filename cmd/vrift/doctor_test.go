package main

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vrift/vrift/doctor"
)

func doctorReport(t *testing.T, out string) doctor.Report {
	t.Helper()
	var r doctor.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	return r
}

func doctorCheck(t *testing.T, r doctor.Report, id string) doctor.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no %s check: %+v", id, r)
	return doctor.Check{}
}

// TestDoctorDaemon: vrift doctor as a real user (alice) against a real
// daemon: daemon mode passes, direct mode passes, then a socket alice may
// not use and a socket no daemon answers each fail it, naming the fix.
func TestDoctorDaemon(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()

	out := e.mustAs("alice", "doctor", "--json")
	r := doctorReport(t, out)
	if r.Mode != "daemon" || !r.OK || !strings.Contains(r.ModeReason, e.socket) {
		t.Fatalf("daemon mode: %s", out)
	}
	if c := doctorCheck(t, r, doctor.CheckSocket); c.Status != doctor.OK || !strings.Contains(c.Message, "answers, serving "+e.store) {
		t.Errorf("socket check: %+v", c)
	}
	if c := doctorCheck(t, r, doctor.CheckHardlinks); c.Status != doctor.Warn || !strings.Contains(c.Message, "refused in daemon mode") {
		t.Errorf("hardlinks check in daemon mode: %+v", c)
	}
	text := e.mustAs("alice", "doctor")
	if !strings.Contains(text, "ok    mode      daemon mode: daemon socket at "+e.socket) {
		t.Errorf("text output:\n%s", text)
	}

	out, code := e.as("alice", "--direct", "doctor", "--json")
	if r := doctorReport(t, out); code != 0 || r.Mode != "direct" || r.ModeReason != "--direct given" || !r.OK {
		t.Errorf("direct mode: exit %d\n%s", code, out)
	}

	// A socket alice cannot use (as if its mode had been changed).
	if err := os.Chmod(e.socket, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = e.as("alice", "doctor")
	if code != exitError || !strings.Contains(out, "FAIL  socket") || !strings.Contains(out, "permission denied") ||
		!strings.Contains(out, "fix: the packaged socket is mode 0666") {
		t.Errorf("unusable socket: exit %d\n%s", code, out)
	}
	os.Chmod(e.socket, 0o666)

	// No daemon: it stopped and a stale socket file is left.
	e.stop()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: e.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	os.Chmod(e.socket, 0o666)
	out, code = e.as("alice", "doctor", "--json")
	r = doctorReport(t, out[:strings.LastIndex(out, "}")+1])
	if c := doctorCheck(t, r, doctor.CheckSocket); code != exitError || r.OK || c.Status != doctor.Fail || !strings.Contains(c.Message, "connection refused") {
		t.Errorf("no daemon: exit %d\n%s", code, out)
	}
}

// TestDoctorFullStore: a direct-mode store on a real, full filesystem (a
// 256 KiB tmpfs) fails the store check.
func TestDoctorFullStore(t *testing.T) {
	requireRoot(t)
	dir := sharedTempDir(t)
	bin := buildVrift(t, dir)
	mnt := filepath.Join(dir, "small")
	os.Mkdir(mnt, 0o755)
	sh(t, "mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	os.Mkdir(filepath.Join(mnt, "store"), 0o755)
	f, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	cmd := exec.Command(bin, "doctor", "--store", filepath.Join(mnt, "store"))
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != exitError || !strings.Contains(string(out), "FAIL  store") ||
		!strings.Contains(string(out), "the filesystem is full") {
		t.Errorf("full store: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
}

// TestDoctorNoFUSE: in a mount namespace where /dev/null is bind-mounted
// over /dev/fuse, the FUSE check warns, and fails the run with --require
// fuse.
func TestDoctorNoFUSE(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse: %v (the FUSE tests need it)", err)
	}
	dir := sharedTempDir(t)
	bin := buildVrift(t, dir)
	run := func(args ...string) (string, int) {
		cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind /dev/null /dev/fuse && exec "$@"`, "sh", bin, "--direct", "--store", filepath.Join(dir, "store"))
		cmd.Args = append(cmd.Args, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("unshare: %v\n%s", err, out)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("doctor")
	if code != 0 || !strings.Contains(out, "warn  fuse      /dev/fuse is not the FUSE device") {
		t.Errorf("no FUSE: exit %d\n%s", code, out)
	}
	out, code = run("doctor", "--require", "fuse")
	if code != exitError || !strings.Contains(out, "FAIL  fuse") {
		t.Errorf("no FUSE, --require fuse: exit %d\n%s", code, out)
	}
}
