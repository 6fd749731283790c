package manifest

import (
	"os"
	"strconv"
)

// fdPath names the file open as fd: opening it reopens that very inode,
// whatever its path has become since.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// dirPath names name inside the open directory d: the lookup goes through
// d's inode, not through the path d was opened by.
func dirPath(d *os.File, name string) string { return fdPath(int(d.Fd())) + "/" + name }
