package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// faultFile is a FUSE file whose reads misbehave on purpose. Reads bypass
// the page cache (direct I/O) and attributes are never cached, so every
// read and every fstat reaches it.
type faultFile struct {
	gofs.Inode
	mu sync.Mutex
	// content returns the n bytes at off that the open numbered gen (from
	// 1) sees after reads reads, or an errno that fails the read; size is
	// what fstat reports at that point.
	content func(gen, reads int, off int64, n int) ([]byte, syscall.Errno)
	size    func(gen, reads int) int64
	// gen counts opens, reads the reads of the latest open.
	gen, reads int
}

var (
	_ = (gofs.NodeGetattrer)((*faultFile)(nil))
	_ = (gofs.NodeOpener)((*faultFile)(nil))
	_ = (gofs.NodeReader)((*faultFile)(nil))
)

func (f *faultFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	out.Mode = syscall.S_IFREG | 0o644
	out.Size = uint64(f.size(f.gen, f.reads))
	// Time moves with every read that changed the content: the engine
	// compares fstat before and after its copy.
	t := uint64(1_700_000_000 + f.version())
	out.Mtime, out.Ctime, out.Atime = t, t, t
	out.SetTimeout(0)
	return 0
}

// version is what the content depends on: the open's generation and, for
// files that change under a reader, the reads so far.
func (f *faultFile) version() int {
	b, _ := f.content(f.gen, f.reads, -1, 0)
	if len(b) == 1 {
		return f.gen*1000 + int(b[0])
	}
	return 0
}

func (f *faultFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	f.mu.Lock()
	f.gen++
	f.reads = 0
	f.mu.Unlock()
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *faultFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, errno := f.content(f.gen, f.reads, off, len(dest))
	f.reads++
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultData(b), 0
}

// pattern is n bytes of c from off, within size.
func pattern(c byte, off int64, n int, size int64) []byte {
	if off >= size {
		return nil
	}
	return bytes.Repeat([]byte{c}, int(min(int64(n), size-off)))
}

type faultRoot struct{ gofs.Inode }

const goodContent = "a good file\n"

// faults are the fault layer's files, one project directory each (one
// failing file stops its ingest), each with a good file beside it.
var faults = map[string]*faultFile{
	// EIO after 1.5 MiB of 3 MiB: the streaming path.
	"eio-large": {
		content: func(gen, reads int, off int64, n int) ([]byte, syscall.Errno) {
			if off >= 3<<19 {
				return nil, syscall.EIO
			}
			return pattern('L', off, min(n, int(3<<19-max(off, 0))), 3<<20), 0
		},
		size: func(int, int) int64 { return 3 << 20 },
	},
	// EIO after 64 KiB of 512 KiB: the small (in-memory) path.
	"eio-small": {
		content: func(gen, reads int, off int64, n int) ([]byte, syscall.Errno) {
			if off >= 64<<10 {
				return nil, syscall.EIO
			}
			return pattern('S', off, min(n, int(64<<10-max(off, 0))), 512<<10), 0
		},
		size: func(int, int) int64 { return 512 << 10 },
	},
	// Its content changes with every read, on every open.
	"changing": {
		content: func(gen, reads int, off int64, n int) ([]byte, syscall.Errno) {
			return pattern(byte('a'+reads%26), off, n, 2<<20), 0
		},
		size: func(int, int) int64 { return 2 << 20 },
	},
	// It grows by 4 KiB with each of the first 8 reads of every open.
	"growing": {
		content: func(gen, reads int, off int64, n int) ([]byte, syscall.Errno) {
			return pattern('G', off, n, int64(2<<20+4096*min(reads, 8))), 0
		},
		size: func(gen, reads int) int64 { return int64(2<<20 + 4096*min(reads, 8)) },
	},
	// It shrinks by 4 KiB with each of the first 8 reads of every open.
	"shrinking": {
		content: func(gen, reads int, off int64, n int) ([]byte, syscall.Errno) {
			return pattern('H', off, n, int64(2<<20-4096*min(reads, 8))), 0
		},
		size: func(gen, reads int) int64 { return int64(2<<20 - 4096*min(reads, 8)) },
	},
	// It changes while its first open reads it, then settles: the retry
	// must store the settled content only.
	"settles": {
		content: func(gen, reads int, off int64, n int) ([]byte, syscall.Errno) {
			if gen == 1 {
				return pattern(byte('a'+reads%26), off, n, 2<<20), 0
			}
			return pattern('Z', off, n, 2<<20), 0
		},
		size: func(int, int) int64 { return 2 << 20 },
	},
}

// runBounded runs the CLI for at most a minute and returns its stderr and
// exit code.
func runBounded(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("vrift %s: still running after a minute", strings.Join(args, " "))
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stderr.String(), 0
}

