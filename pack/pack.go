// Package pack is the team cache's pack format: many small blobs in one
// immutable object, each its own zstd frame, so that a range read of any
// run of neighbouring frames decodes on its own and every blob stays
// individually addressable and verifiable by its BLAKE3 name (restic's
// packs and zstd:chunked's table of contents work the same way).
//
// A pack is
//
//	frame 1 | frame 2 | ... | frame n | index | index length (8 bytes LE) | "vriftpk1"
//
// and its ID is the BLAKE3 of all of it. The index lists, per frame in
// offset order, the blob's key (hash, size, exec bit), the frame's offset
// and length; the same index bytes are also stored as a separate object,
// which is what a reader plans from (and what commits a pack: a pack
// without its index object is an orphan). The embedded copy lets a pack be
// re-indexed from itself. docs/tree-format.md documents the layout.
//
// Nothing here trusts its input: an index is bounded, checksummed and
// checked for frames that overlap, leave the pack or are longer than their
// blob can compress to, and a frame decodes to at most its blob's size
// plus one byte, so a decompression bomb is cut off and fails its hash.
package pack

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/vrift/vrift/cas"
)

// ErrFormat marks a pack or index that is malformed, truncated or lies.
var ErrFormat = errors.New("not a valid vrift pack")

const (
	indexMagic = "vrift-pack-index"
	version    = 1
	// headerLen: magic, version byte, entry count (4), pack size (8).
	headerLen = len(indexMagic) + 1 + 4 + 8
	// entryLen: hash, size (8), flags (1), offset (8), length (4).
	entryLen = cas.HashSize + 8 + 1 + 8 + 4
	// trailerMagic ends every pack.
	trailerMagic = "vriftpk1"
	trailerLen   = 8 + len(trailerMagic)
)

// MaxEntries bounds the frames of one pack (a writer cuts a pack long
// before: a 16 MiB pack of the smallest frames, 9 bytes each, would hold
// 1.9M). With it an index is at most about 55 MiB.
const MaxEntries = 1 << 20

// MaxIndexBytes bounds an index object; anything bigger is refused unread.
const MaxIndexBytes = headerLen + MaxEntries*entryLen + cas.HashSize

// MaxFrameLen is the longest frame a blob of size bytes can need: zstd's
// worst case stores each 128 KiB block raw with a 3-byte header, plus the
// frame header and checksum. A location claiming more lies.
func MaxFrameLen(size int64) int64 { return size + size>>10 + 64 }

// Entry is one frame of a pack.
type Entry struct {
	Key    cas.Key
	Offset int64
	Length int64
}

// End is the offset just past the frame.
func (e Entry) End() int64 { return e.Offset + e.Length }

// Index describes a pack: its size and its frames in offset order.
type Index struct {
	PackSize int64
	Entries  []Entry
}

// ID names a pack by the BLAKE3 of its bytes, in lower-case hex.
func ID(data []byte) string {
	h := cas.NewHasher()
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// Encode returns the index's bytes, checksummed.
func (ix *Index) Encode() []byte {
	b := make([]byte, 0, headerLen+len(ix.Entries)*entryLen+cas.HashSize)
	b = append(b, indexMagic...)
	b = append(b, version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ix.Entries)))
	b = binary.LittleEndian.AppendUint64(b, uint64(ix.PackSize))
	for _, e := range ix.Entries {
		b = append(b, e.Key.Sum[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Key.Size))
		var flags byte
		if e.Key.Exec {
			flags = 1
		}
		b = append(b, flags)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Offset))
		b = binary.LittleEndian.AppendUint32(b, uint32(e.Length))
	}
	h := cas.NewHasher()
	h.Write(b)
	return h.Sum(b)
}

