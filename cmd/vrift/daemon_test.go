package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vrift/vrift/cas"
)

// These tests run the real daemon as the unprivileged vrift user and the
// CLI as the real users alice and bob (setpriv). They need root; CI runs
// them (VRIFT_REQUIRE_ROOT makes a skip fail).

type daemonEnv struct {
	t      *testing.T
	base   string
	bin    string // vrift
	dbin   string // vrift-daemon
	store  string
	state  string
	socket string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	notify chan string
	// notified holds every sd_notify message received, in order.
	notifiedMu sync.Mutex
	notified   []string
	// env is added to the daemon's environment (e.g. its S3 credentials).
	env []string
}

func newDaemonEnv(t *testing.T) *daemonEnv {
	t.Helper()
	requireRoot(t)
	for _, u := range []string{"vrift", "alice", "bob"} {
		ensureUser(t, u)
	}
	base := sharedTempDir(t)
	e := &daemonEnv{t: t, base: base}
	e.bin = buildVrift(t, base)
	e.dbin = filepath.Join(base, "vrift-daemon")
	sh(t, "go", "build", "-o", e.dbin, "../vrift-daemon")
	lib, run := filepath.Join(base, "lib"), filepath.Join(base, "run")
	for _, d := range []string{lib, run} {
		os.MkdirAll(d, 0o755)
		sh(t, "chown", "vrift:vrift", d)
	}
	e.store, e.state, e.socket = filepath.Join(lib, "the_source"), filepath.Join(lib, "state"), filepath.Join(run, "daemon.sock")
	for _, u := range []string{"alice", "bob"} {
		home := filepath.Join(base, u)
		os.MkdirAll(home, 0o755)
		sh(t, "chown", u+":"+u, home)
	}
	t.Cleanup(e.stop)
	return e
}

// start runs the daemon as vrift with a fake NOTIFY_SOCKET and waits for
// READY=1.
func (e *daemonEnv) start(extra ...string) {
	t := e.t
	t.Helper()
	notifyPath := filepath.Join(e.base, "run", fmt.Sprintf("notify-%d.sock", time.Now().UnixNano()))
	nl, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(notifyPath, 0o666)
	e.notify = make(chan string, 16)
	go func() {
		defer nl.Close()
		buf := make([]byte, 4096)
		for {
			n, err := nl.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line != "" {
					e.notifiedMu.Lock()
					e.notified = append(e.notified, line)
					e.notifiedMu.Unlock()
					e.notify <- line
				}
			}
		}
	}()
	args := append([]string{"--reuid=vrift", "--regid=vrift", "--init-groups", "--", e.dbin,
		"--store", e.store, "--state", e.state, "--socket", e.socket, "--config", "/dev/null"}, extra...)
	e.cmd = exec.Command("setpriv", args...)
	e.cmd.Env = append([]string{"PATH=/usr/bin:/bin", "NOTIFY_SOCKET=" + notifyPath}, e.env...)
	e.log = &bytes.Buffer{}
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case msg := <-e.notify:
			if msg == "READY=1" {
				return
			}
		case <-deadline:
			t.Fatalf("daemon sent no READY=1 within 15s; log:\n%s", e.log)
		}
	}
}

func (e *daemonEnv) stop() {
	if e.cmd != nil && e.cmd.Process != nil && e.cmd.ProcessState == nil {
		e.cmd.Process.Signal(syscall.SIGTERM)
		e.cmd.Wait()
	}
}

// as runs vrift as user against the daemon.
func (e *daemonEnv) as(user string, args ...string) (string, int) {
	e.t.Helper()
	env := []string{"HOME=" + filepath.Join(e.base, user), "VRIFT_SOCKET=" + e.socket}
	return runAs(e.t, user, env, append([]string{e.bin}, args...)...)
}

func (e *daemonEnv) mustAs(user string, args ...string) string {
	e.t.Helper()
	out, code := e.as(user, args...)
	if code != 0 {
		e.t.Fatalf("%s: vrift %v: exit %d\n%s\ndaemon log:\n%s", user, args, code, out, e.log)
	}
	return out
}

