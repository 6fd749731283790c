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
