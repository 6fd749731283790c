package fs

import "testing"

func TestFuseOwner(t *testing.T) {
	for opts, want := range map[string]int{
		"rw,user_id=1000,group_id=1000,allow_other": 1000,
		"rw,user_id=0,group_id=0":                   0,
		"rw,errors=remount-ro":                      -1,
		"rw,user_id=x":                              -1,
	} {
		if got := fuseOwner(opts); got != want {
			t.Errorf("fuseOwner(%q) = %d, want %d", opts, got, want)
		}
	}
}

// TestMountTableHasRoot: the table reader sees / (every namespace has it).
func TestMountTableHasRoot(t *testing.T) {
	table, err := mountTable()
	if err != nil {
		t.Fatal(err)
	}
	if !hasMountpoint(table, "/") {
		t.Errorf("no / in the mount table: %+v", table)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/a\040b\011c\134d`); got != "/tmp/a b\tc\\d" {
		t.Errorf("unescapeMountinfo: %q", got)
	}
}
