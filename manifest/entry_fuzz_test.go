package manifest

import (
	"bytes"
	"testing"
)

// FuzzDecodeEntry decodes arbitrary bytes as a manifest value (what a
// corrupted or hostile manifest can hold). Decoding must not panic, and the
// encoding is canonical: whatever decodes re-encodes to exactly the same
// bytes, so no two values mean the same entry and nothing is silently
// dropped. Whatever decodes as a file has a non-negative size.
func FuzzDecodeEntry(f *testing.F) {
	sum := [32]byte{1, 2, 3}
	for _, e := range []Entry{
		{Kind: Dir, Mode: 0o755, MTime: 1700000000000000000},
		{Kind: File, Mode: 0o644, MTime: 1, Size: 12, Sum: sum, Ino: 99, CTime: 5},
		{Kind: File, Mode: 0o4755, Size: 1 << 40},
		{Kind: Symlink, Mode: 0o777, Target: []byte("../a/b")},
		{Kind: Symlink, Target: []byte{0xff, 0, '\n'}},
	} {
		f.Add(e.encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	bad := (Entry{Kind: File, Size: 1}).encode()
	bad[headerLen+7] = 0x80 // negative size
	f.Add(bad)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		if e.Kind == File && e.Size < 0 {
			t.Fatalf("file entry with negative size %d", e.Size)
		}
		if got := e.encode(); !bytes.Equal(got, b) {
			t.Fatalf("decode/encode not canonical:\n in  %x\n out %x", b, got)
		}
	})
}

// FuzzEntryRoundTrip builds entries from arbitrary fields: every entry of a
// valid kind must decode back to itself.
func FuzzEntryRoundTrip(f *testing.F) {
	f.Add(uint8(2), uint32(0o644), int64(1), int64(5), []byte("0123456789abcdef0123456789abcdef"), uint64(7), int64(3), []byte(nil))
	f.Add(uint8(3), uint32(0o777), int64(-1), int64(0), []byte(nil), uint64(0), int64(0), []byte("target"))
	f.Fuzz(func(t *testing.T, kind uint8, mode uint32, mtime, size int64, sum []byte, ino uint64, ctime int64, target []byte) {
		e := Entry{Kind: Kind(kind%3 + 1), Mode: mode, MTime: mtime}
		switch e.Kind {
		case File:
			if size < 0 {
				size = -(size + 1)
			}
			e.Size, e.Ino, e.CTime = size, ino, ctime
			copy(e.Sum[:], sum)
		case Symlink:
			e.Target = append([]byte{}, target...)
		}
		got, err := decodeEntry(e.encode())
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if got.Kind != e.Kind || got.Mode != e.Mode || got.MTime != e.MTime || got.Size != e.Size ||
			got.Sum != e.Sum || got.Ino != e.Ino || got.CTime != e.CTime || !bytes.Equal(got.Target, e.Target) {
			t.Fatalf("round trip: %+v -> %+v", e, got)
		}
	})
}