func (r *faultRoot) OnAdd(ctx context.Context) {
	for name, f := range faults {
		dir := r.NewPersistentInode(ctx, &gofs.Inode{}, gofs.StableAttr{Mode: syscall.S_IFDIR})
		r.AddChild(name, dir, false)
		dir.AddChild("good.txt", r.NewPersistentInode(ctx, &gofs.MemRegularFile{Data: []byte(goodContent),
			Attr: fuse.Attr{Mode: 0o644}}, gofs.StableAttr{}), false)
		dir.AddChild(name+".bin", r.NewPersistentInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
	}
}

// The content functions double as the version for Getattr: asked at off -1
// they return one byte that names the content the reads so far saw.
func init() {
	for _, f := range faults {
		content := f.content
		f.content = func(gen, reads int, off int64, n int) ([]byte, syscall.Errno) {
			if off >= 0 {
				return content(gen, reads, off, n)
			}
			b, _ := content(gen, reads, 0, 1)
			if len(b) == 0 {
				return []byte{0}, 0
			}
			return b, 0
		}
	}
}

// TestReadFaults (root, FUSE): ingest over a FUSE fault layer. A file that
// fails with EIO midway (on the streaming and on the small path) stops the
// ingest with an error naming it; a file that changes, grows or shrinks
// while it is read is detected (size/ctime after the copy differ) and named.
// Either way no manifest is left, no temp file, and no blob but those of
// good content. A file that settles after one changing read is stored with
// its settled content.
func TestReadFaults(t *testing.T) {
	requireRoot(t)
	mnt := t.TempDir()
	zero := time.Duration(0)
	server, err := gofs.Mount(mnt, &faultRoot{}, &gofs.Options{
		AttrTimeout: &zero, EntryTimeout: &zero,
		MountOptions: fuse.MountOptions{FsName: "vrift-faults", Name: "vrift-faults"},
	})
	if err != nil {
		t.Fatalf("mount the fault layer: %v", err)
	}
	t.Cleanup(func() {
		if server.Unmount() != nil {
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	if err := server.WaitMount(); err != nil {
		t.Fatal(err)
	}
	// The CLI runs as its own process, bounded in time: a client stuck on
	// this process's own FUSE mount must not hang the test for good.
	bin := buildVrift(t, t.TempDir())
	goodSum := sha256.Sum256([]byte(goodContent))
	settled := sha256.Sum256(bytes.Repeat([]byte{'Z'}, 2<<20))
	for _, c := range []struct {
		name string
		want string
	}{
		{"eio-large", `read: .*input/output error`},
		{"eio-small", `read: .*input/output error`},
		{"changing", `file keeps changing while being read`},
		{"growing", `file keeps changing while being read`},
		{"shrinking", `file keeps changing while being read`},
		{"settles", ``},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "store")
			mpath := filepath.Join(t.TempDir(), "m.lmdb")
			stderr, code := runBounded(t, bin, "--store", store, "ingest", "--tier", "tier2", "--manifest", mpath,
				filepath.Join(mnt, c.name))
			t.Logf("exit %d: %s", code, strings.TrimSpace(stderr))
			allowed := map[string]bool{hex.EncodeToString(goodSum[:]): true}
			if c.want == "" {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				allowed[hex.EncodeToString(settled[:])] = true
				out := filepath.Join(t.TempDir(), "out")
				mustVrift(t, "--store", store, "link", "--manifest", mpath, "--method", "copy", "--to", out)
				// The manifest's root is the fault layer's top (no project
				// marker), so the file is under its directory's name.
				b, err := os.ReadFile(filepath.Join(out, c.name, c.name+".bin"))
				if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{'Z'}, 2<<20)) {
					t.Fatalf("the settled file was not stored with its settled content (%d bytes, %v)", len(b), err)
				}
			} else {
				re := regexp.MustCompile(`^vrift: ingest .*: .*` + regexp.QuoteMeta(c.name+".bin") + `.*` + c.want + `\n$`)
				if code != 1 || !re.MatchString(stderr) {
					t.Fatalf("exit %d, stderr %q; want exit 1 and /%s/", code, stderr, re)
				}
				if _, err := os.Stat(mpath); err == nil {
					t.Error("the failed ingest left a manifest")
				}
			}
			if n := countIn(t, filepath.Join(store, "tmp")); n != 0 {
				t.Errorf("%d temp files left", n)
			}
			// Every stored blob is content that was really there: a good
			// file or, for the settled one, its final version. Blobs of
			// content read while the file changed are counted.
			var mixed int
			filepath.Walk(filepath.Join(store, "blake3"), func(p string, info os.FileInfo, err error) error {
				if err != nil || info.IsDir() {
					return nil
				}
				b, _ := os.ReadFile(p)
				sum := sha256.Sum256(b)
				if !allowed[hex.EncodeToString(sum[:])] {
					mixed++
					t.Logf("blob of content read while it changed: %s (%d bytes)", filepath.Base(p), len(b))
				}
				return nil
			})
			// The read is checked before its content is kept
			// (cas.Batch.PutChecked): no blob of mixed content, even
			// from an ingest that then succeeded.
			if mixed > 0 {
				t.Errorf("%d blobs of content read while the file changed", mixed)
			}
			if _, errs, code := vrift(t, "--store", store, "verify"); code != 0 {
				t.Errorf("verify: %s", errs)
			}
		})
	}
}
