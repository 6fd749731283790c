package service

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// LMDB 0.9 on-disk constants (lmdb.h/mdb.c, 64-bit pgno_t).
const (
	lmdbMagic       = 0xBEEFC0DE
	lmdbDataVersion = 1
	lmdbPageHdr     = 16
	lmdbInvalidPage = ^uint64(0)
	lmdbMetaFlag    = 0x08 // P_META
)

// checkLMDB validates an LMDB file's structure before C LMDB maps it: a
// pinned manifest comes from a user, and LMDB trusts its meta pages. A last
// page number past the end of the file would make LMDB touch mapped pages
// the file does not back, and the daemon would die of SIGBUS. LMDB itself
// refuses page numbers beyond the last page (MDB_PAGE_NOTFOUND), so bounding
// the last page by the file's size bounds every page it can reach.
func checkLMDB(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	var off int64
	for i := range 2 {
		psize, err := checkMeta(f, off, size, i)
		if err != nil {
			return fmt.Errorf("meta page %d: %w", i, err)
		}
		off += int64(psize)
	}
	return nil
}

var errNotLMDB = errors.New("not an LMDB file")

func checkMeta(f *os.File, off, size int64, n int) (uint32, error) {
	var b [lmdbPageHdr + 136]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("%w: file too short", errNotLMDB)
		}
		return 0, err
	}
	le := binary.LittleEndian
	if pgno := le.Uint64(b[0:]); pgno != uint64(n) {
		return 0, fmt.Errorf("%w: page number %d", errNotLMDB, pgno)
	}
	if flags := le.Uint16(b[10:]); flags&lmdbMetaFlag == 0 {
		return 0, fmt.Errorf("%w: not a meta page (flags %#x)", errNotLMDB, flags)
	}
	m := b[lmdbPageHdr:]
	if le.Uint32(m[0:]) != lmdbMagic {
		return 0, fmt.Errorf("%w: bad magic", errNotLMDB)
	}
	if v := le.Uint32(m[4:]); v != lmdbDataVersion {
		return 0, fmt.Errorf("%w: data version %d", errNotLMDB, v)
	}
	psize := le.Uint32(m[24:]) // mm_dbs[FREE_DBI].md_pad holds the page size
	if psize < 512 || psize > 65536 || psize&(psize-1) != 0 {
		return 0, fmt.Errorf("%w: page size %d", errNotLMDB, psize)
	}
	lastPg := le.Uint64(m[120:])
	pages := uint64(size) / uint64(psize)
	if lastPg >= pages {
		return 0, fmt.Errorf("%w: last page %d past the end of the file (%d pages)", errNotLMDB, lastPg, pages)
	}
	for _, at := range []int{64, 112} { // mm_dbs[FREE_DBI].md_root, mm_dbs[MAIN_DBI].md_root
		if root := le.Uint64(m[at:]); root != lmdbInvalidPage && root > lastPg {
			return 0, fmt.Errorf("%w: root page %d past the last page %d", errNotLMDB, root, lastPg)
		}
	}
	return psize, nil
}
