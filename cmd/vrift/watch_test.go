package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrift/vrift/internal/manifesttest"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/watch"
)

// These tests run `vrift watch` as a real process on the real npm fixture,
// in direct mode and (as alice) against the real daemon.

// watcher is a running `vrift watch`.
type watcher struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *bytes.Buffer
	dir    string
	exited chan struct{}
}

// startWatcher runs cmd (a vrift watch) and waits until its start-up scan
// is committed.
func startWatcher(t *testing.T, cmd *exec.Cmd, dir string) *watcher {
	t.Helper()
	w := &watcher{t: t, cmd: cmd, out: &bytes.Buffer{}, dir: dir}
	cmd.Stdout, cmd.Stderr = w.out, w.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if st, ok, _ := watch.Status(dir); ok && !st.Starting {
			break
		}
		select {
		case <-exited:
			t.Fatalf("vrift watch exited before it was ready: %v\n%s", cmd.ProcessState, w.out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("vrift watch not ready after 2 minutes\n%s", w.out)
		}
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	w.exited = exited
	return w
}

// stop sends SIGTERM and wants exit 0 (the queue drained and committed).
func (w *watcher) stop() {
	w.t.Helper()
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(time.Minute):
		w.cmd.Process.Kill()
		w.t.Fatalf("vrift watch did not stop within a minute of SIGTERM\n%s", w.out)
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		w.t.Fatalf("vrift watch exited %d after SIGTERM\n%s", code, w.out)
	}
}

func manifestEntries(t *testing.T, proj string) map[string]manifest.Entry {
	t.Helper()
	return manifesttest.Entries(t, proj, manifest.RootPath)
}

// jsonOut runs bin and returns its standard output (warnings go to
// standard error).
func jsonOut(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("vrift %v: %v\n%s%s", args, err, out, stderr.String())
	}
	return string(out)
}

