package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests run vrift on the real npm fixture (scripts/npm-fixture.sh,
// installed by `make test`). Without it they skip, unless
// VRIFT_REQUIRE_FIXTURE is set, as `make test` does: there a missing fixture
// is a failure, never a silent skip.

func fixtureDir(t *testing.T) string {
	t.Helper()
	if testing.Short() { // make test-quick: even when the fixture is there
		t.Skip("-short: skips the tests on the npm fixture")
	}
	dir := os.Getenv("VRIFT_FIXTURE_DIR")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "vrift", "npm-fixture")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "base", "node_modules")); err != nil {
		if os.Getenv("VRIFT_REQUIRE_FIXTURE") != "" {
			t.Fatalf("npm fixture missing at %s (run scripts/npm-fixture.sh): %v", dir, err)
		}
		t.Skipf("npm fixture not installed at %s; run `make fixture` (make test does)", dir)
	}
	return dir
}

// vrift runs the CLI in-process and returns stdout, stderr and exit code.
func vrift(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func mustVrift(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := vrift(t, args...)
	if code != 0 {
		t.Fatalf("vrift %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func jsonVrift(t *testing.T, v any, args ...string) {
	t.Helper()
	out := mustVrift(t, append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("vrift %v: bad JSON %q: %v", args, out, err)
	}
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out), 4000))
	}
	return string(out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// copyProject copies a fixture project (package.json + node_modules) with cp -a.
func copyProject(t *testing.T, src, dst string) {
	t.Helper()
	sh(t, "cp", "-a", src, dst)
}

type ingestJSON struct {
	Files, Bytes, Unique, NewBlobs, Reused, Dirs, Symlinks int64
	ManifestPath                                           string `json:"manifest_path"`
}

func (r *ingestJSON) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	num := func(k string) int64 { f, _ := m[k].(float64); return int64(f) }
	r.Files, r.Bytes, r.Unique = num("files"), num("bytes"), num("unique")
	r.NewBlobs, r.Reused = num("new_blobs"), num("reused")
	r.Dirs, r.Symlinks = num("dirs"), num("symlinks")
	r.ManifestPath, _ = m["manifest_path"].(string)
	return nil
}

