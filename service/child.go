package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vrift/vrift/roots"
)

// A pinned manifest is a user's file, and C LMDB trusts what it reads: a
// corrupted branch page trips an assertion (SIGABRT) or a wild read
// (SIGSEGV/SIGBUS) in the C code, which no Go recover can catch. So the
// daemon first walks a manifest it has not validated in a short-lived child
// process (itself, re-executed), which reports the keys. Only a copy whose
// walk completed there is parsed in the daemon (gc, verify): the copy is the
// daemon's own file and the same walk over the same bytes takes the same
// path.

// childEnv names the manifest a child process walks.
const childEnv = "VRIFT_DAEMON_WALK_MANIFEST"

// childFlag is the child's only argument.
const childFlag = "-vrift-manifest-reader"

// childTimeout bounds one child's walk (a crafted manifest can make LMDB
// loop), and maxChildren how many walk at once, daemon-wide.
const (
	childTimeout = 2 * time.Minute
	maxChildren  = 4
)

// RunChild runs the manifest walker if this process was started as one.
// The daemon's main (and any test binary of this package) calls it first
// and exits with the code when ran is true.
func RunChild() (code int, ran bool) {
	path := os.Getenv(childEnv)
	if path == "" {
		return 0, false
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	var rec roots.Record
	var c keyCollector
	err := walkKeys(context.Background(), path, &rec, &c)
	if err == nil {
		// The keys sorted and distinct, their count first: the daemon
		// holds them in one allocation and merges them against a
		// root's old keys (Delta, AddRoot).
		if _, err = w.Write([]byte{'n'}); err == nil {
			err = c.writeSorted(w)
		}
	}
	if err == nil {
		var t [17]byte
		t[0] = 'T'
		binary.LittleEndian.PutUint64(t[1:], uint64(rec.Files))
		binary.LittleEndian.PutUint64(t[9:], uint64(rec.Bytes))
		w.Write(t[:])
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	return 0, true
}

// walkInChild walks the manifest at path in a child process and returns
// its distinct file keys, sorted, filling rec's totals.
func (s *Service) walkInChild(ctx context.Context, path string, rec *roots.Record) (keyList, error) {
	select {
	case s.children <- struct{}{}:
		defer func() { <-s.children }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, s.childTimeout)
	defer cancel()
	// The flag makes a binary that does not call RunChild first (a test
	// binary without the hook, say) fail at once on an unknown flag
	// instead of running as something else until the timeout.
	cmd := exec.CommandContext(ctx, s.exe, childFlag)
	cmd.Env = []string{childEnv + "=" + path}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start manifest reader: %w", err)
	}
	keys, trailer, rerr := readChild(bufio.NewReaderSize(out, 1<<20), s.cfg.MaxManifest)
	werr := cmd.Wait()
	switch {
	case werr != nil:
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i] // an LMDB assertion's first line, not a Go stack
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("manifest reader timed out after %v", s.childTimeout)
		}
		return nil, fmt.Errorf("%v: %s", werr, sanitize(msg))
	case rerr != nil:
		return nil, rerr
	case !trailer:
		return nil, errors.New("manifest reader ended early")
	}
	rec.Files, rec.Bytes = keys.files, keys.bytes
	return keys.keys, nil
}

type childKeys struct {
	keys         keyList
	files, bytes int64
}

// readChild reads a child's keys: their count, the keys (sorted and
// distinct, which it checks), then the totals. The list is allocated once,
// for the count given, up to max bytes (a manifest of max bytes holds
// fewer keys than that: each entry takes more than keyLen bytes).
func readChild(r io.Reader, max int64) (childKeys, bool, error) {
	var ck childKeys
	var tag [1]byte
	for {
		if _, err := io.ReadFull(r, tag[:]); err != nil {
			if err == io.EOF {
				return ck, false, nil
			}
			return ck, false, err
		}
		switch tag[0] {
		case 'n':
			var n [8]byte
			if _, err := io.ReadFull(r, n[:]); err != nil {
				return ck, false, err
			}
			count := binary.LittleEndian.Uint64(n[:])
			if ck.keys != nil || count > uint64(max)/keyLen {
				return ck, false, fmt.Errorf("manifest reader: bad output")
			}
			ck.keys = make(keyList, count*keyLen)
			if _, err := io.ReadFull(r, ck.keys); err != nil {
				return ck, false, err
			}
			if err := ck.keys.check(); err != nil {
				return ck, false, fmt.Errorf("manifest reader: %w", err)
			}
		case 'T':
			var t [16]byte
			if _, err := io.ReadFull(r, t[:]); err != nil {
				return ck, false, err
			}
			ck.files = int64(binary.LittleEndian.Uint64(t[:]))
			ck.bytes = int64(binary.LittleEndian.Uint64(t[8:]))
			io.Copy(io.Discard, r)
			return ck, true, nil
		default:
			return ck, false, fmt.Errorf("manifest reader: bad output")
		}
	}
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
