package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// barePath is a PATH directory holding only what scripts/deps.sh runs
// besides the tools it checks for (bash, id) and apt-get, which it only
// looks for: on it every tool the tests need is missing, as on a machine
// without the system packages. (deps.sh also looks in /usr/sbin and /sbin;
// none of the tools it checks lives there only.)
func barePath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"bash", "id", "apt-get"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("no %s here to build a bare PATH from", name)
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// wantSudoLine checks deps.sh's answer on a machine without the packages:
// exit 1, the missing tools named, and the one command that installs them.
func wantSudoLine(t *testing.T, what string, out []byte, err error) {
	t.Helper()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("%s on a machine without the packages: %v, want a non-zero exit\n%s", what, err, out)
	}
	for _, want := range []string{"deps: the tests need what is not installed here:", "gcc (gcc: cgo (LMDB))",
		"deps: install it with:  sudo scripts/deps.sh\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s: output lacks %q:\n%s", what, want, out)
		}
	}
}

// TestDepsStopsMakeTest: an ordinary user's `make test` on a machine without
// the system packages stops at once, at deps, with the one sudo line (issue
// 24), instead of failing a root test many minutes later. As root, where
// make test would install them, deps.sh --check gives the same answer.
func TestDepsStopsMakeTest(t *testing.T) {
	make, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	bare := barePath(t)
	repo, _ := filepath.Abs("..")
	if os.Geteuid() == 0 {
		cmd := exec.Command(filepath.Join(repo, "scripts", "deps.sh"), "--check")
		cmd.Env = []string{"PATH=" + bare, "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		wantSudoLine(t, "deps.sh --check", out, err)
		return
	}
	cmd := exec.Command(make, "-C", repo, "test")
	cmd.Env = []string{"PATH=" + bare, "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	wantSudoLine(t, "make test", out, err)
	if !strings.Contains(string(out), "deps] Error 1") {
		t.Errorf("make test did not stop at deps:\n%s", out)
	}
	for _, later := range []string{"go build", "go vet", "npm-fixture", "versitygw"} {
		if strings.Contains(string(out), later) {
			t.Errorf("make test went on past deps (%s):\n%s", later, out)
		}
	}
}