// readNothing parses an ingest's --json output and wants no file read.
func readNothing(t *testing.T, what, out string) {
	t.Helper()
	var res struct {
		Files     int64 `json:"files"`
		Reused    int64 `json:"reused"`
		ReadFiles int64 `json:"read_files"`
		ReadBytes int64 `json:"read_bytes"`
	}
	if i := strings.Index(out, "\n{\n"); i >= 0 {
		out = out[i+1:] // after warnings on standard error, in a combined output
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	if res.Files == 0 || res.ReadFiles != 0 || res.ReadBytes != 0 || res.Reused != res.Files {
		t.Fatalf("%s: %d files, %d reused, read %d files (%d bytes); want every file reused and nothing read",
			what, res.Files, res.Reused, res.ReadFiles, res.ReadBytes)
	}
	t.Logf("%s: %d files, all reused, 0 bytes read", what, res.Files)
}

// watchedProject makes a direct-mode project (the fixture's package.json,
// an empty node_modules) and starts a watcher on it.
func watchedProject(t *testing.T, fix string) (bin, store, proj string, w *watcher) {
	t.Helper()
	dir := t.TempDir()
	bin = buildVrift(t, dir)
	store, proj = filepath.Join(dir, "store"), filepath.Join(dir, "app")
	os.MkdirAll(filepath.Join(proj, "node_modules"), 0o755)
	sh(t, "cp", filepath.Join(fix, "base", "package.json"), proj)
	return bin, store, proj, startWatcher(t, exec.Command(bin, "--store", store, "watch", proj), proj)
}

// TestWatchFixture: the fixture copied into a watched project is stored as
// it is written; after --sync, the ingest reads no file content, and the
// projected tree is the fixture, verified.
func TestWatchFixture(t *testing.T) {
	fix := fixtureDir(t)
	bin, store, proj, w := watchedProject(t, fix)
	src := filepath.Join(fix, "base", "node_modules")
	sh(t, "cp", "-a", src+"/.", filepath.Join(proj, "node_modules"))
	if out, code := runCode(bin, "--store", store, "watch", "--sync", proj); code != 0 {
		t.Fatalf("watch --sync: exit %d\n%s", code, out)
	}
	if out, _ := runCode(bin, "--store", store, "status", proj); !strings.Contains(out, "watcher: pid ") {
		t.Errorf("status does not show the watcher:\n%s", out)
	}
	readNothing(t, "ingest after watch --sync", jsonOut(t, bin, "--store", store, "--json", "ingest", filepath.Join(proj, "node_modules")))
	w.stop()
	if !strings.Contains(w.out.String(), "stopped watching: ") {
		t.Errorf("no closing line from the watcher:\n%s", w.out)
	}
	if out, code := runCode(bin, "--store", store, "verify"); code != 0 {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	sh(t, "diff", "-r", src, filepath.Join(proj, "node_modules"))
}

// watchAs starts vrift watch proj as user against the daemon.
func (e *daemonEnv) watchAs(user, proj string) *watcher {
	e.t.Helper()
	cmd := exec.Command("setpriv", "--reuid="+user, "--regid="+user, "--init-groups", "--", e.bin, "watch", proj)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(e.base, user), "VRIFT_SOCKET=" + e.socket}
	return startWatcher(e.t, cmd, proj)
}

// TestDaemonWatch: alice's watcher stores through the daemon by
// descriptors; her ingest afterwards reads nothing; bob cannot sync with
// her watcher, and a second watcher of hers is refused naming the first.
func TestDaemonWatch(t *testing.T) {
	fix := fixtureDir(t)
	e := newDaemonEnv(t)
	e.start()
	proj := filepath.Join(e.base, "alice", "app")
	e.tree("alice", proj, map[string]string{"package.json": "{}", "node_modules/.keep": ""})
	os.Remove(filepath.Join(proj, "node_modules/.keep"))
	w := e.watchAs("alice", proj)
	if out, code := e.as("alice", "watch", proj); code == 0 || !strings.Contains(out, fmt.Sprintf("pid %d", w.cmd.Process.Pid)) {
		t.Errorf("a second watcher: exit %d, want a refusal naming pid %d:\n%s", code, w.cmd.Process.Pid, out)
	}
	src := filepath.Join(fix, "base", "node_modules")
	// Copied as root (alice cannot read the fixture), then handed to her:
	// the chown is evented too.
	sh(t, "cp", "-a", src+"/.", filepath.Join(proj, "node_modules"))
	sh(t, "chown", "-R", "alice:alice", filepath.Join(proj, "node_modules"))
	if out, code := e.as("bob", "watch", "--sync", proj); code == 0 {
		t.Errorf("bob synced with alice's watcher:\n%s", out)
	}
	if out, code := e.as("alice", "watch", "--sync", proj); code != 0 {
		t.Fatalf("alice's watch --sync: exit %d\n%s\nwatcher:\n%s", code, out, w.out)
	}
	readNothing(t, "alice's ingest after watch --sync", e.mustAs("alice", "--json", "ingest", filepath.Join(proj, "node_modules")))
	w.stop()
	e.mustAs("alice", "verify")
	sh(t, "diff", "-r", src, filepath.Join(proj, "node_modules"))
}

// TestWatchNpmInstall: a real npm install into a watched project (from
// npm's cache, which the fixture's install warmed): after --sync the
// manifest is the one an ingest records, which then reads nothing, and it
// names no temp file npm wrote and renamed.
func TestWatchNpmInstall(t *testing.T) {
	fix := fixtureDir(t)
	bin, store, proj, w := watchedProject(t, fix)
	npm := exec.Command("npm", "install", "--prefer-offline", "--no-audit", "--no-fund", "--no-package-lock", "--ignore-scripts")
	npm.Dir = proj
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm install: %v\n%s", err, tail(string(out), 3000))
	}
	if out, code := runCode(bin, "--store", store, "watch", "--sync", proj); code != 0 {
		t.Fatalf("watch --sync: exit %d\n%s", code, out)
	}
	live := manifestEntries(t, proj)
	for p := range live {
		if p == manifest.RootPath {
			continue
		}
		if _, err := os.Lstat(filepath.Join(proj, p)); err != nil {
			t.Errorf("the manifest names %s, which is not in the tree: %v", p, err)
		}
	}
	if _, ok := live["node_modules/typescript/package.json"]; !ok && len(live) < 20000 {
		t.Fatalf("the watcher recorded only %d entries of the install", len(live))
	}
	w.stop()
	readNothing(t, "ingest after a watched npm install", jsonOut(t, bin, "--store", store, "--json", "ingest", "--tier", "tier2", proj))
	manifesttest.Same(t, "watched npm install vs ingest", manifestEntries(t, proj), live)
}

