package service

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"testing"

	"github.com/PowerDNS/lmdb-go/lmdb"

	"github.com/vrift/vrift/cas"
)

func testKey(b byte, size int64, exec bool) cas.Key {
	var k cas.Key
	k.Sum[0], k.Sum[31] = b, b
	k.Size, k.Exec = size, exec
	return k
}

func TestSortKeys(t *testing.T) {
	in := []cas.Key{testKey(3, 1, false), testKey(1, 5, false), testKey(3, 1, false), testKey(1, 5, true), testKey(2, 0, false), testKey(1, 5, false)}
	var c keyCollector
	c.grow(len(in))
	for _, k := range in {
		c.add(k)
	}
	l := c.sorted()
	if err := l.check(); err != nil {
		t.Fatalf("sorted list: %v", err)
	}
	var got []cas.Key
	for i := range l.Len() {
		got = append(got, decKey(l.At(i)))
	}
	want := []cas.Key{testKey(1, 5, false), testKey(1, 5, true), testKey(2, 0, false), testKey(3, 1, false)}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// What the reader child writes: the count, then the same keys.
	var out bytes.Buffer
	if err := c.writeSorted(&out); err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(out.Bytes()); n != 4 || !bytes.Equal(out.Bytes()[8:], l) {
		t.Fatalf("written: count %d, keys equal %v", n, bytes.Equal(out.Bytes()[8:], l))
	}
	var empty keyCollector
	if l := empty.sorted(); l.Len() != 0 || l.check() != nil {
		t.Fatalf("empty list: %d keys, %v", l.Len(), l.check())
	}
}

func TestKeyListCheck(t *testing.T) {
	a, b := encKey(testKey(1, 1, false)), encKey(testKey(2, 1, false))
	for name, l := range map[string][]byte{
		"unsorted":  slices.Concat(b, a),
		"duplicate": slices.Concat(a, a),
		"truncated": slices.Concat(a, b[:10]),
	} {
		if err := keyList(l).check(); !errors.Is(err, errKeyOrder) {
			t.Errorf("%s: check = %v, want errKeyOrder", name, err)
		}
	}
}

func TestMerge(t *testing.T) {
	k := func(bs ...byte) keyList {
		var l []byte
		for _, b := range bs {
			l = appendKey(l, testKey(b, int64(b), false))
		}
		return l
	}
	var got []string
	err := merge(k(1, 3, 4, 7), k(2, 3, 7, 9), func(kb []byte, inA, inB bool) error {
		tag := map[[2]bool]string{{true, false}: "a", {false, true}: "b", {true, true}: "ab"}[[2]bool{inA, inB}]
		got = append(got, string(rune('0'+kb[0]))+tag)
		return nil
	})
	want := []string{"1a", "2b", "3ab", "4a", "7ab", "9b"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("merge = %v, %v; want %v", got, err, want)
	}
	stop := errors.New("stop")
	n := 0
	if err := merge(k(1, 2), nil, func([]byte, bool, bool) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("merge stopped after %d calls with %v, want 1 and stop", n, err)
	}
}

// TestReadChild: the daemon takes a reader child's keys only sorted,
// distinct and within what a manifest of the largest size could hold.
func TestReadChild(t *testing.T) {
	out := func(count uint64, keys []byte) []byte {
		b := binary.LittleEndian.AppendUint64([]byte{'n'}, count)
		b = append(b, keys...)
		b = append(b, 'T')
		b = binary.LittleEndian.AppendUint64(b, 7)
		return binary.LittleEndian.AppendUint64(b, 99)
	}
	a, b := encKey(testKey(1, 1, false)), encKey(testKey(2, 1, false))
	ck, trailer, err := readChild(bytes.NewReader(out(2, slices.Concat(a, b))), 1<<20)
	if err != nil || !trailer || ck.keys.Len() != 2 || ck.files != 7 || ck.bytes != 99 {
		t.Fatalf("good output: %d keys, files %d, bytes %d, trailer %v, %v", ck.keys.Len(), ck.files, ck.bytes, trailer, err)
	}
	if _, _, err := readChild(bytes.NewReader(out(2, slices.Concat(b, a))), 1<<20); !errors.Is(err, errKeyOrder) {
		t.Errorf("unsorted keys: %v, want errKeyOrder", err)
	}
	if _, _, err := readChild(bytes.NewReader(out(1<<40, nil)), 1<<20); err == nil {
		t.Errorf("a count past what max bytes hold was taken")
	}
	if _, trailer, err := readChild(bytes.NewReader(out(2, slices.Concat(a, b))[:50]), 1<<20); err == nil && trailer {
		t.Errorf("truncated output taken as whole")
	}
}

