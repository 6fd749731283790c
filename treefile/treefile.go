// Package treefile is the portable encoding of a manifest that a team cache
// stores as <prefix>/trees/<name>: a zstd-compressed stream of JSON lines,
// one header, one line per entry in manifest key order (parents before
// children), and a trailer that counts the entries, so a truncated object is
// detected. It is documented in docs/tree-format.md. Unlike the LMDB
// manifest it does not depend on the machine (no inodes, ctimes or absolute
// roots), and it is versioned: a reader refuses a version it does not know.
package treefile

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
)

// Format and Version identify the encoding in its header line. Version 2
// adds where each blob is in the remote (packs, compressed objects) and
// signatures; this reader reads versions 1 and 2 and writes 2.
const (
	Format  = "vrift-tree"
	Version = 2
)

// MinVersion is the oldest version this reader reads.
const MinVersion = 1

// ErrFormat marks an object that is not a tree this reader understands:
// wrong magic, unknown version, malformed or truncated.
var ErrFormat = errors.New("not a valid vrift tree")

// maxLine bounds one JSON line (a symlink target or path is at most a few
// KiB on every filesystem vrift supports).
const maxLine = 1 << 20

// Header is the first line of a tree.
type Header struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// Subtrees are the ingested directories, relative to the project root.
	Subtrees []string        `json:"subtrees"`
	Totals   manifest.Totals `json:"totals"`
	// Packs names the pack objects (version 2) that entries' blobs are in,
	// by pack ID; an entry refers to one by its 1-based position.
	Packs []string `json:"packs,omitempty"`
}

// Where is where a file's blob is in the remote, as the tree's writer
// found it. It is a hint: packs may be repacked after the tree was
// written, and a reader that finds the blob elsewhere (or nowhere) falls
// back to the remote's pack indexes. The zero Where is the blob's own
// uncompressed object (blake3/ab/cd/<name>, version 1's layout).
type Where struct {
	// Pack is the ID of the pack holding the blob's frame, "" if none.
	Pack string
	// Offset and Length locate the blob's zstd frame in Pack.
	Offset, Length int64
	// Zstd marks a blob stored alone as one zstd frame (a large blob).
	Zstd bool
}

// maxFrameLen bounds a frame's length for a blob of size bytes: zstd's
// worst case adds a 3-byte header per 128 KiB block plus the frame header
// and checksum, so anything longer is a lie.
func maxFrameLen(size int64) int64 { return size + size>>10 + 64 }

// IsPackID reports whether s is a pack ID: 64 lower-case hex digits (the
// BLAKE3 of the pack's bytes).
func IsPackID(s string) bool {
	if len(s) != 2*cas.HashSize {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// line is one entry as written. Paths and targets that are not valid UTF-8
// go base64-encoded in the *64 fields instead, so every byte round-trips.
type line struct {
	Path    string `json:"p,omitempty"`
	Path64  string `json:"p64,omitempty"`
	Kind    string `json:"k"`
	Mode    string `json:"m"` // octal permission and special bits
	MTime   int64  `json:"t"` // nanoseconds since the epoch
	Hash    string `json:"h,omitempty"`
	Size    int64  `json:"s,omitempty"`
	Exec    bool   `json:"x,omitempty"`
	Target  string `json:"l,omitempty"`
	Target6 string `json:"l64,omitempty"`
	// Where the blob is (version 2): pack number (1-based into the
	// header's packs), offset and length of its frame; or a zstd object.
	Pack   int   `json:"pk,omitempty"`
	Offset int64 `json:"o,omitempty"`
	Length int64 `json:"c,omitempty"`
	Zstd   bool  `json:"z,omitempty"`
	// End is set on the trailer line only: the number of entries before it.
	End *int64 `json:"end,omitempty"`
}

// Writer encodes a tree.
type Writer struct {
	zw    *zstd.Encoder
	bw    *bufio.Writer
	n     int64
	err   error
	packs map[string]int
}

// NewWriter writes h, then entries given to Add, to w. Close writes the
// trailer; a tree without it is refused by Read.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("tree: %w", err)
	}
	tw := &Writer{zw: zw, bw: bufio.NewWriterSize(zw, 64<<10), packs: map[string]int{}}
	h.Format, h.Version = Format, Version
	for i, id := range h.Packs {
		if !IsPackID(id) {
			return nil, fmt.Errorf("tree: bad pack ID %q", id)
		}
		tw.packs[id] = i + 1
	}
	if h.Subtrees == nil {
		h.Subtrees = []string{}
	}
	tw.writeJSON(h)
	return tw, tw.err
}

