package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/errdefs"
)

// TestDirectMaxBytes: a direct-mode ingest into a store past max_bytes
// first sweeps unreferenced blobs, oldest first, never a project's; when
// that is not enough it is refused before it touches the project.
func TestDirectMaxBytes(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	blob := func(tag string) string { return tag + strings.Repeat("x", 10000-len(tag)) }
	mk := func(name string, files map[string]string) string {
		p := filepath.Join(base, name)
		writeFiles(t, p, files)
		return filepath.Join(p, "lib")
	}
	ingest := func(dir string) error {
		d, err := OpenDirect(store)
		if err != nil {
			t.Fatal(err)
		}
		d.Limits = StoreLimits{MaxBytes: 25000}
		_, err = d.Ingest(context.Background(), IngestOptions{Dir: dir, Tier: Tier2, Copy: true})
		return err
	}
	// Project "gone" is ingested, then deleted: its blob is unreferenced.
	gone := mk("gone", map[string]string{"package.json": "{}", "lib/g": blob("gone")})
	if err := ingest(gone); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Dir(gone))
	keep := mk("keep", map[string]string{"package.json": "{}", "lib/k": blob("keep")})
	if err := ingest(keep); err != nil {
		t.Fatal(err)
	}
	// 20000 bytes stored; the next 10000 cross 25000 only after this
	// ingest; the one after that sweeps first.
	third := mk("third", map[string]string{"package.json": "{}", "lib/t": blob("third")})
	if err := ingest(third); err != nil {
		t.Fatal(err)
	}
	s, _ := OpenDirect(store)
	has := func(c string) bool { return s.Store.Has(keyOfString(c)) }
	if !has(blob("gone")) {
		t.Fatalf("swept before the store was over max_bytes")
	}
	fourth := mk("fourth", map[string]string{"package.json": "{}", "lib/f": "small"})
	if err := ingest(fourth); err != nil {
		t.Fatal(err)
	}
	if has(blob("gone")) {
		t.Errorf("the unreferenced blob survived an ingest into a store past max_bytes")
	}
	for _, c := range []string{blob("keep"), blob("third"), "small"} {
		if !has(c) {
			t.Fatalf("a referenced blob was swept")
		}
	}
	// 30005 referenced bytes after the fifth: nothing can go; the sixth
	// is refused and leaves its project alone.
	if err := ingest(mk("fifth", map[string]string{"package.json": "{}", "lib/v": blob("fifth")})); err != nil {
		t.Fatal(err)
	}
	fifth := mk("sixth", map[string]string{"package.json": "{}", "lib/v": "six"})
	err := ingest(fifth)
	if !errors.Is(err, errdefs.ErrQuota) || !strings.Contains(err.Error(), "max_bytes") {
		t.Fatalf("ingest into a full store: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(fifth), ".vrift")); err == nil {
		t.Errorf("the refused ingest left a manifest")
	}
}

func keyOfString(c string) cas.Key {
	h := cas.NewHasher()
	h.Write([]byte(c))
	k := cas.Key{Size: int64(len(c))}
	h.Sum(k.Sum[:0])
	return k
}
