package cas

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Lock holds the store's lock file: shared by writers that deduplicate
// against existing blobs, exclusive for a sweep that deletes them. Blob
// removal is only safe while no writer can be relying on a blob it found.
// Taking it exclusively replaces the store's removal epoch (epochFile).
type Lock struct {
	f *os.File
	s *Store
}

// LockShared takes the store lock in shared mode, waiting for any sweep.
func (s *Store) LockShared(ctx context.Context) (*Lock, error) {
	return s.lock(ctx, unix.LOCK_SH, nil)
}

// LockExclusive takes the store lock in exclusive mode. If writers hold it,
// waiting is called once before blocking, so the caller can say why.
func (s *Store) LockExclusive(ctx context.Context, waiting func()) (*Lock, error) {
	return s.lock(ctx, unix.LOCK_EX, waiting)
}

func (s *Store) lock(ctx context.Context, how int, waiting func()) (*Lock, error) {
	f, err := os.OpenFile(filepath.Join(s.root, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock store: %w", err)
	}
	told := false
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			l := &Lock{f: f, s: s}
			if how == unix.LOCK_EX {
				if err := s.BumpEpoch(); err != nil {
					f.Close()
					return nil, fmt.Errorf("lock store: %w", err)
				}
			}
			return l, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			return nil, fmt.Errorf("lock store: %w", err)
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TryLockExclusive takes the store lock in exclusive mode if no one holds
// it; nil, nil if someone does.
func (s *Store) TryLockExclusive() (*Lock, error) {
	f, err := os.OpenFile(filepath.Join(s.root, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock store: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, nil
		}
		return nil, fmt.Errorf("lock store: %w", err)
	}
	if err := s.BumpEpoch(); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock store: %w", err)
	}
	return &Lock{f: f, s: s}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error { return l.f.Close() }

// Convert changes a held lock to exclusive (exclusive true) or shared,
// polling until ctx ends. flock(2) conversion is not atomic: while it waits
// the lock may be briefly released, so a holder must not assume it kept the
// old mode if Convert fails; it should Convert back or Unlock.
func (l *Lock) Convert(ctx context.Context, exclusive bool) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err := unix.Flock(int(l.f.Fd()), how|unix.LOCK_NB)
		if err == nil && exclusive && l.s != nil {
			return l.s.BumpEpoch()
		}
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return fmt.Errorf("lock store: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
