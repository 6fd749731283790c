package fs

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
)

// fuseSubtype makes the kernel show views as fuse.vrift (FSType).
const fuseSubtype = "vrift"

// fsName is the source a view shows in the mount table: the manifest as
// given; the table's fstype (fuse.vrift, from the subtype) tells vrift's
// views from other FUSE mounts.
func fsName(source string) string { return source }

// mountTable is this mount namespace's table, from /proc/self/mountinfo
// (empty without /proc).
func mountTable() ([]tableEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var out []tableEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		left, right, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		lf, rf := strings.Fields(left), strings.Fields(right)
		if len(lf) < 5 || len(rf) < 2 {
			continue
		}
		e := tableEntry{Mountpoint: unescapeMountinfo(lf[4]), FSType: rf[0], Source: unescapeMountinfo(rf[1]), Owner: -1}
		if len(rf) > 2 {
			e.Owner = fuseOwner(rf[2])
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// fuseOwner is the user_id= of a FUSE mount's super options (the uid that
// mounted it), -1 if there is none.
func fuseOwner(superopts string) int {
	for _, o := range strings.Split(superopts, ",") {
		if v, ok := strings.CutPrefix(o, "user_id="); ok {
			if uid, err := strconv.Atoi(v); err == nil {
				return uid
			}
		}
	}
	return -1
}

// viewSource is a view's manifest as mounted, if e is a vrift view: the
// fstype (fuse.vrift, from the subtype) tells views from other FUSE mounts.
func viewSource(e tableEntry) (string, bool) {
	return e.Source, e.FSType == FSType
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
