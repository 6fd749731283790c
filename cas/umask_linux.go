package cas

import (
	"bufio"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// umaskStrips reports whether the process umask would clear bits of mode,
// read from /proc (reading it with umask(2) would change it, racily). When
// unsure it says yes, and directories get an explicit chmod.
func umaskStrips(mode fs.FileMode) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return true
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return err != nil || uint32(mode.Perm())&uint32(mask) != 0
		}
	}
	return true
}
