package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/internal/s3test"
)

type transferJSON struct {
	Name         string `json:"name"`
	Trees        int64  `json:"trees"`
	Blobs        int64  `json:"blobs"`
	BlobsSent    int64  `json:"blobs_sent"`
	BytesSent    int64  `json:"bytes_sent"`
	BlobsFetched int64  `json:"blobs_fetched"`
	BytesFetched int64  `json:"bytes_fetched"`
	Reused       int64  `json:"reused"`
	DurationMS   *int64 `json:"duration_ms"`
}

// TestTeamCacheNpm pushes the npm fixture from one store to a real S3
// server (versitygw) and pulls it into an empty second store: the tree is
// byte-identical (modes, exec bits, symlinks, mtimes) and the Node suite
// passes on it, hardlinked, copied and mounted. The bumped project then
// sends and fetches only its new blobs.
func TestTeamCacheNpm(t *testing.T) {
	fix := fixtureDir(t)
	srv := s3test.Start(t, "team")
	srv.SetEnv(t)
	work := t.TempDir()
	store1, store2 := filepath.Join(work, "store1"), filepath.Join(work, "store2")
	rem := []string{"--remote", "s3://team/ci", "--endpoint", srv.Endpoint()}
	orig := filepath.Join(fix, "base")
	proj := filepath.Join(work, "app")
	copyProject(t, orig, proj)
	var base ingestJSON
	jsonVrift(t, &base, "--store", store1, "ingest", "--tier", "tier2", filepath.Join(proj, "node_modules"))

	var push transferJSON
	jsonVrift(t, &push, append([]string{"--store", store1, "push", proj, "--name", "base"}, rem...)...)
	if push.Trees != 1 || push.BlobsSent != base.Unique || push.Reused != 0 || push.DurationMS == nil {
		t.Fatalf("cold push: %+v (ingest: %+v)", push, base)
	}
	var again transferJSON
	jsonVrift(t, &again, append([]string{"--store", store1, "push", proj, "--name", "base"}, rem...)...)
	if again.BlobsSent != 0 || again.Reused != base.Unique {
		t.Fatalf("unchanged push: %+v", again)
	}

	// Cold pull into an empty store: byte-identical copy.
	dest := filepath.Join(work, "copy")
	var pull transferJSON
	jsonVrift(t, &pull, append([]string{"--store", store2, "pull", "base", "--to", dest, "--method", "copy"}, rem...)...)
	if pull.BlobsFetched != base.Unique || pull.Reused != 0 || pull.Trees != 1 {
		t.Fatalf("cold pull: %+v", pull)
	}
	sh(t, "diff", "-r", "--no-dereference", filepath.Join(orig, "node_modules"), filepath.Join(dest, "node_modules"))
	compareListings(t, treeListing(t, filepath.Join(orig, "node_modules"), false, true),
		treeListing(t, filepath.Join(dest, "node_modules"), false, true))
	mustVrift(t, "--store", store2, "verify")

	t.Run("node-suite", func(t *testing.T) {
		repo := repoRoot(t)
		suite := func(t *testing.T, dir string) {
			res, err := exec.Command(filepath.Join(repo, "scripts", "node-suite.sh"), dir).CombinedOutput()
			t.Logf("node suite:\n%s", tail(string(res), 2000))
			if err != nil || !strings.Contains(string(res), "node suite: 23/23 tasks ok") {
				t.Fatalf("node suite on %s failed: %v", dir, err)
			}
		}
		for _, method := range []string{"hardlink", "copy"} {
			t.Run(method, func(t *testing.T) {
				d := filepath.Join(work, "suite-"+method)
				os.MkdirAll(d, 0o755)
				sh(t, "cp", filepath.Join(orig, "package.json"), d)
				mustVrift(t, append([]string{"--store", store2, "pull", "base", "--to", d, "--method", method, "--subtree", "node_modules"}, rem...)...)
				suite(t, d)
			})
		}
		t.Run("mount", func(t *testing.T) {
			requireFUSE(t)
			bin := buildVrift(t, t.TempDir())
			d := filepath.Join(work, "suite-mount")
			os.MkdirAll(d, 0o755)
			sh(t, "cp", filepath.Join(orig, "package.json"), d)
			cmd := exec.Command(bin, append([]string{"--store", filepath.Join(work, "store3"), "pull", "base", "--to", d, "--method", "mount", "--subtree", "node_modules"}, rem...)...)
			cmd.Env = append(os.Environ(), srv.Env()...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("pull --method mount: %v\n%s", err, out)
			}
			nm := filepath.Join(d, "node_modules")
			t.Cleanup(func() { exec.Command(bin, "umount", nm).Run() })
			if !mounted(nm) {
				t.Fatalf("%s is not mounted after pull --method mount:\n%s", nm, out)
			}
			sh(t, "diff", "-r", "--no-dereference", filepath.Join(orig, "node_modules"), nm)
			suite(t, d)
		})
	})

	// The bumped project: only its new blobs go up, and come down.
	second := filepath.Join(work, "bumped")
	copyProject(t, filepath.Join(fix, "bumped"), second)
	var bumped ingestJSON
	jsonVrift(t, &bumped, "--store", store1, "ingest", "--tier", "tier2", filepath.Join(second, "node_modules"))
	var pushB transferJSON
	jsonVrift(t, &pushB, append([]string{"--store", store1, "push", second, "--name", "bumped"}, rem...)...)
	if pushB.BlobsSent != bumped.NewBlobs || pushB.Reused != bumped.Unique-bumped.NewBlobs {
		t.Fatalf("bumped push: %+v, want %d blobs sent (the bumped ingest's new blobs)", pushB, bumped.NewBlobs)
	}
	t.Logf("bumped push: %d of %d blobs sent (%d bytes)", pushB.BlobsSent, pushB.Blobs, pushB.BytesSent)
	destB := filepath.Join(work, "bumped-copy")
	var pullB transferJSON
	jsonVrift(t, &pullB, append([]string{"--store", store2, "pull", "bumped", "--to", destB, "--method", "copy"}, rem...)...)
	if pullB.BlobsFetched != bumped.NewBlobs {
		t.Fatalf("bumped pull with base local: %+v, want %d fetched", pullB, bumped.NewBlobs)
	}
	sh(t, "diff", "-r", "--no-dereference", filepath.Join(fix, "bumped", "node_modules"), filepath.Join(destB, "node_modules"))

	// ls shows both; gc keeps every blob of every tree.
	out := mustVrift(t, append([]string{"remote", "ls"}, rem...)...)
	if !strings.Contains(out, "base") || !strings.Contains(out, "bumped") {
		t.Fatalf("remote ls:\n%s", out)
	}
	var gc struct {
		Trees    int   `json:"trees"`
		Removed  int64 `json:"removed"`
		Kept     int64 `json:"kept"`
		Repacked int64 `json:"repacked"`
	}
	jsonVrift(t, &gc, append([]string{"remote", "gc", "--grace", "0s"}, rem...)...)
	if gc.Trees != 2 || gc.Removed != 0 || gc.Repacked != 0 || gc.Kept == 0 {
		t.Fatalf("remote gc: %+v", gc)
	}
	var cold transferJSON
	jsonVrift(t, &cold, append([]string{"--store", filepath.Join(work, "store4"), "pull", "bumped", "--to", filepath.Join(work, "after-gc"), "--method", "symlink"}, rem...)...)
	if cold.BlobsFetched != bumped.Unique {
		t.Fatalf("pull after gc: %+v", cold)
	}

	// Without the base tree, its blobs that bumped does not share are
	// dead: gc drops or repacks what holds them, and bumped still pulls
	// whole into an empty store, then again after the old packs are gone.
	sh(t, "rm", srv.ObjectPath("team", "ci/trees/base"))
	jsonVrift(t, &gc, append([]string{"remote", "gc", "--grace", "0s"}, rem...)...)
	t.Logf("gc without base: %+v", gc)
	if gc.Trees != 1 || gc.Removed == 0 {
		t.Fatalf("remote gc without base: %+v", gc)
	}
	for i := range 2 {
		dest := filepath.Join(work, fmt.Sprintf("after-repack-%d", i))
		var p transferJSON
		jsonVrift(t, &p, append([]string{"--store", filepath.Join(work, fmt.Sprintf("store-repack-%d", i)), "pull", "bumped", "--to", dest, "--method", "copy"}, rem...)...)
		if p.BlobsFetched != bumped.Unique {
			t.Fatalf("pull after repack: %+v", p)
		}
		sh(t, "diff", "-r", "--no-dereference", filepath.Join(fix, "bumped", "node_modules"), filepath.Join(dest, "node_modules"))
		// The second gc deletes the repacked packs, marked gone by the first.
		jsonVrift(t, &gc, append([]string{"remote", "gc", "--grace", "0s"}, rem...)...)
		t.Logf("gc %d after repack: %+v", i+2, gc)
	}
}

