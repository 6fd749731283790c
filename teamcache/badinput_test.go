package teamcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/internal/s3test"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/pack"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/teamcache"
	"github.com/vrift/vrift/treefile"
)

// A hostile or broken remote, built object by object: each case plants
// packs, indexes and a tree as an attacker (or a bug) could, and a pull of
// it must fail with a clear error, store nothing of the victim blob and
// write no manifest.

func keyOf(data []byte) cas.Key {
	k := cas.Key{Size: int64(len(data))}
	h := cas.NewHasher()
	h.Write(data)
	h.Sum(k.Sum[:0])
	return k
}

func frameOf(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := pack.NewEncoder(1)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(data, nil)
}

func putObject(t *testing.T, b remote.Backend, key string, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

type planted struct {
	k     cas.Key
	frame []byte
}

// plantPack uploads a pack of the given frames and its index (index, if
// not nil, replaces the true one) and returns its ID and true index.
func plantPack(t *testing.T, b remote.Backend, frames []planted, index func(*pack.Index) []byte) (string, *pack.Index) {
	t.Helper()
	var bld pack.Builder
	for _, f := range frames {
		bld.Add(f.k, f.frame)
	}
	id, data, ix, raw := bld.Finish()
	if index != nil {
		raw = index(ix)
	}
	putObject(t, b, teamcache.PackKey(id), data)
	putObject(t, b, teamcache.IndexKey(id), raw)
	return id, ix
}

// plantTree uploads a tree of one file per key, at where.
func plantTree(t *testing.T, b remote.Backend, name string, keys []cas.Key, where []treefile.Where) {
	t.Helper()
	tr := &teamcache.Tree{Header: treefile.Header{Created: time.Now().UTC()}}
	for i, k := range keys {
		tr.Paths = append(tr.Paths, "f"+string(rune('a'+i)))
		tr.Entries = append(tr.Entries, manifest.Entry{Kind: manifest.File, Mode: 0o644, Size: k.Size, Sum: k.Sum})
		tr.Where = append(tr.Where, where[i])
	}
	raw, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	putObject(t, b, teamcache.TreeKey(name), raw)
}

// refused pulls name and checks it fails as want says, with victim not
// stored and no manifest written.
func refused(t *testing.T, b remote.Backend, name string, victim cas.Key, want error, says string) {
	t.Helper()
	d := newStore(t)
	dest := filepath.Join(t.TempDir(), "r")
	_, err := teamcache.Pull(context.Background(), d.Store, b, name, dest, d.AddRoot, teamcache.Options{})
	if err == nil || (want != nil && !errors.Is(err, want)) || !strings.Contains(err.Error(), says) {
		t.Fatalf("pull of %s: %v; want %v saying %q", name, err, want, says)
	}
	t.Logf("reported: %v", err)
	if d.Store.Has(victim) {
		t.Fatal("the victim blob entered the store")
	}
	if _, err := os.Stat(manifest.PathFor(dest)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a manifest was written for a failed pull: %v", err)
	}
}

// at opens the test's server under its own prefix, so each case plants
// into an empty remote.
func (e *env) at(t *testing.T, prefix string) remote.Backend {
	t.Helper()
	b, err := remote.OpenS3(remote.Config{URL: "s3://" + bucket + "/" + prefix, Endpoint: e.srv.Endpoint(), Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHostileRemote(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	good, evil := []byte("module.exports = 'good'\n"), []byte("require('child_process').exec('evil')\n")
	k := keyOf(good)

	t.Run("frame decodes to other bytes", func(t *testing.T) {
		b := env.at(t, "frame-decodes-to-other-bytes")
		id, ix := plantPack(t, b, []planted{{k, frameOf(t, evil)}}, nil)
		en := ix.Entries[0]
		plantTree(t, b, "other-bytes", []cas.Key{k}, []treefile.Where{{Pack: id, Offset: en.Offset, Length: en.Length}})
		refused(t, b, "other-bytes", k, cas.ErrMismatch, teamcache.PackKey(id))
	})
	t.Run("decompression bomb in a pack", func(t *testing.T) {
		b := env.at(t, "bomb")
		// A 64 MiB frame of zeros is a few KiB: within what a 16 KiB blob
		// may compress to, so the index and tree are well formed.
		k16 := keyOf(bytes.Repeat([]byte("sixteen k blob\n"), 1100))
		bomb := frameOf(t, make([]byte, 64<<20))
		if int64(len(bomb)) > pack.MaxFrameLen(k16.Size) {
			t.Fatalf("the bomb is %d bytes", len(bomb))
		}
		id, ix := plantPack(t, b, []planted{{k16, bomb}}, nil)
		en := ix.Entries[0]
		plantTree(t, b, "bomb", []cas.Key{k16}, []treefile.Where{{Pack: id, Offset: en.Offset, Length: en.Length}})
		refused(t, b, "bomb", k16, cas.ErrMismatch, fmt.Sprintf("got %d bytes", k16.Size+1))
	})
	t.Run("decompression bomb as a large object", func(t *testing.T) {
		b := env.at(t, "decompression-bomb-as-a-large-object")
		big := bytes.Repeat([]byte("large blob "), 200000)
		kb := keyOf(big)
		putObject(t, b, teamcache.ZstdKey(kb), frameOf(t, make([]byte, 256<<20)))
		plantTree(t, b, "zbomb", []cas.Key{kb}, []treefile.Where{{Zstd: true}})
		refused(t, b, "zbomb", kb, cas.ErrMismatch, teamcache.ZstdKey(kb))
	})
	t.Run("index lies about offsets", func(t *testing.T) {
		b := env.at(t, "lying-index")
		other := []byte("another honest blob, of other length\n")
		id, _ := plantPack(t, b, []planted{{keyOf(other), frameOf(t, other)}, {k, frameOf(t, good)}}, func(ix *pack.Index) []byte {
			// Each key names the other's frame.
			ix.Entries[0].Key, ix.Entries[1].Key = ix.Entries[1].Key, ix.Entries[0].Key
			ix.Entries[0].Length = min(ix.Entries[0].Length, pack.MaxFrameLen(k.Size))
			return ix.Encode()
		})
		// The tree does not say where: the pull plans from the index.
		plantTree(t, b, "lying-index", []cas.Key{k}, []treefile.Where{{}})
		refused(t, b, "lying-index", k, cas.ErrMismatch, id)
	})
	t.Run("tree names a pack that does not exist", func(t *testing.T) {
		b := env.at(t, "tree-names-a-pack-that-does-not-exist")
		ghost := strings.Repeat("ab", 32)
		plantTree(t, b, "ghost-pack", []cas.Key{k}, []treefile.Where{{Pack: ghost, Offset: 0, Length: 20}})
		refused(t, b, "ghost-pack", k, remote.ErrNotFound, "no pack index or object")
	})
	t.Run("index object is garbage", func(t *testing.T) {
		b := env.at(t, "index-object-is-garbage")
		id, _ := plantPack(t, b, []planted{{k, frameOf(t, good)}}, func(*pack.Index) []byte { return []byte("garbage index") })
		plantTree(t, b, "bad-index", []cas.Key{k}, []treefile.Where{{}})
		refused(t, b, "bad-index", k, nil, "no pack index or object")
		inv, err := teamcache.LoadInventory(ctx, b, teamcache.Options{})
		if err != nil || len(inv.BadIndexes) == 0 || !strings.Contains(strings.Join(inv.BadIndexes, " "), id) {
			t.Fatalf("inventory: bad indexes %v, %v", inv.BadIndexes, err)
		}
		b.Delete(ctx, teamcache.IndexKey(id))
	})
}

// TestServerIgnoresRange: through a server that answers range reads with
// the whole object, a pull fails saying so, rather than taking the wrong
// bytes.
func TestServerIgnoresRange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d1, root := project(t, sampleFiles(5))
	if _, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app", teamcache.Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := remote.OpenS3(remote.Config{URL: "s3://" + bucket + "/cache", Endpoint: s3test.IgnoreRange(t, e.srv.Endpoint())})
	if err != nil {
		t.Fatal(err)
	}
	var victim cas.Key
	for _, k := range treeKeys(t, root) {
		if k.Size <= teamcache.LargeBlob {
			victim = k
		}
	}
	refused(t, b, "app", victim, remote.ErrRange, "Content-Range")
}

// TestVersion1Remote: a remote as version 1 wrote it (one uncompressed
// object per blob, a version 1 tree) is pulled unchanged; a push to it
// reuses those objects and adds only what is new; gc keeps them.
func TestVersion1Remote(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	files := sampleFiles(10)
	d1, root := project(t, files)
	for _, k := range treeKeys(t, root) {
		f, err := d1.Store.OpenBlob(k)
		if err != nil {
			t.Fatal(err)
		}
		err = e.b.Put(ctx, teamcache.BlobKey(k), f, k.Size)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	tr, err := teamcache.ReadManifest(mpathOf(root))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tr.Encode()
	if err != nil {
		t.Fatal(err)
	}
	zr, _ := zstd.NewReader(nil)
	plain, err := zr.DecodeAll(raw, nil)
	if err != nil || !bytes.Contains(plain, []byte(`"version":2`)) {
		t.Fatalf("tree: %v", err)
	}
	zw, _ := zstd.NewWriter(nil)
	putObject(t, e.b, teamcache.TreeKey("v1"), zw.EncodeAll(bytes.Replace(plain, []byte(`"version":2`), []byte(`"version":1`), 1), nil))
	old, _, err := teamcache.FetchTree(ctx, e.b, "v1")
	if err != nil || old.Header.Version != 1 {
		t.Fatalf("the planted tree: %+v, %v", old, err)
	}
	pullAndCompare(t, e.b, "v1", root, teamcache.Options{})

	files["node_modules/c/new.js"] = "new since version 1\n"
	d2, root2 := project(t, files)
	res, err := teamcache.Push(ctx, d2.Store, mpathOf(root2), e.b, "v2", teamcache.Options{})
	if err != nil || res.BlobsSent != 1 {
		t.Fatalf("push onto a version 1 remote: %+v, %v", res, err)
	}
	pullAndCompare(t, e.b, "v2", root2, teamcache.Options{})
	gc, err := teamcache.GC(ctx, e.b, 0, false, teamcache.Options{})
	if err != nil || gc.Removed != 0 || gc.Trees != 2 {
		t.Fatalf("gc: %+v, %v", gc, err)
	}
	if n := checkTreesComplete(t, e.b); n != 2 {
		t.Fatalf("%d trees", n)
	}
}
