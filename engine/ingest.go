package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/fs/tree"
	"github.com/vrift/vrift/manifest"
)

// Tier says what happens to the ingested files themselves.
type Tier string

const (
	// Tier1 replaces each file by a projection of its blob.
	Tier1 Tier = "tier1"
	// Tier2 leaves files as they are; the store keeps a copy.
	Tier2 Tier = "tier2"
)

// Mode says whether the tree stays in the project after ingest.
type Mode string

const (
	// Solid keeps the tree in place (projected or untouched, by tier).
	Solid Mode = "solid"
	// Phantom removes the ingested files: the tree lives in the manifest
	// until linked or mounted.
	Phantom Mode = "phantom"
)

// BlobWriter stores file content. Direct mode writes to a *cas.Store; daemon
// mode hands the open descriptor to the daemon, which reads it itself.
type BlobWriter interface {
	// PutFile stores the content of f (positioned at its start).
	PutFile(ctx context.Context, f *os.File, exec bool) (cas.PutResult, error)
	// Sync returns once every blob put so far is durable.
	Sync(ctx context.Context) error
}

// IngestOptions configure one ingest.
type IngestOptions struct {
	Dir string
	// ManifestPath overrides the manifest location; by default it is the
	// project root's .vrift/manifest.lmdb.
	ManifestPath string
	Tier         Tier
	Mode         Mode
	// StoreRoot is the store's absolute root; projections point into it.
	StoreRoot string
	Blobs     BlobWriter
	// Workers bounds concurrent file reads; 0 picks a default.
	Workers int
	// Progress, if set, is called from time to time with running totals.
	Progress func(files, bytes int64)
	// Warn receives one line per thing the user should know about.
	Warn func(msg string)
	// Committed, if set, runs once the manifest is committed and before
	// the project is touched; an error stops the ingest there. Daemon mode
	// pins the manifest with the daemon here, so that no projection ever
	// depends on blobs that are not held by a root.
	Committed func(manifestPath string) error
	// AllowOtherOwner lets the ingest work in a project or directory
	// another user owns (refused by default, see tree.CheckOwner). Every
	// change stays confined to the tree either way.
	AllowOtherOwner bool
	// Copy stores a copy of every file even where it could be adopted
	// (tier1 in direct mode: the file's own inode becomes the blob).
	Copy bool
	// Method is how tier1 solid ingest projects files in place: symlinks
	// (the default, the spec's) or hardlinks. A hardlink projection is the
	// blob's own inode at the user's path: Node tools work on it (they
	// resolve symlinks to the store), and an adopted file already is its
	// blob, so it costs no swap and no new inode at all. Hardlinks need
	// the store on the project's filesystem and a blob the user may link:
	// direct mode only. The method applies to files not yet projected; a
	// projection found from an earlier ingest stays as it is.
	Method vfs.Method
	// Paths, when set, are what a watcher saw change (keys relative to the
	// project root, below Dir): only they are looked at, each as it is now
	// (live.go). A directory is walked whole; a path that is gone leaves
	// the manifest with everything below it. Nil means the whole of Dir.
	Paths []string
	// SkipBusy leaves a file that another process still has open (the
	// write-lease test) as it was recorded and lists it in Busy, for the
	// watcher to retry once its writer closes it; so too a file that
	// keeps changing while it is read (a writer still writing, which
	// macOS has no test for). Without it such a file is read like any
	// other.
	SkipBusy bool
	// CommitEvery, when positive, commits the manifest each time that many
	// entries have been written, and prunes what is gone in the last
	// commit, instead of in one transaction: LMDB holds every page a
	// transaction dirties in memory until it commits, about 150 bytes an
	// entry (46 MB for the first scan of a 300k-file tree). Each part
	// names only durable blobs, but a run that fails part-way leaves the
	// parts before it committed, the old entries of what is gone not yet
	// pruned: for the watcher, whose commits are batched anyway, not for
	// an explicit ingest, which either commits or leaves the old manifest.
	CommitEvery int
}

// IngestResult reports one ingest. Files counts regular files.
type IngestResult struct {
	Files        int64  `json:"files"`
	Bytes        int64  `json:"bytes"`
	Unique       int64  `json:"unique"`
	ManifestPath string `json:"manifest_path"`
	NewBlobs     int64  `json:"new_blobs"`
	NewBytes     int64  `json:"new_bytes"`
	Reused       int64  `json:"reused"`
	DurationMS   int64  `json:"duration_ms"`
	Root         string `json:"root"`
	Subtree      string `json:"subtree"`
	Dirs         int64  `json:"dirs"`
	Symlinks     int64  `json:"symlinks"`
	Skipped      int64  `json:"skipped"`
	Private      int64  `json:"private"`
	Projected    int64  `json:"projected"`
	// Adopted counts new blobs that are the user's own inodes, made
	// read-only and linked into the store; Copied, new blobs written as
	// copies.
	Adopted int64 `json:"adopted"`
	Copied  int64 `json:"copied"`
	Removed int64 `json:"removed"`
	Tier    Tier  `json:"tier"`
	Mode    Mode  `json:"mode"`
	// ReadFiles and ReadBytes count the files whose content this ingest
	// read (hashed or handed to the daemon): zero for a tree the store
	// already holds as recorded.
	ReadFiles int64 `json:"read_files"`
	ReadBytes int64 `json:"read_bytes"`
	// Busy lists the files left as they were because another process
	// had them open (SkipBusy).
	Busy []string `json:"busy,omitempty"`
	// Store is the store root the manifest's projections point into.
	Store string `json:"store"`
}

