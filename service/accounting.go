package service

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/PowerDNS/lmdb-go/lmdb"

	"github.com/vrift/vrift/cas"
)

// The accounting: which users reference which blobs, and each user's
// totals, kept incrementally in an LMDB file in the state dir
// (usage.lmdb). A recount is one LMDB transaction; a pin or a dropped
// root changes at most 8k references a transaction (rootStep), the last
// one writing the root's record, and marks the file pending until then,
// so a kill -9 leaves the old state, the new one, or a pending file. The
// roots table records which pinned copy (by its pin time) each change
// applied; at startup, if it does not match the roots on disk (a crash
// between publishing a root and recording it) or the file is pending, the
// accounting is recounted from the pinned manifests. Nothing here walks
// the store.
//
// Memory: a pin holds its keys sorted in 41 bytes each (keyList), and
// LMDB the dirty pages of one step in C (see rootStep) plus the root's
// record (41 bytes a key) in the last. At 1M files the
// daemon peaked at 178 MB RSS during the ingest and its pin (64k a step),
// 163 MB of it anonymous (issue 22; 408 MB when the pin held the keys as
// []cas.Key and changed every reference in one transaction).
//
// Tables:
//
//	refs:  blob key (41 bytes) -> (uid u32, count u32)... sorted by uid;
//	       count is how many of the uid's roots reference the blob
//	users: uid u32 -> referenced, exclusive, fair_share (3 x i64)
//	roots: "uid/id" -> pinned_at ns, distinct bytes, files (3 x i64),
//	       then the root's distinct blob keys (41 bytes each), sorted
//	meta:  "version" -> 2, "total" -> distinct referenced blobs, bytes
//
// Version 1 kept a root's keys unsorted; a version 1 file is recounted
// at startup (Matches), which rewrites every root sorted.
//
// fair_share is the sum, over the user's blobs, of size / users
// referencing it, each rounded down: integer, so a recount gives exactly
// the incremental figure.
type accounting struct {
	env                    *lmdb.Env
	refs, users, roots, md lmdb.DBI

	// mu is held by a pin across its quota check and the change it
	// allows, and by a recount; wmu serialises every change (each starts
	// from the cache and replaces it); cache mirrors the users table for
	// cheap reads.
	mu      sync.Mutex
	wmu     sync.Mutex
	step    int // rootStep
	cacheMu sync.RWMutex
	cache   map[uint32]Totals
	total   Totals // Referenced: distinct referenced bytes; Blobs: their count
}

// Totals are one user's figures (or, for the store, the distinct
// referenced blobs).
type Totals struct {
	Referenced int64
	Exclusive  int64
	FairShare  int64
	Blobs      int64
}

const (
	keyLen       = cas.HashSize + 9
	rootHdrLen   = 24
	usageVersion = 2
	usageMapSize = 1 << 38
)

func encKey(k cas.Key) []byte { return appendKey(make([]byte, 0, keyLen), k) }

// appendKey appends k's encoding (keyLen bytes) to b.
func appendKey(b []byte, k cas.Key) []byte {
	b = append(b, k.Sum[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(k.Size))
	if k.Exec {
		return append(b, 1)
	}
	return append(b, 0)
}

func decKey(b []byte) cas.Key {
	var k cas.Key
	copy(k.Sum[:], b)
	k.Size = int64(binary.BigEndian.Uint64(b[cas.HashSize:]))
	k.Exec = b[keyLen-1] == 1
	return k
}

func uidKey(uid uint32) []byte { return binary.BigEndian.AppendUint32(nil, uid) }

// rootKey names a root in the roots table.
func rootKey(uid uint32, id string) []byte {
	return []byte(strconv.FormatUint(uint64(uid), 10) + "/" + id)
}

type refEntry struct{ uid, count uint32 }

func decRefs(b []byte) []refEntry {
	out := make([]refEntry, 0, len(b)/8)
	for ; len(b) >= 8; b = b[8:] {
		out = append(out, refEntry{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])})
	}
	return out
}

