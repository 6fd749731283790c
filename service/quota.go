package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/sourcegraph/jsonrpc2"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/units"
)

// Quotas limit each user's referenced bytes: the distinct blobs their
// pinned roots reference, plus what their open ingest sessions add. It is
// predictable for the user (it does not change when someone else deletes
// a tree) and reveals nothing of other users' content.

// warnFraction is where a pin's answer warns the user of their quota.
const warnFraction = 0.9

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
