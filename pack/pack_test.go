package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/vrift/vrift/cas"
)

func keyOf(data []byte, exec bool) cas.Key {
	k := cas.Key{Size: int64(len(data)), Exec: exec}
	h := cas.NewHasher()
	h.Write(data)
	h.Sum(k.Sum[:0])
	return k
}

func blobs() [][]byte {
	out := [][]byte{nil, []byte("x")}
	for i := range 20 {
		out = append(out, bytes.Repeat([]byte(fmt.Sprintf("blob %d ", i)), i*100+1))
	}
	return out
}

// build packs blobs() and returns the pack, its index bytes and the keys.
func build(t testing.TB) ([]byte, []byte, []cas.Key) {
	enc, err := NewEncoder(2)
	if err != nil {
		t.Fatal(err)
	}
	var b Builder
	var keys []cas.Key
	for i, data := range blobs() {
		k := keyOf(data, i%3 == 0)
		keys = append(keys, k)
		b.Add(k, enc.EncodeAll(data, nil))
	}
	id, data, ix, index := b.Finish()
	if id != ID(data) || len(ix.Entries) != len(keys) || b.Len() != 0 {
		t.Fatalf("finish: id %s, %d entries", id, len(ix.Entries))
	}
	return data, index, keys
}

func TestRoundTrip(t *testing.T) {
	data, index, keys := build(t)
	ix, err := DecodeIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	// The pack re-indexes from itself to the same index.
	self, raw, err := IndexOf(data)
	if err != nil || !bytes.Equal(raw, index) || len(self.Entries) != len(ix.Entries) {
		t.Fatalf("IndexOf: %v", err)
	}
	dec, err := NewDecoder(0)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range ix.Entries {
		if e.Key != keys[i] {
			t.Fatalf("entry %d: %s, want %s", i, e.Key, keys[i])
		}
		content, done, err := Frame(dec, bytes.NewReader(data[e.Offset:]), e.Length, e.Key.Size)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(content)
		if err != nil || !bytes.Equal(got, blobs()[i]) || done() != nil {
			t.Fatalf("frame %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// TestDecodeIndexRejects: every way an index can lie or break is an
// ErrFormat, never a panic or a wrong index.
func TestDecodeIndexRejects(t *testing.T) {
	_, index, _ := build(t)
	resum := func(b []byte) []byte {
		body := b[:len(b)-cas.HashSize]
		h := cas.NewHasher()
		h.Write(body)
		return h.Sum(bytes.Clone(body))
	}
	entry := func(b []byte, i int) []byte { return b[headerLen+i*entryLen:] }
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": index[:len(index)-1],
		"flipped":   func() []byte { b := bytes.Clone(index); b[headerLen+3] ^= 1; return b }(),
		"version": func() []byte {
			b := bytes.Clone(index)
			b[len(indexMagic)] = 9
			return resum(b)
		}(),
		"overlapping frames": func() []byte {
			b := bytes.Clone(index)
			e := entry(b, 3)
			binary.LittleEndian.PutUint64(e[cas.HashSize+9:], 0)
			return resum(b)
		}(),
		"frame past the pack": func() []byte {
			b := bytes.Clone(index)
			e := entry(b, len(blobs())-1)
			binary.LittleEndian.PutUint64(e[cas.HashSize+9:], 1<<30)
			return resum(b)
		}(),
		"frame longer than its blob can be": func() []byte {
			b := bytes.Clone(index)
			e := entry(b, 1) // "x": one byte
			binary.LittleEndian.PutUint32(e[cas.HashSize+17:], 1000)
			return resum(b)
		}(),
		"count beyond the bytes": func() []byte {
			b := bytes.Clone(index)
			binary.LittleEndian.PutUint32(b[len(indexMagic)+1:], 1<<30)
			return resum(b)
		}(),
		"unknown flags": func() []byte {
			b := bytes.Clone(index)
			entry(b, 2)[cas.HashSize+8] = 7
			return resum(b)
		}(),
		"bigger than any pack needs": make([]byte, MaxIndexBytes+1),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeIndex(raw); !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
		})
	}
	data, _, _ := build(t)
	if _, _, err := IndexOf(data[:len(data)-1]); !errors.Is(err, ErrFormat) {
		t.Fatalf("a truncated pack: %v", err)
	}
	if _, _, err := IndexOf(append(bytes.Clone(data[:100]), data[len(data)-len(index)-trailerLen:]...)); !errors.Is(err, ErrFormat) {
		t.Fatalf("a pack shorter than its index says: %v", err)
	}
}

// TestFrameBomb: a frame that expands far past the size it claims yields
// at most size+1 bytes (so it fails its blob's size check) and never holds
// its whole expansion.
func TestFrameBomb(t *testing.T) {
	enc, _ := NewEncoder(1)
	bomb := enc.EncodeAll(make([]byte, 64<<20), nil)
	dec, _ := NewDecoder(0)
	content, _, err := Frame(dec, bytes.NewReader(bomb), int64(len(bomb)), 10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(content)
	if err != nil || len(got) != 11 {
		t.Fatalf("a 64 MiB frame claiming 10 bytes gave %d bytes, %v", len(got), err)
	}
	// Garbage is an error, not content.
	content, _, err = Frame(dec, bytes.NewReader([]byte("not zstd at all")), 15, 15)
	if err == nil {
		_, err = io.ReadAll(content)
	}
	if err == nil {
		t.Fatal("garbage decoded as a frame")
	}
}

// FuzzDecodeIndex: arbitrary bytes as an index never panic; what decodes
// satisfies the invariants DecodeIndex promises.
func FuzzDecodeIndex(f *testing.F) {
	_, index, _ := build(f)
	f.Add(index)
	f.Add(index[:headerLen])
	f.Fuzz(func(t *testing.T, raw []byte) {
		ix, err := DecodeIndex(raw)
		if err != nil {
			return
		}
		var prev int64
		for _, e := range ix.Entries {
			if e.Offset < prev || e.Length <= 0 || e.End() > ix.PackSize || e.Length > MaxFrameLen(e.Key.Size) {
				t.Fatalf("accepted a bad entry %+v", e)
			}
			prev = e.End()
		}
	})
}

// FuzzFrame: arbitrary bytes as a frame never panic and never yield more
// than size+1 bytes.
func FuzzFrame(f *testing.F) {
	enc, _ := NewEncoder(1)
	f.Add(enc.EncodeAll([]byte("hello, frames"), nil), int64(13))
	f.Add(enc.EncodeAll(make([]byte, 1<<20), nil), int64(5))
	dec, _ := NewDecoder(0)
	f.Fuzz(func(t *testing.T, frame []byte, size int64) {
		if size < 0 || size > 1<<20 {
			return
		}
		content, done, err := Frame(dec, bytes.NewReader(frame), int64(len(frame)), size)
		if err != nil {
			return
		}
		got, _ := io.ReadAll(content)
		if int64(len(got)) > size+1 {
			t.Fatalf("%d bytes for a %d-byte blob", len(got), size)
		}
		done()
	})
}