func encRefs(rs []refEntry) []byte {
	b := make([]byte, 0, 8*len(rs))
	for _, r := range rs {
		b = binary.BigEndian.AppendUint32(b, r.uid)
		b = binary.BigEndian.AppendUint32(b, r.count)
	}
	return b
}

func openAccounting(path string) (*accounting, error) {
	env, err := lmdb.NewEnv()
	if err != nil {
		return nil, fmt.Errorf("usage accounting %s: %w", path, err)
	}
	a := &accounting{env: env, step: rootStep}
	fail := func(err error) (*accounting, error) {
		env.Close()
		return nil, fmt.Errorf("usage accounting %s: %w", path, err)
	}
	if err := env.SetMaxDBs(4); err != nil {
		return fail(err)
	}
	if err := env.SetMapSize(usageMapSize); err != nil {
		return fail(err)
	}
	if err := env.Open(path, lmdb.NoSubdir, 0o600); err != nil {
		return fail(err)
	}
	err = env.Update(func(txn *lmdb.Txn) (err error) {
		for _, d := range []struct {
			name string
			dbi  *lmdb.DBI
		}{{"refs", &a.refs}, {"users", &a.users}, {"roots", &a.roots}, {"meta", &a.md}} {
			if *d.dbi, err = txn.CreateDBI(d.name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if err := a.load(); err != nil {
		return fail(err)
	}
	return a, nil
}

func (a *accounting) close() { a.env.Close() }

// load fills the cache from the users table.
func (a *accounting) load() error {
	cache := map[uint32]Totals{}
	var total Totals
	err := a.env.View(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		cur, err := txn.OpenCursor(a.users)
		if err != nil {
			return err
		}
		defer cur.Close()
		for k, v, err := cur.Get(nil, nil, lmdb.First); ; k, v, err = cur.Get(nil, nil, lmdb.Next) {
			if lmdb.IsNotFound(err) {
				break
			}
			if err != nil {
				return err
			}
			cache[binary.BigEndian.Uint32(k)] = decTotals(v)
		}
		v, err := txn.Get(a.md, []byte("total"))
		if err == nil {
			total = decTotals(v)
		} else if !lmdb.IsNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.cacheMu.Lock()
	a.cache, a.total = cache, total
	a.cacheMu.Unlock()
	return nil
}

func encTotals(t Totals) []byte {
	b := make([]byte, 0, 32)
	for _, v := range []int64{t.Referenced, t.Exclusive, t.FairShare, t.Blobs} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func decTotals(b []byte) Totals {
	var v [4]int64
	for i := 0; i < 4 && len(b) >= 8; i, b = i+1, b[8:] {
		v[i] = int64(binary.BigEndian.Uint64(b))
	}
	return Totals{v[0], v[1], v[2], v[3]}
}

// User returns uid's totals.
func (a *accounting) User(uid uint32) Totals {
	a.cacheMu.RLock()
	defer a.cacheMu.RUnlock()
	return a.cache[uid]
}

// All returns every user's totals.
func (a *accounting) All() map[uint32]Totals {
	a.cacheMu.RLock()
	defer a.cacheMu.RUnlock()
	return maps.Clone(a.cache)
}

// Total is the distinct blobs referenced by anyone.
func (a *accounting) Total() Totals {
	a.cacheMu.RLock()
	defer a.cacheMu.RUnlock()
	return a.total
}

// References reports whether uid's roots reference k.
func (a *accounting) References(uid uint32, k cas.Key) (bool, error) {
	var found bool
	err := a.env.View(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		v, err := txn.Get(a.refs, encKey(k))
		if lmdb.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, r := range decRefs(v) {
			if r.uid == uid {
				found = true
			}
		}
		return nil
	})
	return found, err
}

// rootInfo is a root as the accounting recorded it.
type rootInfo struct {
	PinnedAt, Bytes, Files int64
	keys                   []byte
}

func decRoot(v []byte) rootInfo {
	var r rootInfo
	if len(v) >= rootHdrLen {
		r.PinnedAt = int64(binary.BigEndian.Uint64(v))
		r.Bytes = int64(binary.BigEndian.Uint64(v[8:]))
		r.Files = int64(binary.BigEndian.Uint64(v[16:]))
		r.keys = v[rootHdrLen:]
	}
	return r
}

// Root returns what the accounting recorded for a root.
func (a *accounting) Root(uid uint32, id string) (rootInfo, bool, error) {
	var r rootInfo
	var ok bool
	err := a.env.View(func(txn *lmdb.Txn) error {
		// A view, not a copy: the record holds 41 bytes a blob after its
		// 24-byte header, and a copy made each admin usage call allocate
		// 39 MB and fault in as much of the map at 1M files.
		txn.RawRead = true
		v, err := txn.Get(a.roots, rootKey(uid, id))
		if lmdb.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		r, ok = decRoot(v), true
		r.keys = nil
		return nil
	})
	return r, ok, err
}

// Delta is how uid's referenced bytes would change if the root id were
// (re)pinned with keys (sorted, distinct), replacing what it held: new
// blobs no root of uid held count in, blobs only the old root held count
// out. Both lists are sorted, so it is one merge, with nothing held beyond
// them.
func (a *accounting) Delta(uid uint32, id string, keys keyList) (int64, error) {
	var delta int64
	err := a.env.View(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		old, err := rootKeys(txn, a.roots, uid, id)
		if err != nil {
			return err
		}
		return merge(old, keys, func(kb []byte, inOld, inNew bool) error {
			if inOld && inNew {
				return nil // held before and after
			}
			c, err := a.count(txn, uid, kb)
			switch {
			case err != nil:
				return err
			case inNew && c == 0:
				delta += keySize(kb)
			case inOld && c == 1:
				delta -= keySize(kb)
			}
			return nil
		})
	})
	return delta, err
}

// count is how many of uid's roots reference the blob kb.
func (a *accounting) count(txn *lmdb.Txn, uid uint32, kb []byte) (uint32, error) {
	v, err := txn.Get(a.refs, kb)
	if lmdb.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for ; len(v) >= 8; v = v[8:] {
		if binary.BigEndian.Uint32(v) == uid {
			return binary.BigEndian.Uint32(v[4:]), nil
		}
	}
	return 0, nil
}

// keySize is the size in an encoded key.
func keySize(kb []byte) int64 { return int64(binary.BigEndian.Uint64(kb[cas.HashSize:])) }

// rootKeys is the keys recorded for a root (none if it has no record).
// With txn.RawRead set, it is a view into the map, valid until the
// root's record changes (writes to other tables leave it alone: LMDB
// frees a value's pages only when its own record is replaced or
// deleted, and reuses pages freed by a transaction only after it
// commits).
func rootKeys(txn *lmdb.Txn, roots lmdb.DBI, uid uint32, id string) (keyList, error) {
	v, err := txn.Get(roots, rootKey(uid, id))
	if lmdb.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ks := keyList(decRoot(v).keys)
	if err := ks.check(); err != nil {
		return nil, fmt.Errorf("root %d/%s: %w", uid, id, err)
	}
	return ks, nil
}

// change is one transaction's edits, totals included.
type change struct {
	a      *accounting
	txn    *lmdb.Txn
	totals map[uint32]Totals
	total  Totals
}

func (a *accounting) update(fn func(c *change) error) error {
	return a.updateSteps(func(c *change) (bool, error) { return false, fn(c) })
}

// errPartial: a change spanning several transactions failed after some of
// them committed. The accounting is marked pending until a recount.
var errPartial = errors.New("usage accounting: change applied in part")

// updateSteps runs step in one transaction after another while it
// reports more, with every change serialised behind it (wmu) as if it were
// one transaction; the cache takes the totals once the last commits. Every
// transaction but the last leaves "pending" in meta: a kill -9 midway
// leaves it there, and the next start recounts (Matches). Readers may see
// the references of a change in part; only a quota charge of an ingest in
// flight looks at them (chargeKey), and it is settled at that ingest's pin.
func (a *accounting) updateSteps(step func(c *change) (more bool, err error)) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.cacheMu.RLock()
	c := &change{a: a, totals: maps.Clone(a.cache), total: a.total}
	a.cacheMu.RUnlock()
	committed := false
	for more := true; more; {
		err := a.env.Update(func(txn *lmdb.Txn) (err error) {
			// Values are views into the map, not copies (a root's
			// record holds 41 bytes a blob; see rootKeys).
			txn.RawRead = true
			c.txn = txn
			if more, err = step(c); err != nil {
				return err
			}
			for uid, t := range c.totals {
				var err error
				if t == (Totals{}) {
					err = txn.Del(a.users, uidKey(uid), nil)
					if lmdb.IsNotFound(err) {
						err = nil
					}
					delete(c.totals, uid)
				} else {
					err = txn.Put(a.users, uidKey(uid), encTotals(t), 0)
				}
				if err != nil {
					return err
				}
			}
			if err := txn.Put(a.md, []byte("total"), encTotals(c.total), 0); err != nil {
				return err
			}
			if more {
				err = txn.Put(a.md, []byte(pendingKey), []byte{1}, 0)
			} else if err = txn.Del(a.md, []byte(pendingKey), nil); lmdb.IsNotFound(err) {
				err = nil
			}
			if err != nil {
				return err
			}
			return txn.Put(a.md, []byte("version"), []byte{usageVersion}, 0)
		})
		if err != nil && committed {
			return fmt.Errorf("%w: %w", errPartial, err)
		}
		if err != nil {
			return fmt.Errorf("usage accounting: %w", err)
		}
		committed = true
	}
	a.cacheMu.Lock()
	a.cache, a.total = c.totals, c.total
	a.cacheMu.Unlock()
	return nil
}

// pendingKey in meta marks a change spanning transactions as under way.
const pendingKey = "pending"

// ref adds d (+1 or -1) to uid's count of references to the blob kb.
func (c *change) ref(uid uint32, kb []byte, d int) error {
	size := int64(binary.BigEndian.Uint64(kb[cas.HashSize:]))
	var rs []refEntry
	v, err := c.txn.Get(c.a.refs, kb)
	switch {
	case err == nil:
		rs = decRefs(v)
	case !lmdb.IsNotFound(err):
		return err
	}
	i, found := slices.BinarySearchFunc(rs, uid, func(r refEntry, u uint32) int { return cmpU32(r.uid, u) })
	before := len(rs)
	switch {
	case d > 0 && found:
		rs[i].count++
	case d > 0:
		rs = slices.Insert(rs, i, refEntry{uid, 1})
	case d < 0 && found && rs[i].count > 1:
		rs[i].count--
	case d < 0 && found:
		rs = slices.Delete(rs, i, i+1)
	default:
		return fmt.Errorf("blob %s: uid %d drops a reference it does not hold", decKey(kb).Name(), uid)
	}
	after := len(rs)
	if before != after {
		// uid joined or left the blob's users: referenced, exclusive and
		// fair shares move for uid and the others.
		t := c.totals[uid]
		if after > before {
			t.Referenced += size
			t.Blobs++
		} else {
			t.Referenced -= size
			t.Blobs--
		}
		if before == 1 && after == 0 || before == 0 && after == 1 {
			sign := int64(after - before)
			t.Exclusive += sign * size
			c.total.Referenced += sign * size
			c.total.Blobs += sign
		}
		if before > 0 && after == before-1 || after == before+1 {
			// uid's own share
			if after > before {
				t.FairShare += size / int64(after)
			} else {
				t.FairShare -= size / int64(before)
			}
		}
		c.totals[uid] = t
		for _, r := range rs {
			if r.uid == uid {
				continue
			}
			o := c.totals[r.uid]
			o.FairShare += size/int64(after) - size/int64(before)
			if before == 1 && after == 2 {
				o.Exclusive -= size
			}
			if before == 2 && after == 1 {
				o.Exclusive += size
			}
			c.totals[r.uid] = o
		}
	}
	if len(rs) == 0 {
		return c.txn.Del(c.a.refs, kb, nil)
	}
	return c.txn.Put(c.a.refs, kb, encRefs(rs), 0)
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rootStep is how many blob references one transaction of AddRoot
// changes at most (accounting.step, smaller in tests). A 1M-key root added
// in one transaction held every dirty page of the refs table in C memory
// until the commit (60-85 MB), and LMDB keeps the pages of its largest
// transaction allocated for reuse for as long as the file is open. A step
// dirties at most one leaf page a reference, 32 MB, when each lands on a
// page of its own (a refs table much larger than the root); new keys next
// to each other share pages (about 0.5 MB). Steps cost little: a 1M-key
// root went in in 1.5-2.4 s with 8k or 64k a step, either way (/var/tmp).
const rootStep = 1 << 13

// diffRoot applies the references of a (re)pin that differ between the
// old and new keys (m.a and m.b), from m's positions on, at most max of
// them (max < 0: all), adding the new keys' sizes to *distinct. Only the
// blobs the old and new root do not share change: a re-pin of an
// unchanged 1M-file tree rewrites no reference at all, where dropping the
// old root first rewrote every one of them, twice.
func (c *change) diffRoot(uid uint32, m *merger, max int, distinct *int64) error {
	for n := 0; !m.done() && n != max; {
		kb, inOld, inNew := m.next()
		if inNew {
			*distinct += keySize(kb)
		}
		switch {
		case inOld && inNew:
			continue
		case inNew:
			if err := c.ref(uid, kb, +1); err != nil {
				return err
			}
		default:
			if err := c.ref(uid, kb, -1); err != nil {
				return err
			}
		}
		n++
	}
	return nil
}

// writeRoot writes a root's record in place (MDB_RESERVE): no copy of its
// 41 bytes a key is built in Go memory.
func (c *change) writeRoot(uid uint32, id string, pinnedAt, files, distinct int64, keys keyList) error {
	v, err := c.txn.PutReserve(c.a.roots, rootKey(uid, id), rootHdrLen+len(keys), 0)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint64(v, uint64(pinnedAt))
	binary.BigEndian.PutUint64(v[8:], uint64(distinct))
	binary.BigEndian.PutUint64(v[16:], uint64(files))
	copy(v[rootHdrLen:], keys)
	return nil
}

// putRoot records a root (replacing one of the same id) with its keys
// (sorted, distinct), in the change's one transaction.
func (c *change) putRoot(uid uint32, id string, pinnedAt, files int64, keys keyList) error {
	old, err := rootKeys(c.txn, c.a.roots, uid, id)
	if err != nil {
		return err
	}
	var distinct int64
	if err := c.diffRoot(uid, &merger{a: old, b: keys}, -1, &distinct); err != nil {
		return err
	}
	return c.writeRoot(uid, id, pinnedAt, files, distinct, keys)
}

// AddRoot records a pinned root with its keys (sorted, distinct), changing
// at most rootStep references a transaction (see updateSteps). The old
// record stays as it was until the last one, which replaces it: each
// transaction finds its place again in it by position.
func (a *accounting) AddRoot(uid uint32, id string, pinnedAt, files int64, keys keyList) error {
	m := merger{b: keys}
	var distinct int64
	return a.updateSteps(func(c *change) (bool, error) {
		old, err := rootKeys(c.txn, a.roots, uid, id)
		if err != nil {
			return false, err
		}
		m.a = old // the same record each time, mapped afresh
		if err := c.diffRoot(uid, &m, a.step, &distinct); err != nil {
			return false, err
		}
		if !m.done() {
			return true, nil
		}
		return false, c.writeRoot(uid, id, pinnedAt, files, distinct, keys)
	})
}

// DropRoot forgets a root, at most rootStep references a transaction
// (see AddRoot).
func (a *accounting) DropRoot(uid uint32, id string) error {
	var m merger
	var distinct int64
	return a.updateSteps(func(c *change) (bool, error) {
		old, err := rootKeys(c.txn, a.roots, uid, id)
		if err != nil || old == nil {
			return false, err
		}
		m.a = old
		if err := c.diffRoot(uid, &m, a.step, &distinct); err != nil {
			return false, err
		}
		if !m.done() {
			return true, nil
		}
		return false, c.txn.Del(c.a.roots, rootKey(uid, id), nil)
	})
}

// pinnedRoot is a root as found on disk, for recounts and the startup
// check.
type pinnedRoot struct {
	uid      uint32
	id       string
	pinnedAt int64
	path     string // the pinned copy
}

// Recorded lists the roots the accounting holds, by "uid/id", with their
// pin times.
func (a *accounting) Recorded() (map[string]int64, bool, error) {
	out := map[string]int64{}
	var initialized bool
	err := a.env.View(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		if v, err := txn.Get(a.md, []byte("version")); err == nil {
			initialized = len(v) == 1 && v[0] == usageVersion
		} else if !lmdb.IsNotFound(err) {
			return err
		}
		// A change spanning transactions that never finished.
		if _, err := txn.Get(a.md, []byte(pendingKey)); err == nil {
			initialized = false
		} else if !lmdb.IsNotFound(err) {
			return err
		}
		cur, err := txn.OpenCursor(a.roots)
		if err != nil {
			return err
		}
		defer cur.Close()
		for k, v, err := cur.Get(nil, nil, lmdb.First); ; k, v, err = cur.Get(nil, nil, lmdb.Next) {
			if lmdb.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			out[string(k)] = decRoot(v).PinnedAt
		}
	})
	return out, initialized, err
}

// Recount rebuilds the accounting from the given roots, reading each
// pinned copy with walk, in one transaction. It returns the previous
// totals for comparison.
func (a *accounting) Recount(ctx context.Context, roots []pinnedRoot, walk func(ctx context.Context, path string, c *keyCollector) (files int64, err error)) (before map[uint32]Totals, err error) {
	before = a.All()
	type walked struct {
		r     pinnedRoot
		files int64
		keys  keyList
	}
	var all []walked
	for _, r := range roots {
		var c keyCollector
		files, err := walk(ctx, r.path, &c)
		if err != nil {
			return nil, fmt.Errorf("recount: root %s: %w", r.path, err)
		}
		all = append(all, walked{r, files, c.sorted()})
	}
	err = a.update(func(c *change) error {
		for _, dbi := range []lmdb.DBI{a.refs, a.users, a.roots} {
			if err := c.txn.Drop(dbi, false); err != nil {
				return err
			}
		}
		c.totals, c.total = map[uint32]Totals{}, Totals{}
		for _, rk := range all {
			if err := c.putRoot(rk.r.uid, rk.r.id, rk.r.pinnedAt, rk.files, rk.keys); err != nil {
				return err
			}
		}
		return ctx.Err()
	})
	return before, err
}

// errStale: the accounting does not match the roots on disk.
var errStale = errors.New("usage accounting does not match the pinned roots")

// Matches reports whether the accounting recorded exactly roots.
func (a *accounting) Matches(roots []pinnedRoot) error {
	rec, initialized, err := a.Recorded()
	if err != nil {
		return err
	}
	if !initialized {
		return fmt.Errorf("%w: new accounting file, one of an older format, or a change left in part", errStale)
	}
	if len(rec) != len(roots) {
		return fmt.Errorf("%w: %d roots recorded, %d pinned", errStale, len(rec), len(roots))
	}
	for _, r := range roots {
		at, ok := rec[string(rootKey(r.uid, r.id))]
		if !ok || at != r.pinnedAt {
			return fmt.Errorf("%w: uid %d root %s changed", errStale, r.uid, r.id)
		}
	}
	return nil
}

// removeFile deletes an accounting file that cannot be opened, so that a
// recount can start from scratch.
func removeAccounting(path string) error {
	err := os.Remove(path)
	os.Remove(path + "-lock")
	return err
}
