package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vrift/vrift/internal/testenv"
)

// These tests run vrift as a real unprivileged user (alice), because root
// reads through any permission bit. They need root to create the user and
// switch to it; without root they skip, unless VRIFT_REQUIRE_ROOT is set (CI
// sets it): there a skip would hide untested behaviour, so it fails.

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "to create users and run as them")
}

// ensureUser creates a system user if missing and returns its uid and gid.
func ensureUser(t *testing.T, name string) (int, int) {
	t.Helper()
	if _, err := user.Lookup(name); err != nil {
		args := []string{"--no-create-home", "--shell", "/usr/sbin/nologin", name}
		if name == "vrift" {
			// As the package makes it: a system user.
			args = append([]string{"--system"}, args...)
		}
		sh(t, "useradd", args...)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// buildVrift builds the CLI into a directory every user can read.
func buildVrift(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vrift")
	sh(t, "go", "build", "-o", bin, ".")
	return bin
}

// sharedTempDir is a temp dir other users can traverse (t.TempDir is 0700
// under a root-only parent).
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vrift-users-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() {
		exec.Command("chmod", "-R", "u+rwx", dir).Run()
		os.RemoveAll(dir)
	})
	return dir
}

// runAs runs a command as the named user with setpriv, returning combined
// output and the exit code.
func runAs(t *testing.T, name string, env []string, args ...string) (string, int) {
	t.Helper()
	full := append([]string{"--reuid=" + name, "--regid=" + name, "--init-groups", "--"}, args...)
	cmd := exec.Command("setpriv", full...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("setpriv %v: %v", args, err)
	}
	return string(out), code
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUnreadableInput: an unreadable file or directory stops the ingest with
// a clear error, and nothing is half-done: no file was replaced and no
// manifest is left behind.
func TestUnreadableInput(t *testing.T) {
	requireRoot(t)
	uid, gid := ensureUser(t, "alice")
	dir := sharedTempDir(t)
	bin := buildVrift(t, dir)
	env := []string{"HOME=" + filepath.Join(dir, "home"), "VRIFT_STORE=" + filepath.Join(dir, "home", "store")}
	os.MkdirAll(filepath.Join(dir, "home"), 0o755)
	os.Chown(filepath.Join(dir, "home"), uid, gid)

	for _, tc := range []struct {
		name, bad, want string
		mode            os.FileMode
	}{
		{"file", "pkg/secret.txt", "read %s: permission denied", 0o000},
		{"dir", "pkg/private", "open dir %s: permission denied", 0o000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proj := filepath.Join(dir, tc.name)
			writeTree(t, proj, map[string]string{
				"package.json": "{}", "pkg/a.js": "a", "pkg/b.js": "b",
				"pkg/secret.txt": "s", "pkg/private/x.js": "x"})
			sh(t, "chown", "-R", strconv.Itoa(uid)+":"+strconv.Itoa(gid), proj)
			bad := filepath.Join(proj, tc.bad)
			if err := os.Chmod(bad, tc.mode); err != nil {
				t.Fatal(err)
			}
			out, code := runAs(t, "alice", env, bin, "ingest", filepath.Join(proj, "pkg"))
			if code != exitError || !strings.Contains(out, strings.ReplaceAll(tc.want, "%s", bad)) {
				t.Fatalf("exit %d, output %q; want exit 1 and %q", code, out, tc.want)
			}
			if strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("error is not one line: %q", out)
			}
			for _, f := range []string{"pkg/a.js", "pkg/b.js"} {
				if info, err := os.Lstat(filepath.Join(proj, f)); err != nil || !info.Mode().IsRegular() {
					t.Errorf("%s was touched by a failed ingest: %v %v", f, info.Mode(), err)
				}
			}
			if _, err := os.Stat(filepath.Join(proj, ".vrift")); err == nil {
				t.Errorf("a failed ingest left %s/.vrift behind", proj)
			}
		})
	}
}

// TestReadOnlyTree ingests a tree laid out like Go's module cache (0555
// directories, 0444 files) as its owner, in place, and restores it.
func TestReadOnlyTree(t *testing.T) {
	requireRoot(t)
	uid, gid := ensureUser(t, "alice")
	dir := sharedTempDir(t)
	bin := buildVrift(t, dir)
	env := []string{"HOME=" + filepath.Join(dir, "home"), "VRIFT_STORE=" + filepath.Join(dir, "store")}
	mod := filepath.Join(dir, "gopath", "pkg", "mod")
	writeTree(t, mod, map[string]string{
		"example.com/lib@v1.0.0/go.mod":     "module example.com/lib\n",
		"example.com/lib@v1.0.0/lib.go":     "package lib\n",
		"example.com/lib@v1.0.0/sub/sub.go": "package sub\n",
		"example.com/lib@v1.1.0/lib.go":     "package lib\n",
	})
	sh(t, "cp", "-a", mod, filepath.Join(dir, "orig"))
	sh(t, "chown", "-R", strconv.Itoa(uid)+":"+strconv.Itoa(gid), dir)
	sh(t, "chmod", "-R", "a-w", mod)
	// The module cache dir itself stays writable, as Go leaves it.
	os.Chmod(mod, 0o755)

	out, code := runAs(t, "alice", env, bin, "ingest", mod)
	if code != 0 {
		t.Fatalf("ingest of a read-only tree: exit %d\n%s", code, out)
	}
	for _, p := range []string{"example.com/lib@v1.0.0", "example.com/lib@v1.0.0/sub"} {
		info, err := os.Stat(filepath.Join(mod, p))
		if err != nil || info.Mode().Perm() != 0o555 {
			t.Errorf("%s: mode %v after ingest, want 0555 (%v)", p, info.Mode().Perm(), err)
		}
	}
	if info, err := os.Lstat(filepath.Join(mod, "example.com/lib@v1.0.0/lib.go")); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("file in a read-only dir was not projected: %v %v", info.Mode(), err)
	}
	sh(t, "diff", "-r", filepath.Join(dir, "orig"), mod)

	// Restore as copies, twice: the second run meets its own 0555 dirs.
	for range 2 {
		out, code = runAs(t, "alice", env, bin, "link", mod, "--to", filepath.Join(dir, "restored"), "--method", "copy")
		if code != 0 {
			t.Fatalf("link: exit %d\n%s", code, out)
		}
	}
	// No project marker: the project root is the module cache's parent.
	restored := filepath.Join(dir, "restored", "mod")
	sh(t, "diff", "-r", filepath.Join(dir, "orig"), restored)
	info, err := os.Stat(filepath.Join(restored, "example.com/lib@v1.0.0"))
	if err != nil || info.Mode().Perm() != 0o555 {
		t.Errorf("restored dir mode %v, want 0555 (%v)", info.Mode().Perm(), err)
	}
}
