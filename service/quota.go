package service

import (
	"context"
	"encoding/json"
	"fmt"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sourcegraph/jsonrpc2"
	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/roots"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/units"
)

// Quotas limit each user's referenced bytes: the distinct blobs their
// pinned roots reference, plus what their open ingest sessions add. It is
// predictable for the user (it does not change when someone else deletes
// a tree) and reveals nothing of other users' content.

// warnFraction is where a pin's answer warns the user of their quota.
const warnFraction = 0.9

// limitRetry is how long after a store-wide sweep that could not bring the
// store under its limits the daemon refuses without sweeping again.
const limitRetry = 10 * time.Second

// limit is uid's quota on referenced bytes (0: none).
func (s *Service) limit(uid uint32) int64 {
	if l, ok := s.cfg.QuotaUsers[uid]; ok {
		return l
	}
	return s.cfg.QuotaDefault
}

// inFlight sums what uid's open sessions add to their referenced bytes,
// leaving out except (a session being pinned, whose blobs the pin counts).
func (s *Service) inFlight(uid uint32, except *session) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, sess := range s.sessions {
		if sess.peer.UID == uid && sess != except {
			sess.mu.Lock()
			n += sess.quotaBytes
			sess.mu.Unlock()
		}
	}
	return n
}

// quotaError is the -32003 refusal with the figures in its data, counted
// and logged.
func (s *Service) quotaError(what string, uid uint32, used, limit, needed int64) error {
	return s.refuse(true, what, uid, used, limit, needed)
}

// refuse builds the refusal; count says whether to count and log it (a
// session's parallel puts are refused once).
func (s *Service) refuse(count bool, what string, uid uint32, used, limit, needed int64) error {
	if count {
		s.metrics.quotaRefusals.WithLabelValues(strconv.FormatUint(uint64(uid), 10)).Inc()
		s.cfg.Log.Warn("quota refusal", "uid", uid, "what", what, "used", used, "limit", limit, "needed", needed)
	}
	data, _ := json.Marshal(rpc.QuotaData{UID: uid, Used: used, Limit: limit, Needed: needed})
	raw := json.RawMessage(data)
	return &jsonrpc2.Error{Code: rpc.CodeQuota, Data: &raw, Message: fmt.Sprintf(
		"quota exceeded: %s would take uid %d to %s referenced, over the limit of %s (used %s, needed %s); "+
			"drop trees you no longer need (delete them, then vrift gc) or ask for a larger quota",
		what, uid, units.FormatSize(used+needed), units.FormatSize(limit), units.FormatSize(used), units.FormatSize(needed))}
}

// checkBegin refuses a new ingest of a user already over their quota (a
// limit lowered under their usage), or while the store is past its limits
// after a sweep. A user exactly at their limit may still begin: re-ingesting
// what they hold adds nothing, and a put of new content is refused.
func (s *Service) checkBegin(ctx context.Context, uid uint32) error {
	if lim := s.limit(uid); lim > 0 {
		used := s.acct.User(uid).Referenced + s.inFlight(uid, nil)
		if used > lim {
			return s.quotaError("a new ingest", uid, used, lim, 0)
		}
	}
	return s.checkStore(ctx)
}

// chargeKey counts a blob the session now references against its user's
// quota, unless the user's roots already reference it.
func (s *Service) chargeKey(sess *session, k cas.Key) error {
	lim := s.limit(sess.peer.UID)
	if lim <= 0 {
		return nil
	}
	held, err := s.acct.References(sess.peer.UID, k)
	if err != nil {
		return err
	}
	if held {
		return nil
	}
	sess.mu.Lock()
	sess.quotaBytes += k.Size
	sess.mu.Unlock()
	used := s.acct.User(sess.peer.UID).Referenced + s.inFlight(sess.peer.UID, nil)
	if used > lim {
		// Puts of one call run in parallel: count the session's refusal
		// once.
		sess.mu.Lock()
		first := !sess.refused
		sess.refused = true
		sess.mu.Unlock()
		return s.refuse(first, "this ingest", sess.peer.UID, used-k.Size, lim, k.Size)
	}
	return nil
}

