package packaging

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireClang skips in -short mode (the check builds the standard library
// for darwin twice: minutes, cold) and where clang is missing, except in CI.
func requireClang(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the darwin build check takes minutes cold (make darwin-check)")
	}
	requireTool(t, "clang", "clang")
}

func darwinCheck(t *testing.T, pkgs string, args ...string) (string, error) {
	t.Helper()
	repo, _ := filepath.Abs("..")
	cmd := exec.Command(filepath.Join(repo, "scripts", "darwin-check.sh"), args...)
	cmd.Env = append(os.Environ(), "PKGS="+pkgs)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestDarwinBuild vets every package for darwin/arm64 and darwin/amd64 with
// cgo (LMDB) on: the proof that vrift builds for macOS.
func TestDarwinBuild(t *testing.T) {
	requireClang(t)
	out, err := darwinCheck(t, "./...")
	if err != nil {
		t.Fatalf("darwin check: %v\n%s", err, out)
	}
	for _, arch := range []string{"darwin/arm64", "darwin/amd64"} {
		if !strings.Contains(out, "go vet ./... for "+arch) {
			t.Errorf("darwin check did not vet %s:\n%s", arch, out)
		}
	}
}

// TestDarwinCheckSeesDarwinCode proves the check compiles macOS-only code:
// a type error in a _darwin.go file, and one in cgo-using code built for
// darwin (manifest imports LMDB, watch the FSEvents binding), both fail it;
// the same files unbroken pass.
func TestDarwinCheckSeesDarwinCode(t *testing.T) {
	requireClang(t)
	repo, _ := filepath.Abs("..")
	for _, c := range []struct{ pkg, file string }{
		{"./fs", "fs/unmount_darwin.go"},
		{"./cas", "cas/rename_darwin.go"},
		{"./manifest", "manifest/fdpath_other.go"},
		{"./watch", "watch/source_darwin.go"}, // cgo: the FSEvents binding
	} {
		src, err := os.ReadFile(filepath.Join(repo, c.file))
		if err != nil {
			t.Fatal(err)
		}
		broken := filepath.Join(t.TempDir(), filepath.Base(c.file))
		if err := os.WriteFile(broken, append(src, []byte("\nvar _ int = \"darwin-only type error\"\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(repo, c.file): broken}})
		ov := filepath.Join(t.TempDir(), "overlay.json")
		if err := os.WriteFile(ov, overlay, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := darwinCheck(t, c.pkg, "-overlay", ov)
		if err == nil || !strings.Contains(out, filepath.Base(c.file)) {
			t.Errorf("darwin check of %s with a type error in %s: %v\n%s", c.pkg, c.file, err, out)
		}
		// Linux builds never see these files: this check is their only guard.
		vet := exec.Command("go", "vet", "-overlay", ov, c.pkg)
		vet.Dir, vet.Env = repo, append(os.Environ(), "GOOS=linux")
		if out, err := vet.CombinedOutput(); err != nil {
			t.Errorf("linux vet of %s saw %s: %v\n%s", c.pkg, c.file, err, out)
		}
	}
}
