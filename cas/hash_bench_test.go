package cas

import (
	"bytes"
	"fmt"
	"hash"
	"testing"

	zeeboblake3 "github.com/zeebo/blake3"
	lukeblake3 "lukechampine.com/blake3"
)

var hashImpls = []struct {
	name string
	new  func() hash.Hash
}{
	{"zeebo", func() hash.Hash { return zeeboblake3.New() }},
	{"lukechampine", func() hash.Hash { return lukeblake3.New(32, nil) }},
}

func TestHashImplsAgree(t *testing.T) {
	for _, n := range []int{0, 1, 1023, 1024, 1025, 64 << 10, 1<<20 + 7} {
		data := bytes.Repeat([]byte("vrift"), n/5+1)[:n]
		var sums [][]byte
		for _, impl := range hashImpls {
			h := impl.new()
			h.Write(data)
			sums = append(sums, h.Sum(nil))
		}
		if !bytes.Equal(sums[0], sums[1]) {
			t.Fatalf("size %d: digests differ: %x vs %x", n, sums[0], sums[1])
		}
	}
	// Known answer: BLAKE3 of the empty input.
	h := NewHasher()
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262" {
		t.Fatalf("BLAKE3(\"\") = %s", got)
	}
}

func BenchmarkHash(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		data := bytes.Repeat([]byte{0xa5, 0x5a, 0x33}, size/3+1)[:size]
		for _, impl := range hashImpls {
			b.Run(fmt.Sprintf("%s/%dKiB", impl.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				h := impl.new()
				for i := 0; i < b.N; i++ {
					h.Reset()
					h.Write(data)
					h.Sum(nil)
				}
			})
		}
	}
}