func (w *Writer) writeJSON(v any) {
	if w.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		w.err = fmt.Errorf("tree: %w", err)
		return
	}
	b = append(b, '\n')
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("tree: %w", err)
	}
}

// Add appends the entry at path p. Entries must come in manifest key order.
func (w *Writer) Add(p string, e manifest.Entry) error { return w.AddAt(p, e, Where{}) }

// AddAt appends the entry at path p, a file whose blob is at where (a pack
// named in the header's Packs, or a zstd object).
func (w *Writer) AddAt(p string, e manifest.Entry, where Where) error {
	l := line{Kind: e.Kind.String(), Mode: strconv.FormatUint(uint64(e.Mode), 8), MTime: e.MTime}
	if utf8.ValidString(p) {
		l.Path = p
	} else {
		l.Path64 = base64.StdEncoding.EncodeToString([]byte(p))
	}
	switch e.Kind {
	case manifest.File:
		l.Hash, l.Size, l.Exec = hex.EncodeToString(e.Sum[:]), e.Size, e.Mode&0o111 != 0
		if where.Pack != "" {
			n, ok := w.packs[where.Pack]
			if !ok || where.Zstd || where.Offset < 0 || where.Length <= 0 {
				return fmt.Errorf("tree: %q: bad location %+v", p, where)
			}
			l.Pack, l.Offset, l.Length = n, where.Offset, where.Length
		}
		l.Zstd = where.Zstd
	case manifest.Symlink:
		if utf8.Valid(e.Target) {
			l.Target = string(e.Target)
		} else {
			l.Target6 = base64.StdEncoding.EncodeToString(e.Target)
		}
	case manifest.Dir:
	default:
		return fmt.Errorf("tree: %q: unknown kind %v", p, e.Kind)
	}
	w.writeJSON(l)
	w.n++
	return w.err
}

// Close writes the trailer and flushes the compressor (not the underlying
// writer).
func (w *Writer) Close() error {
	n := w.n
	w.writeJSON(line{End: &n})
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("tree: %w", err)
		}
	}
	if err := w.zw.Close(); err != nil && w.err == nil {
		w.err = fmt.Errorf("tree: %w", err)
	}
	return w.err
}

// Read decodes a tree from r, calling fn for each entry in order, and
// returns its header; see ReadTree.
func Read(r io.Reader, fn func(p string, e manifest.Entry) error) (Header, error) {
	return ReadTree(r, func(p string, e manifest.Entry, _ Where) error { return fn(p, e) })
}

// ReadTree decodes a tree from r, calling fn for each entry in order with
// where its blob is, and returns its header. Every entry is checked: a safe relative path
// (manifest.CheckPath), strictly increasing keys, a known kind, a 64-hex
// hash, a non-negative size and an exec flag that agrees with the mode. A
// missing or wrong trailer (a truncated object) is an error.
func ReadTree(r io.Reader, fn func(p string, e manifest.Entry, w Where) error) (Header, error) {
	return ReadTreeAfter(r, nil, fn)
}

