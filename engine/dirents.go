//go:build linux

package engine

import (
	"bytes"
	"encoding/binary"
	iofs "io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// readDirents lists the directory open at fd with getdents64 into buf,
// which the walk reuses from one directory to the next. os.File.ReadDir
// allocates an fs.DirEntry for every entry on top of its name: 6% of an
// unchanged 1M-file tier1 re-ingest, whose walk is otherwise one listing
// per directory and one manifest lookup per entry.
func readDirents(d *os.File, buf []byte) ([]dirent, error) {
	fd := int(d.Fd())
	var ents []dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return ents, nil
		}
		for off := 0; off < n; {
			// struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			if reclen < 20 || off+reclen > n {
				return nil, unix.EIO // a record the kernel would not write
			}
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			off += reclen
			if len(name) == 0 || name[0] == '.' && (len(name) == 1 || len(name) == 2 && name[1] == '.') {
				continue
			}
			var mode iofs.FileMode
			switch typ {
			case unix.DT_DIR:
				mode = iofs.ModeDir
			case unix.DT_LNK:
				mode = iofs.ModeSymlink
			case unix.DT_REG, unix.DT_UNKNOWN:
			default:
				mode = iofs.ModeIrregular
			}
			ents = append(ents, dirent{name: string(name), typ: mode, unknown: typ == unix.DT_UNKNOWN})
		}
	}
}
