package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrift/vrift/internal/testenv"
)

// These tests run the real daemon as the vrift user and attack it as the
// real user alice (setpriv), while bob uses it. They need root; CI runs them
// (VRIFT_REQUIRE_ROOT makes a skip fail).

// helperEnv selects a client mode of this test binary, run as another user.
const helperEnv = "VRIFT_DAEMON_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

const statusBody = `{"jsonrpc":"2.0","id":1,"method":"status"}`

// helper is the client side, run as alice or bob:
//   - status: one status call; exit 0 if answered.
//   - unannounced: 12 connections, each sending a status frame with 200
//     descriptors and no Fds header, then 30 with one descriptor;
//   - announced: the same, but each frame announces its descriptors and
//     never finishes its body, so a daemon must hold them.
//
// The flooding modes print "big|small closed|open" per connection, then
// hold the open ones until stdin closes.
func helper(mode, socket string) int {
	if mode == "status" {
		c, err := net.Dial("unix", socket)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		fmt.Fprintf(c, "Content-Length: %d\r\n\r\n%s", len(statusBody), statusBody)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := bufio.NewReader(c).ReadString('}')
		fmt.Println(b)
		if !strings.Contains(b, `"mode":"daemon"`) {
			return 1
		}
		return 0
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	var conns []net.Conn
	// 12 connections with 200 descriptors each, then 30 with one each: the
	// small ones take the last free slots of a table the big ones filled.
	for i := range 42 {
		n, size := 200, "big"
		if i >= 12 {
			n, size = 1, "small"
		}
		fds := make([]int, n)
		for i := range fds {
			fds[i] = int(null.Fd())
		}
		c, err := net.Dial("unix", socket)
		if err != nil {
			fmt.Println(size, "refused (dial:", err, ")")
			continue
		}
		conns = append(conns, c)
		msg := fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(statusBody), statusBody)
		if mode == "announced" {
			msg = fmt.Sprintf("Content-Length: 1000\r\nFds: %d\r\n\r\n{", n)
		}
		if _, _, err := c.(*net.UnixConn).WriteMsgUnix([]byte(msg), syscall.UnixRights(fds...), nil); err != nil {
			fmt.Println(size, "closed (send:", err, ")")
			continue
		}
		wait := 500 * time.Millisecond
		if size == "small" {
			wait = 100 * time.Millisecond
		}
		c.SetReadDeadline(time.Now().Add(wait))
		_, err = io.Copy(io.Discard, c)
		if err == nil { // EOF
			fmt.Println(size, "closed")
		} else {
			fmt.Println(size, "open")
		}
	}
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(conns) // the connections stay open until here
	return 0
}

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "to create users and run as them")
}

func ensureUser(t *testing.T, name string) {
	t.Helper()
	if _, err := user.Lookup(name); err == nil {
		return
	}
	args := []string{"--no-create-home", "--shell", "/usr/sbin/nologin", name}
	if name == "vrift" {
		args = append([]string{"--system"}, args...)
	}
	if out, err := exec.Command("useradd", args...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
}

func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestDaemonDescriptorFlood (H4): alice sends descriptors the daemon must
// not keep, over many connections, to a daemon whose descriptor table
// holds 1024. Her connections are closed, bob's next call succeeds, and the
// daemon's descriptor count returns to where it was.
func TestDaemonDescriptorFlood(t *testing.T) {
	requireRoot(t)
	for _, u := range []string{"vrift", "alice", "bob"} {
		ensureUser(t, u)
	}
	base, err := os.MkdirTemp("/tmp", "vrift-h4-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	t.Cleanup(func() { os.RemoveAll(base) })
	dbin := filepath.Join(base, "vrift-daemon")
	if out, err := exec.Command("go", "build", "-o", dbin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hbin := filepath.Join(base, "helper")
	if out, err := exec.Command("cp", self, hbin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	os.Chmod(hbin, 0o755)
	lib, run := filepath.Join(base, "lib"), filepath.Join(base, "run")
	for _, d := range []string{lib, run} {
		os.MkdirAll(d, 0o755)
		exec.Command("chown", "vrift:vrift", d).Run()
	}
	socket := filepath.Join(run, "daemon.sock")
	// The daemon's table holds 1024 descriptors (Go cannot raise the soft
	// limit past the hard one): 12 connections of 200 fill it.
	daemon := exec.Command("prlimit", "--nofile=1024:1024", "setpriv", "--reuid=vrift", "--regid=vrift", "--init-groups", "--",
		dbin, "--store", filepath.Join(lib, "the_source"), "--state", filepath.Join(lib, "state"),
		"--socket", socket, "--config", "/dev/null")
	daemon.Env = []string{"PATH=/usr/bin:/bin"}
	var log strings.Builder
	daemon.Stdout, daemon.Stderr = &log, &log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	})
	as := func(name, mode string) *exec.Cmd {
		c := exec.Command("setpriv", "--reuid="+name, "--regid="+name, "--init-groups", "--", hbin, socket)
		c.Env = []string{helperEnv + "=" + mode}
		return c
	}
	bobStatus := func(when string) {
		t.Helper()
		out, err := as("bob", "status").CombinedOutput()
		if err != nil {
			t.Errorf("%s: bob's status call failed: %v\n%s\ndaemon log:\n%s", when, err, out, log.String())
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for as("bob", "status").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("daemon not serving after 15s; log:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	pid := daemon.Process.Pid
	before := countFDs(t, pid)

	for _, mode := range []string{"unannounced", "announced"} {
		alice := as("alice", mode)
		stdin, _ := alice.StdinPipe()
		stdout, _ := alice.StdoutPipe()
		if err := alice.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && sc.Text() != "holding" {
			lines = append(lines, sc.Text())
		}
		all := strings.Join(lines, "\n")
		bigClosed, smallClosed := strings.Count(all, "big closed"), strings.Count(all, "small closed")
		during := countFDs(t, pid)
		t.Logf("%s: alice's connections closed by the daemon: %d of 12 big, %d of 30 small; daemon descriptors %d before, %d while she holds hers",
			mode, bigClosed, smallClosed, before, during)
		switch mode {
		case "unannounced":
			if bigClosed != 12 || smallClosed != 30 {
				t.Errorf("unannounced descriptors: want all alice's connections closed:\n%s", all)
			}
		case "announced":
			// 256 descriptors per user (a quarter of 1024): one frame of
			// 200 fits and the small ones after it; the other big ones
			// pass the budget.
			if bigClosed != 11 {
				t.Errorf("announced, held descriptors: %d of alice's 12 big connections closed, want 11:\n%s", bigClosed, all)
			}
		}
		if during > before+256+42 {
			t.Errorf("%s: daemon holds %d descriptors while alice floods (%d before)", mode, during, before)
		}
		bobStatus(mode + ", while alice holds her connections")
		stdin.Close()
		alice.Wait()
		deadline := time.Now().Add(5 * time.Second)
		for countFDs(t, pid) > before+2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if after := countFDs(t, pid); after > before+2 {
			t.Errorf("%s: daemon holds %d descriptors after alice left, %d before", mode, after, before)
		}
		bobStatus(mode + ", after alice left")
	}
	if strings.Contains(log.String(), "panic") {
		t.Errorf("daemon log shows a panic:\n%s", log.String())
	}
}
