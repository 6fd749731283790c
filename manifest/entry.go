package manifest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/vrift/vrift/cas"
)

// Kind is what a manifest entry describes.
type Kind uint8

const (
	Dir     Kind = 1
	File    Kind = 2
	Symlink Kind = 3
)

func (k Kind) String() string {
	switch k {
	case Dir:
		return "dir"
	case File:
		return "file"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is one recorded path.
type Entry struct {
	Kind Kind
	// Mode holds the permission bits (fs.FileMode.Perm plus setuid, setgid
	// and sticky), not the type bits.
	Mode  uint32
	MTime int64 // nanoseconds since the epoch

	// Regular files only.
	Size int64
	Sum  [cas.HashSize]byte
	// Ino and CTime are a file's identity when it was hashed, so that an
	// unchanged file is recognised on re-ingest without reading it. For a
	// directory (optional, zero when unknown) they are its identity when it
	// was listed: while they still match, no entry of it has been added,
	// removed or replaced since.
	Ino   uint64
	CTime int64

	// Symlinks only: the link target, byte for byte.
	Target []byte
}

// Key is the blob a regular file's content lives in. Any execute bit selects
// the executable variant.
func (e Entry) Key() cas.Key {
	return cas.Key{Sum: e.Sum, Size: e.Size, Exec: e.Mode&0o111 != 0}
}

// FileMode is Mode as an fs.FileMode (permission and special bits only).
func (e Entry) FileMode() fs.FileMode {
	m := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// ModeBits converts an fs.FileMode's permission and special bits to the
// Unix bits Entry.Mode holds.
func ModeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

const entryVersion = 1

// Encoding: version(1) kind(1) mode(4) mtime(8), then for files
// size(8) sum(32) ino(8) ctime(8), for directories nothing or ino(8)
// ctime(8), for symlinks the target bytes.
const (
	headerLen = 1 + 1 + 4 + 8
	fileLen   = headerLen + 8 + cas.HashSize + 8 + 8
	dirIDLen  = 8 + 8
)

func (e Entry) encode() []byte {
	n := headerLen
	switch e.Kind {
	case File:
		n = fileLen
	case Dir:
		n += dirIDLen
	case Symlink:
		n += len(e.Target)
	}
	b := make([]byte, headerLen, n)
	b[0] = entryVersion
	b[1] = byte(e.Kind)
	binary.LittleEndian.PutUint32(b[2:], e.Mode)
	binary.LittleEndian.PutUint64(b[6:], uint64(e.MTime))
	switch e.Kind {
	case File:
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Size))
		b = append(b, e.Sum[:]...)
		b = binary.LittleEndian.AppendUint64(b, e.Ino)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.CTime))
	case Dir:
		if e.Ino != 0 || e.CTime != 0 {
			b = binary.LittleEndian.AppendUint64(b, e.Ino)
			b = binary.LittleEndian.AppendUint64(b, uint64(e.CTime))
		}
	case Symlink:
		b = append(b, e.Target...)
	}
	return b
}

var errBadEntry = errors.New("malformed manifest entry")

func decodeEntry(b []byte) (Entry, error) {
	if len(b) < headerLen || b[0] != entryVersion {
		return Entry{}, errBadEntry
	}
	e := Entry{
		Kind:  Kind(b[1]),
		Mode:  binary.LittleEndian.Uint32(b[2:]),
		MTime: int64(binary.LittleEndian.Uint64(b[6:])),
	}
	rest := b[headerLen:]
	switch e.Kind {
	case Dir:
		switch len(rest) {
		case 0:
		case dirIDLen:
			e.Ino = binary.LittleEndian.Uint64(rest)
			e.CTime = int64(binary.LittleEndian.Uint64(rest[8:]))
		default:
			return Entry{}, errBadEntry
		}
	case File:
		if len(b) != fileLen {
			return Entry{}, errBadEntry
		}
		e.Size = int64(binary.LittleEndian.Uint64(rest))
		copy(e.Sum[:], rest[8:])
		e.Ino = binary.LittleEndian.Uint64(rest[8+cas.HashSize:])
		e.CTime = int64(binary.LittleEndian.Uint64(rest[16+cas.HashSize:]))
		if e.Size < 0 {
			return Entry{}, errBadEntry
		}
	case Symlink:
		// Copy: the caller's bytes may be LMDB's memory map.
		e.Target = append([]byte(nil), rest...)
	default:
		return Entry{}, errBadEntry
	}
	return e, nil
}

// RootPath is the key of the project root directory itself.
const RootPath = "."

// ErrUnsafePath marks a manifest key that could escape the tree it is
// projected into.
var ErrUnsafePath = errors.New("unsafe path")

// CheckPath reports whether p is a well-formed key: "." or a relative path of
// non-empty components separated by single slashes, none of them "." or
// "..", with no NUL byte. Names are otherwise arbitrary bytes.
func CheckPath(p string) error {
	if p == RootPath {
		return nil
	}
	if p == "" || strings.HasPrefix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%q: %w", p, ErrUnsafePath)
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("%q: %w", p, ErrUnsafePath)
		}
	}
	return nil
}

// Join joins a key and a child name.
func Join(dir, name string) string {
	if dir == RootPath || dir == "" {
		return name
	}
	return dir + "/" + name
}

// Within reports whether p is subtree itself or lies below it.
func Within(p, subtree string) bool {
	if subtree == RootPath || subtree == "" {
		return true
	}
	return p == subtree || strings.HasPrefix(p, subtree+"/")
}

// CleanKey turns a user's path relative to the project root ("node_modules",
// "./a/b/", "") into a key: RootPath for the root itself. It does not check
// the key; CheckPath does.
func CleanKey(s string) string {
	if s == "" {
		return RootPath
	}
	s = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(s)), "./")
	if s == "" {
		return RootPath
	}
	return s
}
