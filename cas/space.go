package cas

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/units"
)

// ErrStoreFull is matched (errors.Is) by every error that comes from the
// store's filesystem having no room left: ENOSPC or EDQUOT on a write, or a
// preflight that found too little free space.
var ErrStoreFull = errors.New("store filesystem is full")

// FullError says how full the store's filesystem is.
type FullError struct {
	Root string
	// Free is what the store's user may still write; Total the
	// filesystem's size. Both 0 if statfs failed.
	Free, Total uint64
	// Need is what a preflight estimated the operation needs, margin
	// included; 0 for an actual ENOSPC.
	Need uint64
	Err  error
}

func (e *FullError) Error() string {
	figures := ""
	if e.Total > 0 {
		figures = fmt.Sprintf(" (%s free of %s)", units.FormatSize(int64(e.Free)), units.FormatSize(int64(e.Total)))
	}
	if e.Need > 0 {
		return fmt.Sprintf("store filesystem %s is too full: this needs about %s, it has %s free of %s",
			e.Root, units.FormatSize(int64(e.Need)), units.FormatSize(int64(e.Free)), units.FormatSize(int64(e.Total)))
	}
	return fmt.Sprintf("store filesystem %s is full%s: %v", e.Root, figures, e.Err)
}

func (e *FullError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrStoreFull}
	}
	return []error{ErrStoreFull, e.Err}
}

// Space returns the bytes the store's user may still write on the store's
// filesystem and the filesystem's size.
func (s *Store) Space() (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", s.root, err)
	}
	bs := uint64(st.Bsize)
	return uint64(st.Bavail) * bs, uint64(st.Blocks) * bs, nil
}

// full turns an ENOSPC or EDQUOT from the store's filesystem into a
// FullError with the filesystem's figures; other errors pass unchanged.
func (s *Store) full(err error) error {
	if err == nil || !(errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		return err
	}
	var fe *FullError
	if errors.As(err, &fe) {
		return err
	}
	fe = &FullError{Root: s.root, Err: err}
	fe.Free, fe.Total, _ = s.Space()
	return fe
}

// SpaceMargin is the room a preflight keeps free beyond the estimate: 2% of
// the filesystem, at least 1 MiB and at most 512 MiB (directories, inodes,
// the manifest and other writers need some too).
func SpaceMargin(total uint64) uint64 {
	return min(max(total/50, 1<<20), 512<<20)
}

// CheckSpace is a preflight: it refuses, with an error matching
// ErrStoreFull, when the store's filesystem cannot hold need more bytes
// plus SpaceMargin. need is an upper bound (content already stored costs
// nothing), so a refusal may be pessimistic but an acceptance does not
// promise success: other writers share the filesystem.
func (s *Store) CheckSpace(need int64) error {
	free, total, err := s.Space()
	if err != nil {
		return nil // no figures: let the writes themselves tell
	}
	want := uint64(max(need, 0)) + SpaceMargin(total)
	if free < want {
		return &FullError{Root: s.root, Free: free, Total: total, Need: want}
	}
	return nil
}

// Preflight refuses, before anything is written, an ingest of dir that the
// store's filesystem plainly cannot hold: when the filesystem has less than
// a quarter or less than 1 GiB free, it sums the allocated bytes of dir's
// regular files (symlinks, such as projections, cost nothing) and calls
// CheckSpace with the sum. With more room than that it returns at once, so
// a roomy store pays no walk. The sum is an upper bound (content already
// stored costs nothing), so a tight store may refuse a re-ingest that would
// have fit.
func (s *Store) Preflight(ctx context.Context, dir string) error {
	free, total, err := s.Space()
	if err != nil || (free >= total/4 && free >= 1<<30) {
		return nil
	}
	var need int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts are the ingest's to report
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		need += diskBytes(info)
		return nil
	})
	if err != nil {
		return err
	}
	return s.CheckSpace(need)
}
