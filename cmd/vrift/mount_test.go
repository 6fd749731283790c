package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests mount real FUSE views. They need root and /dev/fuse (and
// fusermount3 for the unprivileged mount); CI has them, and there a skip
// fails (VRIFT_REQUIRE_ROOT).

func requireFUSE(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("VRIFT_REQUIRE_ROOT") != "" {
			t.Fatal("/dev/fuse is missing and VRIFT_REQUIRE_ROOT is set")
		}
		t.Skip("no /dev/fuse")
	}
}

// mountAt runs `vrift mount` (detached) and registers the unmount.
func mountAt(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"mount"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("vrift mount %v: %v\n%s", args, err, out)
	}
	mp := args[len(args)-1]
	t.Cleanup(func() { exec.Command(bin, "umount", mp).Run() })
	return string(out)
}

// TestMountNpm serves the npm fixture's node_modules from the store through
// FUSE, over the project's own node_modules (the phantom-mode recipe), and
// checks it is byte-identical, read-only, and that the 23 Node tasks pass on
// it.
func TestMountNpm(t *testing.T) {
	requireFUSE(t)
	fix := fixtureDir(t)
	dir := t.TempDir()
	bin := buildVrift(t, dir)
	store := filepath.Join(dir, "store")
	proj := filepath.Join(dir, "app")
	copyProject(t, filepath.Join(fix, "base"), proj)
	nm := filepath.Join(proj, "node_modules")
	if out, err := exec.Command(bin, "--store", store, "ingest", "--mode", "phantom", nm).CombinedOutput(); err != nil {
		t.Fatalf("ingest: %v\n%s", err, out)
	}
	out := mountAt(t, bin, "--store", store, proj, "--subtree", "node_modules", nm)
	t.Logf("%s", strings.TrimSpace(out))

	if st := mustVrift(t, "--store", store, "status"); !strings.Contains(st, nm+" <- ") || !strings.Contains(st, "reads: ") {
		t.Errorf("status does not list the mount and how it reads:\n%s", st)
	}
	orig := filepath.Join(fix, "base", "node_modules")
	sh(t, "diff", "-r", "--no-dereference", orig, nm)
	compareListings(t, treeListing(t, orig, false, true), treeListing(t, nm, false, true))

	// Every kind of write fails with EROFS, and the store is unchanged.
	before := mustVrift(t, "--store", store, "--json", "status")
	target := filepath.Join(nm, "lodash", "package.json")
	for name, op := range map[string]func() error{
		"write":  func() error { return os.WriteFile(target, []byte("x"), 0o644) },
		"create": func() error { return os.WriteFile(filepath.Join(nm, "new.js"), []byte("x"), 0o644) },
		"rename": func() error { return os.Rename(target, target+".bak") },
		"chmod":  func() error { return os.Chmod(target, 0o777) },
		"unlink": func() error { return os.Remove(target) },
		"mkdir":  func() error { return os.Mkdir(filepath.Join(nm, "d"), 0o755) },
		"symlink": func() error {
			return os.Symlink("x", filepath.Join(nm, "l"))
		},
		"truncate": func() error { return os.Truncate(target, 0) },
	} {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on the view: %v, want EROFS", name, err)
		}
	}
	if after := mustVrift(t, "--store", store, "--json", "status"); blobsLine(after) != blobsLine(before) {
		t.Errorf("store changed: %s -> %s", blobsLine(before), blobsLine(after))
	}
	mustVrift(t, "--store", store, "verify")

	res, err := exec.Command(filepath.Join(repoRoot(t), "scripts", "node-suite.sh"), proj).CombinedOutput()
	t.Logf("node suite on the FUSE view:\n%s", tail(string(res), 3000))
	if err != nil || !strings.Contains(string(res), "node suite: 23/23 tasks ok") {
		t.Fatalf("node suite on the FUSE view failed: %v", err)
	}
}

