package cas

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Key names one blob: the BLAKE3 digest of its content, its size, and whether
// it is the executable variant. The same content stored with and without the
// execute bit is two blobs, because a blob's mode is shared by every
// projection that links to it.
type Key struct {
	Sum  [HashSize]byte
	Size int64
	Exec bool
}

const (
	blobSuffix     = ".bin"
	execBlobSuffix = "_x.bin"
	// HashDir is the top-level directory under which blobs live.
	HashDir = "blake3"
)

// Hex returns the digest in lower-case hex.
func (k Key) Hex() string { return hex.EncodeToString(k.Sum[:]) }

// Name is the blob's file name: <hash>_<size>.bin, or <hash>_<size>_x.bin
// for the executable variant.
func (k Key) Name() string {
	suffix := blobSuffix
	if k.Exec {
		suffix = execBlobSuffix
	}
	return k.Hex() + "_" + strconv.FormatInt(k.Size, 10) + suffix
}

// RelPath is the blob's path relative to the store root.
func (k Key) RelPath() string {
	h := k.Hex()
	// Concatenated, not filepath.Join: every part is clean, and this runs
	// once per file on hot paths.
	return HashDir + "/" + h[0:2] + "/" + h[2:4] + "/" + k.Name()
}

// Mode is the permission every blob of this key has on disk.
func (k Key) Mode() uint32 {
	if k.Exec {
		return 0o555
	}
	return 0o444
}

func (k Key) String() string { return k.Name() }

// ParseName parses a blob file name as produced by Key.Name.
func ParseName(name string) (Key, error) {
	var k Key
	rest, ok := strings.CutSuffix(name, execBlobSuffix)
	if ok {
		k.Exec = true
	} else if rest, ok = strings.CutSuffix(name, blobSuffix); !ok {
		return Key{}, fmt.Errorf("blob name %q: no %s suffix", name, blobSuffix)
	}
	hexSum, sizeStr, ok := strings.Cut(rest, "_")
	if !ok || len(hexSum) != 2*HashSize {
		return Key{}, fmt.Errorf("blob name %q: want <hash>_<size>", name)
	}
	if _, err := hex.Decode(k.Sum[:], []byte(hexSum)); err != nil || strings.ToLower(hexSum) != hexSum {
		return Key{}, fmt.Errorf("blob name %q: bad hash", name)
	}
	size, err := strconv.ParseInt(sizeStr, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sizeStr {
		return Key{}, fmt.Errorf("blob name %q: bad size", name)
	}
	k.Size = size
	return k, nil
}

// ErrNotShared is returned by a shared store for content it keeps out on
// purpose: a file that is not world-readable, which other users of the
// store must not be able to read through it.
var ErrNotShared = errors.New("not world-readable: kept out of the shared store")
