package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/rpc"
)

func (s *Service) put(ctx context.Context, c *rpc.Call) (any, error) {
	files := c.Files()
	defer closeAll(files)
	var p rpc.PutParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	if len(p.Files) != len(files) {
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "ingest.put: %d files described, %d descriptors passed", len(p.Files), len(files))
	}
	sess, err := s.session(c, p.Session)
	if err != nil {
		return nil, err
	}
	if !sess.enter() {
		return nil, errdefs.Newf(errdefs.ErrNotFound, "ingest session %q has ended", p.Session)
	}
	defer sess.puts.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(sess.ctx, cancel)()
	results := make([]rpc.PutResult, len(files))
	var g errgroup.Group
	g.SetLimit(8)
	for i, f := range files {
		g.Go(func() error {
			var err error
			results[i], err = s.putOne(ctx, sess, f, p.Files[i])
			return err
		})
	}
	// A quota or store-limit refusal fails the whole call with -32003, so
	// the client stops before it touches the project.
	// The session ends: its blobs, unpinned, are garbage, and no longer
	// count against the user's quota. (Ended in the background: ending
	// waits for this put.)
	if err := g.Wait(); err != nil {
		sess.connClose()
		go s.endSession(sess, "refused: "+err.Error())
		return nil, err
	}
	return rpc.PutResults{Results: results}, nil
}

// reachable reports whether the daemon itself can reach, by the path the
// client named, the very inode the client passed: then the file is
// reachable by anyone (the daemon has no more rights than any user, bar
// its own files), and sharing its content reveals nothing. A 0644 file in
// a 0700 home is not: the daemon cannot traverse the home.
func reachable(name string, st *unix.Stat_t) bool {
	if !filepath.IsAbs(name) || len(name) > MaxPathLen || strings.IndexByte(name, 0) >= 0 {
		return false
	}
	fd, err := unix.Open(name, reachFlags, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var got unix.Stat_t
	if err := unix.Fstat(fd, &got); err != nil {
		return false
	}
	return got.Dev == st.Dev && got.Ino == st.Ino
}

// errFileGrew: more bytes than fstat reported arrived through the
// descriptor; the blob would not be the file the budget was charged for.
var errFileGrew = errors.New("the file grew while the daemon read it; retry")

// putOne copies one passed descriptor into the store. It reads through the
// descriptor with pread, never by path, so it sees exactly what the caller
// could read. No lock is held while it reads: the key is recorded in the
// session (an in-flight GC root) under the sweep lock in the same short
// critical section that checks whether the blob exists.
func (s *Service) putOne(ctx context.Context, sess *session, f *os.File, meta rpc.PutFile) (rpc.PutResult, error) {
	res := s.putFile(ctx, sess, f, meta)
	if res.Error != "" || res.Private || res.Blob == "" {
		return res, nil
	}
	k, err := cas.ParseName(res.Blob)
	if err != nil {
		return res, nil
	}
	if res.New {
		if err := s.chargeKey(sess, k); err != nil {
			return res, err
		}
	}
	if err := s.checkStore(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// putFile stores one passed descriptor (see putOne).
func (s *Service) putFile(ctx context.Context, sess *session, f *os.File, meta rpc.PutFile) rpc.PutResult {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return rpc.PutResult{Error: "fstat: " + err.Error()}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return rpc.PutResult{Error: "not a regular file"}
	}
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil || flags&unix.O_ACCMODE == unix.O_WRONLY {
		return rpc.PutResult{Error: "descriptor not open for reading"}
	}
	sess.mu.Lock()
	sess.files++
	sess.mu.Unlock()
	s.metrics.ingestFiles.Inc()
	// Shared only when world-readable and world-reachable by its path.
	if !s.cfg.SharePrivate && (st.Mode&0o004 == 0 || !reachable(meta.Name, &st)) {
		sess.mu.Lock()
		sess.private++
		sess.mu.Unlock()
		s.metrics.ingestPrivate.Inc()
		return rpc.PutResult{Private: true}
	}
	if !sess.charge(st.Size, s.cfg.MaxSessionBytes) {
		return rpc.PutResult{Error: fmt.Sprintf("refused: %d bytes would exceed this ingest's budget of %d bytes "+
			"(sparse holes count: the daemon reads them)", st.Size, s.cfg.MaxSessionBytes)}
	}
	var firstSeen bool
	guard := func(k cas.Key, has func(cas.Key) bool) bool {
		s.sw.gcLock.RLock()
		defer s.sw.gcLock.RUnlock()
		sess.mu.Lock()
		h := engine.KeyHash(k)
		_, seen := sess.keys[h]
		sess.keys[h] = struct{}{}
		sess.mu.Unlock()
		firstSeen = !seen
		return has(k)
	}
	// One byte past the size fstat reported tells a growing file.
	res, err := sess.batch.PutGuarded(ctx, io.NewSectionReader(f, 0, st.Size+1), meta.Exec, guard)
	if err == nil && res.Key.Size > st.Size {
		err = errFileGrew
	}
	if err != nil {
		return rpc.PutResult{Error: err.Error()}
	}
	sess.mu.Lock()
	if res.New {
		sess.newBlobs++
		sess.newBytes += res.Key.Size
	}
	sess.mu.Unlock()
	s.metrics.ingestReadBytes.Add(float64(st.Size))
	if res.New {
		s.metrics.ingestNewBlobs.Inc()
		s.metrics.ingestNewBytes.Add(float64(res.Key.Size))
	} else {
		s.metrics.ingestReused.Inc()
	}
	// New is answered from the caller's own view (first time in this
	// session), never from the store's: the store's answer would tell the
	// caller whether someone else stored this content.
	return rpc.PutResult{Blob: res.Key.Name(), New: firstSeen}
}
