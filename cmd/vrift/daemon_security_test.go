package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
)

// Issue 8's daemon-side findings, as real users (alice, bob) against the
// real daemon running as vrift, with canary files only. Each test failed
// before the fix it names.

// boundedAs runs vrift as user and fails if it takes longer than d or fails.
func (e *daemonEnv) boundedAs(d time.Duration, user string, args ...string) string {
	e.t.Helper()
	start := time.Now()
	cmd := exec.Command("setpriv", append([]string{"--reuid=" + user, "--regid=" + user, "--init-groups", "--", e.bin}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(e.base, user), "VRIFT_SOCKET=" + e.socket}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			e.t.Fatalf("%s: vrift %v: %v\n%s", user, args, err, out.String())
		}
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		e.t.Fatalf("%s: vrift %v did not finish within %v (stuck behind another user's put?)\n%s", user, args, d, out.String())
	}
	e.t.Logf("%s: vrift %v: %v", user, args, time.Since(start).Round(time.Millisecond))
	return out.String()
}

func (e *daemonEnv) storeTemps() int {
	entries, _ := os.ReadDir(filepath.Join(e.store, "tmp"))
	return len(entries)
}

// TestDaemonSecurityPutDoesNotStallOthers (H5): while the daemon reads
// alice's 1 TiB sparse file, bob's gc, ingest and link complete in bounded
// time. Before the fix her put held the sweep lock for the whole read, bob's
// gc queued for the write lock, and every later put and pin queued behind it.
func TestDaemonSecurityPutDoesNotStallOthers(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	proj := filepath.Join(e.base, "alice", "huge")
	e.tree("alice", proj, map[string]string{"package.json": "{}"})
	os.MkdirAll(filepath.Join(proj, "data"), 0o755)
	big := filepath.Join(proj, "data", "sparse.bin")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 1<<40); err != nil {
		t.Skipf("no 1 TiB sparse file on this filesystem: %v", err)
	}
	sh(t, "chown", "-R", "alice:alice", proj)
	ingest := exec.Command("setpriv", "--reuid=alice", "--regid=alice", "--init-groups", "--",
		e.bin, "ingest", "--tier", "tier2", filepath.Join(proj, "data"))
	ingest.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(e.base, "alice"), "VRIFT_SOCKET=" + e.socket}
	var out bytes.Buffer
	ingest.Stdout, ingest.Stderr = &out, &out
	if err := ingest.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ingest.Process.Kill()
		ingest.Wait()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for e.storeTemps() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never started reading alice's file\n%s\n%s", out.String(), e.log)
		}
		time.Sleep(20 * time.Millisecond)
	}

	e.boundedAs(20*time.Second, "bob", "gc", "--grace", "1h")
	bobProj := filepath.Join(e.base, "bob", "proj")
	e.tree("bob", bobProj, map[string]string{"package.json": "{}", "pkg/a.txt": "bob's canary\n"})
	e.boundedAs(20*time.Second, "bob", "ingest", filepath.Join(bobProj, "pkg"))
	e.boundedAs(20*time.Second, "bob", "link", bobProj, "--to", filepath.Join(e.base, "bob", "copy"), "--method", "copy")
	if b, err := os.ReadFile(filepath.Join(e.base, "bob", "copy", "pkg", "a.txt")); err != nil || string(b) != "bob's canary\n" {
		t.Fatalf("bob's copy: %q %v", b, err)
	}
	if ingest.ProcessState != nil || e.storeTemps() == 0 {
		t.Fatalf("alice's 1 TiB ingest is no longer being read: the test did not test the stall\n%s", out.String())
	}
}