func blobsLine(statusJSON string) string {
	for _, l := range strings.Split(statusJSON, "\n") {
		if strings.Contains(l, `"blobs"`) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// TestMountStaleAfterKill: kill -9 of the server leaves a stale mount;
// status says so, vrift umount clears it, and a remount works (and a mount
// over a stale one cleans it up first).
func TestMountStaleAfterKill(t *testing.T) {
	requireFUSE(t)
	bin, store, proj, mp := smallProject(t)

	// A foreground server we can kill.
	server := exec.Command(bin, "--store", store, "mount", "--foreground", proj, mp)
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		b, err := os.ReadFile(filepath.Join(mp, "lib", "a.txt"))
		return err == nil && string(b) == "alpha\n"
	})
	server.Process.Signal(syscall.SIGKILL)
	server.Wait()
	t.Cleanup(func() { exec.Command(bin, "umount", mp).Run() })

	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mp, &sfs); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("after kill -9, statfs of the mountpoint: %v, want ENOTCONN", err)
	}
	out := mustVrift(t, "--store", store, "status")
	if !strings.Contains(out, "STALE") {
		t.Errorf("status does not report the stale mount:\n%s", out)
	}
	// Remount over the stale mount: cleaned up with a message, then live.
	cmd := exec.Command(bin, "--store", store, "mount", proj, mp)
	combined, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(combined), "stale mount") {
		t.Fatalf("mount over a stale mount: %v\n%s", err, combined)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "lib", "sub", "b.txt")); err != nil || string(b) != "beta\n" {
		t.Fatalf("remounted view: %q %v", b, err)
	}
	// Kill the detached server too, then umount clears the stale mount.
	killServerOf(t, mp)
	waitFor(t, func() bool { var s syscall.Statfs_t; return errors.Is(syscall.Statfs(mp, &s), syscall.ENOTCONN) })
	out2, err := exec.Command(bin, "umount", mp).CombinedOutput()
	if err != nil || !strings.Contains(string(out2), "stale") {
		t.Fatalf("umount of a stale mount: %v\n%s", err, out2)
	}
	if _, err := os.Stat(mp); err != nil {
		t.Fatalf("mountpoint after umount: %v", err)
	}
}

// killServerOf sends SIGKILL to the vrift process serving mp.
func killServerOf(t *testing.T, mp string) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && strings.Contains(string(b), "--foreground") && slicesContains(args, mp) {
			pid := 0
			for _, c := range e.Name() {
				pid = pid*10 + int(c-'0')
			}
			syscall.Kill(pid, syscall.SIGKILL)
			return
		}
	}
	t.Fatalf("no server process for %s", mp)
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 200 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("condition not met within 10s")
}

