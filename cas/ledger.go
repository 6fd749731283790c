package cas

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/internal/atomicfile"
)

// The store's totals on disk, so that `vrift status` answers without
// walking the store (a walk cost 7.2-7.5 s at 1M blobs on this 2-core
// machine, issue 22; reading the ledger is one small file and one readdir:
// 0.23 ms with two live writers, BenchmarkStoredTotals, and `vrift status`
// on a 1M-blob store took 75 ms wall, its process start-up included, with
// `vrift --help` at 125 ms in the same run, load average 6-8).
//
//	<store>/totals       "vrift-totals 1 <gen> <blobs> <bytes> <disk bytes>"
//	<store>/totals.lock  flock: shared while a writer registers or a reader
//	                     reads, exclusive while the totals are rewritten
//	<store>/writers/     one file per process that has changed the store
//	                     and not yet saved and closed its changes, flock'ed
//	                     exclusively by that process for its whole life
//
// Every process that names or removes a blob (a Store opened with
// KeepTotals: both modes) first registers a writer file, then keeps its
// changes in memory (Totals) and adds them to the totals file at most once
// a second while it works (saveEvery) and when it closes the store; then
// it removes its writer file. A writer file whose lock is free belongs to
// a process that died before saving all it did (kill -9, a crash, a power
// cut): the totals cannot be trusted until a walk recounts them, which
// `vrift status` does then (and on --recount), and the daemon at start.
// A missing or unreadable totals file is untrusted too (a store made
// before the ledger), except in a store with no blobs at all.
//
// gen counts rewrites: a recount saves its walk only if no other writer
// saved or was registered while it walked, so it can neither lose nor
// double a writer's changes.
const (
	totalsFile     = "totals"
	totalsLockFile = "totals.lock"
	writersDir     = "writers"
	totalsMagic    = "vrift-totals"
	saveEvery      = time.Second
)

// ledger is a Store's side of the on-disk totals.
type ledger struct {
	s *Store
	// registered is set once this process's writer file exists (or
	// failed: lost).
	registered atomic.Bool
	mu         sync.Mutex
	marker     *os.File // this process's writer file, flock'ed
	markerName string
	// saved is the named counts last added to the totals file (or
	// loaded from it): what a save adds is named - saved.
	saved    Counts
	lastSave time.Time
	// lost is set when the writer file could not be made: the totals
	// file is then removed (untrusted) rather than left wrong.
	lost bool
}

// ledgerState is the totals file as read.
type ledgerState struct {
	gen    int64
	counts Counts
	ok     bool // the file exists and parses
}

func (l *ledger) path(name string) string { return filepath.Join(l.s.root, name) }

// flock opens the totals lock file and locks it (how: unix.LOCK_SH or
// LOCK_EX, maybe with LOCK_NB). The caller closes it to unlock.
func (l *ledger) flock(how int) (*os.File, error) {
	f, err := os.OpenFile(l.path(totalsLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store totals: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store totals: lock: %w", err)
	}
	return f, nil
}

func (l *ledger) read() ledgerState {
	b, err := os.ReadFile(l.path(totalsFile))
	if err != nil {
		return ledgerState{}
	}
	f := strings.Fields(string(b))
	if len(f) != 6 || f[0] != totalsMagic || f[1] != "1" {
		return ledgerState{}
	}
	var v [4]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+2], 10, 64); err != nil {
			return ledgerState{}
		}
	}
	return ledgerState{gen: v[0], counts: Counts{Blobs: v[1], Bytes: v[2], DiskBytes: v[3]}, ok: true}
}

func (l *ledger) write(st ledgerState) error {
	line := fmt.Sprintf("%s 1 %d %d %d %d\n", totalsMagic, st.gen, st.counts.Blobs, st.counts.Bytes, st.counts.DiskBytes)
	if err := atomicfile.Write(l.path(totalsFile), []byte(line), 0o644); err != nil {
		return fmt.Errorf("store totals: %w", err)
	}
	return nil
}

// writers lists the writer files other than this process's: live ones
// (their lock is held) and stale ones (their process died unsaved).
func (l *ledger) writers() (live, stale []string, err error) {
	entries, err := os.ReadDir(l.path(writersDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store totals: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || name == l.markerName {
			continue // being registered (see register), or ours
		}
		p := filepath.Join(l.path(writersDir), name)
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // saved and gone since the listing
		}
		if err != nil {
			return nil, nil, fmt.Errorf("store totals: %w", err)
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) == nil {
			stale = append(stale, p)
		} else {
			live = append(live, p)
		}
		f.Close()
	}
	return live, stale, nil
}

// load reads the totals at open: trusted when the file is there and no
// writer died unsaved. A store with no blob directory yet (a new store)
// starts at zero.
func (l *ledger) load() (Counts, bool) {
	lk, err := l.flock(unix.LOCK_EX)
	if err != nil {
		return Counts{}, false
	}
	defer lk.Close()
	st := l.read()
	if !st.ok && l.empty() {
		st = ledgerState{ok: true}
		if l.write(st) != nil {
			return Counts{}, false
		}
	}
	_, stale, err := l.writers()
	l.saved = st.counts
	return st.counts, st.ok && err == nil && len(stale) == 0
}

// empty reports whether the store holds no blob directory at all.
func (l *ledger) empty() bool {
	f, err := os.Open(filepath.Join(l.s.root, HashDir))
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && err != nil
}