// tree writes files (mode 0644 unless named *.sh) under dir, owned by user.
func (e *daemonEnv) tree(user, dir string, files map[string]string) {
	e.t.Helper()
	writeTree(e.t, dir, files)
	for name := range files {
		if strings.HasSuffix(name, ".sh") {
			os.Chmod(filepath.Join(dir, name), 0o755)
		}
	}
	sh(e.t, "chown", "-R", user+":"+user, dir)
}

func blobPathOf(store, content string, exec bool) string {
	h := cas.NewHasher()
	h.Write([]byte(content))
	k := cas.Key{Size: int64(len(content)), Exec: exec}
	h.Sum(k.Sum[:0])
	return filepath.Join(store, k.RelPath())
}

func ownerOf(t *testing.T, p string) (uint32, os.FileMode) {
	t.Helper()
	info, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Uid, info.Mode()
}

func uidOf(t *testing.T, name string) uint32 {
	uid, _ := ensureUser(t, name)
	return uint32(uid)
}

// TestDaemonUsers: the shared store's ownership, dedup across users, what
// bob cannot do, the confused-deputy refusal, and per-user scoping.
func TestDaemonUsers(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	shared := "the same bytes in two users' projects\n"
	secret := "alice's secret: " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n"
	aliceProj := filepath.Join(e.base, "alice", "proj")
	e.tree("alice", aliceProj, map[string]string{"package.json": "{}", "pkg/shared.txt": shared,
		"pkg/run.sh": "#!/bin/sh\necho ran\n", "pkg/secret.txt": secret})
	os.Chmod(filepath.Join(aliceProj, "pkg/secret.txt"), 0o600)

	out := e.mustAs("alice", "ingest", filepath.Join(aliceProj, "pkg"))
	if !strings.Contains(out, "private files left in place") {
		t.Errorf("alice's 0600 file not reported as private:\n%s", out)
	}
	// Blobs are vrift's and read-only; projections are alice's symlinks.
	blob := blobPathOf(e.store, shared, false)
	if uid, mode := ownerOf(t, blob); uid != uidOf(t, "vrift") || mode.Perm() != 0o444 {
		t.Errorf("blob %s: uid %d mode %v, want vrift 0444", blob, uid, mode)
	}
	if uid, mode := ownerOf(t, filepath.Join(aliceProj, "pkg/shared.txt")); uid != uidOf(t, "alice") || mode&os.ModeSymlink == 0 {
		t.Errorf("projection: uid %d mode %v, want alice's symlink", uid, mode)
	}
	if _, mode := ownerOf(t, blobPathOf(e.store, "#!/bin/sh\necho ran\n", true)); mode.Perm() != 0o555 {
		t.Errorf("executable blob mode %v, want 0555", mode)
	}
	// The private file stayed, and its content is not in the store.
	if _, mode := ownerOf(t, filepath.Join(aliceProj, "pkg/secret.txt")); !mode.IsRegular() {
		t.Errorf("private file was projected: %v", mode)
	}
	if _, err := os.Stat(blobPathOf(e.store, secret, false)); err == nil {
		t.Fatal("alice's private file is in the shared store")
	}
	if info, _ := os.Stat(filepath.Join(e.store, "blake3")); info.Mode().Perm() != 0o711 {
		t.Errorf("store fan-out mode %v, want 0711", info.Mode().Perm())
	}

	// bob's identical content dedups to alice's blob, but the answer does
	// not tell him someone stored it first (issue 8, M1).
	bobProj := filepath.Join(e.base, "bob", "proj")
	e.tree("bob", bobProj, map[string]string{"package.json": "{}", "pkg/shared.txt": shared})
	out = e.mustAs("bob", "--json", "ingest", filepath.Join(bobProj, "pkg"))
	if !strings.Contains(out, `"new_blobs": 1`) {
		t.Errorf("bob was told his file was already stored:\n%s", out)
	}
	if target, _ := os.Readlink(filepath.Join(bobProj, "pkg/shared.txt")); target != blob {
		t.Errorf("bob's projection points at %s, want %s", target, blob)
	}

	// bob cannot write, chmod or delete a blob, nor list the store.
	bobEnv := []string{"HOME=" + filepath.Join(e.base, "bob")}
	for _, attempt := range [][]string{
		{"sh", "-c", "echo tampered >> " + blob},
		{"chmod", "666", blob},
		{"rm", "-f", blob},
		{"ls", filepath.Join(e.store, "blake3")},
		{"touch", filepath.Join(e.store, "blake3", "planted")},
	} {
		if out, code := runAs(t, "bob", bobEnv, attempt...); code == 0 {
			t.Errorf("bob could %v:\n%s", attempt, out)
		}
	}
	if b, _ := os.ReadFile(blob); string(b) != shared {
		t.Fatal("blob content changed")
	}

	// Confused deputy: bob asks for alice's 0600 file. The CLI cannot
	// open it as bob; the raw path-based method is refused outright.
	alicePrivate := filepath.Join(e.base, "alice", "private")
	secret2 := "only alice may read this " + strconv.FormatInt(time.Now().UnixNano(), 10)
	e.tree("alice", alicePrivate, map[string]string{"go.mod": "module p\n", "data/key.txt": secret2})
	os.Chmod(filepath.Join(alicePrivate, "data/key.txt"), 0o600)
	// A tree alice owns is refused outright; past that refusal, the file
	// itself cannot be read as bob.
	out, code := e.as("bob", "ingest", filepath.Join(alicePrivate, "data"))
	if code == 0 || !strings.Contains(out, "owned by another user") {
		t.Errorf("bob's ingest in alice's tree: exit %d\n%s", code, out)
	}
	out, code = e.as("bob", "--allow-other-owner", "ingest", filepath.Join(alicePrivate, "data"))
	if code == 0 || !strings.Contains(out, "permission denied") {
		t.Errorf("bob's ingest of alice's private file: exit %d\n%s", code, out)
	}
	resp := rawCallFresh(t, e, `{"jsonrpc":"2.0","id":1,"method":"ingest","params":{"path":"`+alicePrivate+`/data","tier":"tier1","mode":"solid"}}`)
	if !strings.Contains(resp, `"code":-32005`) {
		t.Errorf("path-based ingest not refused: %s", resp)
	}
	if _, err := os.Stat(blobPathOf(e.store, secret2, false)); err == nil {
		t.Fatal("alice's private content reached the store through bob")
	}

	// Scoping: bob sees only his roots; his gc cannot remove alice's blobs.
	out = e.mustAs("bob", "--json", "status")
	if strings.Contains(out, aliceProj) || !strings.Contains(out, bobProj) {
		t.Errorf("bob's status shows the wrong roots:\n%s", out)
	}
	os.RemoveAll(bobProj)
	out = e.mustAs("bob", "--json", "gc", "--grace", "1h") // users sweep with at least 1h
	if !strings.Contains(out, `"dropped_roots": [`) || !strings.Contains(out, filepath.Join(bobProj, ".vrift")) {
		t.Errorf("bob's gc did not drop his deleted project:\n%s", out)
	}
	e.mustAs("alice", "verify")
	e.mustAs("alice", "link", aliceProj, "--to", filepath.Join(e.base, "alice", "copy"), "--method", "copy")
	if b, err := os.ReadFile(filepath.Join(e.base, "alice", "copy", "pkg", "shared.txt")); err != nil || string(b) != shared {
		t.Fatalf("alice's tree after bob's gc: %q %v", b, err)
	}

	// Every write is audited with the caller's uid.
	audit, err := os.ReadFile(filepath.Join(e.state, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if !strings.Contains(string(audit), fmt.Sprintf(`"uid":%d,`, uidOf(t, u))) {
			t.Errorf("no audit line for %s:\n%s", u, audit)
		}
	}
	if info, _ := os.Stat(e.state); info.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", info.Mode().Perm())
	}

	// SIGTERM: STOPPING=1, exit 0.
	e.cmd.Process.Signal(syscall.SIGTERM)
	if err := e.cmd.Wait(); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v\n%s", err, e.log)
	}
	time.Sleep(100 * time.Millisecond) // let the last datagram arrive
	e.notifiedMu.Lock()
	got := strings.Join(e.notified, "\n")
	e.notifiedMu.Unlock()
	for _, want := range []string{"READY=1", "STATUS=serving " + e.store, "STOPPING=1"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q among the sd_notify messages:\n%s", want, got)
		}
	}
}

