package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/roots"
	"github.com/vrift/vrift/rpc"
)

// sweeper owns the locks that keep a blob alive while a sweep removes
// others. gc and the store-limit sweep both take them through it, in the
// order written at Service: running, gcLock, storeLock, copies.
type sweeper struct {
	// running lets one sweep run at a time: gc tells others to retry, a
	// store-limit sweep waits (and then finds the store under its limits).
	running sync.Mutex
	// gcLock is held shared, briefly, by every step that makes a blob
	// live (a put recording its key in its session, a pin publishing its
	// root) and exclusively by a sweep. Nothing holds it while reading a
	// caller's descriptor: a read can take hours, and a waiting sweep
	// would block every new reader behind it (sync.RWMutex).
	gcLock sync.RWMutex
	// storeLock is the store's flock(2), held shared for the daemon's
	// whole life and exclusive during a sweep, so that a direct-mode
	// process on the daemon's store (which cannot see the daemon's roots)
	// cannot sweep it while the daemon runs.
	storeLock *cas.Lock
	// copies is held while a root's manifest copy is open (gc marking,
	// verify, a usage recount): LMDB forbids one process opening the same
	// environment twice at once, and concurrent calls did crash the daemon
	// (SIGSEGV in mdb_txn_begin, TestServiceConcurrentRootReads).
	copies sync.Mutex
	// lastFutile (guarded by running) is when a store-limit sweep last
	// failed to bring the store under its limits.
	lastFutile time.Time
	log        *slog.Logger
}

// exclusive runs fn with every writer held off: gcLock exclusively, then
// the store's flock exclusively (direct-mode processes on this store).
// The caller holds running. A flock that cannot be had is busy, an
// errdefs.ErrBusy error saying busy.
func (w *sweeper) exclusive(ctx context.Context, busy string, fn func() error) error {
	w.gcLock.Lock()
	defer w.gcLock.Unlock()
	if err := w.storeLock.Convert(ctx, true); err != nil {
		w.storeLock.Convert(context.Background(), false)
		return errdefs.Newf(errdefs.ErrBusy, "%s: %v", busy, err)
	}
	defer func() {
		if err := w.storeLock.Convert(context.Background(), false); err != nil {
			w.log.Error("store lock: back to shared failed", "err", err)
		}
	}()
	return fn()
}

// sessionKeys marks the blobs of the ingests in flight, which are roots
// too: no grace period applies to them.
func (s *Service) sessionKeys(live *engine.LiveSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		sess.mu.Lock()
		for h := range sess.keys {
			live.AddHash(h)
		}
		sess.mu.Unlock()
	}
}

// limitRetry is how long after a store-wide sweep that could not bring the
// store under its limits the daemon refuses without sweeping again.
const limitRetry = 10 * time.Second

// sweepRoots lists every pinned root for a sweep, which an unreadable
// record refuses: it may pin any blob.
func (s *Service) sweepRoots() ([]roots.Record, error) {
	recs, bad, err := s.reg.ListAll()
	if err != nil {
		return nil, err
	}
	if err := roots.CheckBad(bad); err != nil {
		return nil, fmt.Errorf("%w; root or vrift can drop it with vrift gc --drop-stale", err)
	}
	return s.pinned(recs), nil
}

// copyPaths lists the pinned copies of recs (from records or sweepRoots:
// each has one).
func (s *Service) copyPaths(recs []roots.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, s.reg.CopyPath(r))
	}
	return out
}

