package engine

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/internal/manifesttest"
	"github.com/vrift/vrift/manifest"
)

// TestLiveRefresh: refreshing the paths a watcher saw change records what
// a full ingest of the tree records, and that ingest then reads nothing.
func TestLiveRefresh(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "nm/a.js": "a", "nm/c/x": "x", "nm/c/y/z": "z", "nm/e": "e"})
	nm := filepath.Join(proj, "nm")
	ingestDirect(t, store, nm, IngestOptions{Tier: Tier2})

	writeFiles(t, proj, map[string]string{"nm/a.js": "a2", "nm/b.js": "b", "nm/d/1": "1", "nm/d/2/3": "3"})
	os.RemoveAll(filepath.Join(nm, "c"))
	os.Remove(filepath.Join(nm, "e"))
	writeFiles(t, proj, map[string]string{"nm/e/inner": "i"})
	os.Symlink("a.js", filepath.Join(nm, "f"))
	writeFiles(t, proj, map[string]string{"nm/.vrift-tmp-a.js": "temp", "nm/d/.git/HEAD": "ref"})
	paths := []string{"nm/a.js", "nm/b.js", "nm/c", "nm/c/x", "nm/d", "nm/d/1", "nm/e", "nm/f", "nm/gone-before-seen",
		"nm/.vrift-tmp-a.js", "nm/d/.git/HEAD"}
	res := ingestDirect(t, store, nm, IngestOptions{Tier: Tier2, Paths: paths, SkipBusy: true})
	if res.ReadFiles != 5 || len(res.Busy) != 0 {
		t.Errorf("refresh read %d files (want a.js, b.js, d/1, d/2/3, e/inner), busy %v", res.ReadFiles, res.Busy)
	}
	for p := range manifesttest.Entries(t, proj, manifest.RootPath) {
		if manifest.Within(p, "nm/c") || p == "nm/.vrift-tmp-a.js" || manifest.Within(p, "nm/d/.git") {
			t.Errorf("%s recorded", p)
		}
	}
	// Whether a walk records a temp name of vrift link's is not this
	// test's business: gone, and its directory refreshed.
	os.Remove(filepath.Join(nm, ".vrift-tmp-a.js"))
	ingestDirect(t, store, nm, IngestOptions{Tier: Tier2, Paths: []string{"nm/b.js"}})
	live := manifesttest.Entries(t, proj, manifest.RootPath)
	full := ingestDirect(t, store, nm, IngestOptions{Tier: Tier2})
	if full.ReadFiles != 0 || full.ReadBytes != 0 {
		t.Errorf("the ingest after a refresh read %d files (%d bytes), want none", full.ReadFiles, full.ReadBytes)
	}
	manifesttest.Same(t, "full ingest after a refresh", manifesttest.Entries(t, proj, manifest.RootPath), live)
}

// TestLiveRefreshBusy: a file another process has open is left as it was
// recorded and reported busy; once closed, it is stored.
func TestLiveRefreshBusy(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("write leases are Linux's")
	}
	base := t.TempDir()
	store := filepath.Join(base, "store")
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "nm/a.js": "a"})
	nm := filepath.Join(proj, "nm")
	ingestDirect(t, store, nm, IngestOptions{Tier: Tier2})
	// A lease is refused only for another open file description; in this
	// process that is as good as another process.
	f, err := os.OpenFile(filepath.Join(nm, "a.js"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half")
	res := ingestDirect(t, store, nm, IngestOptions{Tier: Tier2, Paths: []string{"nm/a.js"}, SkipBusy: true})
	if len(res.Busy) != 1 || res.Busy[0] != "nm/a.js" || res.ReadFiles != 0 {
		t.Fatalf("open file: busy %v, read %d", res.Busy, res.ReadFiles)
	}
	if e := entryOf(t, proj, "nm/a.js"); e.Size != 1 {
		t.Errorf("busy file's entry changed: %+v", e)
	}
	f.WriteString(" and whole")
	f.Close()
	res = ingestDirect(t, store, nm, IngestOptions{Tier: Tier2, Paths: []string{"nm/a.js"}, SkipBusy: true})
	if len(res.Busy) != 0 || res.ReadFiles != 1 {
		t.Fatalf("closed file: busy %v, read %d", res.Busy, res.ReadFiles)
	}
	if e := entryOf(t, proj, "nm/a.js"); e.Size != int64(len("half and whole")) {
		t.Errorf("closed file recorded as %+v", e)
	}
}

// changingBlobs stands for a writer that keeps writing while the file is
// read: each put changes the file's times (utimes, which breaks no lease).
type changingBlobs struct {
	path string
	puts int
}

func (c *changingBlobs) PutFile(ctx context.Context, f *os.File, exec bool) (cas.PutResult, error) {
	c.puts++
	at := time.Unix(1_000_000+int64(c.puts), 0)
	if err := os.Chtimes(c.path, at, at); err != nil {
		return cas.PutResult{}, err
	}
	st, _ := f.Stat()
	return cas.PutResult{Key: cas.Key{Size: st.Size()}}, nil
}

func (c *changingBlobs) Sync(context.Context) error { return nil }

// TestLiveRefreshChanging: a file that changes during every read (macOS
// has no test for a writer still writing) is busy for a watcher's refresh,
// to be retried, and an error for an ingest; neither records it.
func TestLiveRefreshChanging(t *testing.T) {
	base := t.TempDir()
	proj := filepath.Join(base, "p")
	writeFiles(t, proj, map[string]string{"package.json": "{}", "nm/a.js": "a"})
	nm := filepath.Join(proj, "nm")
	ingestDirect(t, filepath.Join(base, "store"), nm, IngestOptions{Tier: Tier2})
	before := entryOf(t, proj, "nm/a.js")
	if err := os.WriteFile(filepath.Join(nm, "a.js"), []byte("still writing"), 0o644); err != nil {
		t.Fatal(err)
	}
	blobs := &changingBlobs{path: filepath.Join(nm, "a.js")}
	res, err := Ingest(context.Background(), IngestOptions{Dir: nm, Tier: Tier2, Blobs: blobs, Paths: []string{"nm/a.js"}, SkipBusy: true})
	if err != nil || len(res.Busy) != 1 || res.Busy[0] != "nm/a.js" {
		t.Fatalf("refresh: busy %v, err %v", res, err)
	}
	if blobs.puts != 3 {
		t.Errorf("read %d times, want 3 (then busy)", blobs.puts)
	}
	if e := entryOf(t, proj, "nm/a.js"); e.Sum != before.Sum || e.Size != before.Size || e.MTime != before.MTime {
		t.Errorf("a file changing while read was recorded: %+v, was %+v", e, before)
	}
	_, err = Ingest(context.Background(), IngestOptions{Dir: nm, Tier: Tier2, Blobs: blobs, Paths: []string{"nm/a.js"}})
	if err == nil || !strings.Contains(err.Error(), "keeps changing while being read") {
		t.Errorf("without SkipBusy: %v", err)
	}
}
