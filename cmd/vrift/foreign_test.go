package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Root running vrift in a project another user controls (a CI runner on an
// untrusted checkout, an admin) must never be steered by that tree into
// touching anything outside it, nor create special bits. Each case plants
// what alice would and checks a root-owned canary outside her tree.

// foreignProject makes a project as root, ingests it into root's own store
// (tier2: files stay), then hands it to alice: the state after alice asked
// root to "restore my project". It returns the project, the vrift binary
// and root's environment.
func foreignProject(t *testing.T, files map[string]string, modes map[string]os.FileMode, ingestArgs ...string) (proj, bin string, env []string, uid, gid int) {
	t.Helper()
	requireRoot(t)
	uid, gid = ensureUser(t, "alice")
	dir := sharedTempDir(t)
	bin = buildVrift(t, dir)
	env = []string{"HOME=" + filepath.Join(dir, "roothome"), "VRIFT_STORE=" + filepath.Join(dir, "rootstore")}
	proj = filepath.Join(dir, "proj")
	writeTree(t, proj, files)
	os.WriteFile(filepath.Join(proj, "package.json"), []byte("{}"), 0o644)
	for p, m := range modes {
		if err := os.Chmod(filepath.Join(proj, p), m); err != nil {
			t.Fatal(err)
		}
	}
	runOK(t, env, bin, append([]string{"ingest"}, append(ingestArgs, filepath.Join(proj, "app"))...)...)
	sh(t, "chown", "-R", strconv.Itoa(uid)+":"+strconv.Itoa(gid), proj)
	return proj, bin, env, uid, gid
}

func runOK(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	out, code := runEnv(env, bin, args...)
	if code != 0 {
		t.Fatalf("vrift %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// runEnv runs bin as the calling user (root here) with env.
func runEnv(env []string, bin string, args ...string) (string, int) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			return out.String(), ee.ExitCode()
		}
		return out.String() + err.Error(), -1
	}
	return out.String(), 0
}

// canary is a root-owned file outside alice's tree.
func canary(t *testing.T, mode os.FileMode, content string) string {
	t.Helper()
	dir := t.TempDir() // 0700, root's
	p := filepath.Join(dir, "canary")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
	return p
}

func checkCanary(t *testing.T, p string, mode os.FileMode, content string) {
	t.Helper()
	info, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != mode {
		t.Errorf("canary %s: mode %v, want %v", p, info.Mode(), mode)
	}
	if got, _ := os.ReadFile(p); string(got) != content {
		t.Errorf("canary %s: content changed (now %d bytes, starting %q)", p, len(got), got[:min(len(got), 16)])
	}
}

// TestForeignTreeRefused: by default root refuses to ingest, link or mount
// in a tree alice owns, before touching anything.
func TestForeignTreeRefused(t *testing.T) {
	proj, bin, env, _, _ := foreignProject(t, map[string]string{"app/a.js": "a"}, nil, "--tier", "tier2")
	// Were the mount not refused, it must not outlive the test.
	t.Cleanup(func() { exec.Command("umount", "-l", filepath.Join(proj, "app")).Run() })
	for _, args := range [][]string{
		{"link", proj, "--method", "copy", "--force"},
		{"ingest", filepath.Join(proj, "app")},
		{"mount", proj, filepath.Join(proj, "app")},
	} {
		out, code := runEnv(env, bin, args...)
		if code != exitError || !strings.Contains(out, "owned by another user") || !strings.Contains(out, "--allow-other-owner") {
			t.Errorf("vrift %v in alice's tree: exit %d, %q; want a refusal naming --allow-other-owner", args, code, out)
		}
	}
	if info, err := os.Lstat(filepath.Join(proj, "app/a.js")); err != nil || !info.Mode().IsRegular() {
		t.Errorf("a refused command touched the tree: %v %v", info, err)
	}
}

// TestForeignLinkDirSymlink (H1): alice replaces a directory the manifest
// records (mode 6755) by a symlink to a root-owned file. root's link, even
// with --allow-other-owner, must not chmod through it: before the fix the
// canary became setuid root.
func TestForeignLinkDirSymlink(t *testing.T) {
	proj, bin, env, _, _ := foreignProject(t, map[string]string{"app/bin/tool": "#!/bin/sh\n"},
		map[string]os.FileMode{"app/bin": 0o755 | os.ModeSetuid | os.ModeSetgid}, "--tier", "tier2")
	c := canary(t, 0o755, "root's binary")
	sh(t, "rm", "-rf", filepath.Join(proj, "app/bin"))
	if err := os.Symlink(c, filepath.Join(proj, "app/bin")); err != nil {
		t.Fatal(err)
	}
	os.Lchown(filepath.Join(proj, "app/bin"), 1, 1)
	for _, m := range []string{"copy", "symlink"} {
		out, code := runEnv(env, bin, "--allow-other-owner", "link", proj, "--method", m)
		if code != exitConflict || !strings.Contains(out, "app/bin: not a directory") {
			t.Errorf("link --method %s: exit %d, %q; want the symlink reported as a conflict", m, code, out)
		}
		checkCanary(t, c, 0o755, "root's binary")
	}
}

// TestForeignCopySpecialBits (H2): root restoring alice's phantom project
// as copies must not create a root-owned setuid binary.
func TestForeignCopySpecialBits(t *testing.T) {
	proj, bin, env, _, _ := foreignProject(t, map[string]string{"app/tool": "#!/bin/sh\n"},
		map[string]os.FileMode{"app/tool": 0o755 | os.ModeSetuid}, "--mode", "phantom")
	out := runOK(t, env, bin, "--allow-other-owner", "--json", "link", proj, "--method", "copy")
	info, err := os.Lstat(filepath.Join(proj, "app/tool"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || info.Mode().Perm() != 0o755 {
		t.Errorf("root's copy of alice's 4755 file has mode %v; want 0755", info.Mode())
	}
	if !strings.Contains(out, `"special_bits_masked": 1`) {
		t.Errorf("masked bits not reported: %s", out)
	}
	// --keep-special-bits does not apply them in a tree root does not own.
	os.Remove(filepath.Join(proj, "app/tool"))
	runOK(t, env, bin, "--allow-other-owner", "link", proj, "--method", "copy", "--keep-special-bits")
	if info, _ := os.Lstat(filepath.Join(proj, "app/tool")); info.Mode()&os.ModeSetuid != 0 {
		t.Errorf("--keep-special-bits applied setuid in another user's tree: %v", info.Mode())
	}
}

// TestForeignManifestLock (H3): alice plants the manifest's lock file as a
// symlink to a root-only file. LMDB opens, truncates and writes the lock
// file by path: before the fix root's link overwrote the canary.
func TestForeignManifestLock(t *testing.T) {
	proj, bin, env, uid, gid := foreignProject(t, map[string]string{"app/a.js": "a"}, nil, "--tier", "tier2")
	c := canary(t, 0o600, "root's secret")
	lock := filepath.Join(proj, ".vrift", "manifest.lmdb-lock")
	os.Remove(lock)
	if err := os.Symlink(c, lock); err != nil {
		t.Fatal(err)
	}
	os.Lchown(lock, uid, gid)
	for _, args := range [][]string{
		{"--allow-other-owner", "link", proj, "--method", "copy", "--to", filepath.Join(t.TempDir(), "out")},
		{"--allow-other-owner", "status", proj},
		{"--allow-other-owner", "ingest", filepath.Join(proj, "app")},
	} {
		out, _ := runEnv(env, bin, args...)
		t.Logf("vrift %v: %s", args, out)
		checkCanary(t, c, 0o600, "root's secret")
	}
	// Writing a manifest alice controls is refused outright.
	out, code := runEnv(env, bin, "--allow-other-owner", "ingest", filepath.Join(proj, "app"))
	if code != exitError || !strings.Contains(out, "does not write a manifest another user controls") {
		t.Errorf("ingest into alice's manifest: exit %d, %q", code, out)
	}
}
