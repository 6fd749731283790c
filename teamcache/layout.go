package teamcache

import (
	"strings"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/treefile"
)

// Object key prefixes inside a remote.
const (
	// BlobPrefix holds version 1's blob objects, uncompressed, named as in
	// a local store. Read and reused, never written.
	BlobPrefix = cas.HashDir + "/"
	// ZstdPrefix holds large blobs, one zstd frame each.
	ZstdPrefix = "zstd/"
	// PackPrefix holds packs, their index objects and gc's markers.
	PackPrefix = "packs/"
	// TreePrefix holds the named trees.
	TreePrefix = "trees/"
)

// Pack object suffixes.
const (
	packSuffix  = ".pack"
	indexSuffix = ".idx"
	// goneSuffix marks a pack that gc repacked or emptied: the pack
	// itself is deleted a grace period after the marker was written, so
	// a pull planned from an older index still finds it meanwhile.
	goneSuffix = ".gone"
)

// Defaults for how blobs are packed and read (see Options).
const (
	// LargeBlob: blobs bigger than this go as single zstd objects, the
	// rest into packs. On the npm fixture 29 blobs above 1 MiB hold 56% of
	// the bytes; each is worth its own request, and a bumped pull fetches
	// exactly the ones that changed.
	LargeBlob = 1 << 20
	// DefaultPackSize: packs are cut at about 16 MiB compressed, few
	// enough objects to list and index cheaply, small enough that a
	// repack copies little.
	DefaultPackSize = 16 << 20
	// DefaultMergeGap and DefaultMaxRange shape a pull's range reads:
	// see plan.go for the measurement.
	DefaultMergeGap = 256 << 10
	DefaultMaxRange = 4 << 20
)

// BlobKey is the object key of a version 1 blob object.
func BlobKey(k cas.Key) string { return k.RelPath() }

// ZstdKey is the object key of a large blob's zstd object.
func ZstdKey(k cas.Key) string {
	return ZstdPrefix + strings.TrimPrefix(k.RelPath(), BlobPrefix) + ".zst"
}

// PackKey, IndexKey and goneKey name a pack's objects.
func PackKey(id string) string  { return PackPrefix + id + packSuffix }
func IndexKey(id string) string { return PackPrefix + id + indexSuffix }
func goneKey(id string) string  { return PackPrefix + id + goneSuffix }

// TreeKey is the object key of a named tree.
func TreeKey(name string) string { return TreePrefix + name }

// parseZstdKey returns the blob a zstd object holds, if key names one.
func parseZstdKey(key string) (cas.Key, bool) {
	rel, ok := strings.CutSuffix(strings.TrimPrefix(key, ZstdPrefix), ".zst")
	if !ok || !strings.HasPrefix(key, ZstdPrefix) {
		return cas.Key{}, false
	}
	k, err := cas.ParseName(rel[strings.LastIndexByte(rel, '/')+1:])
	if err != nil || ZstdKey(k) != key {
		return cas.Key{}, false
	}
	return k, true
}

// parseBlobKey returns the blob a version 1 object holds, if key names one.
func parseBlobKey(key string) (cas.Key, bool) {
	k, err := cas.ParseName(key[strings.LastIndexByte(key, '/')+1:])
	if err != nil || BlobKey(k) != key {
		return cas.Key{}, false
	}
	return k, true
}

// parsePackKey splits packs/<id><suffix>.
func parsePackKey(key string) (id, suffix string, ok bool) {
	rest, found := strings.CutPrefix(key, PackPrefix)
	if !found {
		return "", "", false
	}
	i := strings.IndexByte(rest, '.')
	if i < 0 {
		return "", "", false
	}
	id, suffix = rest[:i], rest[i:]
	if !treefile.IsPackID(id) || (suffix != packSuffix && suffix != indexSuffix && suffix != goneSuffix) {
		return "", "", false
	}
	return id, suffix, true
}
