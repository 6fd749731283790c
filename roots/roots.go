// Package roots is the registry of GC roots, one type for both modes: the
// manifests a store must keep the blobs of. Direct mode keeps it in
// <store>/roots and records manifests read in place; the daemon keeps it in
// <state>/roots and records the manifest copies it pinned.
//
// Layout, the same in both modes:
//
//	<dir>/<uid>/<id>.json   the record (JSON, Record)
//	<dir>/<uid>/<id>.lmdb   its pinned copy, if it has one
//
// where id is ID(manifest path), so registering a manifest again replaces
// its record instead of adding one. Every write is atomic and durable
// (internal/atomicfile): a crash leaves the old record or the new one. A
// pinned copy is published by rename before its record, so a record never
// names a copy that is not there; a crash between the two leaves an
// unrecorded copy, which nothing reads and the next pin replaces.
package roots

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vrift/vrift/internal/atomicfile"
)

// Record is one root.
type Record struct {
	UID          uint32    `json:"uid"`
	ManifestPath string    `json:"manifest_path"`
	Files        int64     `json:"files"`
	Bytes        int64     `json:"bytes"`
	PinnedAt     time.Time `json:"pinned_at"`
	// InPlace records a manifest read where it is (direct mode): there
	// is no pinned copy. It is negative so that the daemon's records
	// written before this field existed, which all have a copy, read as
	// having one.
	InPlace bool `json:"in_place,omitempty"`
	// ID is the record's name in the registry (set by Get and List).
	ID string `json:"-"`
}

// HasCopy reports whether the registry holds a pinned copy of the
// manifest (CopyPath).
func (r Record) HasCopy() bool { return !r.InPlace }

// ID names a root's files: a hash of its manifest path, so registering is
// idempotent and needs no shared index.
func ID(manifestPath string) string {
	sum := sha256.Sum256([]byte(manifestPath))
	return hex.EncodeToString(sum[:16])
}

// BadRecord is a record file that could not be read or parsed. It may name
// any manifest, so a sweep must not run while one exists.
type BadRecord struct {
	Path string
	UID  uint32
	ID   string
	Err  error
}

func (b BadRecord) String() string { return b.Err.Error() }

// ErrUnreadable is returned (wrapped, by CheckBad) when a sweep meets a
// record it cannot read.
var ErrUnreadable = errors.New("unreadable root record")

// CheckBad is the sweeps' refusal for unreadable records: nil if there are
// none.
func CheckBad(bad []BadRecord) error {
	if len(bad) == 0 {
		return nil
	}
	more := ""
	if len(bad) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(bad)-1)
	}
	return fmt.Errorf("%w: %s%s: it may name any manifest, so nothing is deleted", ErrUnreadable, bad[0], more)
}

// Registry is a root registry in one directory.
type Registry struct{ dir string }

// Open opens (creating, mode 0700) the registry in dir and moves records
// of the old direct-mode layout (<dir>/<id>, holding the manifest path)
// into the current one.
func Open(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open roots %s: %w", dir, err)
	}
	r := &Registry{dir: dir}
	if err := r.migrate(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Registry) ownerDir(uid uint32) string {
	return filepath.Join(r.dir, strconv.FormatUint(uint64(uid), 10))
}

func (r *Registry) recordPath(uid uint32, id string) string {
	return filepath.Join(r.ownerDir(uid), id+".json")
}

// CopyPath is the path of rec's pinned copy, or "" if it has none.
func (r *Registry) CopyPath(rec Record) string {
	if rec.InPlace {
		return ""
	}
	return filepath.Join(r.ownerDir(rec.UID), recID(rec)+".lmdb")
}

func recID(rec Record) string {
	if rec.ID != "" {
		return rec.ID
	}
	return ID(rec.ManifestPath)
}

// TempCopy creates a file in uid's directory to write a pinned copy of the
// manifest with id into: Put publishes it by rename, which needs the same
// filesystem. The caller removes it if it does not Put it.
func (r *Registry) TempCopy(uid uint32, id string) (*os.File, error) {
	if err := os.MkdirAll(r.ownerDir(uid), 0o700); err != nil {
		return nil, fmt.Errorf("roots: %w", err)
	}
	f, err := os.CreateTemp(r.ownerDir(uid), id+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("roots: %w", err)
	}
	return f, nil
}