// TestWatchKill9: a watcher killed with SIGKILL mid-burst, restarted: its
// start-up scan catches up, and the manifest is what an ingest records.
func TestWatchKill9(t *testing.T) {
	fix := fixtureDir(t)
	bin, store, proj, w := watchedProject(t, fix)
	cp := exec.Command("cp", "-a", filepath.Join(fix, "base", "node_modules")+"/.", filepath.Join(proj, "node_modules"))
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.exited
	if err := cp.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := watch.Status(proj); ok {
		t.Fatal("a killed watcher still holds the project")
	}
	w = startWatcher(t, exec.Command(bin, "--store", store, "watch", proj), proj)
	if out, code := runCode(bin, "--store", store, "watch", "--sync", proj); code != 0 {
		t.Fatalf("watch --sync: exit %d\n%s", code, out)
	}
	live := manifestEntries(t, proj)
	w.stop()
	readNothing(t, "ingest after a killed and restarted watcher", jsonOut(t, bin, "--store", store, "--json", "ingest", "--tier", "tier2", proj))
	manifesttest.Same(t, "restarted watcher vs ingest", manifestEntries(t, proj), live)
	if out, code := runCode(bin, "--store", store, "verify"); code != 0 {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
}

// TestWatchBadInputs: each a clear error, exit 1, nothing written.
func TestWatchBadInputs(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	proj := filepath.Join(dir, "app")
	writeTree(t, proj, map[string]string{"package.json": "{}", "node_modules/a.js": "a"})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"missing dir", []string{"watch", filepath.Join(dir, "nope")}, "nope"},
		{"a file", []string{"watch", filepath.Join(proj, "package.json")}, "not a directory"},
		{"sync without a watcher", []string{"watch", "--sync", proj}, "no watcher runs for the project"},
		{"two directories", []string{"watch", proj, dir}, "accepts at most 1 arg"},
	} {
		out, errs, code := vrift(t, append([]string{"--store", store}, c.args...)...)
		if code == 0 || !strings.Contains(out+errs, c.want) {
			t.Errorf("%s: exit %d, want an error containing %q:\n%s%s", c.name, code, c.want, out, errs)
		}
	}
	if _, err := os.Stat(manifest.PathFor(proj)); err == nil {
		t.Error("a refused watch wrote a manifest")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := watch.Sync(ctx, proj); err == nil {
		t.Error("sync succeeded with no watcher")
	}
}

