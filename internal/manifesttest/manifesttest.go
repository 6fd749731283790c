// Package manifesttest reads a project's manifest whole, for tests that
// compare what two ways of recording a tree recorded. Tests only.
package manifesttest

import (
	"reflect"
	"testing"

	"github.com/vrift/vrift/manifest"
)

// Entries is every entry of the manifest of the project at proj below
// subtree ("." for all), directories without the identity (inode, ctime)
// that only a listing records: a live refresh records a directory's entry
// without listing it.
func Entries(t testing.TB, proj, subtree string) map[string]manifest.Entry {
	t.Helper()
	m, err := manifest.Open(manifest.PathFor(proj))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := map[string]manifest.Entry{}
	err = m.View(func(r *manifest.Reader) error {
		return r.Walk(subtree, func(p string, e manifest.Entry) error {
			if e.Kind == manifest.Dir {
				e.Ino, e.CTime = 0, 0
			}
			out[p] = e
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Same fails t, naming up to ten paths, unless got records what want does.
func Same(t testing.TB, what string, want, got map[string]manifest.Entry) {
	t.Helper()
	n := 0
	for p, e := range want {
		if g, ok := got[p]; !ok || !reflect.DeepEqual(e, g) {
			if n++; n <= 10 {
				t.Errorf("%s: %s: %+v, want %+v", what, p, g, e)
			}
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			if n++; n <= 10 {
				t.Errorf("%s: %s recorded, but not in the reference", what, p)
			}
		}
	}
	if n > 0 {
		t.Fatalf("%s: %d entries differ", what, n)
	}
}
