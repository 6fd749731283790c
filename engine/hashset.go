package engine

import (
	"encoding/binary"
	"math/bits"
	"slices"

	"github.com/vrift/vrift/cas"
)

// hashSet is a set of 64-bit hashes in 8 bytes each: appended while a
// walk runs, then sorted once (seal) and searched. A map[uint64]struct{}
// cost about 40 bytes an entry; an ingest keeps up to three such sets per
// file (paths seen, paths to project, distinct content), which at 1M files
// was over 100 MB of the 616 MB a cold ingest peaked at (issue 22). On a
// 100k-file tier2 tree (load average 9-10 on 2 cores): an unchanged
// re-ingest's max RSS went from 55-56 MB to 35-38 MB, a watcher's start-up
// scan's from 56 MB to 38 MB.
// Two paths whose hashes collide (one chance in 2^64 per pair with a
// random maphash seed) would count as one: a file missed by the prune or
// the swap is left as it was, never lost.
type hashSet struct {
	h      []uint64
	sealed bool
	// starts[b] is the first hash whose top bits are b or more (index).
	starts []uint32
	shift  uint
}

func (s *hashSet) add(h uint64) {
	s.h = append(s.h, h)
	s.sealed = false
}

// seal sorts and deduplicates; has and len need it after the last add.
func (s *hashSet) seal() {
	if s.sealed {
		return
	}
	slices.Sort(s.h)
	s.h = slices.Compact(s.h)
	s.h = slices.Clip(s.h)
	s.index()
	s.sealed = true
}

// grow makes room for n more hashes: a set sized from the last manifest
// does not copy itself over as it doubles (at 1M files its growth cost 8%
// of an unchanged tier1 re-ingest, in copies and page faults).
func (s *hashSet) grow(n int) {
	if n > 0 {
		s.h = slices.Grow(s.h, n)
	}
}

func (s *hashSet) has(h uint64) bool {
	s.seal()
	if s.starts == nil {
		_, ok := slices.BinarySearch(s.h, h)
		return ok
	}
	b := h >> s.shift
	_, ok := slices.BinarySearch(s.h[s.starts[b]:s.starts[b+1]], h)
	return ok
}

// index divides a sealed set by its hashes' top bits, about eight hashes a
// bucket, in 0.5 bytes an entry: the hashes are uniform (maphash, BLAKE3),
// so a lookup is two cache misses where bisecting 1M takes twenty (a binary
// search was 9% of an unchanged 1M-file tier1 re-ingest; interpolation,
// with its divisions, measured slower still within the ingest).
func (s *hashSet) index() {
	s.starts = nil
	if len(s.h) < 1024 {
		return
	}
	bitsN := bits.Len(uint(len(s.h)/8)) - 1
	s.shift = uint(64 - bitsN)
	s.starts = make([]uint32, 1<<bitsN+1)
	i := 0
	for b := range s.starts {
		for i < len(s.h) && s.h[i]>>s.shift < uint64(b) {
			i++
		}
		s.starts[b] = uint32(i)
	}
}

func (s *hashSet) len() int {
	s.seal()
	return len(s.h)
}

// keyHash folds a blob key to 64 bits, to count distinct content: the
// key's hash is already uniform, so its first 8 bytes, with the size and
// the exec bit mixed in, are as good as any hash of it.
func keyHash(k cas.Key) uint64 {
	h := binary.LittleEndian.Uint64(k.Sum[:8]) ^ uint64(k.Size)*0x9e3779b97f4a7c15
	if k.Exec {
		h ^= 1
	}
	return h
}

// LiveSet is a sweep's mark set: the blobs some root references, in 8 bytes
// each (keyHash), sorted once marking is done. It may only err towards
// keeping: two keys whose hashes collide both look live, so at worst an
// unreferenced blob survives a sweep (one chance in 2^64 per pair); a
// referenced blob always tests live. A map[cas.Key]struct{} cost about 100
// bytes a blob: gc --dry-run peaked at 321 MB at 1M blobs (issue 22); at
// 100k blobs it went from 37-39 MB to 32-33 MB, most of what is left being
// the runtime and the manifest's pages (LMDB maps it).
type LiveSet struct{ s hashSet }

// Add marks k live.
func (l *LiveSet) Add(k cas.Key) { l.s.add(keyHash(k)) }

// AddHash marks live the key whose KeyHash is h.
func (l *LiveSet) AddHash(h uint64) { l.s.add(h) }

// KeyHash is the 64-bit form of k a LiveSet holds, for a caller that keeps
// many keys to mark later (a daemon's ingest sessions).
func KeyHash(k cas.Key) uint64 { return keyHash(k) }

// Has reports whether k is (or may be, see LiveSet) live. Not safe to call
// concurrently with Add.
func (l *LiveSet) Has(k cas.Key) bool { return l.s.has(keyHash(k)) }

// Len is the number of distinct live hashes.
func (l *LiveSet) Len() int { return l.s.len() }
