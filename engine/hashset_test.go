package engine

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestHashSetLarge: the bucketed sort and index agree with a plain sort and
// binary search, on uniform hashes and on skewed ones (all in a few
// buckets), with duplicates.
func TestHashSetLarge(t *testing.T) {
	for name, gen := range map[string]func() uint64{
		"uniform": rand.Uint64,
		"skewed":  func() uint64 { return rand.Uint64N(1 << 20) },
		"dups":    func() uint64 { return rand.Uint64N(5000) << 40 },
	} {
		var s hashSet
		var ref []uint64
		for range 200_000 {
			h := gen()
			s.add(h)
			ref = append(ref, h)
		}
		slices.Sort(ref)
		ref = slices.Compact(ref)
		s.seal()
		if !slices.Equal(s.h, ref) {
			t.Fatalf("%s: sorted set differs", name)
		}
		for i := range 100_000 {
			h := ref[rand.IntN(len(ref))]
			if i%2 == 1 {
				h = gen()
			}
			_, want := slices.BinarySearch(ref, h)
			if s.has(h) != want {
				t.Fatalf("%s: has(%x) = %v, want %v", name, h, !want, want)
			}
		}
		if s.len() != len(ref) {
			t.Fatalf("%s: len %d, want %d", name, s.len(), len(ref))
		}
	}
}