// Put records rec, replacing any record of the same manifest and owner.
// With copyTmp set (a file from TempCopy, written and synced), it is first
// renamed to rec's pinned copy; without, rec is recorded in place.
func (r *Registry) Put(rec Record, copyTmp string) error {
	if rec.ManifestPath == "" {
		return errors.New("register root: empty manifest path")
	}
	rec.ID = ID(rec.ManifestPath)
	rec.InPlace = copyTmp == ""
	if err := os.MkdirAll(r.ownerDir(rec.UID), 0o700); err != nil {
		return fmt.Errorf("register root %s: %w", rec.ManifestPath, err)
	}
	if copyTmp != "" {
		// The record's directory fsync below (atomicfile) makes this
		// rename durable too: both are in the same directory.
		if err := os.Rename(copyTmp, r.CopyPath(rec)); err != nil {
			return fmt.Errorf("register root %s: publish pinned copy: %w", rec.ManifestPath, err)
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("register root %s: %w", rec.ManifestPath, err)
	}
	if err := atomicfile.Write(r.recordPath(rec.UID, rec.ID), b, 0o600); err != nil {
		return fmt.Errorf("register root %s: %w", rec.ManifestPath, err)
	}
	return nil
}

// Get reads uid's record with id. A missing record is fs.ErrNotExist
// (wrapped).
func (r *Registry) Get(uid uint32, id string) (Record, error) {
	return readRecord(r.recordPath(uid, id), uid, id)
}

// readRecord reads and checks one record file: a record whose content does
// not match its name (another owner, another manifest) is as bad as a
// garbled one, since a sweep could not tell which is right.
func readRecord(path string, uid uint32, id string) (Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Record{}, err // names the path
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case rec.ManifestPath == "":
		return Record{}, fmt.Errorf("%s: no manifest path", path)
	case ID(rec.ManifestPath) != id:
		return Record{}, fmt.Errorf("%s: names a manifest of another id", path)
	case rec.UID != uid:
		return Record{}, fmt.Errorf("%s: belongs to uid %d, not to its directory's", path, rec.UID)
	}
	rec.ID = id
	return rec, nil
}

// Remove drops uid's record with id and its pinned copy. The record goes
// first: a crash in between leaves an unrecorded copy, never a record
// whose copy is gone.
func (r *Registry) Remove(uid uint32, id string) error {
	side := r.recordPath(uid, id)
	base := strings.TrimSuffix(side, ".json")
	// The old layout's file too, or the next Open would move it back.
	for _, p := range []string{side, base + ".lmdb", base + ".lmdb-lock", filepath.Join(r.dir, id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("drop root %s: %w", p, err)
		}
	}
	return nil
}

// List returns uid's records, and the record files it could not read
// (bad). Names that are not records (temp files, pinned copies, LMDB lock
// files) are ignored.
func (r *Registry) List(uid uint32) (recs []Record, bad []BadRecord, err error) {
	recs, bad, err = r.listOwner(uid)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil // no roots yet
	}
	return recs, bad, err
}

// ListAll returns every owner's records, and the record files it could
// not read. Old-layout records still at the top (see migrate.go) are read
// in place, once: one being moved as we read is not listed twice.
func (r *Registry) ListAll() (recs []Record, bad []BadRecord, err error) {
	owners, legacy, bad, err := r.owners()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil // no roots yet
	}
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, uid := range owners {
		rs, bs, err := r.listOwner(uid)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		for _, rec := range rs {
			seen[fmt.Sprint(rec.UID, "/", rec.ID)] = true
		}
		recs = append(recs, rs...)
		bad = append(bad, bs...)
	}
	for _, rec := range legacy {
		if !seen[fmt.Sprint(rec.UID, "/", rec.ID)] {
			recs = append(recs, rec)
		}
	}
	return recs, bad, nil
}

// Count is how many records uid has, readable or not: each takes one of
// the owner's slots (the daemon's MaxRootsPerUser).
func (r *Registry) Count(uid uint32) (int, error) {
	names, err := r.recordNames(uid)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	return len(names), err
}

// owners lists the uids that have a directory, and reads the old-layout
// records left at the top (moved by another process as we read, written
// by an older vrift since, or garbled: those are bad).
func (r *Registry) owners() ([]uint32, []Record, []BadRecord, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list roots: %w", err)
	}
	var out []uint32
	var legacy []Record
	var bad []BadRecord
	for _, e := range entries {
		if uid, err := strconv.ParseUint(e.Name(), 10, 32); err == nil && e.IsDir() {
			out = append(out, uint32(uid))
			continue
		}
		if !e.Type().IsRegular() || !isLegacyName(e.Name()) {
			continue
		}
		rec, err := r.readLegacy(e.Name())
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			bad = append(bad, BadRecord{Path: filepath.Join(r.dir, e.Name()), ID: e.Name(), Err: err})
		default:
			legacy = append(legacy, rec)
		}
	}
	return out, legacy, bad, nil
}

// recordNames lists the ids of uid's record files.
func (r *Registry) recordNames(uid uint32) ([]string, error) {
	entries, err := os.ReadDir(r.ownerDir(uid))
	if err != nil {
		return nil, fmt.Errorf("list roots: %w", err)
	}
	var ids []string
	for _, e := range entries {
		// Temp files are <id>.json.<pid>.tmp: not records until renamed.
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (r *Registry) listOwner(uid uint32) (recs []Record, bad []BadRecord, err error) {
	ids, err := r.recordNames(uid)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		rec, err := r.Get(uid, id)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Removed since the directory was read.
		case err != nil:
			bad = append(bad, BadRecord{Path: r.recordPath(uid, id), UID: uid, ID: id, Err: err})
		default:
			recs = append(recs, rec)
		}
	}
	return recs, bad, nil
}
