package teamcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/treefile"
)

// maxTree bounds a tree object's compressed size (a million-file tree is a
// few tens of MiB).
const maxTree = 1 << 30

// Tree is a decoded tree object: its entries in manifest key order and,
// per entry, where the remote keeps its blob (the zero Where for every
// entry of a tree that was not pushed yet, or of a version 1 tree).
type Tree struct {
	Header  treefile.Header
	Paths   []string
	Entries []manifest.Entry
	Where   []treefile.Where
}

// Keys returns the distinct blobs the tree's files need, in tree order.
func (t *Tree) Keys() []cas.Key {
	seen := map[cas.Key]struct{}{}
	var out []cas.Key
	for _, e := range t.Entries {
		if e.Kind != manifest.File {
			continue
		}
		if _, ok := seen[e.Key()]; !ok {
			seen[e.Key()] = struct{}{}
			out = append(out, e.Key())
		}
	}
	return out
}

// Files counts the tree's regular files.
func (t *Tree) Files() int64 {
	var n int64
	for _, e := range t.Entries {
		if e.Kind == manifest.File {
			n++
		}
	}
	return n
}

// SameContent reports whether u records the same paths, entries and
// subtrees as t, wherever their blobs are.
func (t *Tree) SameContent(u *Tree) bool {
	if len(t.Paths) != len(u.Paths) || len(t.Header.Subtrees) != len(u.Header.Subtrees) {
		return false
	}
	for i, s := range t.Header.Subtrees {
		if u.Header.Subtrees[i] != s {
			return false
		}
	}
	for i, p := range t.Paths {
		a, b := t.Entries[i], u.Entries[i]
		if u.Paths[i] != p || a.Kind != b.Kind || a.Mode != b.Mode || a.MTime != b.MTime ||
			a.Size != b.Size || a.Sum != b.Sum || !bytes.Equal(a.Target, b.Target) {
			return false
		}
	}
	return true
}

// Encode returns the tree object, with each file's location from Where;
// the header names the packs they use.
func (t *Tree) Encode() ([]byte, error) {
	h := t.Header
	h.Packs = nil
	seen := map[string]bool{}
	for _, w := range t.Where {
		if w.Pack != "" && !seen[w.Pack] {
			seen[w.Pack] = true
			h.Packs = append(h.Packs, w.Pack)
		}
	}
	sort.Strings(h.Packs)
	var buf bytes.Buffer
	w, err := treefile.NewWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	for i, p := range t.Paths {
		var where treefile.Where
		if t.Where != nil {
			where = t.Where[i]
		}
		if err := w.AddAt(p, t.Entries[i], where); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadManifest reads the manifest at mpath as a tree without locations.
// Its date is the manifest's last update, so an unchanged manifest reads
// as the same tree.
func ReadManifest(mpath string) (*Tree, error) {
	m, err := manifest.Open(mpath)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	t := &Tree{}
	err = m.View(func(r *manifest.Reader) error {
		meta, err := r.Meta()
		if err != nil {
			return err
		}
		t.Header = treefile.Header{Created: meta.UpdatedAt.UTC(), Subtrees: meta.Subtrees, Totals: meta.Totals}
		return r.Walk(manifest.RootPath, func(p string, e manifest.Entry) error {
			t.Paths = append(t.Paths, p)
			t.Entries = append(t.Entries, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", mpath, err)
	}
	t.Where = make([]treefile.Where, len(t.Paths))
	return t, nil
}

// EncodeManifest encodes the manifest at mpath as a tree without
// locations (what a client hands a daemon to push) and returns it with the
// distinct blobs its files need, sorted by name, and its file count.
func EncodeManifest(mpath string) ([]byte, []cas.Key, int64, error) {
	t, err := ReadManifest(mpath)
	if err != nil {
		return nil, nil, 0, err
	}
	raw, err := t.Encode()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("encode %s: %w", mpath, err)
	}
	keys := t.Keys()
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name() < keys[j].Name() })
	return raw, keys, t.Files(), nil
}

// FetchTree downloads and decodes trees/<name>, and returns the raw object
// too.
func FetchTree(ctx context.Context, b remote.Backend, name string) (*Tree, []byte, error) {
	if err := CheckName(name); err != nil {
		return nil, nil, err
	}
	rc, err := b.Get(ctx, TreeKey(name))
	if err != nil {
		if errors.Is(err, remote.ErrNotFound) {
			return nil, nil, fmt.Errorf("no tree named %q in %s: %w", name, b, err)
		}
		return nil, nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxTree+1))
	if err != nil {
		return nil, nil, err
	}
	if len(raw) > maxTree {
		return nil, nil, fmt.Errorf("tree %s: larger than %d bytes", name, maxTree)
	}
	t, err := DecodeTree(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("tree %s in %s: %w", name, b, err)
	}
	return t, raw, nil
}

// DecodeTree decodes (and validates) a tree object.
// maxPresize caps the entries DecodeTree makes room for before reading
// them.
const maxPresize = 1 << 20

func DecodeTree(raw []byte) (*Tree, error) {
	t := &Tree{}
	blk, body, err := treefile.Split(raw)
	if err != nil {
		return nil, err
	}
	// Sized from the header's totals (a hint: the entries are counted
	// against the trailer as they are read), capped so that a lying header
	// cannot allocate much: growing the three slices from nothing was a
	// quarter of decoding the npm fixture's tree (246 ms).
	presize := func(h treefile.Header) {
		// Nor more than one entry per byte of the compressed body: a small
		// object that claims a million entries gets room for what it is.
		n := min(max(h.Totals.Files+h.Totals.Dirs+h.Totals.Symlinks, 0), maxPresize, int64(len(body)))
		t.Paths = make([]string, 0, n)
		t.Entries = make([]manifest.Entry, 0, n)
		t.Where = make([]treefile.Where, 0, n)
	}
	t.Header, err = treefile.ReadTreeAfter(bytes.NewReader(body), presize, func(p string, e manifest.Entry, w treefile.Where) error {
		t.Paths = append(t.Paths, p)
		t.Entries = append(t.Entries, e)
		t.Where = append(t.Where, w)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if blk != nil && t.Header.Version < 2 {
		return nil, fmt.Errorf("%w: a signed tree of version %d (signatures need version 2)", treefile.ErrFormat, t.Header.Version)
	}
	return t, nil
}