// TestTeamCacheCLI: names from the lock file, config file, bad credentials
// and usage errors, on a small project.
func TestTeamCacheCLI(t *testing.T) {
	srv := s3test.Start(t, "team")
	srv.SetEnv(t)
	work := t.TempDir()
	store := filepath.Join(work, "store")
	proj := filepath.Join(work, "app")
	os.MkdirAll(filepath.Join(proj, "node_modules", "a"), 0o755)
	os.WriteFile(filepath.Join(proj, "package.json"), []byte(`{"name":"app"}`), 0o644)
	os.WriteFile(filepath.Join(proj, "package-lock.json"), []byte(`{"lockfileVersion":3}`), 0o644)
	os.WriteFile(filepath.Join(proj, "node_modules", "a", "index.js"), []byte("module.exports = 42\n"), 0o644)
	mustVrift(t, "--store", store, "ingest", "--tier", "tier2", filepath.Join(proj, "node_modules"))

	// The remote from a config file.
	cfg := filepath.Join(work, "config.toml")
	os.WriteFile(cfg, []byte("[remote]\nurl = \"s3://team/cfg\"\nendpoint = \""+srv.Endpoint()+"\"\n"), 0o644)
	t.Setenv("VRIFT_CONFIG", cfg)

	out, errs, code := vrift(t, "--store", store, "push", proj)
	if code != 0 || !strings.Contains(errs, "tree name npm-") || !strings.Contains(out, "pushed npm-") {
		t.Fatalf("push by lock file: exit %d\n%s%s", code, out, errs)
	}
	name := strings.Fields(strings.TrimPrefix(out, "pushed "))[0]
	if _, err := os.Stat(srv.ObjectPath("team", "cfg/trees/"+name)); err != nil {
		t.Fatalf("tree not under the configured prefix: %v", err)
	}
	// Another machine with the same lock file pulls by the same key.
	other := filepath.Join(work, "clone")
	os.MkdirAll(other, 0o755)
	sh(t, "cp", filepath.Join(proj, "package-lock.json"), other)
	out, errs, code = vrift(t, "--store", filepath.Join(work, "store2"), "pull", "--to", other, "--method", "copy")
	if code != 0 || !strings.Contains(errs, "tree name "+name) {
		t.Fatalf("pull by lock file: exit %d\n%s%s", code, out, errs)
	}
	if b, err := os.ReadFile(filepath.Join(other, "node_modules", "a", "index.js")); err != nil || string(b) != "module.exports = 42\n" {
		t.Fatalf("pulled file: %q %v", b, err)
	}

	// Wrong credentials: a clear error, the secret nowhere.
	const wrong = "Wr0ngSecret-must-never-be-printed"
	t.Setenv("AWS_SECRET_ACCESS_KEY", wrong)
	for _, args := range [][]string{
		{"--store", store, "push", proj, "--name", "x"},
		{"--store", filepath.Join(work, "store3"), "pull", "x", "--to", filepath.Join(work, "d")},
		{"remote", "ls"},
		{"--json", "remote", "gc"},
	} {
		out, errs, code := vrift(t, args...)
		if code != exitError || !strings.Contains(errs, "refused the credentials") {
			t.Errorf("vrift %v with a wrong secret: exit %d\n%s%s", args, code, out, errs)
		}
		if strings.Contains(out+errs, wrong) {
			t.Errorf("vrift %v printed the secret:\n%s%s", args, out, errs)
		}
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)

	// The manifest a pull writes holds no credential either.
	mf, err := os.ReadFile(filepath.Join(other, ".vrift", "manifest.lmdb"))
	if err != nil || strings.Contains(string(mf), s3test.SecretKey) || strings.Contains(string(mf), s3test.AccessKey) {
		t.Fatalf("manifest: %v, or it contains a credential", err)
	}

	// Usage errors.
	for _, args := range [][]string{
		{"--store", store, "push", proj, "--name", "../evil"},
		{"--store", store, "pull", "x", "--method", "mount"},
		{"--store", store, "pull", "x", "--method", "bogus"},
	} {
		if _, errs, code := vrift(t, args...); code == 0 {
			t.Errorf("vrift %v: exit 0\n%s", args, errs)
		}
	}
	var ls struct {
		Trees []struct {
			Name string `json:"name"`
		} `json:"trees"`
	}
	if err := json.Unmarshal([]byte(mustVrift(t, "--json", "remote", "ls")), &ls); err != nil || len(ls.Trees) != 1 || ls.Trees[0].Name != name {
		t.Fatalf("remote ls: %+v %v", ls, err)
	}
}

