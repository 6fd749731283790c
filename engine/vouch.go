package engine

import (
	"context"
	"fmt"
	iofs "io/fs"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// vouchSwapped records the identity (inode and ctime) of each directory
// the in-place swap changed, once its listing has been checked against
// the manifest, so that the next re-ingest trusts its symlinks (walkDir)
// as it would after any steady re-ingest. Without it the swap leaves every
// such directory with a ctime newer than the walk recorded, and the first
// re-ingest after a tier1 ingest stats and reads every symlink again.
//
// A directory is vouched for only if:
//   - its ctime c, read before its listing, is read again after it,
//     unchanged (nothing was added, removed or replaced meanwhile);
//   - every symlink in the listing that the manifest records points where
//     the record says (a file's blob, or the symlink's target), and there
//     is one (a directory without symlinks records no identity, as
//     walkDir records it);
//   - the filesystem's own clock had passed c before the listing began (a
//     probe's ctime, clockProbe): any later change to the directory gets a
//     ctime other than c, whatever the filesystem's timestamp granularity
//     or its clock's skew from this machine's. The walker's racy window
//     stands in for that probe when it lists a directory itself.
//
// It is an optimisation: a directory that fails any test, or an error,
// leaves the directory unvouched, as before, and the ingest succeeds.
// It holds one small record per changed directory.
func (in *ingester) vouchSwapped(ctx context.Context, dirs map[string]int64) {
	in.vouch(ctx, dirs, vouchRounds)
}

// vouchRounds is how often vouchSwapped looks at a directory changed in
// the clock's current tick (sleeping 10, 20 and 40 ms between): a swap is
// done with its directories. A live refresh looks once: its directories
// may be changing still (a watcher's rounds run while the writer writes),
// and one left unvouched is vouched for by a later round or ingest.
const vouchRounds = 4

// vouch records the identity of the directories in dirs that pass
// vouchDir's tests, looking at those too new for it up to rounds times.
func (in *ingester) vouch(ctx context.Context, dirs map[string]int64, rounds int) {
	if len(dirs) == 0 {
		return
	}
	keys := make([]string, 0, len(dirs))
	for k := range dirs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var vouched []vouchedDir
	err := in.m.View(func(r *manifest.Reader) error {
		// A directory changed in the clock's current tick is tried again
		// once the tick has passed: a few milliseconds on filesystems
		// with fine timestamps, never on coarse ones (FAT's 2 s).
		for round := 0; round < rounds && len(keys) > 0; round++ {
			if round > 0 {
				time.Sleep(5 * time.Millisecond << round)
			}
			now, dev, err := in.clockProbe()
			if err != nil {
				return nil // no probe, no vouching
			}
			var later []string
			looked := 0 // lookups since the last drop (one a symlink)
			for _, key := range keys {
				if ctx.Err() != nil {
					return nil
				}
				if looked >= vouchLookupsPerDrop {
					r.DropResident()
					looked = 0
				}
				v, ok, tooNew := in.vouchDir(r, key, now, dev, &looked)
				switch {
				case tooNew:
					later = append(later, key)
				case ok:
					vouched = append(vouched, v)
				}
			}
			keys = later
		}
		return nil
	})
	if err != nil || len(vouched) == 0 {
		return
	}
	err = in.m.Update(func(w *manifest.Writer) error {
		for i, v := range vouched {
			if i%vouchDropEvery == vouchDropEvery-1 {
				w.DropResident() // scattered: one record a directory
			}
			e, ok, err := w.Get(v.key)
			if err != nil {
				return err
			}
			// Only the record this ingest committed is completed: a
			// directory another writer recorded since keeps its own.
			if !ok || e.Kind != manifest.Dir || e.MTime != v.mtime || e.Mode != v.mode {
				continue
			}
			e.Ino, e.CTime = v.ino, v.ctime
			if _, err := w.PutIfChanged(v.key, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		in.opts.Warn(fmt.Sprintf("the next re-ingest reads this tree's symlinks again: recording its directories: %v", err))
	}
}

// vouchLookupsPerDrop is how many symlinks' entries vouchSwapped looks up,
// and vouchDropEvery how many directories' records it then completes,
// between two drops of the manifest's resident pages (Reader.DropResident).
// A drop every 128 directories in the lookups too left a 1M-file tier1
// ingest (1,000 files a directory) at 265 MB against 250 MB.
const (
	vouchLookupsPerDrop = 4096
	vouchDropEvery      = 128
)

// vouchedDir is a directory whose listing matched the manifest.
type vouchedDir struct {
	key   string
	ino   uint64
	ctime int64
	mtime int64
	mode  uint32
}

// vouchDir checks the directory key against the manifest (vouchSwapped's
// tests); tooNew reports a ctime not yet older than the probe's now.
func (in *ingester) vouchDir(r *manifest.Reader, key string, now int64, dev uint64, looked *int) (v vouchedDir, ok, tooNew bool) {
	fd, err := in.t.OpenDir(key)
	if err != nil {
		return v, false, false
	}
	d := os.NewFile(uintptr(fd), key)
	defer d.Close()
	var before, after unix.Stat_t
	if unix.Fstat(fd, &before) != nil || uint64(before.Dev) != dev {
		return v, false, false
	}
	ctime := unix.TimespecToNsec(before.Ctim)
	if ctime >= now {
		return v, false, true
	}
	ents, err := d.ReadDir(-1)
	if err != nil {
		return v, false, false
	}
	links := 0
	for _, de := range ents {
		name := de.Name()
		if de.Type() != iofs.ModeSymlink || skipNames[name] || tree.IsTemp(name) {
			continue
		}
		links++
		*looked++
		e, found, err := r.Get(manifest.Join(key, name))
		if err != nil {
			return v, false, false
		}
		var want string
		switch {
		case !found:
			continue // the next walk reads it: no record to trust
		case e.Kind == manifest.File:
			want = in.blobPath(e.Key())
		case e.Kind == manifest.Symlink:
			want = string(e.Target)
		default:
			continue // recorded as a directory: the walk stats it
		}
		got, err := tree.Readlink(fd, name, int64(len(want)))
		if err != nil || string(got) != want {
			return v, false, false
		}
	}
	if links == 0 {
		// Nothing to vouch for: recorded without an identity, as walkDir
		// records such a directory.
		return v, false, false
	}
	if unix.Fstat(fd, &after) != nil || after.Ino != before.Ino || unix.TimespecToNsec(after.Ctim) != ctime {
		return v, false, false
	}
	return vouchedDir{key: key, ino: before.Ino, ctime: ctime,
		mtime: unix.TimespecToNsec(before.Mtim), mode: uint32(before.Mode) & 0o7777}, true, false
}
