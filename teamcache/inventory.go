package teamcache

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/pack"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/treefile"
)

// Inventory is what a remote holds, as one LIST and its pack indexes say:
// where each blob can be read, and every object (for gc).
type Inventory struct {
	// Packs are the committed packs (index and pack both present, the
	// index valid and of the pack's size), by ID.
	Packs map[string]*pack.Index
	// Objects are every object listed, by key.
	Objects map[string]remote.ObjectInfo
	// BadIndexes are index objects that are not valid or disagree with
	// their pack: their packs are treated as orphans.
	BadIndexes []string
	where      map[cas.Key]treefile.Where
}

// Where returns where blob k can be read: a committed pack first, then a
// zstd object, then a version 1 object of the right size.
func (inv *Inventory) Where(k cas.Key) (treefile.Where, bool) {
	w, ok := inv.where[k]
	return w, ok
}

// LoadInventory lists the remote once and reads every pack index it has
// not cached.
func LoadInventory(ctx context.Context, b remote.Backend, opts Options) (*Inventory, error) {
	inv := &Inventory{Packs: map[string]*pack.Index{}, Objects: map[string]remote.ObjectInfo{}, where: map[cas.Key]treefile.Where{}}
	var indexes []string
	if err := b.List(ctx, "", func(o remote.ObjectInfo) error {
		inv.Objects[o.Key] = o
		if id, suffix, ok := parsePackKey(o.Key); ok && suffix == indexSuffix {
			indexes = append(indexes, id)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %s: %w", b, err)
	}
	sort.Strings(indexes)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.jobs())
	for _, id := range indexes {
		p, ok := inv.Objects[PackKey(id)]
		if !ok {
			continue // an index whose pack is gone: nothing to read
		}
		g.Go(func() error {
			ix, err := readIndex(gctx, b, id, opts)
			if err == nil && ix.PackSize != p.Size {
				err = fmt.Errorf("%w: index says %d bytes, pack object has %d", pack.ErrFormat, ix.PackSize, p.Size)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, pack.ErrFormat):
				inv.BadIndexes = append(inv.BadIndexes, fmt.Sprintf("%s: %v", IndexKey(id), err))
			case err != nil:
				return err
			default:
				inv.Packs[id] = ix
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Strings(inv.BadIndexes)
	ids := make([]string, 0, len(inv.Packs))
	for id := range inv.Packs {
		ids = append(ids, id)
	}
	sort.Strings(ids) // deterministic choice when packs share a blob
	for _, id := range ids {
		for _, e := range inv.Packs[id].Entries {
			if _, ok := inv.where[e.Key]; !ok {
				inv.where[e.Key] = treefile.Where{Pack: id, Offset: e.Offset, Length: e.Length}
			}
		}
	}
	for key := range inv.Objects {
		if k, ok := parseZstdKey(key); ok {
			if _, have := inv.where[k]; !have {
				inv.where[k] = treefile.Where{Zstd: true}
			}
		}
	}
	for key, o := range inv.Objects {
		if k, ok := parseBlobKey(key); ok && o.Size == k.Size {
			if _, have := inv.where[k]; !have {
				inv.where[k] = treefile.Where{}
			}
		}
	}
	return inv, nil
}

// readIndex returns pack id's index, from the cache or the remote (then
// cached). Cached copies are checked like downloaded ones.
func readIndex(ctx context.Context, b remote.Backend, id string, opts Options) (*pack.Index, error) {
	var cached string
	if opts.CacheDir != "" {
		h := cas.NewHasher()
		h.Write([]byte(b.String()))
		// One directory per remote: an index is only as good as the
		// bucket it came from.
		cached = filepath.Join(opts.CacheDir, hex.EncodeToString(h.Sum(nil)[:8]), id+indexSuffix)
		if raw, err := os.ReadFile(cached); err == nil {
			if ix, err := pack.DecodeIndex(raw); err == nil {
				return ix, nil
			}
		}
	}
	rc, err := b.Get(ctx, IndexKey(id))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, int64(pack.MaxIndexBytes)+1))
	if err != nil {
		return nil, err
	}
	ix, err := pack.DecodeIndex(raw)
	if err != nil {
		return nil, err
	}
	if cached != "" {
		// Best effort: a cache that cannot be written costs a GET next time.
		_ = writeAtomic(cached, raw)
	}
	return ix, nil
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