// TestDaemonTeamCache: the daemon transfers with its own credentials.
// alice (no credentials of her own) ingests and pushes through it, bob
// (none either) pulls the tree into his own directory; a daemon whose
// config does not allow pushes refuses them; nothing prints the secret.
func TestDaemonTeamCache(t *testing.T) {
	e := newDaemonEnv(t)
	srv := s3test.Start(t, "team")
	e.env = srv.Env()
	cfg := filepath.Join(e.base, "config.toml")
	writeCfg := func(push bool) {
		os.WriteFile(cfg, []byte("[remote]\nurl = \"s3://team/shared\"\nendpoint = \""+srv.Endpoint()+"\"\n"+
			"push = "+map[bool]string{true: "true", false: "false"}[push]+"\n"), 0o644)
	}
	writeCfg(true)
	e.start("--config", cfg)

	proj := filepath.Join(e.base, "alice", "app")
	files := map[string]string{"package.json": "{}", "package-lock.json": `{"lockfileVersion":3}`,
		"node_modules/a/index.js": "module.exports = 'a'\n", "node_modules/a/run.sh": "#!/bin/sh\necho a\n",
		"node_modules/b/data.txt": "team cache through the daemon\n"}
	e.tree("alice", proj, files)
	e.mustAs("alice", "ingest", "--tier", "tier2", filepath.Join(proj, "node_modules"))
	out := e.mustAs("alice", "push", proj)
	if !strings.Contains(out, "tree name npm-") || !strings.Contains(out, "pushed npm-") {
		t.Fatalf("push through the daemon:\n%s", out)
	}
	name := strings.Fields(out[strings.Index(out, "pushed ")+len("pushed "):])[0]
	if _, err := os.Stat(srv.ObjectPath("team", "shared/trees/"+name)); err != nil {
		t.Fatalf("tree not in the bucket: %v", err)
	}

	// bob pulls it by the same lock file, as copies (hardlinks to another
	// user's blobs are refused by the kernel).
	dest := filepath.Join(e.base, "bob", "clone")
	e.tree("bob", dest, map[string]string{"package-lock.json": files["package-lock.json"]})
	var res transferJSON
	pulled := e.mustAs("bob", "--json", "pull", "--to", dest, "--method", "copy")
	if err := json.Unmarshal([]byte(pulled[strings.Index(pulled, "{"):]), &res); err != nil || res.Trees != 1 || res.Name != name {
		t.Fatalf("pull through the daemon: %v\n%s", err, pulled)
	}
	for p, content := range files {
		if !strings.HasPrefix(p, "node_modules/") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dest, p))
		if err != nil || string(b) != content {
			t.Fatalf("%s after pull: %q, %v", p, b, err)
		}
	}
	if info, err := os.Stat(filepath.Join(dest, "node_modules/a/run.sh")); err != nil || info.Mode()&0o111 == 0 {
		t.Fatalf("exec bit lost: %v %v", info, err)
	}
	if uid, _ := ownerOf(t, filepath.Join(dest, "node_modules/b/data.txt")); uid != uidOf(t, "bob") {
		t.Fatalf("pulled copy owned by uid %d, not bob", uid)
	}
	// Remote flags are refused in daemon mode rather than ignored.
	if out, code := e.as("bob", "pull", name, "--to", dest, "--remote", "s3://elsewhere"); code != exitUsage {
		t.Fatalf("--remote in daemon mode: exit %d\n%s", code, out)
	}

	// A daemon without push = true refuses pushes.
	e.stop()
	writeCfg(false)
	e.start("--config", cfg)
	out, code := e.as("alice", "push", proj, "--name", "other")
	if code == 0 || !strings.Contains(out, "not allowed") {
		t.Fatalf("push through a daemon that does not allow it: exit %d\n%s", code, out)
	}
	if strings.Contains(e.log.String()+out, s3test.SecretKey) {
		t.Fatal("the daemon's secret was printed")
	}
}