// TestDaemonSecurityPinOracle (M1): bob keeps a 4-digit PIN in a 0644 file
// inside his 0700 directory. Before the fix the daemon shared it (the inode
// has o+r), and alice found it among 10,000 candidates through the dedup
// answers: put's `new`, link's `missing`, status's counters. Now the daemon
// cannot reach the file by its path, keeps it private, and every answer
// alice gets is the same for the right guess as for the wrong ones.
func TestDaemonSecurityPinOracle(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	pin := fmt.Sprintf("PIN %04d\n", time.Now().UnixNano()%10000)
	vault := filepath.Join(e.base, "bob", "vault")
	e.tree("bob", vault, map[string]string{"package.json": "{}", "secrets/pin.txt": pin})
	os.Chmod(vault, 0o700)
	out := e.mustAs("bob", "ingest", filepath.Join(vault, "secrets"))
	if !strings.Contains(out, "private files left in place") {
		t.Errorf("bob's PIN file in his 0700 dir not reported private:\n%s", out)
	}
	if _, err := os.Stat(blobPathOf(e.store, pin, false)); err == nil {
		t.Error("bob's PIN file (0644 inside a 0700 dir) is in the shared store")
	}
	// bob also shares a public project, so the store is not empty.
	pub := filepath.Join(e.base, "bob", "pub")
	e.tree("bob", pub, map[string]string{"package.json": "{}", "lib/x.js": "public " + pin})
	e.mustAs("bob", "ingest", filepath.Join(pub, "lib"))

	// Status: no store-wide counters for alice.
	var st struct {
		Store struct{ Blobs, Bytes int64 } `json:"store"`
	}
	if err := json.Unmarshal([]byte(e.mustAs("alice", "--json", "status")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Store.Blobs != 0 || st.Store.Bytes != 0 {
		t.Errorf("alice's status shows the store's counters: %+v", st.Store)
	}

	// Link: a crafted manifest naming 10 candidates, the right one among
	// them; the pin answers which blobs are missing.
	crafted := filepath.Join(e.base, "alice", "crafted")
	e.tree("alice", crafted, map[string]string{"package.json": "{}"})
	mpath := manifest.PathFor(crafted)
	m, err := manifest.Create(mpath)
	if err != nil {
		t.Fatal(err)
	}
	guess, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(pin, "PIN ")))
	err = m.Update(func(w *manifest.Writer) error {
		w.Put(manifest.RootPath, manifest.Entry{Kind: manifest.Dir, Mode: 0o755})
		for i := range 10 {
			c := fmt.Sprintf("PIN %04d\n", (guess+i)%10000)
			k := keyOfContent(c)
			if err := w.Put(fmt.Sprintf("g%d", i), manifest.Entry{Kind: manifest.File, Mode: 0o644, Size: k.Size, Sum: k.Sum}); err != nil {
				return err
			}
		}
		return w.SetMeta(manifest.Meta{Root: crafted})
	})
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	sh(t, "chown", "-R", "alice:alice", crafted)
	out, code := e.as("alice", "link", crafted, "--to", filepath.Join(e.base, "alice", "out"), "--method", "copy")
	if code == 0 || !strings.Contains(out, "10 blobs of") {
		t.Errorf("the pin answer tells one of 10 candidates apart (exit %d):\n%s", code, out)
	}

	// Put: alice ingests all 10,000 candidates; every one is answered new.
	files := map[string]string{"package.json": "{}"}
	for i := range 10000 {
		files[fmt.Sprintf("g/%02d/%04d.txt", i/100, i)] = fmt.Sprintf("PIN %04d\n", i)
	}
	guesses := filepath.Join(e.base, "alice", "guesses")
	e.tree("alice", guesses, files)
	out = e.mustAs("alice", "--json", "ingest", "--tier", "tier2", filepath.Join(guesses, "g"))
	var res struct {
		NewBlobs int64 `json:"new_blobs"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if res.NewBlobs != 10000 {
		t.Errorf("alice's 10,000 guesses: %d answered new; one was deduplicated against bob's PIN", res.NewBlobs)
	}
}

func keyOfContent(c string) cas.Key {
	h := cas.NewHasher()
	h.Write([]byte(c))
	k := cas.Key{Size: int64(len(c))}
	h.Sum(k.Sum[:0])
	return k
}

// TestDaemonSecurityCorruptManifest (L1): manifests crafted to crash C
// LMDB (page numbers past the end of the file, scribbled pages) are pinned
// over the raw protocol; the daemon answers each with an error and keeps
// serving. Before the fix the first one killed it (SIGBUS).
func TestDaemonSecurityCorruptManifest(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	dir := filepath.Join(e.base, "alice", "m")
	os.MkdirAll(dir, 0o755)
	mpath := filepath.Join(dir, "manifest.lmdb")
	m, err := manifest.Create(mpath)
	if err != nil {
		t.Fatal(err)
	}
	m.Update(func(w *manifest.Writer) error {
		for i := range 300 {
			k := keyOfContent(strconv.Itoa(i))
			w.Put(fmt.Sprintf("f%04d", i), manifest.Entry{Kind: manifest.File, Mode: 0o644, Size: k.Size, Sum: k.Sum})
		}
		return nil
	})
	m.Close()
	valid, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	pages := uint64(len(valid) / 4096)
	metas := func(f func(m []byte)) func([]byte) {
		return func(b []byte) { f(b[16:]); f(b[4096+16:]) }
	}
	type variant struct {
		name string
		mut  func([]byte)
	}
	variants := []variant{
		{"last page past the end", metas(func(m []byte) { le.PutUint64(m[120:], pages+16) })},
		{"root past the end", metas(func(m []byte) { le.PutUint64(m[120:], pages+16); le.PutUint64(m[112:], pages+8) })},
	}
	// Scribbled branch and leaf pages: node offsets pointing past the page
	// (each of these crashed C LMDB in-process: SIGSEGV or an assertion).
	for p := 2; p < int(pages); p++ {
		variants = append(variants, variant{fmt.Sprintf("page %d node offsets scribbled", p), func(b []byte) {
			pg := b[p*4096:]
			for o := 16; o < int(le.Uint16(pg[12:])) && o+2 <= 4096; o += 2 {
				le.PutUint16(pg[o:], 0xfff0)
			}
		}}, variant{fmt.Sprintf("page %d header zeroed", p), func(b []byte) { clear(b[p*4096 : p*4096+16]) }})
	}
	refused := 0
	for _, tc := range variants {
		data := append([]byte(nil), valid...)
		tc.mut(data)
		bad := filepath.Join(dir, "bad.lmdb")
		os.WriteFile(bad, data, 0o644)
		f, err := os.Open(bad)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("unix", e.socket)
		if err != nil {
			t.Fatalf("%s: daemon gone: %v\n%s", tc.name, err, e.log)
		}
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"link","params":{"manifest_path":%q}}`, bad)
		msg := fmt.Sprintf("Content-Length: %d\r\nFds: 1\r\n\r\n%s", len(body), body)
		if _, _, err := c.(*net.UnixConn).WriteMsgUnix([]byte(msg), syscall.UnixRights(int(f.Fd())), nil); err != nil {
			t.Fatal(err)
		}
		f.Close()
		resp := readReply(t, c, e)
		c.Close()
		if strings.Contains(resp, `"code":-32602`) {
			refused++
		} else if !strings.Contains(resp, `"result"`) {
			t.Errorf("%s: %.300s", tc.name, resp)
		}
		e.serving(tc.name)
	}
	t.Logf("%d of %d corrupted manifests refused; the daemon answered every one", refused, len(variants))
	if refused < 2 {
		t.Errorf("only %d corrupted manifests refused", refused)
	}
	if strings.Contains(e.log.String(), "SIGBUS") || strings.Contains(e.log.String(), "SIGSEGV") {
		t.Fatalf("the daemon crashed:\n%s", e.log)
	}
}