func (s *Service) gc(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.GCParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	if p.Grace < 0 {
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "gc: negative grace")
	}
	admin := s.admin(c.Peer)
	if !admin && p.Grace < s.cfg.MinUserGrace {
		return nil, errdefs.Newf(errdefs.ErrPermission, "gc: a grace period below %s is for root and vrift only "+
			"(younger blobs may be another user's ingest not yet pinned)", s.cfg.MinUserGrace)
	}
	if p.DropStale && !admin {
		return nil, errdefs.Newf(errdefs.ErrPermission, "gc: --drop-stale is for root and vrift only")
	}
	if len(p.Drop) > s.cfg.MaxRootsPerUser {
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "gc: %d roots to drop, more than a user can have", len(p.Drop))
	}
	if !s.sw.running.TryLock() {
		return nil, errdefs.Newf(errdefs.ErrBusy, "gc: another gc is running; retry when it ends")
	}
	defer s.sw.running.Unlock()
	res := rpc.GCResult{DryRun: p.DryRun, DroppedRoots: []string{}}
	// A caller drops only their own roots.
	for _, mp := range p.Drop {
		if checkPath("gc", mp) != nil {
			continue
		}
		id := roots.ID(mp)
		if _, err := s.reg.Get(c.Peer.UID, id); err != nil {
			continue
		}
		res.DroppedRoots = append(res.DroppedRoots, mp)
		if !p.DryRun {
			if err := s.dropRoot(c.Peer.UID, id); err != nil {
				return nil, fmt.Errorf("gc: %w", err)
			}
		}
	}
	if p.DropStale {
		stale, err := s.dropStale(p.DryRun)
		if err != nil {
			return nil, err
		}
		res.DroppedRoots = append(res.DroppedRoots, stale...)
	}
	var er engine.GCResult
	// Keep every writer out while blobs go, direct-mode ones included.
	err := s.sw.exclusive(ctx, "gc: the store is in use by a direct-mode process", func() error {
		recs, err := s.sweepRoots()
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		start := time.Now()
		s.sw.copies.Lock()
		_, err = engine.Collect(ctx, s.store, s.copyPaths(recs), s.sessionKeys, p.Grace, p.DryRun, &er)
		s.sw.copies.Unlock()
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		if !p.DryRun {
			s.metrics.sweep("gc", er.Removed, er.FreedBytes, time.Since(start))
			// The sweep walked the store anyway: recount its totals
			// (exact disk bytes again) while writers are still out.
			if _, err := s.store.Recount(ctx); err != nil {
				s.cfg.Log.Warn("gc: recount the store's totals", "err", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Roots = er.Roots
	res.Removed, res.FreedBytes, res.Kept, res.KeptYoung = er.Removed, er.FreedBytes, er.Kept, er.KeptYoung
	if !p.DryRun {
		s.audit.write(auditEntry{UID: c.Peer.UID, PID: c.Peer.PID, Method: rpc.MethodGC, DroppedRoots: len(res.DroppedRoots),
			BlobsRemoved: er.Removed, BytesRemoved: er.FreedBytes, Result: "ok"})
	}
	return res, nil
}

// dropStale drops every user's roots whose pinned copy the daemon can no
// longer read as a manifest (removed, truncated or corrupted on disk), and
// root records it cannot read (which stop every sweep). It cannot tell
// whether a user's own manifest still exists (it cannot read home
// directories); a root is stale when its pinned copy, which alone decides
// what the sweep keeps, is unreadable.
func (s *Service) dropStale(dry bool) ([]string, error) {
	recs, bad, err := s.reg.ListAll()
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, r := range recs {
		cp := s.reg.CopyPath(r)
		if checkLMDB(cp) == nil {
			var tmp roots.Record
			_, err := s.walkInChild(context.Background(), cp, &tmp)
			os.Remove(cp + "-lock")
			if err == nil {
				continue
			}
		}
		dropped = append(dropped, fmt.Sprintf("uid %d: %s", r.UID, r.ManifestPath))
		if !dry {
			if err := s.dropRoot(r.UID, r.ID); err != nil {
				return nil, err
			}
		}
	}
	for _, b := range bad {
		dropped = append(dropped, fmt.Sprintf("uid %d: unreadable root record %s", b.UID, b.ID))
		if !dry {
			if err := s.dropRoot(b.UID, b.ID); err != nil {
				return nil, err
			}
		}
	}
	return dropped, nil
}

// dropRoot removes uid's root id: its record and pinned copy, then its
// figures from the accounting.
func (s *Service) dropRoot(uid uint32, id string) error {
	if err := s.reg.Remove(uid, id); err != nil {
		return err
	}
	return s.acct.DropRoot(uid, id)
}

// limits are the store-wide limits.
func (s *Service) limits() engine.StoreLimits {
	return engine.StoreLimits{MaxBytes: s.cfg.MaxStoreBytes, MinFree: s.cfg.MinFree}
}

// storeState reports whether the store is past max_bytes or its
// filesystem under min_free, and why. max_bytes is checked against the
// store's running totals (ingests' unflushed blobs included); a statfs
// that fails counts as not over, as a request must not fail on it.
func (s *Service) storeState() (over bool, why string) {
	over, why, err := s.limits().Over(s.store, s.store.Totals().Bytes())
	if err != nil {
		s.cfg.Log.Warn("store limits", "err", err)
		return false, ""
	}
	return over, why
}

// checkStore sweeps when the store is past its limits, and refuses if
// that was not enough.
func (s *Service) checkStore(ctx context.Context) error {
	if s.limits().IsZero() {
		return nil
	}
	over, _ := s.storeState()
	if !over {
		return nil
	}
	if err := s.limitSweep(ctx); err != nil {
		return err
	}
	if over, why := s.storeState(); over {
		s.metrics.quotaRefusals.WithLabelValues("store").Inc()
		return errdefs.Newf(errdefs.ErrQuota, "the shared store is full: %s, and every blob left is referenced by a pinned tree or an ingest in flight; "+
			"an admin must free space or raise the limit", why)
	}
	return nil
}

// limitSweep removes unreferenced blobs, oldest first, until the store is
// under its limits (engine.SweepToLimits, as direct mode does).
// Referenced means held by a pinned root (read from the pinned manifests,
// not from the accounting) or by an ingest in flight: no grace period
// applies, the sessions' keys protect work in flight.
func (s *Service) limitSweep(ctx context.Context) error {
	s.sw.running.Lock()
	defer s.sw.running.Unlock()
	if over, _ := s.storeState(); !over {
		return nil // a sweep that ran while we waited was enough
	}
	if time.Since(s.sw.lastFutile) < limitRetry {
		return nil
	}
	start := time.Now()
	var res engine.LimitSweepResult
	err := s.sw.exclusive(ctx, "the store is over its limits and locked by a direct-mode process", func() error {
		recs, err := s.sweepRoots()
		if err != nil {
			return fmt.Errorf("store over its limits: %w", err)
		}
		s.sw.copies.Lock() // one opener of each pinned copy at a time
		defer s.sw.copies.Unlock()
		res, err = engine.SweepToLimits(ctx, s.store, s.limits(), s.copyPaths(recs), s.sessionKeys)
		if err != nil {
			return fmt.Errorf("store over its limits: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if res.RemoveErr != nil {
		s.cfg.Log.Error("limit sweep: remove", "err", res.RemoveErr)
	}
	if res.Over {
		s.sw.lastFutile = time.Now()
	}
	s.metrics.sweep("limit", res.Removed, res.FreedBytes, time.Since(start))
	s.cfg.Log.Info("store-wide limit sweep", "removed", res.Removed, "freed_bytes", res.FreedBytes, "candidates", res.Candidates, "still_over", res.Why)
	s.audit.write(auditEntry{UID: s.self, Method: "limit-sweep", BlobsRemoved: res.Removed, BytesRemoved: res.FreedBytes, Result: "ok"})
	return nil
}
