package manifest

import (
	"bufio"
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// mappedFile is where LMDB mapped the manifest's data file in this
// process: fixed from the env's open to its close (the map size is set
// once, before the open).
type mappedFile struct {
	start, end uintptr
	ino        uint64 // the data file's, for tests
}

// noteMapped finds the data file's mapping in /proc/self/maps by its
// device and inode.
func (m *Manifest) noteMapped() {
	fd, err := m.env.FD()
	if err != nil {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(int(fd), &st) != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset major:minor inode path
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 6 {
			continue
		}
		ino, err := strconv.ParseUint(string(fields[4]), 10, 64)
		if err != nil || ino != st.Ino {
			continue
		}
		maj, min, ok := bytes.Cut(fields[3], []byte{':'})
		if !ok || parseHex(maj) != uint64(unix.Major(st.Dev)) || parseHex(min) != uint64(unix.Minor(st.Dev)) {
			continue
		}
		lo, hi, ok := bytes.Cut(fields[0], []byte{'-'})
		if !ok || bytes.IndexByte(fields[1], 'w') >= 0 {
			continue // never a writable mapping (none is: no MDB_WRITEMAP)
		}
		if start, end := parseHex(lo), parseHex(hi); end > start {
			m.mapped = mappedFile{start: uintptr(start), end: uintptr(end), ino: st.Ino}
		}
		return
	}
}

// dropResident takes the manifest's pages out of this process's resident
// set (madvise MADV_DONTNEED on LMDB's read-only shared mapping: the
// pages stay in the page cache, and a later read maps them again, with
// the same bytes, at the cost of a minor fault). LMDB reads every page
// through its map, so a scan of the whole manifest (Count after every
// commit, the prune) left all of it resident: a watcher of a 300k-file
// tree held 74 MB of manifest pages beside 37 MB of its own. Called after
// a commit, every scanBatch entries a Reader's scans read (the kernel maps
// 64 KB around each fault, so a scan between two drops still maps a few
// MB), and when a caller asks (Reader.DropResident). Lookups never drop: a
// FUSE view's and a re-ingest's keep their pages.
func (m *Manifest) dropResident() {
	if m.mapped.end > m.mapped.start {
		unix.Syscall(unix.SYS_MADVISE, m.mapped.start, m.mapped.end-m.mapped.start, unix.MADV_DONTNEED)
	}
}

func parseHex(b []byte) uint64 {
	v, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil {
		return 0
	}
	return v
}