// TestMountUnprivileged: alice mounts through fusermount3 and reads; bob
// cannot read her mount (no allow_other).
func TestMountUnprivileged(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if os.Getenv("VRIFT_REQUIRE_ROOT") != "" {
			t.Fatal("fusermount3 missing (package fuse3) and VRIFT_REQUIRE_ROOT is set")
		}
		t.Skip("no fusermount3 (package fuse3)")
	}
	uid, gid := ensureUser(t, "alice")
	ensureUser(t, "bob")
	// Without udev /dev/fuse is 0600; distributions make it 0666.
	info, _ := os.Stat("/dev/fuse")
	if info.Mode().Perm() != 0o666 {
		os.Chmod("/dev/fuse", 0o666)
		t.Cleanup(func() { os.Chmod("/dev/fuse", info.Mode().Perm()) })
	}
	dir := sharedTempDir(t)
	bin := buildVrift(t, dir)
	home := filepath.Join(dir, "alice")
	proj := filepath.Join(home, "proj")
	writeTree(t, proj, map[string]string{"go.mod": "module m\n", "lib/a.txt": "alpha\n"})
	mp := filepath.Join(home, "view")
	os.Mkdir(mp, 0o755)
	sh(t, "chown", "-R", strconv.Itoa(uid)+":"+strconv.Itoa(gid), home)
	env := []string{"HOME=" + home}
	if out, code := runAs(t, "alice", env, bin, "--direct", "ingest", "--tier", "tier2", filepath.Join(proj, "lib")); code != 0 {
		t.Fatalf("ingest as alice: %s", out)
	}
	if out, code := runAs(t, "alice", env, bin, "--direct", "mount", proj, mp); code != 0 {
		t.Fatalf("mount as alice: %s", out)
	}
	t.Cleanup(func() { runAs(t, "alice", env, bin, "umount", mp) })
	if out, code := runAs(t, "alice", env, "cat", filepath.Join(mp, "lib", "a.txt")); code != 0 || out != "alpha\n" {
		t.Fatalf("alice reads her view: %q (exit %d)", out, code)
	}
	if out, code := runAs(t, "bob", nil, "cat", filepath.Join(mp, "lib", "a.txt")); code == 0 {
		t.Fatalf("bob read alice's view: %q", out)
	}
	// Bob cannot take it down, and hears whose it is (fusermount3 would
	// say it found no entry for the path); an ordinary user's umount of a
	// directory that is not mounted says so in vrift's words (issue 24).
	if out, code := runAs(t, "bob", nil, bin, "umount", mp); code != 1 || !strings.Contains(out, "mounted by uid "+strconv.Itoa(uid)) {
		t.Errorf("umount of alice's view as bob: exit %d, %q; want exit 1 naming uid %d", code, out, uid)
	}
	if !mounted(mp) {
		t.Fatal("bob's umount took alice's view down")
	}
	if out, code := runAs(t, "alice", env, bin, "umount", proj); code != 1 || !strings.Contains(out, "vrift: umount "+proj+": not a mount point") || strings.Contains(out, "fusermount3") {
		t.Errorf("umount of a plain directory as alice: exit %d, %q", code, out)
	}
	if out, code := runAs(t, "alice", env, bin, "umount", mp); code != 0 {
		t.Fatalf("umount as alice: %s", out)
	}
	if mounted(mp) {
		t.Fatal("still mounted after umount")
	}
}

func mounted(mp string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == mp {
			return true
		}
	}
	return false
}

// TestMountSIGTERM: the server unmounts and exits 0 on SIGTERM.
func TestMountSIGTERM(t *testing.T) {
	requireFUSE(t)
	bin, store, proj, mp := smallProject(t)
	server := exec.Command(bin, "--store", store, "mount", "--foreground", proj, mp)
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command(bin, "umount", mp).Run() })
	waitFor(t, func() bool { return mounted(mp) })
	server.Process.Signal(syscall.SIGTERM)
	if err := server.Wait(); err != nil {
		t.Fatalf("server exit after SIGTERM: %v", err)
	}
	if mounted(mp) {
		t.Fatal("still mounted after the server's SIGTERM")
	}
}

// smallProject builds vrift and ingests a two-file project (tier2) into a
// fresh store, returning the binary, store, project and an empty mountpoint.
func smallProject(t *testing.T) (bin, store, proj, mp string) {
	t.Helper()
	dir := t.TempDir()
	bin = buildVrift(t, dir)
	store = filepath.Join(dir, "store")
	proj = filepath.Join(dir, "proj")
	writeTree(t, proj, map[string]string{"go.mod": "module m\n", "lib/a.txt": "alpha\n", "lib/sub/b.txt": "beta\n"})
	if out, err := exec.Command(bin, "--store", store, "ingest", "--tier", "tier2", filepath.Join(proj, "lib")).CombinedOutput(); err != nil {
		t.Fatalf("ingest: %v\n%s", err, out)
	}
	mp = filepath.Join(dir, "view")
	os.Mkdir(mp, 0o755)
	return bin, store, proj, mp
}