// skipNames are never ingested at any depth.
var skipNames = map[string]bool{manifest.DirName: true, ".git": true}

// swapPrefix names the temporaries of an in-place swap or adoption, so
// that one left behind by a crash is recognised (tree.IsTemp).
const swapPrefix = tree.SwapTempPrefix

// Target resolves where an ingest of dir records its tree: the absolute
// directory, the project root, the manifest path and the subtree key.
func Target(dir, manifestOverride string) (real, root, manifestPath, subtree string, err error) {
	real, err = resolveDir(dir)
	if err != nil {
		return "", "", "", "", fmt.Errorf("ingest %s: %w", dir, err)
	}
	root = FindProjectRoot(real)
	manifestPath = manifest.PathFor(root)
	if manifestOverride != "" {
		if manifestPath, err = filepath.Abs(manifestOverride); err != nil {
			return "", "", "", "", err
		}
	}
	subtree, err = filepath.Rel(root, real)
	if err != nil {
		return "", "", "", "", err
	}
	return real, root, manifestPath, filepath.ToSlash(subtree), nil
}

// An ingest is a pipeline of stages, each in its own file:
//
//	walk.go    walker: the tree in pre-order, files reused from the old
//	           manifest or queued for reading
//	read.go    hashFile: read (and store) one file through a BlobWriter
//	commit.go  record: runs walk and read, and commits the one manifest
//	           write transaction once every blob is durable
//	swap.go    projectInPlace/removeTree: only then touch the project
//
// Ingest stores every regular file under opts.Dir, records the tree in the
// project manifest and then projects, keeps or removes the files according to
// tier and mode. Nothing in the project changes until every blob is durable
// and the manifest is committed; a failure before then leaves the project and
// manifest as they were.
func Ingest(ctx context.Context, opts IngestOptions) (*IngestResult, error) {
	start := time.Now()
	if opts.Tier == "" {
		opts.Tier = Tier1
	}
	if opts.Mode == "" {
		opts.Mode = Solid
	}
	if opts.Tier != Tier1 && opts.Tier != Tier2 {
		return nil, fmt.Errorf("ingest: unknown tier %q (want tier1 or tier2)", opts.Tier)
	}
	if opts.Mode != Solid && opts.Mode != Phantom {
		return nil, fmt.Errorf("ingest: unknown mode %q (want solid or phantom)", opts.Mode)
	}
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	if err := checkMethod(opts); err != nil {
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
	if opts.Method == "" {
		opts.Method = vfs.Symlink
	}
	dir, root, mpath, subtree, err := Target(opts.Dir, opts.ManifestPath)
	if err != nil {
		return nil, err
	}
	if within(dir, opts.StoreRoot) {
		return nil, fmt.Errorf("ingest %s: refusing to ingest the store itself", opts.Dir)
	}
	// Everything below the project root is reached by descriptor, and a
	// tree another user controls is refused before anything is written.
	t, err := tree.Open(root)
	if err != nil {
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
	defer t.Close()
	if err := checkOwners(t, subtree, opts.AllowOtherOwner); err != nil {
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
	if opts.Method == vfs.Hardlink {
		if err := sameFilesystem(t, opts.StoreRoot); err != nil {
			return nil, fmt.Errorf("ingest %s: --method hardlink: %w", opts.Dir, err)
		}
	}
	fresh := !exists(mpath)
	m, err := manifest.Create(mpath)
	if err != nil {
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
	defer m.Close()

	in := &ingester{opts: opts, root: root, dir: dir, subtree: subtree, m: m, t: t,
		writable: dirUnlocker{t: t}, seed: maphash.MakeSeed()}
	in.res.ManifestPath, in.res.Root, in.res.Subtree = mpath, root, subtree
	in.res.Tier, in.res.Mode, in.res.Store = opts.Tier, opts.Mode, opts.StoreRoot
	if a, ok := opts.Blobs.(Adopter); ok && opts.Tier == Tier1 && !opts.Copy {
		in.adopt = &adoption{a: a, uid: uint32(os.Geteuid()), dev: a.StoreDev()}
	}
	if err := in.record(ctx); err != nil {
		if in.adopt != nil {
			in.adopt.undo(t)
		}
		if fresh {
			// Leave no trace of an ingest that recorded nothing.
			m.Discard()
		}
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
	if opts.Committed != nil {
		if err := opts.Committed(mpath); err != nil {
			return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
		}
	}
	if in.sawNodeModules && opts.Tier == Tier1 && opts.Mode == Solid && opts.Method == vfs.Symlink {
		opts.Warn("node_modules is now a farm of symlinks into the store; " + nodeSafe)
	}
	if opts.Paths != nil {
		in.vouch(ctx, in.unvouched, 1) // see liveVouch
	}
	switch {
	case opts.Mode == Phantom:
		err = in.removeTree(ctx)
	case opts.Tier == Tier1 && in.unprojected.len() > 0:
		err = in.projectInPlace(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("ingest %s: %w", opts.Dir, err)
	}
	in.res.Unique = int64(in.unique.len())
	in.res.DurationMS = time.Since(start).Milliseconds()
	return &in.res, nil
}

type ingester struct {
	opts      IngestOptions
	root, dir string
	subtree   string
	t         *tree.Tree
	m         *manifest.Manifest
	res       IngestResult
	// unique holds the distinct contents' keys (keyHash), for Unique.
	unique         hashSet
	sawNodeModules bool
	// unprojected holds (the hashes of) the paths of files recorded as
	// stored, not found projected already: the files the in-place swap
	// visits. A projection of an earlier ingest stays as it is, whatever
	// its method (a hardlink projection is a regular file too). Only a
	// tier1 solid ingest, which swaps, keeps it.
	unprojected hashSet
	seed        maphash.Seed
	writable    dirUnlocker
	// adopt is set when files may be adopted rather than copied.
	adopt *adoption
	// prune are the keys below which entries this ingest did not see are
	// deleted: the subtree walked, or each path of a live refresh. Set by
	// the walking goroutine, read once it is done.
	prune []string
	// unvouched are the directories a live refresh recorded without
	// their identity (liveVouch), by the walking goroutine too.
	unvouched map[string]int64
}

// checkMethod refuses an in-place projection other than symlinks and
// hardlinks, and a method where nothing is projected in place.
func checkMethod(opts IngestOptions) error {
	switch opts.Method {
	case "", vfs.Symlink:
		return nil
	case vfs.Hardlink:
		if opts.Tier != Tier1 || opts.Mode != Solid {
			return fmt.Errorf("--method applies to tier1 solid ingest, which projects files in place (this is %s %s)", opts.Tier, opts.Mode)
		}
		return nil
	}
	return fmt.Errorf("ingest projects files in place by symlink or hardlink, not %q (vrift link makes copies and reflinks)", opts.Method)
}

// sameFilesystem refuses a store on another filesystem than the project:
// no file could be hardlinked to its blob.
func sameFilesystem(t *tree.Tree, storeRoot string) error {
	var pst, sst unix.Stat_t
	if err := unix.Fstat(t.FD(), &pst); err != nil {
		return err
	}
	if err := unix.Stat(storeRoot, &sst); err != nil {
		return err
	}
	if pst.Dev != sst.Dev {
		return fmt.Errorf("the store %s is on another filesystem than the project %s", vfs.Quote(storeRoot), vfs.Quote(t.Path()))
	}
	return nil
}

// checkOwners refuses a project root or ingested directory another user
// owns, unless allowed.
func checkOwners(t *tree.Tree, subtree string, allow bool) error {
	if err := t.CheckOwner(allow); err != nil {
		return err
	}
	fd, err := t.OpenDir(subtree)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	return tree.CheckOwner(filepath.Join(t.Path(), filepath.FromSlash(subtree)), st.Uid, allow)
}

// recorded is one path ready for the manifest.
type recorded struct {
	path  string
	entry manifest.Entry
	// How the file's content was obtained, for the totals.
	reused, newBlob, adopted bool
	// projected is set for a file found already projected (a symlink to
	// its blob), which needs no swap.
	projected bool
	// private is set for a file the shared store keeps out: it is not
	// recorded and stays as it is.
	private bool
	// busy is set for a file another process has open (SkipBusy): its
	// entry stays as it was.
	busy bool
	// unchanged is set for an entry taken as it is from the previous
	// manifest: the commit need not look it up again to write nothing.
	unchanged bool
}

// hashJob is a regular file that must be read.
type hashJob struct{ path, abs string }

// Batch sizes between pipeline stages: handing items over one at a time
// costs more in goroutine wake-ups than the syscalls they carry.
const (
	recordBatch = 256
	jobBatch    = 32
)

// swapWorkers is how many in-place swaps run at once.
// errUnchanged aborts the manifest transaction of an ingest that found
// nothing new: an unchanged tree costs no write and no fsync.
var errUnchanged = errors.New("unchanged")

func (in *ingester) blobPath(k cas.Key) string { return cas.BlobPath(in.opts.StoreRoot, k) }

func (in *ingester) abs(p string) string {
	if p == manifest.RootPath {
		return in.root
	}
	return filepath.Join(in.root, filepath.FromSlash(p))
}

// within reports whether p is dir or lies below it (both absolute, clean).
func within(p, dir string) bool {
	if dir == "" {
		return false
	}
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}
