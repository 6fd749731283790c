//go:build !linux

package engine

import (
	iofs "io/fs"
	"os"
)

// readDirents lists d through os.File.ReadDir (getdents64 is Linux's).
func readDirents(d *os.File, _ []byte) ([]dirent, error) {
	des, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	ents := make([]dirent, len(des))
	for i, de := range des {
		typ := de.Type()
		if typ&^(iofs.ModeDir|iofs.ModeSymlink) != 0 {
			typ = iofs.ModeIrregular // as getdents64's DT_FIFO, DT_SOCK...
		}
		ents[i] = dirent{name: de.Name(), typ: typ}
	}
	return ents, nil
}