// readReply reads one framed reply, failing with the daemon's log if the
// daemon hung up instead (it died).
func readReply(t *testing.T, c net.Conn, e *daemonEnv) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64<<10)
	var got []byte
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if i := bytes.Index(got, []byte("\r\n\r\n")); i >= 0 {
			var length int
			fmt.Sscanf(string(got[:i]), "Content-Length: %d", &length)
			if len(got) >= i+4+length {
				return string(got[i+4 : i+4+length])
			}
		}
		if err != nil {
			t.Fatalf("no reply (%v): the daemon died?\n%s", err, e.log)
		}
	}
}

// TestDaemonSecurityDropStale (Low): roots whose owner never runs gc stay
// forever; root's `gc --drop-stale` drops those whose pinned copy the
// daemon can no longer read, and a user may not run it.
func TestDaemonSecurityDropStale(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	for _, p := range []string{"keep", "stale"} {
		proj := filepath.Join(e.base, "alice", p)
		e.tree("alice", proj, map[string]string{"package.json": "{}", "pkg/a.txt": p + " canary\n"})
		e.mustAs("alice", "ingest", filepath.Join(proj, "pkg"))
	}
	// The stale root's pinned copy is damaged on disk.
	copies, _ := filepath.Glob(filepath.Join(e.state, "roots", strconv.Itoa(int(uidOf(t, "alice"))), "*.json"))
	var staleCopy string
	for _, c := range copies {
		b, _ := os.ReadFile(c)
		if strings.Contains(string(b), filepath.Join(e.base, "alice", "stale")) {
			staleCopy = strings.TrimSuffix(c, ".json") + ".lmdb"
		}
	}
	if staleCopy == "" {
		t.Fatalf("no pinned copy of alice's stale project among %v", copies)
	}
	if err := os.Truncate(staleCopy, 512); err != nil {
		t.Fatal(err)
	}
	if out, code := e.as("bob", "gc", "--drop-stale"); code == 0 || !strings.Contains(out, "root and vrift only") {
		t.Errorf("bob's gc --drop-stale: exit %d\n%s", code, out)
	}
	out := e.mustAs("vrift", "--json", "gc", "--drop-stale")
	var res struct {
		Roots        int      `json:"roots"`
		DroppedRoots []string `json:"dropped_roots"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.DroppedRoots) != 1 || !strings.Contains(res.DroppedRoots[0], "stale") || res.Roots != 1 {
		t.Fatalf("gc --drop-stale: %+v", res)
	}
	e.mustAs("alice", "link", filepath.Join(e.base, "alice", "keep"), "--to", filepath.Join(e.base, "alice", "copy"), "--method", "copy")
}