// TestDaemonWatchQuota: a file over alice's quota is refused by the daemon
// as her ingest would be: --sync fails naming the refusal, the manifest
// records nothing of it, status shows the error, and the watcher keeps
// going: once the file is gone, the next commit goes through.
func TestDaemonWatchQuota(t *testing.T) {
	e := newDaemonEnv(t)
	e.start("--config", e.config("[quota.users]\nalice = \"40KiB\"\n"))
	proj := filepath.Join(e.base, "alice", "app")
	e.tree("alice", proj, map[string]string{"package.json": "{}", "node_modules/a.js": "a"})
	w := e.watchAs("alice", proj)
	e.tree("alice", filepath.Join(proj, "node_modules"), map[string]string{"big.bin": sized("alice-big", 60<<10)})
	out, code := e.as("alice", "watch", "--sync", proj)
	if code == 0 || !strings.Contains(out, "quota") {
		t.Fatalf("sync with a file over quota: exit %d, want a quota refusal:\n%s\nthe watcher's output:\n%s", code, out, w.out)
	}
	if _, ok := manifestEntries(t, proj)["node_modules/big.bin"]; ok {
		t.Fatal("the refused file is in the manifest")
	}
	if st := e.mustAs("alice", "status", proj); !strings.Contains(st, "watcher's last commit failed") || !strings.Contains(st, "quota") {
		t.Errorf("status does not show the refusal:\n%s", st)
	}
	os.Remove(filepath.Join(proj, "node_modules/big.bin"))
	e.tree("alice", filepath.Join(proj, "node_modules"), map[string]string{"small.js": "small"})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, code := e.as("alice", "watch", "--sync", proj); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watcher never recovered from the refusal\n%s", w.out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, ok := manifestEntries(t, proj)["node_modules/small.js"]; !ok {
		t.Fatal("a file stored after the refusal is not in the manifest")
	}
	w.stop()
	if !strings.Contains(w.out.String(), "quota") {
		t.Errorf("the watcher did not report the refusal:\n%s", w.out)
	}
}

// setSysctl sets an inotify limit for the test and puts it back after.
func setSysctl(t *testing.T, name string, v int) {
	t.Helper()
	p := "/proc/sys/fs/inotify/" + name
	old, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(fmt.Sprint(v)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(p, old, 0o644) })
}

// TestDaemonWatchLimit: alice's inotify watches are limited (one per
// directory). A tree with more directories than that is refused at start
// with an error naming the sysctl, and nothing written; directories made
// past the limit while a watcher runs are rescanned instead, and their
// files still stored.
func TestDaemonWatchLimit(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	files := map[string]string{"package.json": "{}"}
	for i := range 40 {
		files[fmt.Sprintf("node_modules/d%d/f.js", i)] = fmt.Sprint(i)
	}
	proj := filepath.Join(e.base, "alice", "app")
	e.tree("alice", proj, files)
	setSysctl(t, "max_user_watches", 30)
	out, code := e.as("alice", "watch", proj)
	if code == 0 || !strings.Contains(out, "fs.inotify.max_user_watches") {
		t.Fatalf("watch of 42 directories with 30 watches: exit %d, want an error naming the sysctl:\n%s", code, out)
	}
	if _, err := os.Stat(manifest.PathFor(proj)); err == nil {
		t.Error("the refused watcher wrote a manifest")
	}

	setSysctl(t, "max_user_watches", 45)
	w := e.watchAs("alice", proj)
	more := map[string]string{}
	for i := range 10 {
		more[fmt.Sprintf("n%d/g.js", i)] = fmt.Sprint(i)
	}
	e.tree("alice", filepath.Join(proj, "node_modules"), more)
	e.mustAs("alice", "watch", "--sync", proj)
	// Written into directories that have no watch: found by the rescan.
	later := map[string]string{}
	for i := range 10 {
		later[fmt.Sprintf("n%d/later.js", i)] = fmt.Sprint(i)
	}
	e.tree("alice", filepath.Join(proj, "node_modules"), later)
	time.Sleep(4 * time.Second) // two rescan periods
	e.mustAs("alice", "watch", "--sync", proj)
	got := manifestEntries(t, proj)
	for i := range 10 {
		for _, name := range []string{"g.js", "later.js"} {
			if _, ok := got[fmt.Sprintf("node_modules/n%d/%s", i, name)]; !ok {
				t.Errorf("node_modules/n%d/%s not recorded past the watch limit", i, name)
			}
		}
	}
	w.stop()
	if !strings.Contains(w.out.String(), "fs.inotify.max_user_watches") {
		t.Errorf("the watcher did not name the limit:\n%s", w.out)
	}
}