// DecodeIndex parses and checks an index: its size bound, magic, version,
// checksum, and that its frames are in order, do not overlap, lie inside
// the pack (before its embedded index) and are no longer than their blobs
// can compress to.
func DecodeIndex(raw []byte) (*Index, error) {
	bad := func(format string, args ...any) (*Index, error) {
		return nil, fmt.Errorf("%w: index: %s", ErrFormat, fmt.Sprintf(format, args...))
	}
	if len(raw) > MaxIndexBytes {
		return bad("%d bytes, more than any pack needs (%d)", len(raw), MaxIndexBytes)
	}
	if len(raw) < headerLen+cas.HashSize || string(raw[:len(indexMagic)]) != indexMagic {
		return bad("no %s header", indexMagic)
	}
	if v := raw[len(indexMagic)]; v != version {
		return bad("version %d (this vrift reads version %d)", v, version)
	}
	body, sum := raw[:len(raw)-cas.HashSize], raw[len(raw)-cas.HashSize:]
	h := cas.NewHasher()
	h.Write(body)
	if !bytes.Equal(h.Sum(nil), sum) {
		return bad("checksum mismatch (truncated or altered)")
	}
	p := len(indexMagic) + 1
	n := int(binary.LittleEndian.Uint32(raw[p:]))
	size := int64(binary.LittleEndian.Uint64(raw[p+4:]))
	if n > MaxEntries || len(body) != headerLen+n*entryLen {
		return bad("%d entries in %d bytes", n, len(raw))
	}
	if size < int64(trailerLen) || size > 1<<40 {
		return bad("pack size %d", size)
	}
	ix := &Index{PackSize: size, Entries: make([]Entry, n)}
	var prev int64
	for i := range ix.Entries {
		b := body[headerLen+i*entryLen:]
		e := &ix.Entries[i]
		copy(e.Key.Sum[:], b[:cas.HashSize])
		b = b[cas.HashSize:]
		e.Key.Size = int64(binary.LittleEndian.Uint64(b))
		if b[8] > 1 {
			return bad("entry %d: unknown flags %#x", i, b[8])
		}
		e.Key.Exec = b[8] == 1
		e.Offset = int64(binary.LittleEndian.Uint64(b[9:]))
		e.Length = int64(binary.LittleEndian.Uint32(b[17:]))
		if e.Key.Size < 0 || e.Offset < prev || e.Length <= 0 || e.Length > MaxFrameLen(e.Key.Size) || e.End() > size-int64(trailerLen) {
			return bad("entry %d (%s): frame at %d, %d bytes, in a pack of %d", i, e.Key, e.Offset, e.Length, size)
		}
		prev = e.End()
	}
	return ix, nil
}

// Builder assembles a pack from compressed frames.
type Builder struct {
	buf     bytes.Buffer
	entries []Entry
}

// Add appends blob k's frame.
func (b *Builder) Add(k cas.Key, frame []byte) {
	b.entries = append(b.entries, Entry{Key: k, Offset: int64(b.buf.Len()), Length: int64(len(frame))})
	b.buf.Write(frame)
}

// Size is the bytes of frames added so far.
func (b *Builder) Size() int64 { return int64(b.buf.Len()) }

// Len is the number of frames added so far.
func (b *Builder) Len() int { return len(b.entries) }

// Finish returns the pack's ID, its bytes, its index and the index's
// bytes (the index object), and resets the builder.
func (b *Builder) Finish() (id string, data []byte, ix *Index, index []byte) {
	framesLen := b.buf.Len()
	ix = &Index{Entries: b.entries}
	// The index records the pack's final size, which includes the index:
	// entries are fixed-size, so it is known before encoding.
	ix.PackSize = int64(framesLen + headerLen + len(b.entries)*entryLen + cas.HashSize + trailerLen)
	index = ix.Encode()
	data = make([]byte, 0, ix.PackSize)
	data = append(data, b.buf.Bytes()...)
	data = append(data, index...)
	data = binary.LittleEndian.AppendUint64(data, uint64(len(index)))
	data = append(data, trailerMagic...)
	b.buf.Reset()
	b.entries = nil
	return ID(data), data, ix, index
}

// IndexOf re-indexes a whole pack from the copy of its index it carries,
// returning that index's bytes too.
func IndexOf(data []byte) (*Index, []byte, error) {
	if len(data) < trailerLen || string(data[len(data)-len(trailerMagic):]) != trailerMagic {
		return nil, nil, fmt.Errorf("%w: no pack trailer", ErrFormat)
	}
	n := binary.LittleEndian.Uint64(data[len(data)-trailerLen:])
	if n > uint64(len(data)-trailerLen) {
		return nil, nil, fmt.Errorf("%w: index of %d bytes in a pack of %d", ErrFormat, n, len(data))
	}
	raw := data[len(data)-trailerLen-int(n) : len(data)-trailerLen]
	ix, err := DecodeIndex(raw)
	if err != nil {
		return nil, nil, err
	}
	if ix.PackSize != int64(len(data)) {
		return nil, nil, fmt.Errorf("%w: index says %d bytes, pack has %d", ErrFormat, ix.PackSize, len(data))
	}
	return ix, raw, nil
}
