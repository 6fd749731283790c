package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirectConfigLimits: direct mode applies [store] max_bytes from
// ~/.config/vrift/config.toml (here $XDG_CONFIG_HOME) to the per-user
// store; a bad value is an error naming the line; vrift usage says it is
// the daemon's.
func TestDirectConfigLimits(t *testing.T) {
	base := t.TempDir()
	cfgDir := filepath.Join(base, "config")
	os.MkdirAll(filepath.Join(cfgDir, "vrift"), 0o755)
	t.Setenv("XDG_CONFIG_HOME", cfgDir)
	cfg := filepath.Join(cfgDir, "vrift", "config.toml")
	os.WriteFile(cfg, []byte("[store]\nmax_bytes = \"10KB\"\n"), 0o644)
	store := filepath.Join(base, "store")
	blob := func(tag string) string { return tag + strings.Repeat("z", 8000-len(tag)) }
	proj := func(name, content string) string {
		p := filepath.Join(base, name)
		writeTree(t, p, map[string]string{"package.json": "{}", "lib/f": content})
		return filepath.Join(p, "lib")
	}
	a := proj("a", blob("a"))
	mustVrift(t, "--direct", "--store", store, "ingest", "--tier", "tier2", a)
	os.RemoveAll(filepath.Dir(a))
	mustVrift(t, "--direct", "--store", store, "ingest", "--tier", "tier2", proj("b", blob("b")))
	if _, err := os.Stat(blobPathOf(store, blob("a"), false)); err != nil {
		t.Fatalf("swept before the store passed max_bytes: %v", err)
	}
	mustVrift(t, "--direct", "--store", store, "ingest", "--tier", "tier2", proj("c", "small"))
	if _, err := os.Stat(blobPathOf(store, blob("a"), false)); err == nil {
		t.Errorf("max_bytes from the user's config did not sweep the deleted project's blob")
	}
	if _, err := os.Stat(blobPathOf(store, blob("b"), false)); err != nil {
		t.Fatalf("a referenced blob was swept: %v", err)
	}
	os.WriteFile(cfg, []byte("# limits\n[store]\nmin_free = \"-1KB\"\n"), 0o644)
	_, errs, code := vrift(t, "--direct", "--store", store, "ingest", proj("d", "d"))
	if code == 0 || !strings.Contains(errs, "line 3") || !strings.Contains(errs, "negative") {
		t.Errorf("bad size in the user's config: exit %d\n%s", code, errs)
	}
	os.Remove(cfg)
	if _, errs, code := vrift(t, "--direct", "--store", store, "usage"); code == 0 || !strings.Contains(errs, "no daemon") {
		t.Errorf("vrift usage in direct mode: exit %d\n%s", code, errs)
	}
}