// ReadTreeAfter is ReadTree with header called once the header is read and
// checked, before the first entry (to size what the entries go into).
func ReadTreeAfter(r io.Reader, header func(Header), fn func(p string, e manifest.Entry, w Where) error) (Header, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
	if err != nil {
		return Header{}, fmt.Errorf("tree: %w", err)
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
	}
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return Header{}, bad("%v", err)
		}
		return Header{}, bad("empty")
	}
	var h Header
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Format != Format {
		return Header{}, bad("no %s header", Format)
	}
	if h.Version < MinVersion || h.Version > Version {
		return Header{}, bad("version %d (this vrift reads versions %d to %d: upgrade vrift)", h.Version, MinVersion, Version)
	}
	if h.Version < 2 && len(h.Packs) > 0 {
		return Header{}, bad("version %d names packs", h.Version)
	}
	for _, id := range h.Packs {
		if !IsPackID(id) {
			return Header{}, bad("bad pack ID %q", id)
		}
	}
	if header != nil {
		header(h)
	}
	var n int64
	prev := ""
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return h, bad("entry %d: %v", n+1, err)
		}
		if l.End != nil {
			if *l.End != n {
				return h, bad("trailer counts %d entries, read %d", *l.End, n)
			}
			if sc.Scan() {
				return h, bad("data after the trailer")
			}
			return h, nil
		}
		p, e, err := decode(l)
		var where Where
		if err == nil {
			where, err = locate(l, e, h)
		}
		if err != nil {
			return h, bad("entry %d: %v", n+1, err)
		}
		// Key order, as manifest.Reader.Walk gives it: the root "." first
		// (if recorded), then every other key bytewise increasing.
		if (p == manifest.RootPath && n > 0) || (n > 0 && prev != manifest.RootPath && p <= prev) {
			return h, bad("entry %d: %q out of order", n+1, p)
		}
		prev = p
		n++
		if err := fn(p, e, where); err != nil {
			return h, err
		}
	}
	if err := sc.Err(); err != nil {
		return h, bad("%v", err)
	}
	return h, bad("truncated: no trailer after %d entries", n)
}

func decode(l line) (string, manifest.Entry, error) {
	var e manifest.Entry
	p := l.Path
	if l.Path64 != "" {
		b, err := base64.StdEncoding.DecodeString(l.Path64)
		if err != nil {
			return "", e, fmt.Errorf("path: %v", err)
		}
		p = string(b)
	}
	if err := manifest.CheckPath(p); err != nil {
		return "", e, err
	}
	mode, err := strconv.ParseUint(l.Mode, 8, 32)
	if err != nil || mode&^0o7777 != 0 {
		return "", e, fmt.Errorf("%q: bad mode %q", p, l.Mode)
	}
	e.Mode, e.MTime = uint32(mode), l.MTime
	switch l.Kind {
	case "dir":
		e.Kind = manifest.Dir
	case "symlink":
		e.Kind = manifest.Symlink
		e.Target = []byte(l.Target)
		if l.Target6 != "" {
			if e.Target, err = base64.StdEncoding.DecodeString(l.Target6); err != nil {
				return "", e, fmt.Errorf("%q: target: %v", p, err)
			}
		}
		if len(e.Target) == 0 {
			return "", e, fmt.Errorf("%q: empty symlink target", p)
		}
	case "file":
		e.Kind = manifest.File
		if len(l.Hash) != 2*cas.HashSize {
			return "", e, fmt.Errorf("%q: bad hash", p)
		}
		if _, err := hex.Decode(e.Sum[:], []byte(l.Hash)); err != nil {
			return "", e, fmt.Errorf("%q: bad hash", p)
		}
		if l.Size < 0 {
			return "", e, fmt.Errorf("%q: negative size", p)
		}
		e.Size = l.Size
		if l.Exec != (e.Mode&0o111 != 0) {
			return "", e, fmt.Errorf("%q: exec flag disagrees with mode %o", p, e.Mode)
		}
	default:
		return "", e, fmt.Errorf("%q: unknown kind %q", p, l.Kind)
	}
	return p, e, nil
}

// locate checks and resolves an entry's location fields.
func locate(l line, e manifest.Entry, h Header) (Where, error) {
	if l.Pack == 0 && l.Offset == 0 && l.Length == 0 && !l.Zstd {
		return Where{}, nil
	}
	if h.Version < 2 || e.Kind != manifest.File {
		return Where{}, fmt.Errorf("%q: location fields on a version %d %s entry", l.Path, h.Version, l.Kind)
	}
	if l.Zstd {
		if l.Pack != 0 || l.Offset != 0 || l.Length != 0 {
			return Where{}, fmt.Errorf("%q: both a pack and a zstd object", l.Path)
		}
		return Where{Zstd: true}, nil
	}
	if l.Pack < 1 || l.Pack > len(h.Packs) {
		return Where{}, fmt.Errorf("%q: pack %d of %d", l.Path, l.Pack, len(h.Packs))
	}
	if l.Offset < 0 || l.Length <= 0 || l.Length > maxFrameLen(e.Size) {
		return Where{}, fmt.Errorf("%q: bad frame offset %d, length %d for %d bytes", l.Path, l.Offset, l.Length, e.Size)
	}
	return Where{Pack: h.Packs[l.Pack-1], Offset: l.Offset, Length: l.Length}, nil
}