// TestAccountingRepin: a re-pin changes only the references the old and
// new keys do not share, and ends where a recount from scratch ends; an
// accounting file of the format before sorted keys is recounted.
func TestAccountingRepin(t *testing.T) {
	for _, step := range []int{rootStep, 2, 1} {
		t.Run(fmt.Sprintf("step %d", step), func(t *testing.T) { testAccountingRepin(t, step) })
	}
}

// testAccountingRepin runs TestAccountingRepin with step references a
// transaction at most.
func testAccountingRepin(t *testing.T, step int) {
	a, err := openAccounting(t.TempDir() + "/usage.lmdb")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	a.step = step
	keys := func(bs ...byte) keyList {
		var c keyCollector
		for _, b := range bs {
			c.add(testKey(b, int64(b)*10, false))
		}
		return c.sorted()
	}
	root := pinnedRoot{uid: 1000, id: "r", pinnedAt: 1}
	if err := a.AddRoot(1000, "r", 1, 3, keys(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := a.AddRoot(1001, "o", 1, 2, keys(3, 4)); err != nil {
		t.Fatal(err)
	}
	d, err := a.Delta(1000, "r", keys(2, 3, 5, 5))
	if err != nil || d != 50-10 {
		t.Fatalf("delta = %d, %v; want 40 (5 in, 1 out)", d, err)
	}
	if err := a.AddRoot(1000, "r", 2, 4, keys(2, 3, 5)); err != nil {
		t.Fatal(err)
	}
	incremental := a.All()
	want := Totals{Referenced: 100, Exclusive: 70, FairShare: 20 + 15 + 50, Blobs: 3}
	if incremental[1000] != want {
		t.Fatalf("uid 1000 after the re-pin: %+v, want %+v", incremental[1000], want)
	}
	if ok, err := a.References(1000, testKey(1, 10, false)); ok || err != nil {
		t.Fatalf("the dropped blob is still referenced (%v)", err)
	}
	root.pinnedAt = 2
	other := pinnedRoot{uid: 1001, id: "o", pinnedAt: 1}
	if err := a.Matches([]pinnedRoot{root, other}); err != nil {
		t.Fatalf("matches: %v", err)
	}
	// A root dropped over several transactions leaves the other's
	// figures as if it had never been pinned, and no change pending.
	if err := a.AddRoot(1000, "t", 1, 1, keys(4, 6)); err != nil {
		t.Fatal(err)
	}
	if err := a.DropRoot(1000, "t"); err != nil {
		t.Fatal(err)
	}
	if got := a.All(); !maps.Equal(got, incremental) {
		t.Fatalf("after a root added and dropped: %+v, want %+v", got, incremental)
	}
	if err := a.Matches([]pinnedRoot{root, other}); err != nil {
		t.Fatalf("matches after the drop: %v", err)
	}
	walked := map[string][]byte{"r": {3, 2, 5, 2}, "o": {4, 3}}
	root.path, other.path = "r", "o"
	_, err = a.Recount(t.Context(), []pinnedRoot{root, other}, func(_ context.Context, path string, c *keyCollector) (int64, error) {
		for _, x := range walked[path] {
			c.add(testKey(x, int64(x)*10, false))
		}
		return 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.All(); !maps.Equal(got, incremental) {
		t.Fatalf("recount %+v, incremental %+v", got, incremental)
	}
	// A change left in part is stale.
	err = a.env.Update(func(txn *lmdb.Txn) error { return txn.Put(a.md, []byte(pendingKey), []byte{1}, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Matches([]pinnedRoot{root, other}); !errors.Is(err, errStale) {
		t.Fatalf("a change left in part: %v, want errStale", err)
	}
	// A version 1 file (unsorted keys) is stale.
	err = a.env.Update(func(txn *lmdb.Txn) error { return txn.Put(a.md, []byte("version"), []byte{1}, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Matches([]pinnedRoot{root, other}); !errors.Is(err, errStale) {
		t.Fatalf("a version 1 file: %v, want errStale", err)
	}
}

// TestAccountingRootReadsNoKeys: reading a root's figures does not copy
// its keys (41 bytes a blob: 39 MB an admin usage call at 1M files).
func TestAccountingRootReadsNoKeys(t *testing.T) {
	a, err := openAccounting(t.TempDir() + "/usage.lmdb")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	var c keyCollector
	const n = 20000
	for i := range n {
		var k cas.Key
		binary.BigEndian.PutUint32(k.Sum[:], uint32(i))
		k.Size = int64(i)
		c.add(k)
	}
	if err := a.AddRoot(1000, "big", 1, n, c.sorted()); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	info, ok, err := a.Root(1000, "big")
	runtime.ReadMemStats(&after)
	if err != nil || !ok || info.Files != n || info.keys != nil {
		t.Fatalf("root: %+v, %v, %v", info, ok, err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > n*keyLen/10 {
		t.Fatalf("reading a root of %d keys allocated %d bytes: its keys were copied (%d bytes)", n, got, n*keyLen)
	}
}
