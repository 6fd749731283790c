package cas

import (
	"strings"
	"testing"
)

// FuzzParseName parses arbitrary blob names (a sweep and verify parse every
// name they find in the store, where anyone with write access could have
// left anything). Parsing must not panic; a name it accepts is canonical
// (Key.Name gives it back byte for byte), so one blob has one name, and its
// path stays inside the fan-out directories.
func FuzzParseName(f *testing.F) {
	h := strings.Repeat("ab", HashSize)
	for _, s := range []string{
		h + "_0.bin", h + "_12_x.bin", h + "_9223372036854775807.bin", h + "_9223372036854775808.bin",
		h + "_-1.bin", h + "_01.bin", h + "_+1.bin", strings.ToUpper(h) + "_1.bin", h + "_1.BIN",
		h + "_1", h + ".bin", h[:10] + "_1.bin", "_1.bin", ".bin", "", h + "_1_x_x.bin", h + "_1__x.bin",
		"../../etc/passwd_1.bin", h + "_1.bin.tmp",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		k, err := ParseName(name)
		if err != nil {
			if !strings.Contains(err.Error(), "blob name") {
				t.Fatalf("error does not say what failed: %v", err)
			}
			return
		}
		if k.Size < 0 {
			t.Fatalf("%q: negative size %d", name, k.Size)
		}
		if got := k.Name(); got != name {
			t.Fatalf("%q parses to a key named %q", name, got)
		}
		rel := k.RelPath()
		if strings.Contains(rel, "..") || strings.Count(rel, "/") != 3 || !strings.HasSuffix(rel, "/"+name) {
			t.Fatalf("%q: path %q", name, rel)
		}
	})
}

// FuzzKeyName: every key's name parses back to the same key.
func FuzzKeyName(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef"), int64(5), true)
	f.Fuzz(func(t *testing.T, sum []byte, size int64, exec bool) {
		var k Key
		copy(k.Sum[:], sum)
		if size < 0 {
			size = -(size + 1)
		}
		k.Size, k.Exec = size, exec
		got, err := ParseName(k.Name())
		if err != nil || got != k {
			t.Fatalf("%+v -> %q -> %+v, %v", k, k.Name(), got, err)
		}
	})
}