// storeState reports whether the store is past max_bytes or its
// filesystem under min_free, and why.
func (s *Service) storeState() (over bool, why string) {
	// max_bytes bounds the blobs' logical bytes, which the daemon knows
	// exactly at each put; a sparse blob counts its holes (conservative).
	if b := s.store.Totals().Bytes(); s.cfg.MaxStoreBytes > 0 && b > s.cfg.MaxStoreBytes {
		return true, fmt.Sprintf("the shared store holds %s, over its max_bytes of %s", units.FormatSize(b), units.FormatSize(s.cfg.MaxStoreBytes))
	}
	if m := s.cfg.MinFree; m > 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(s.store.Root(), &st); err == nil {
			free := int64(st.Bavail) * int64(st.Bsize)
			if free < m {
				return true, fmt.Sprintf("the store's filesystem has %s free, under its min_free of %s", units.FormatSize(free), units.FormatSize(m))
			}
		}
	}
	return false, ""
}

// checkStore sweeps when the store is past its limits, and refuses if
// that was not enough.
func (s *Service) checkStore(ctx context.Context) error {
	if s.cfg.MaxStoreBytes <= 0 && s.cfg.MinFree <= 0 {
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
		return rpc.Errorf(rpc.CodeQuota, "the shared store is full: %s, and every blob left is referenced by a pinned tree or an ingest in flight; "+
			"an admin must free space or raise the limit", why)
	}
	return nil
}

