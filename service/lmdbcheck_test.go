package service

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// validManifest returns the bytes of a real manifest with n files.
func validManifest(t testing.TB, n int) []byte {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.lmdb")
	contents := make([]string, n)
	for i := range contents {
		contents[i] = fmt.Sprintf("file %d", i)
	}
	writeManifest(t, p, nil, contents...)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pinBytes pins data as uid's manifest through the service's own pin, the
// code every link call runs.
func pinBytes(t testing.TB, s *Service, dir string, data []byte) error {
	p := filepath.Join(dir, "pinned.lmdb")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, _, err = s.pin(context.Background(), aliceUID, p, f, nil)
	return err
}

// corruptions of a valid manifest: each must be refused (or read) without
// the daemon dying.
func corruptions(valid []byte) map[string][]byte {
	le := binary.LittleEndian
	const psize = 4096
	pages := uint64(len(valid) / psize)
	out := map[string][]byte{}
	mut := func(name string, f func(b []byte)) {
		b := append([]byte(nil), valid...)
		f(b)
		out[name] = b
	}
	for _, n := range []int{0, 1, 15, 100, psize - 1, psize, 2 * psize, len(valid) - 1, len(valid) - psize} {
		if n >= 0 && n <= len(valid) {
			out[fmt.Sprintf("truncated to %d", n)] = append([]byte(nil), valid[:n]...)
		}
	}
	meta := func(b []byte, i int) []byte { return b[i*psize+lmdbPageHdr:] }
	for i := range 2 {
		mut(fmt.Sprintf("meta %d bad magic", i), func(b []byte) { meta(b, i)[0] ^= 0xff })
	}
	both := func(name string, f func(m []byte)) {
		mut(name, func(b []byte) { f(meta(b, 0)); f(meta(b, 1)) })
	}
	both("last page far past the end", func(m []byte) { le.PutUint64(m[120:], 1<<40) })
	both("last page just past the end", func(m []byte) { le.PutUint64(m[120:], pages+16) })
	both("root past the end, last page too", func(m []byte) {
		le.PutUint64(m[120:], pages+16)
		le.PutUint64(m[112:], pages+8)
	})
	both("root past the last page", func(m []byte) { le.PutUint64(m[112:], pages+8) })
	both("root is a meta page", func(m []byte) { le.PutUint64(m[112:], 0) })
	both("page size 0", func(m []byte) { le.PutUint32(m[24:], 0) })
	both("page size 64 KiB", func(m []byte) { le.PutUint32(m[24:], 65536) })
	both("huge map size", func(m []byte) { le.PutUint64(m[16:], 1<<62) })
	both("depth 0", func(m []byte) { le.PutUint16(m[72+6:], 0) })
	both("huge txnid", func(m []byte) { le.PutUint64(m[128:], ^uint64(0)) })
	// Data pages: the branch/leaf pages after the metas.
	if pages > 2 {
		for i := 2; i < int(pages); i++ {
			mut(fmt.Sprintf("page %d header zeroed", i), func(b []byte) { clear(b[i*psize : i*psize+lmdbPageHdr]) })
			mut(fmt.Sprintf("page %d lower/upper swapped", i), func(b []byte) {
				p := b[i*psize:]
				lo, up := le.Uint16(p[12:]), le.Uint16(p[14:])
				le.PutUint16(p[12:], up)
				le.PutUint16(p[14:], lo)
			})
			mut(fmt.Sprintf("page %d node offsets 0xffff", i), func(b []byte) {
				p := b[i*psize:]
				for o := lmdbPageHdr; o < int(le.Uint16(p[12:])) && o+2 <= psize; o += 2 {
					le.PutUint16(p[o:], 0xfff0)
				}
			})
		}
	}
	r := rand.New(rand.NewSource(1))
	for i := range 200 {
		mut(fmt.Sprintf("random flips %d", i), func(b []byte) {
			for range 1 + r.Intn(8) {
				b[2*psize+r.Intn(len(b)-2*psize)] = byte(r.Intn(256))
			}
		})
	}
	return out
}

// TestPinCorruptManifests (L1): crafted LMDB files pinned by a user are
// refused with a clear error and the daemon survives every one (a crash
// here kills the test binary).
func TestPinCorruptManifests(t *testing.T) {
	h := newHarness(t, Config{})
	valid := validManifest(t, 300)
	if err := pinBytes(t, h.svc, t.TempDir(), valid); err != nil {
		t.Fatalf("valid manifest refused: %v", err)
	}
	refused := 0
	for name, data := range corruptions(valid) {
		err := pinBytes(t, h.svc, t.TempDir(), data)
		if err != nil {
			refused++
		}
		t.Logf("%s: %v", name, err)
	}
	t.Logf("%d corrupted manifests refused", refused)
	// The service still works, gc included (it parses every pinned copy).
	alice := h.client(aliceUID)
	mustPut(t, alice, begin(t, alice), h.file("after.txt", "still serving"))
	if _, err := h.svc.dropStale(true); err != nil {
		t.Fatal(err)
	}
}

// FuzzPinManifest pins mutated manifests; the daemon must never crash.
func FuzzPinManifest(f *testing.F) {
	valid := validManifest(f, 50)
	f.Add(valid)
	for _, data := range corruptions(valid) {
		f.Add(data)
	}
	h := newHarness(f, Config{})
	h.svc.childTimeout = 10 * time.Second
	f.Fuzz(func(t *testing.T, data []byte) {
		pinBytes(t, h.svc, t.TempDir(), data)
	})
}