// reingestSmall changes lib/a.txt (another size) and adds lib/new.js in
// smallProject's project, then ingests lib again.
func reingestSmall(t *testing.T, bin, store, proj string) {
	t.Helper()
	writeTree(t, proj, map[string]string{"lib/a.txt": "alpha, re-ingested\n", "lib/new.js": "module.exports = 2\n"})
	if out, err := exec.Command(bin, "--store", store, "ingest", "--tier", "tier2", filepath.Join(proj, "lib")).CombinedOutput(); err != nil {
		t.Fatalf("re-ingest: %v\n%s", err, out)
	}
}

// primeCaches reads what a view's kernel caches will then hold: a.txt's
// content and attributes, lib's listing, and new.js's absence (a negative
// entry, cached for as long as positive ones).
func primeCaches(t *testing.T, mp string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(mp, "lib", "a.txt")); err != nil || string(b) != "alpha\n" {
		t.Fatalf("a.txt on the view: %q %v", b, err)
	}
	for range 2 {
		if _, err := os.Stat(filepath.Join(mp, "lib", "new.js")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("new.js before it exists: %v", err)
		}
	}
	if names := dirNames(t, filepath.Join(mp, "lib")); strings.Join(names, ",") != "a.txt,sub" {
		t.Fatalf("lib on the view: %v", names)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// viewShowsReingest says whether the view at mp shows reingestSmall's
// manifest: a.txt's new content and size, new.js, and both in lib's listing.
func viewShowsReingest(t *testing.T, mp string) error {
	a := filepath.Join(mp, "lib", "a.txt")
	if b, err := os.ReadFile(a); err != nil || string(b) != "alpha, re-ingested\n" {
		return fmt.Errorf("a.txt: %q %v", b, err)
	}
	if st, err := os.Stat(a); err != nil || st.Size() != int64(len("alpha, re-ingested\n")) {
		return fmt.Errorf("a.txt stat: %v %v", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "lib", "new.js")); err != nil || string(b) != "module.exports = 2\n" {
		return fmt.Errorf("new.js: %q %v", b, err)
	}
	if names := dirNames(t, filepath.Join(mp, "lib")); strings.Join(names, ",") != "a.txt,new.js,sub" {
		return fmt.Errorf("lib lists %v", names)
	}
	return nil
}

// TestMountReingestRemount: the kernel caches a view's names, attributes,
// listings, pages and missing names for an hour; after a re-ingest and a
// re-mount at the same place, none of the old mount's is served: the new
// content, size and file, never a cached old one, and the name that was
// missing is not served stale as missing.
func TestMountReingestRemount(t *testing.T) {
	requireFUSE(t)
	bin, store, proj, mp := smallProject(t)
	mountAt(t, bin, "--store", store, proj, mp)
	primeCaches(t, mp)
	if out, err := exec.Command(bin, "umount", mp).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	reingestSmall(t, bin, store, proj)
	mountAt(t, bin, "--store", store, proj, mp)
	if err := viewShowsReingest(t, mp); err != nil {
		t.Fatalf("after re-ingest and re-mount: %v", err)
	}
}

// TestMountReingestLive: a re-ingest under a live mount reaches the kernel's
// caches too (the view watches its manifest and invalidates what changed):
// within seconds, without a re-mount, the view shows the new manifest, not
// the hour-long cached old one.
func TestMountReingestLive(t *testing.T) {
	requireFUSE(t)
	bin, store, proj, mp := smallProject(t)
	mountAt(t, bin, "--store", store, proj, mp)
	primeCaches(t, mp)
	f, err := os.Open(filepath.Join(mp, "lib", "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reingestSmall(t, bin, store, proj)
	var last error
	for range 100 {
		if last = viewShowsReingest(t, mp); last == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("5 s after a re-ingest under a live mount: %v", last)
	}
	// A file opened before the re-ingest still reads as it was opened.
	if b, err := io.ReadAll(f); err != nil || string(b) != "alpha\n" {
		t.Errorf("a.txt opened before the re-ingest reads %q %v", b, err)
	}
}