// register makes this process's writer file before its first change to the
// store reaches the disk. If it cannot, the totals file is removed: the
// next reader recounts rather than trusting totals that miss this change.
func (l *ledger) register() {
	if l == nil || l.registered.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.registered.Load() {
		return
	}
	if err := l.makeMarker(); err != nil {
		l.lost = true
		os.Remove(l.path(totalsFile))
	}
	l.registered.Store(true)
}

func (l *ledger) makeMarker() error {
	// Shared: a recount (exclusive) sees either no writer file and the
	// totals before this writer's changes, or the file.
	lk, err := l.flock(unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer lk.Close()
	dir := l.path(writersDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Locked under a dot name first, then renamed: a reader never sees
	// the file unlocked and takes it for a dead writer's.
	name := l.s.tempPrefix + strconv.FormatInt(time.Now().UnixNano(), 36)
	tmp := filepath.Join(dir, "."+name)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	l.marker, l.markerName = f, name
	return nil
}

// save adds this process's unsaved changes to the totals file. Unless
// force, it does so at most once per saveEvery and not while another
// process holds the lock.
func (l *ledger) save(force bool) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.marker == nil || (!force && time.Since(l.lastSave) < saveEvery) {
		return nil
	}
	now := l.s.totals.namedCounts()
	delta := Counts{Blobs: now.Blobs - l.saved.Blobs, Bytes: now.Bytes - l.saved.Bytes, DiskBytes: now.DiskBytes - l.saved.DiskBytes}
	l.lastSave = time.Now()
	if delta == (Counts{}) {
		return nil
	}
	how := unix.LOCK_EX
	if !force {
		how |= unix.LOCK_NB
	}
	lk, err := l.flock(how)
	if err != nil {
		if force {
			return err
		}
		return nil // busy: the next flush or the close saves it
	}
	defer lk.Close()
	st := l.read()
	if !st.ok {
		// Untrusted already (a recount will set it); nothing to add to.
		l.saved = now
		return nil
	}
	st.gen++
	st.counts.Blobs += delta.Blobs
	st.counts.Bytes += delta.Bytes
	st.counts.DiskBytes += delta.DiskBytes
	if err := l.write(st); err != nil {
		return err
	}
	l.saved = now
	return nil
}

// close saves what is left and removes this process's writer file. If the
// save fails the file stays, unlocked: the totals are untrusted until a
// recount.
func (l *ledger) close() error {
	if l == nil {
		return nil
	}
	err := l.save(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.marker == nil {
		return err
	}
	if err == nil {
		os.Remove(filepath.Join(l.path(writersDir), l.markerName))
	}
	l.marker.Close()
	l.marker = nil
	l.registered.Store(false) // a later change registers again
	return err
}

// StoredTotals are the totals as saved on disk.
type StoredTotals struct {
	Counts
	// Trusted is false when a process died before saving its changes
	// (or the store predates the ledger): only a recount is exact then.
	Trusted bool
	// Writers are the live processes whose last second of changes may
	// not be in Counts yet.
	Writers int
}

// ErrNoTotals: the store was opened without KeepTotals (or is the other
// mode's).
var ErrNoTotals = errors.New("the store keeps no totals in this process")

// StoredTotals reads the store's totals as saved by every process, plus
// this process's unsaved changes: a small file and the writers/ directory,
// whatever the store's size.
func (s *Store) StoredTotals() (StoredTotals, error) {
	l := s.ledger
	if l == nil {
		return StoredTotals{}, ErrNoTotals
	}
	lk, err := l.flock(unix.LOCK_SH)
	if err != nil {
		return StoredTotals{}, err
	}
	defer lk.Close()
	st := l.read()
	live, stale, err := l.writers()
	if err != nil {
		return StoredTotals{}, err
	}
	out := StoredTotals{Counts: st.counts, Trusted: st.ok && len(stale) == 0 && !l.lost, Writers: len(live)}
	if s.ledger != nil {
		l.mu.Lock()
		now := s.totals.namedCounts()
		out.Blobs += now.Blobs - l.saved.Blobs
		out.Bytes += now.Bytes - l.saved.Bytes
		out.DiskBytes += now.DiskBytes - l.saved.DiskBytes
		l.mu.Unlock()
		pb := s.totals.pendingBytes.Load()
		out.Blobs += s.totals.pendingBlobs.Load()
		out.Bytes += pb
		out.DiskBytes += pb
	}
	return out, nil
}

// Close saves this process's changes to the store's totals (see ledger)
// and ends its registration as a writer. The Store stays usable: a later
// change registers again.
func (s *Store) Close() error { return s.ledger.close() }

// persistRecount saves c, a walk's counts, as the totals if nothing else
// changed them since gen0 was read and no other writer is registered,
// and removes dead writers' files. It reports whether it saved.
func (l *ledger) persistRecount(c Counts, gen0 int64) (bool, error) {
	lk, err := l.flock(unix.LOCK_EX)
	if err != nil {
		return false, err
	}
	defer lk.Close()
	st := l.read()
	live, stale, err := l.writers()
	if err != nil {
		return false, err
	}
	if len(live) > 0 || (st.ok && st.gen != gen0) {
		return false, nil
	}
	if err := l.write(ledgerState{gen: st.gen + 1, counts: c, ok: true}); err != nil {
		return false, err
	}
	for _, p := range stale {
		os.Remove(p)
	}
	l.mu.Lock()
	l.saved = c
	l.lost = false
	l.mu.Unlock()
	return true, nil
}

// gen is the totals file's generation now (0 when missing).
func (l *ledger) gen() int64 {
	lk, err := l.flock(unix.LOCK_SH)
	if err != nil {
		return -1
	}
	defer lk.Close()
	return l.read().gen
}
