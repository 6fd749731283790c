package fs

import (
	"bufio"
	"errors"
	"os"
	"strings"
)

// fuseSubtype makes the kernel show views as fuse.vrift (FSType).
const fuseSubtype = "vrift"

// fsName is the source a view shows in the mount table: the manifest as
// given; the table's fstype (fuse.vrift, from the subtype) tells vrift's
// views from other FUSE mounts.
func fsName(source string) string { return source }

// Mounts lists the vrift views in this mount namespace.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		left, right, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		lf, rf := strings.Fields(left), strings.Fields(right)
		if len(lf) < 5 || len(rf) < 2 || rf[0] != FSType {
			continue
		}
		m := Mount{Mountpoint: unescapeMountinfo(lf[4]), Source: unescapeMountinfo(rf[1])}
		m.Stale = IsStale(m.Mountpoint)
		m.Reads = readReadsNote(m.Mountpoint)
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v := 0
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + int(c-'0')
			}
			if ok {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