// rawCallFresh sends one raw frame on a fresh connection. The path-based
// ingest is refused whoever asks, so the test's own (root) connection serves.
func rawCallFresh(t *testing.T, e *daemonEnv, body string) string {
	t.Helper()
	c, err := net.Dial("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return rawCall(t, c, body)
}

func rawCall(t *testing.T, c net.Conn, body string) string {
	t.Helper()
	fmt.Fprintf(c, "Content-Length: %d\r\n\r\n%s", len(body), body)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	n := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading reply to %s: %v", body, err)
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	return string(buf)
}

// serving checks the daemon still answers a fresh connection.
func (e *daemonEnv) serving(after string) {
	e.t.Helper()
	c, err := net.Dial("unix", e.socket)
	if err != nil {
		e.t.Fatalf("after %s: daemon gone: %v\n%s", after, err, e.log)
	}
	defer c.Close()
	if resp := rawCall(e.t, c, `{"jsonrpc":"2.0","id":9,"method":"status"}`); !strings.Contains(resp, `"mode":"daemon"`) {
		e.t.Fatalf("after %s: status answered %s", after, resp)
	}
}

// TestDaemonProtocolAbuse sends what a broken or hostile client would, and
// checks after each that the daemon still serves.
func TestDaemonProtocolAbuse(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	dial := func() net.Conn {
		c, err := net.Dial("unix", e.socket)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct{ name, body, want string }{
		{"malformed JSON", `{"jsonrpc":"2.0","id":1,"method":`, `"code":-32700`},
		{"not a request", `{"jsonrpc":"1.0","id":1}`, `"code":-32600`},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"format_disk"}`, `"code":-32601`},
		{"bad params", `{"jsonrpc":"2.0","id":1,"method":"gc","params":{"grace":"soon"}}`, `"code":-32602`},
		{"params missing", `{"jsonrpc":"2.0","id":1,"method":"ingest.put"}`, `"code":-32602`},
		{"unknown session", `{"jsonrpc":"2.0","id":1,"method":"ingest.flush","params":{"session":"nope"}}`, `"code":-32002`},
	} {
		c := dial()
		resp := rawCall(t, c, tc.body)
		if !strings.Contains(resp, tc.want) {
			t.Errorf("%s: got %s, want %s", tc.name, resp, tc.want)
		}
		// The same connection still works after the bad message.
		if resp := rawCall(t, c, `{"jsonrpc":"2.0","id":2,"method":"status"}`); !strings.Contains(resp, `"mode":"daemon"`) {
			t.Errorf("%s: connection unusable afterwards: %s", tc.name, resp)
		}
		c.Close()
		e.serving(tc.name)
	}

	// A 2 GiB Content-Length is refused from the header: the daemon
	// allocates nothing and drops that connection.
	c := dial()
	fmt.Fprintf(c, "Content-Length: %d\r\n\r\n{", int64(2)<<30)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("oversized frame: connection still open (read %d bytes)", n)
	}
	c.Close()
	e.serving("2 GiB Content-Length")

	// A frame cut off mid-way, then a hang-up.
	c = dial()
	fmt.Fprintf(c, "Content-Length: 100\r\n\r\n{\"jsonrpc\":\"2.0\",")
	c.Close()
	e.serving("frame cut off")

	// Descriptors sent, then a hang-up before the reply.
	c = dial()
	begin := rawCall(t, c, `{"jsonrpc":"2.0","id":1,"method":"ingest.begin","params":{"path":"/tmp"}}`)
	var br struct {
		Result struct{ Session string } `json:"result"`
	}
	json.Unmarshal([]byte(begin), &br)
	f, _ := os.Open("/etc/hostname")
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"ingest.put","params":{"session":%q,"files":[{"name":"x"},{"name":"y"}]}}`, br.Result.Session)
	msg := fmt.Sprintf("Content-Length: %d\r\nFds: 2\r\n\r\n%s", len(body), body)
	uc := c.(*net.UnixConn)
	if _, _, err := uc.WriteMsgUnix([]byte(msg), syscall.UnixRights(int(f.Fd()), int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	f.Close()
	e.serving("descriptors then hang-up")

	// 64 concurrent clients.
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", e.socket)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer c.Close()
			resp := rawCall(t, c, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"status"}`, i))
			if !strings.Contains(resp, fmt.Sprintf(`"id":%d`, i)) {
				errs <- resp
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent client: %s", e)
	}
	e.serving("64 concurrent clients")
	if strings.Contains(e.log.String(), "panic") {
		t.Fatalf("daemon log shows a panic:\n%s", e.log)
	}
}

// TestDaemonKill9 kills the daemon (SIGKILL) during a large ingest, 20
// times at different moments, and restarts it: the user's tree is never
// damaged, nothing partial stays in the store, verify passes, and the re-run
// completes.
func TestDaemonKill9(t *testing.T) {
	e := newDaemonEnv(t)
	orig := filepath.Join(e.base, "orig")
	e.tree("alice", orig, generatedTree(1500))
	proj := filepath.Join(e.base, "alice", "proj")
	interrupted := 0
	for i := range 20 {
		os.RemoveAll(proj)
		sh(t, "cp", "-a", orig, proj)
		sh(t, "rm", "-rf", e.store, e.state)
		e.start()
		ingest := exec.Command("setpriv", "--reuid=alice", "--regid=alice", "--init-groups", "--",
			e.bin, "ingest", filepath.Join(proj, "data"))
		ingest.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(e.base, "alice"), "VRIFT_SOCKET=" + e.socket}
		var out bytes.Buffer
		ingest.Stdout, ingest.Stderr = &out, &out
		if err := ingest.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+i*25) * time.Millisecond)
		e.cmd.Process.Signal(syscall.SIGKILL)
		e.cmd.Wait()
		if ingest.Wait() != nil {
			interrupted++
		}
		sh(t, "diff", "-r", filepath.Join(orig, "data"), filepath.Join(proj, "data"))

		e.start()
		if left, _ := os.ReadDir(filepath.Join(e.store, "tmp")); len(left) != 0 {
			t.Fatalf("round %d: %d temp files of the killed daemon left after restart", i, len(left))
		}
		e.mustAs("alice", "verify")
		e.mustAs("alice", "ingest", filepath.Join(proj, "data"))
		e.mustAs("alice", "verify")
		sh(t, "diff", "-r", filepath.Join(orig, "data"), filepath.Join(proj, "data"))
		e.stop()
	}
	t.Logf("the kill interrupted the ingest in %d of 20 rounds", interrupted)
	if interrupted < 10 {
		t.Fatalf("only %d of 20 kills landed mid-ingest: the test no longer tests what it says", interrupted)
	}
}

// TestDaemonNpm: the byte-identical round trip and the Node suite of direct
// mode, in daemon mode, as alice.
func TestDaemonNpm(t *testing.T) {
	fix := fixtureDir(t)
	e := newDaemonEnv(t)
	e.start()
	proj := filepath.Join(e.base, "alice", "app")
	sh(t, "cp", "-a", filepath.Join(fix, "base"), proj)
	sh(t, "chown", "-R", "alice:alice", proj)
	e.mustAs("alice", "ingest", filepath.Join(proj, "node_modules"))
	sh(t, "diff", "-r", filepath.Join(fix, "base", "node_modules"), filepath.Join(proj, "node_modules"))
	compareListings(t, treeListing(t, filepath.Join(fix, "base", "node_modules"), false, false),
		treeListing(t, filepath.Join(proj, "node_modules"), true, false))

	// Hardlinks into a store owned by vrift are refused by the kernel
	// (fs.protected_hardlinks); the error says what to use instead.
	dest := filepath.Join(e.base, "alice", "restored")
	out, code := e.as("alice", "link", proj, "--to", filepath.Join(e.base, "alice", "hl"), "--subtree", "node_modules", "--method", "hardlink")
	if code == 0 {
		t.Log("hardlink into the shared store was allowed here (fs.protected_hardlinks is off)")
	} else if !strings.Contains(out, "--method copy") {
		t.Errorf("hardlink refusal does not name the alternative:\n%s", out)
	}
	e.mustAs("alice", "link", proj, "--to", dest, "--subtree", "node_modules", "--method", "copy")
	sh(t, "cp", filepath.Join(proj, "package.json"), dest)
	sh(t, "chown", "-R", "alice:alice", dest)
	res, code := runAs(t, "alice", []string{"HOME=" + filepath.Join(e.base, "alice")},
		filepath.Join(repoRoot(t), "scripts", "node-suite.sh"), dest)
	t.Logf("node suite (daemon mode, copy):\n%s", tail(res, 2000))
	if code != 0 || !strings.Contains(res, "node suite: 23/23 tasks ok") {
		t.Fatalf("node suite in daemon mode failed (exit %d)", code)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDaemonSocketActivation passes the daemon a listening socket the way
// systemd does (LISTEN_FDS, LISTEN_PID, fd 3) and checks it serves on it.
func TestDaemonSocketActivation(t *testing.T) {
	e := newDaemonEnv(t)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: e.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(e.socket, 0o666)
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false) // the socket file outlives this handle, as with systemd
	l.Close()
	// LISTEN_PID must be the daemon's pid: the shell execs setpriv, which
	// execs the daemon, so $$ is it.
	script := `LISTEN_PID=$$ LISTEN_FDS=1 exec setpriv --reuid=vrift --regid=vrift --init-groups -- "$0" "$@"`
	cmd := exec.Command("sh", "-c", script, e.dbin, "--store", e.store, "--state", e.state,
		"--socket", filepath.Join(e.base, "run", "unused.sock"), "--config", "/dev/null")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.ExtraFiles = []*os.File{lf}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	e.log = &log
	for range 100 {
		if strings.Contains(log.String(), "serving") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "socket_activated=true") {
		t.Fatalf("daemon did not take the passed socket:\n%s", log.String())
	}
	e.serving("socket activation")
	if _, err := os.Stat(filepath.Join(e.base, "run", "unused.sock")); err == nil {
		t.Error("an activated daemon bound its own socket too")
	}
}

// TestDaemonRefusesRoot: without --allow-root the daemon will not run as
// root, so the shared store never becomes root-owned.
func TestDaemonRefusesRoot(t *testing.T) {
	e := newDaemonEnv(t)
	out, err := exec.Command(e.dbin, "--store", e.store, "--state", e.state, "--socket", e.socket, "--config", "/dev/null").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to run as root") {
		t.Fatalf("daemon as root: %v\n%s", err, out)
	}
	if _, err := os.Stat(e.store); err == nil {
		t.Error("the refused daemon created the store anyway")
	}
}

// TestDaemonConfigFile: the TOML config is read and flags override it;
// share_private from the file lets a 0600 file into the store.
func TestDaemonConfigFile(t *testing.T) {
	e := newDaemonEnv(t)
	cfg := filepath.Join(e.base, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("store = %q\nstate = %q\nsocket = %q\nshare_private = true\n",
		e.store, e.state, filepath.Join(e.base, "run", "from-file.sock"))), 0o644)
	// The flag's socket wins over the file's.
	e.start("--config", cfg)
	if _, err := os.Stat(filepath.Join(e.base, "run", "from-file.sock")); err == nil {
		t.Error("the config file's socket was used although --socket was given")
	}
	proj := filepath.Join(e.base, "alice", "cfg")
	secret := "shared on purpose " + strconv.FormatInt(time.Now().UnixNano(), 10)
	e.tree("alice", proj, map[string]string{"go.mod": "module c\n", "data/p.txt": secret})
	os.Chmod(filepath.Join(proj, "data/p.txt"), 0o600)
	e.mustAs("alice", "ingest", filepath.Join(proj, "data"))
	if _, err := os.Stat(blobPathOf(e.store, secret, false)); err != nil {
		t.Fatalf("share_private = true in the config did not take effect: %v", err)
	}
}

// generatedTree is a project of n files of 2-20 KiB in 40 directories.
func generatedTree(n int) map[string]string {
	files := map[string]string{"package.json": "{}"}
	for i := range n {
		files[fmt.Sprintf("data/d%02d/f%04d.txt", i%40, i)] = strings.Repeat(fmt.Sprintf("file %d line\n", i), 200+i%700)
	}
	return files
}

// TestDaemonGCDuringIngest: an admin (vrift) sweeps with no grace, over and over, while
// alice's ingest deduplicates against blobs that no root references any
// more. Her session is an in-flight root: nothing she relies on is swept.
func TestDaemonGCDuringIngest(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	files := generatedTree(1500)
	first := filepath.Join(e.base, "alice", "first")
	e.tree("alice", first, files)
	e.mustAs("alice", "ingest", "--tier", "tier2", filepath.Join(first, "data"))
	os.RemoveAll(first)
	e.mustAs("alice", "gc", "--grace", "1h") // drops the root; the blobs stay, young

	orig := filepath.Join(e.base, "orig")
	e.tree("alice", orig, files)
	second := filepath.Join(e.base, "alice", "second")
	sh(t, "cp", "-a", orig, second)
	ingest := exec.Command("setpriv", "--reuid=alice", "--regid=alice", "--init-groups", "--",
		e.bin, "--json", "ingest", filepath.Join(second, "data"))
	ingest.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(e.base, "alice"), "VRIFT_SOCKET=" + e.socket}
	var out bytes.Buffer
	ingest.Stdout, ingest.Stderr = &out, &out
	if err := ingest.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ingest.Wait() }()
	sweeps := 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("alice's ingest: %v\n%s", err, out.String())
			}
			running = false
		default:
			e.mustAs("vrift", "gc", "--grace", "0s") // below 1h is for admins only
			sweeps++
		}
	}
	t.Logf("%d sweeps by bob during alice's ingest", sweeps)
	e.mustAs("alice", "verify")
	sh(t, "diff", "-r", filepath.Join(orig, "data"), filepath.Join(second, "data"))
}

// TestDaemonMount: in daemon mode alice's FUSE view serves blobs from the
// shared store (world-readable 0444, so her own unprivileged server can
// read them), after a phantom ingest.
func TestDaemonMount(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if os.Getenv("VRIFT_REQUIRE_ROOT") != "" {
			t.Fatal("fusermount3 missing (package fuse3) and VRIFT_REQUIRE_ROOT is set")
		}
		t.Skip("no fusermount3 (package fuse3; scripts/deps.sh installs it)")
	}
	e := newDaemonEnv(t)
	info, _ := os.Stat("/dev/fuse")
	if info.Mode().Perm() != 0o666 {
		os.Chmod("/dev/fuse", 0o666)
		t.Cleanup(func() { os.Chmod("/dev/fuse", info.Mode().Perm()) })
	}
	e.start()
	proj := filepath.Join(e.base, "alice", "web")
	e.tree("alice", proj, map[string]string{"package.json": "{}", "node_modules/pkg/index.js": "module.exports = 42\n",
		"node_modules/.keep": ""})
	e.mustAs("alice", "ingest", "--mode", "phantom", filepath.Join(proj, "node_modules"))
	nm := filepath.Join(proj, "node_modules")
	out := e.mustAs("alice", "mount", proj, nm, "--subtree", "node_modules")
	t.Cleanup(func() { e.as("alice", "umount", nm) })
	t.Logf("%s", strings.TrimSpace(out))
	if got, code := runAs(t, "alice", nil, "cat", filepath.Join(nm, "pkg", "index.js")); code != 0 || got != "module.exports = 42\n" {
		t.Fatalf("alice reads her view: %q (exit %d)", got, code)
	}
	if st := e.mustAs("alice", "status"); !strings.Contains(st, "mode:    daemon") || !strings.Contains(st, nm+" <- ") {
		t.Errorf("status in daemon mode does not list the mount:\n%s", st)
	}
	e.mustAs("alice", "umount", nm)
}
