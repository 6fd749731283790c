package roots

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func open(t *testing.T) (*Registry, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "roots")
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

// pinCopy puts rec with a pinned copy holding content, as the daemon does.
func pinCopy(t *testing.T, r *Registry, rec Record, content string) {
	t.Helper()
	f, err := r.TempCopy(rec.UID, ID(rec.ManifestPath))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(content)
	f.Sync()
	f.Close()
	if err := r.Put(rec, f.Name()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temp copy is still there after Put: %v", err)
	}
}

func paths(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ManifestPath)
	}
	slices.Sort(out)
	return out
}

func TestPutGetListRemoveCount(t *testing.T) {
	r, dir := open(t)
	now := time.Now().UTC().Truncate(time.Second)
	if err := r.Put(Record{UID: 1000, ManifestPath: "/home/a/p/.vrift/manifest.lmdb", PinnedAt: now}, ""); err != nil {
		t.Fatal(err)
	}
	pinCopy(t, r, Record{UID: 1001, ManifestPath: "/home/b/q/.vrift/manifest.lmdb", Files: 3, Bytes: 30, PinnedAt: now}, "copy")
	pinCopy(t, r, Record{UID: 1001, ManifestPath: "/home/b/r/.vrift/manifest.lmdb", Files: 1, Bytes: 1, PinnedAt: now}, "copy2")

	// The one layout: <dir>/<uid>/<id>.json [+ <id>.lmdb].
	a := ID("/home/a/p/.vrift/manifest.lmdb")
	if _, err := os.Stat(filepath.Join(dir, "1000", a+".json")); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get(1000, a)
	if err != nil || got.ManifestPath != "/home/a/p/.vrift/manifest.lmdb" || !got.InPlace || got.HasCopy() || got.ID != a || !got.PinnedAt.Equal(now) {
		t.Fatalf("Get in place: %+v, %v", got, err)
	}
	if r.CopyPath(got) != "" {
		t.Errorf("an in-place record has copy %q", r.CopyPath(got))
	}
	b := ID("/home/b/q/.vrift/manifest.lmdb")
	got, err = r.Get(1001, b)
	if err != nil || !got.HasCopy() || got.Files != 3 || got.Bytes != 30 {
		t.Fatalf("Get pinned: %+v, %v", got, err)
	}
	if cp := r.CopyPath(got); cp != filepath.Join(dir, "1001", b+".lmdb") {
		t.Errorf("copy path %q", cp)
	} else if c, _ := os.ReadFile(cp); string(c) != "copy" {
		t.Errorf("pinned copy holds %q", c)
	}
	if _, err := r.Get(1000, b); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("another owner's record: %v", err)
	}

	recs, bad, err := r.List(1001)
	if err != nil || len(bad) != 0 || !slices.Equal(paths(recs), []string{"/home/b/q/.vrift/manifest.lmdb", "/home/b/r/.vrift/manifest.lmdb"}) {
		t.Fatalf("List(1001): %v, %v, %v", paths(recs), bad, err)
	}
	if recs, _, err := r.List(4242); err != nil || len(recs) != 0 {
		t.Errorf("List of an owner without roots: %v, %v", recs, err)
	}
	all, bad, err := r.ListAll()
	if err != nil || len(bad) != 0 || len(all) != 3 {
		t.Fatalf("ListAll: %v, %v, %v", paths(all), bad, err)
	}
	for uid, want := range map[uint32]int{1000: 1, 1001: 2, 4242: 0} {
		if n, err := r.Count(uid); err != nil || n != want {
			t.Errorf("Count(%d) = %d, %v; want %d", uid, n, err, want)
		}
	}

	// Putting a manifest again replaces its record.
	pinCopy(t, r, Record{UID: 1001, ManifestPath: "/home/b/q/.vrift/manifest.lmdb", Files: 4, Bytes: 40, PinnedAt: now}, "new copy")
	if n, _ := r.Count(1001); n != 2 {
		t.Errorf("a re-pin added a record: %d", n)
	}
	if got, _ := r.Get(1001, b); got.Files != 4 {
		t.Errorf("re-pinned record: %+v", got)
	}

	// Remove drops the record and its copy; removing again is no error.
	if err := r.Remove(1001, b); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(1001, b); err != nil {
		t.Errorf("second remove: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "1001", b+"*"))
	if len(left) != 0 {
		t.Errorf("left after Remove: %v", left)
	}
	if n, _ := r.Count(1001); n != 1 {
		t.Errorf("Count after Remove = %d", n)
	}
	if err := r.Put(Record{UID: 1}, ""); err == nil {
		t.Error("a record without a manifest path was accepted")
	}
}

// A crash mid-write leaves temp files: a record's (<id>.json.<pid>.tmp)
// and a pinned copy's (<id>.<rand>.tmp). They are not records.
func TestStaleTempsIgnored(t *testing.T) {
	r, dir := open(t)
	mp := "/p/.vrift/manifest.lmdb"
	if err := r.Put(Record{UID: 7, ManifestPath: mp}, ""); err != nil {
		t.Fatal(err)
	}
	id := ID(mp)
	for _, name := range []string{id + ".json.999.tmp", ID("/other") + ".json.12.tmp", id + ".123456.tmp", ID("/x") + ".lmdb", ID("/x") + ".lmdb-lock"} {
		if err := os.WriteFile(filepath.Join(dir, "7", name), []byte(`{"uid":7,"manifest_pa`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "junk.tmp"), []byte("x"), 0o600)
	recs, bad, err := r.ListAll()
	if err != nil || len(bad) != 0 || !slices.Equal(paths(recs), []string{mp}) {
		t.Fatalf("ListAll with stale temps: %v, %v, %v", paths(recs), bad, err)
	}
	if n, _ := r.Count(7); n != 1 {
		t.Errorf("Count with stale temps = %d", n)
	}
	// Reopening (a restart) changes nothing.
	if r, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	if recs, _, _ := r.List(7); len(recs) != 1 {
		t.Errorf("after reopening: %v", paths(recs))
	}
}

// A record that cannot be trusted is reported, not listed: garbled JSON,
// an empty file, one naming another manifest than its name says, one of
// another owner than its directory says. Count still counts them (each
// takes a slot), and CheckBad turns them into a sweep's refusal.
func TestBadRecords(t *testing.T) {
	r, dir := open(t)
	good := "/good/.vrift/manifest.lmdb"
	if err := r.Put(Record{UID: 5, ManifestPath: good}, ""); err != nil {
		t.Fatal(err)
	}
	if err := CheckBad(nil); err != nil {
		t.Errorf("CheckBad(nil) = %v", err)
	}
	cases := map[string]string{
		"garbled":       `{"uid":5,"manifest_pa`,
		"empty":         ``,
		"no path":       `{"uid":5}`,
		"other id":      `{"uid":5,"manifest_path":"/elsewhere"}`,
		"other owner":   `{"uid":6,"manifest_path":"/other owner"}`,
		"not an object": `[1,2]`,
	}
	ids := map[string]string{}
	for name, content := range cases {
		id := ID("/" + name)
		if name == "other owner" {
			id = ID("/other owner")
		}
		ids[id] = name
		if err := os.WriteFile(filepath.Join(dir, "5", id+".json"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	recs, bad, err := r.List(5)
	if err != nil || !slices.Equal(paths(recs), []string{good}) {
		t.Fatalf("List: %v, %v", paths(recs), err)
	}
	if len(bad) != len(cases) {
		t.Fatalf("%d bad records reported, want %d: %v", len(bad), len(cases), bad)
	}
	for _, b := range bad {
		if ids[b.ID] == "" || b.UID != 5 || b.Path != filepath.Join(dir, "5", b.ID+".json") || b.Err == nil {
			t.Errorf("bad record %+v", b)
		}
	}
	if _, all, _ := r.ListAll(); len(all) != len(cases) {
		t.Errorf("ListAll reports %d bad records", len(all))
	}
	if n, _ := r.Count(5); n != len(cases)+1 {
		t.Errorf("Count = %d, want %d", n, len(cases)+1)
	}
	err = CheckBad(bad)
	if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "nothing is deleted") || !strings.Contains(err.Error(), "more") {
		t.Errorf("CheckBad: %v", err)
	}
	// Removing a bad record is how it is dropped.
	for _, b := range bad {
		if err := r.Remove(b.UID, b.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, bad, _ := r.List(5); len(bad) != 0 {
		t.Errorf("bad records after removing them: %v", bad)
	}
}

// The daemon's records written before in_place existed all have a pinned
// copy, and must keep reading as having one.
func TestDaemonSidecarWithoutInPlace(t *testing.T) {
	r, dir := open(t)
	mp := "/home/a/p/.vrift/manifest.lmdb"
	os.MkdirAll(filepath.Join(dir, "1000"), 0o700)
	side := `{"uid":1000,"manifest_path":"` + mp + `","files":2,"bytes":9,"pinned_at":"2026-01-02T03:04:05Z"}`
	if err := os.WriteFile(filepath.Join(dir, "1000", ID(mp)+".json"), []byte(side), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, bad, err := r.List(1000)
	if err != nil || len(bad) != 0 || len(recs) != 1 {
		t.Fatalf("List: %+v, %v, %v", recs, bad, err)
	}
	if rec := recs[0]; !rec.HasCopy() || rec.Files != 2 || r.CopyPath(rec) != filepath.Join(dir, "1000", ID(mp)+".lmdb") {
		t.Errorf("old sidecar read as %+v (copy %q)", rec, r.CopyPath(rec))
	}
}

// Direct-mode stores made before the registry had owners hold
// <dir>/<id> files with the manifest path. Open moves them into the one
// layout as in-place records of the file's owner; a torn one stays where
// it is and is reported; one written later (an older vrift on the same
// store) is read in place and Remove drops it.
func TestLegacyMigration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "roots")
	os.MkdirAll(dir, 0o700)
	old := []string{"/home/a/p/.vrift/manifest.lmdb", "/home/a/q/.vrift/manifest.lmdb"}
	for _, mp := range old {
		if err := os.WriteFile(filepath.Join(dir, ID(mp)), []byte(mp), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	torn := ID("/home/a/torn/.vrift/manifest.lmdb")
	os.WriteFile(filepath.Join(dir, torn), []byte("/home/a/to"), 0o600)
	os.WriteFile(filepath.Join(dir, ID("/x")+".123.tmp"), []byte("/x"), 0o600) // a temp of the old layout

	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	uid := uint32(os.Getuid())
	for _, mp := range old {
		if _, err := os.Stat(filepath.Join(dir, ID(mp))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("old record of %s still there: %v", mp, err)
		}
		rec, err := r.Get(uid, ID(mp))
		if err != nil || rec.ManifestPath != mp || !rec.InPlace || rec.PinnedAt.IsZero() {
			t.Errorf("moved record of %s: %+v, %v", mp, rec, err)
		}
	}
	recs, bad, err := r.ListAll()
	if err != nil || !slices.Equal(paths(recs), old) {
		t.Fatalf("ListAll after the move: %v, %v", paths(recs), err)
	}
	if len(bad) != 1 || bad[0].ID != torn || bad[0].Path != filepath.Join(dir, torn) {
		t.Fatalf("the torn old record: %v", bad)
	}
	if err := CheckBad(bad); !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), torn) {
		t.Errorf("CheckBad names the torn record: %v", err)
	}
	os.Remove(filepath.Join(dir, torn))

	// Opening again moves nothing more and lists the same.
	if r, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	if recs, bad, _ := r.ListAll(); !slices.Equal(paths(recs), old) || len(bad) != 0 {
		t.Errorf("after reopening: %v, %v", paths(recs), bad)
	}

	// An old record written after Open, and one caught mid-move (both
	// layouts present): each manifest is listed once.
	late := "/home/a/late/.vrift/manifest.lmdb"
	os.WriteFile(filepath.Join(dir, ID(late)), []byte(late), 0o600)
	os.WriteFile(filepath.Join(dir, ID(old[0])), []byte(old[0]), 0o600)
	recs, bad, err = r.ListAll()
	want := append(slices.Clone(old), late)
	slices.Sort(want)
	if err != nil || len(bad) != 0 || !slices.Equal(paths(recs), want) {
		t.Fatalf("ListAll with old records beside new ones: %v, %v, %v", paths(recs), bad, err)
	}
	if err := r.Remove(uid, ID(late)); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(uid, ID(old[0])); err != nil {
		t.Fatal(err)
	}
	if recs, _, _ := r.ListAll(); !slices.Equal(paths(recs), old[1:]) {
		t.Errorf("after removing: %v", paths(recs))
	}
}