// treeListing describes every entry below dir: type, permission bits, size
// and symlink target, following nothing. Two trees with equal listings and
// equal `diff -r` are the same tree.
func treeListing(t *testing.T, dir string, followFiles, withMtimes bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := ""
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			if followFiles && strings.Contains(target, "/blake3/") {
				// a projection: describe the file it stands for
				fi, err := os.Stat(p)
				if err != nil {
					return err
				}
				desc = "file exec=" + execBit(fi.Mode())
			} else {
				desc = "symlink " + target
			}
		case info.IsDir():
			desc = "dir " + info.Mode().Perm().String()
		default:
			desc = "file exec=" + execBit(info.Mode())
		}
		if withMtimes && info.Mode()&fs.ModeSymlink == 0 {
			desc += " mtime=" + info.ModTime().UTC().Format(time.RFC3339Nano)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func execBit(m fs.FileMode) string {
	if m&0o111 != 0 {
		return "x"
	}
	return "-"
}

func compareListings(t *testing.T, want, got map[string]string) {
	t.Helper()
	bad := 0
	for p, w := range want {
		if g := got[p]; g != w {
			if bad < 10 {
				t.Errorf("%s: want %q, got %q", p, w, g)
			}
			bad++
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			if bad < 10 {
				t.Errorf("%s: unexpected", p)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d entries differ", bad)
	}
}

// TestNpmFixture runs the whole direct-mode story on a real node_modules:
// byte-identical round trip with exec bits and symlinks, re-ingest reusing
// everything, dedup of a second project, gc after that project is deleted,
// and verify catching a corrupted blob.
func TestNpmFixture(t *testing.T) {
	fix := fixtureDir(t)
	work := t.TempDir()
	store := filepath.Join(work, "store")
	orig := filepath.Join(fix, "base")
	proj := filepath.Join(work, "app")
	copyProject(t, orig, proj)
	origListing := treeListing(t, filepath.Join(orig, "node_modules"), false, false)

	// Cold ingest, tier1: every file becomes a symlink into the store.
	var first ingestJSON
	jsonVrift(t, &first, "--store", store, "ingest", filepath.Join(proj, "node_modules"))
	// Into an empty store, every distinct content is stored exactly once.
	if first.Files < 10000 || first.NewBlobs != first.Unique || first.Unique > first.Files {
		t.Fatalf("implausible cold ingest: %+v", first)
	}
	t.Logf("cold ingest: %d files, %d unique, %d new blobs", first.Files, first.Unique, first.NewBlobs)
	sh(t, "diff", "-r", filepath.Join(orig, "node_modules"), filepath.Join(proj, "node_modules"))
	compareListings(t, origListing, treeListing(t, filepath.Join(proj, "node_modules"), true, false))

	// Unchanged re-ingest reads nothing.
	var again ingestJSON
	jsonVrift(t, &again, "--store", store, "ingest", filepath.Join(proj, "node_modules"))
	if again.Reused != first.Files || again.NewBlobs != 0 || again.Files != first.Files {
		t.Fatalf("re-ingest did not reuse everything: %+v", again)
	}

	// A copy projection elsewhere: byte-identical, same modes and symlinks.
	out := filepath.Join(work, "copy")
	mustVrift(t, "--store", store, "link", proj, "--to", out, "--method", "copy")
	sh(t, "diff", "-r", "--no-dereference", filepath.Join(orig, "node_modules"), filepath.Join(out, "node_modules"))
	// Copies restore mtimes too, of files and directories.
	compareListings(t, treeListing(t, filepath.Join(orig, "node_modules"), false, true),
		treeListing(t, filepath.Join(out, "node_modules"), false, true))

	// A second project with a few versions bumped dedups against the first.
	second := filepath.Join(work, "bumped")
	copyProject(t, filepath.Join(fix, "bumped"), second)
	var bumped ingestJSON
	jsonVrift(t, &bumped, "--store", store, "ingest", "--tier", "tier2", filepath.Join(second, "node_modules"))
	if bumped.NewBlobs*5 > bumped.Files {
		t.Fatalf("second project barely deduplicated: %d new blobs for %d files", bumped.NewBlobs, bumped.Files)
	}
	t.Logf("bumped project: %d files, only %d new blobs", bumped.Files, bumped.NewBlobs)

	// Delete the second project: gc frees its own blobs, the first stays intact.
	if err := os.RemoveAll(second); err != nil {
		t.Fatal(err)
	}
	var gc struct {
		Removed      int64    `json:"removed"`
		DroppedRoots []string `json:"dropped_roots"`
	}
	jsonVrift(t, &gc, "--store", store, "gc", "--grace", "0s")
	if gc.Removed == 0 || gc.Removed > bumped.NewBlobs || len(gc.DroppedRoots) != 1 {
		t.Fatalf("gc: removed %d blobs (second project had %d new), dropped %v", gc.Removed, bumped.NewBlobs, gc.DroppedRoots)
	}
	mustVrift(t, "--store", store, "verify")
	sh(t, "diff", "-r", filepath.Join(orig, "node_modules"), filepath.Join(proj, "node_modules"))

	// verify catches a blob corrupted on purpose and names it.
	victim := filepath.Join(proj, "node_modules", "lodash", "package.json")
	blob, err := filepath.EvalSymlinks(victim)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(blob, 0o644)
	if err := os.WriteFile(blob, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(blob, 0o444)
	stdout, _, code := vrift(t, "--store", store, "verify")
	if code != exitVerify || !strings.Contains(stdout, filepath.Base(blob)) {
		t.Fatalf("verify after corruption: exit %d, output:\n%s", code, stdout)
	}
}

// TestNodeSuite runs the 23 real Node tasks on node_modules projected from
// the store with each Node-safe method.
func TestNodeSuite(t *testing.T) {
	fix := fixtureDir(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	store := filepath.Join(work, "store")
	proj := filepath.Join(work, "src")
	copyProject(t, filepath.Join(fix, "base"), proj)
	mustVrift(t, "--store", store, "ingest", "--tier", "tier2", filepath.Join(proj, "node_modules"))

	for _, method := range []string{"hardlink", "copy", "reflink"} {
		t.Run(method, func(t *testing.T) {
			dest := filepath.Join(work, method)
			if err := os.MkdirAll(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			sh(t, "cp", filepath.Join(proj, "package.json"), dest)
			out, errs, code := vrift(t, "--store", store, "link", proj, "--to", dest, "--subtree", "node_modules", "--method", method)
			if method == "reflink" && code != 0 {
				// ext4 and tmpfs cannot clone: the error must say so and
				// name the alternatives.
				if !strings.Contains(errs, "reflink not supported") || !strings.Contains(errs, "--method copy") {
					t.Fatalf("reflink failure is not explained: %s", errs)
				}
				t.Logf("reflink unsupported here, as reported: %s", strings.TrimSpace(errs))
				return
			}
			if code != 0 {
				t.Fatalf("link --method %s: exit %d\n%s%s", method, code, out, errs)
			}
			cmd := exec.Command(filepath.Join(repo, "scripts", "node-suite.sh"), dest)
			res, err := cmd.CombinedOutput()
			t.Logf("node suite (%s):\n%s", method, tail(string(res), 3000))
			if err != nil || !strings.Contains(string(res), "node suite: 23/23 tasks ok") {
				t.Fatalf("node suite on --method %s failed: %v", method, err)
			}
		})
	}
	// ingest --method hardlink: the project itself, projected in place by
	// the blobs' own inodes, is Node-safe (its content is in the store
	// already, so every file is swapped for a hardlink of its blob; the
	// adopted case is TestIngestHardlink's).
	t.Run("ingest-hardlink", func(t *testing.T) {
		inplace := filepath.Join(work, "inplace")
		copyProject(t, filepath.Join(fix, "base"), inplace)
		out, errs, code := vrift(t, "--store", store, "ingest", "--method", "hardlink", "--json", filepath.Join(inplace, "node_modules"))
		if code != 0 || strings.Contains(errs, "Node resolves symlinks") || !strings.Contains(out, `"projected": 26`) {
			t.Fatalf("ingest --method hardlink: exit %d\n%s%s", code, out, errs)
		}
		if links := sh(t, "find", filepath.Join(inplace, "node_modules"), "-type", "l", "-lname", store+"/*"); strings.TrimSpace(links) != "" {
			t.Fatalf("symlinks into the store after a hardlink ingest:\n%s", tail(links, 500))
		}
		res, err := exec.Command(filepath.Join(repo, "scripts", "node-suite.sh"), inplace).CombinedOutput()
		t.Logf("node suite (ingest --method hardlink):\n%s", tail(string(res), 3000))
		if err != nil || !strings.Contains(string(res), "node suite: 23/23 tasks ok") {
			t.Fatalf("node suite on an in-place hardlink ingest failed: %v", err)
		}
	})
}