// limitSweep removes unreferenced blobs, oldest first, until the store is
// under its limits. Referenced means held by a pinned root (read from the
// pinned manifests, not from the accounting) or by an ingest in flight: no
// grace period applies, the sessions' keys protect work in flight.
func (s *Service) limitSweep(ctx context.Context) error {
	s.sweeping.Lock()
	defer s.sweeping.Unlock()
	if over, _ := s.storeState(); !over {
		return nil // a sweep that ran while we waited was enough
	}
	if time.Since(s.lastFutileSweep) < limitRetry {
		return nil
	}
	start := time.Now()
	s.gcLock.Lock()
	defer s.gcLock.Unlock()
	if err := s.storeLock.Convert(ctx, true); err != nil {
		s.storeLock.Convert(context.Background(), false)
		return rpc.Errorf(rpc.CodeBusy, "the store is over its limits and locked by a direct-mode process: %v", err)
	}
	defer func() {
		if err := s.storeLock.Convert(context.Background(), false); err != nil {
			s.cfg.Log.Error("store lock: back to shared failed", "err", err)
		}
	}()
	recs, err := s.sweepRoots()
	if err != nil {
		return fmt.Errorf("store over its limits: %w", err)
	}
	live := map[cas.Key]struct{}{}
	s.copies.Lock() // one opener of each pinned copy at a time
	for _, cp := range s.copyPaths(recs) {
		if err := engine.MarkLive(ctx, cp, live); err != nil {
			s.copies.Unlock()
			return fmt.Errorf("store over its limits: cannot read root %s (nothing deleted): %w", cp, err)
		}
	}
	s.copies.Unlock()
	s.mu.Lock()
	for _, sess := range s.sessions {
		sess.mu.Lock()
		for k := range sess.keys {
			live[k] = struct{}{}
		}
		sess.mu.Unlock()
	}
	s.mu.Unlock()
	var cands []cas.Blob
	err = s.store.Walk(ctx, func(b cas.Blob) error {
		if _, ok := live[b.Key]; !ok {
			cands = append(cands, b)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(cands, func(a, b cas.Blob) int { return a.ModTime.Compare(b.ModTime) })
	var removed, freed int64
	for _, b := range cands {
		if over, _ := s.storeState(); !over {
			break
		}
		if err := s.store.Remove(b.Key); err != nil {
			s.cfg.Log.Error("limit sweep: remove", "blob", b.Key.Name(), "err", err)
			continue
		}
		removed++
		freed += b.DiskBytes
	}
	over, why := s.storeState()
	if over {
		s.lastFutileSweep = time.Now()
	}
	s.metrics.gcRuns.WithLabelValues("limit").Inc()
	s.metrics.gcRemovedBlobs.Add(float64(removed))
	s.metrics.gcRemovedBytes.Add(float64(freed))
	s.metrics.gcDuration.Observe(time.Since(start).Seconds())
	s.cfg.Log.Info("store-wide limit sweep", "removed", removed, "freed_bytes", freed, "candidates", len(cands), "still_over", why)
	s.audit.write(auditEntry{UID: s.self, Method: "limit-sweep", BlobsRemoved: removed, BytesRemoved: freed, Result: "ok"})
	return nil
}

// openUsage opens the accounting and recounts it when it does not match
// the pinned roots (first start, or a crash between publishing a root and
// recording it).
func (s *Service) openUsage(ctx context.Context) error {
	path := filepath.Join(s.cfg.State, "usage.lmdb")
	acct, err := openAccounting(path)
	if err != nil {
		s.cfg.Log.Warn("usage accounting unreadable; starting it afresh", "err", err)
		removeAccounting(path)
		if acct, err = openAccounting(path); err != nil {
			return err
		}
	}
	s.acct = acct
	roots, err := s.pinnedRoots()
	if err != nil {
		return err
	}
	if err := acct.Matches(roots); err != nil {
		s.cfg.Log.Info("recounting usage from the pinned manifests", "why", err, "roots", len(roots))
		if _, err := acct.Recount(ctx, roots, s.walkRoot); err != nil {
			return err
		}
	}
	return nil
}

// pinnedRoots lists every root on disk as the accounting names them.
func (s *Service) pinnedRoots() ([]pinnedRoot, error) {
	recs, err := s.records(0, true)
	if err != nil {
		return nil, err
	}
	out := make([]pinnedRoot, 0, len(recs))
	for _, r := range recs {
		out = append(out, pinnedRoot{uid: r.UID, id: r.ID, pinnedAt: r.PinnedAt.UnixNano(), path: s.reg.CopyPath(r)})
	}
	return out, nil
}

// walkRoot reads a pinned copy's distinct keys. Pinned copies were walked
// by a child before they were published, so reading them in-process is
// safe (see walkKeys).
func (s *Service) walkRoot(ctx context.Context, path string, fn func(cas.Key) error) (int64, error) {
	s.copies.Lock() // LMDB: one opener of an environment per process
	defer s.copies.Unlock()
	var rec roots.Record
	err := walkKeys(ctx, path, &rec, fn)
	return rec.Files, err
}

// usage answers the usage RPC.
func (s *Service) usage(ctx context.Context, c *rpc.Call) (any, error) {
	var p rpc.UsageParams
	if len(c.Params) > 0 && string(c.Params) != "null" {
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
	}
	admin := s.admin(c.Peer)
	res := rpc.UsageResult{Users: []rpc.UserUsage{}}
	if p.Recount {
		if !admin {
			return nil, rpc.Errorf(rpc.CodePermission, "usage --recount is for root and vrift only")
		}
		s.acct.mu.Lock()
		roots, err := s.pinnedRoots()
		var before map[uint32]Totals
		if err == nil {
			before, err = s.acct.Recount(ctx, roots, s.walkRoot)
		}
		s.acct.mu.Unlock()
		if err != nil {
			return nil, err
		}
		res.Recounted = true
		after := s.acct.All()
		res.Consistent = len(before) == len(after)
		for uid, t := range after {
			if before[uid] != t {
				res.Consistent = false
			}
		}
		if !res.Consistent {
			s.cfg.Log.Warn("usage recount differed from the incremental accounting", "before", before, "after", after)
		}
	}
	recs, err := s.records(c.Peer.UID, admin)
	if err != nil {
		return nil, err
	}
	byUID := map[uint32]*rpc.UserUsage{}
	get := func(uid uint32) *rpc.UserUsage {
		u := byUID[uid]
		if u == nil {
			t := s.acct.User(uid)
			u = &rpc.UserUsage{UID: uid, Referenced: t.Referenced, Exclusive: t.Exclusive, FairShare: t.FairShare,
				InFlight: s.inFlight(uid, nil), Limit: s.limit(uid), Roots: []rpc.RootUsage{}}
			if usr, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
				u.Name = usr.Username
			}
			byUID[uid] = u
		}
		return u
	}
	get(c.Peer.UID)
	if admin {
		for uid := range s.acct.All() {
			get(uid)
		}
	}
	for _, r := range recs {
		info, _, err := s.acct.Root(r.UID, r.ID)
		if err != nil {
			return nil, err
		}
		u := get(r.UID)
		u.Roots = append(u.Roots, rpc.RootUsage{ManifestPath: r.ManifestPath, Files: r.Files, Referenced: info.Bytes})
	}
	for _, u := range byUID {
		slices.SortFunc(u.Roots, func(a, b rpc.RootUsage) int { return strings.Compare(a.ManifestPath, b.ManifestPath) })
		res.Users = append(res.Users, *u)
	}
	slices.SortFunc(res.Users, func(a, b rpc.UserUsage) int { return cmpU32(a.UID, b.UID) })
	if admin {
		t := s.store.Totals().Counts()
		res.StoreBlobs, res.StoreBytes, res.StoreDiskBytes = t.Blobs, t.Bytes, t.DiskBytes
		res.MaxBytes, res.MinFree = s.cfg.MaxStoreBytes, s.cfg.MinFree
	}
	return res, nil
}
