package watch

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// FSEvents' translation (fsevents.go), fed synthetic batches of paths and
// flags as an FSEventStream delivers them, on any system: what macOS's
// source does with them without a Mac. The stream itself
// (source_darwin.go) is only compiled here.

// recSink records the calls a source makes on its watcher.
type recSink struct {
	calls []string
	// holding makes holdOwn hold, as during a projection.
	holding bool
}

func (r *recSink) abs(key string) string { return "/abs/" + key }
func (r *recSink) changed(key string)    { r.calls = append(r.calls, "changed "+key) }
func (r *recSink) barrier(c string)      { r.calls = append(r.calls, "barrier "+c) }
func (r *recSink) overflowed()           { r.calls = append(r.calls, "overflowed") }
func (r *recSink) unwatched(key string, why error) {
	r.calls = append(r.calls, fmt.Sprintf("unwatched %s: %v", key, why))
}
func (r *recSink) ownEventsEnd(name string) { r.calls = append(r.calls, "ownEventsEnd "+name) }
func (r *recSink) holdOwn(key string, dir bool) bool {
	if r.holding {
		r.calls = append(r.calls, fmt.Sprintf("held %s dir=%v", key, dir))
	}
	return r.holding
}

func (r *recSink) take() []string {
	c := r.calls
	r.calls = nil
	return c
}

// A project /Users/a/p watched at its subtree node_modules, as a macOS
// temp directory is spelled both /var/... and /private/var/...
var (
	fsevTree    = fsevRoot{"/var/t/p/node_modules", "/private/var/t/p/node_modules"}
	fsevCookies = fsevRoot{"/var/t/p/.vrift/watch", "/private/var/t/p/.vrift/watch"}
)

const (
	nm  = "/private/var/t/p/node_modules"
	ckd = "/private/var/t/p/.vrift/watch"
)

func newTestTranslator(still bool) (*fsevTranslator, *recSink) {
	r := &recSink{}
	x := newFSEvTranslator(r, fsevTree, fsevCookies, "node_modules", func(string) bool { return still })
	return x, r
}

func feed(t *testing.T, x *fsevTranslator, at time.Time, evs ...fsevEvent) {
	t.Helper()
	if err := x.handle(evs, at); err != nil {
		t.Fatalf("handle %v: %v", evs, err)
	}
}

func wantCalls(t *testing.T, r *recSink, want ...string) {
	t.Helper()
	if got := r.take(); !slices.Equal(got, want) {
		t.Errorf("sink calls:\n got %q\nwant %q", got, want)
	}
}

func TestFSEventsFileEvents(t *testing.T) {
	x, r := newTestTranslator(true)
	t0 := time.Unix(1000, 0)
	file := func(path string, f uint32) fsevEvent { return fsevEvent{path, f | fsevItemIsFile} }

	// Created, written and closed within one latency window: the flags
	// are coalesced, and the file goes to the watcher's debounce at once.
	feed(t, x, t0, file(nm+"/a/index.js", fsevItemCreated|fsevItemModified))
	wantCalls(t, r, "changed node_modules/a/index.js")

	// Either spelling of the root.
	feed(t, x, t0, file("/var/t/p/node_modules/b.js", fsevItemModified))
	wantCalls(t, r, "changed node_modules/b.js")

	// npm's temp name renamed over the final one: both paths are
	// refreshed as they are now (the temp's is gone, so it records
	// nothing); removals and attribute changes alike.
	feed(t, x, t0,
		file(nm+"/c/package.json.1234", fsevItemCreated|fsevItemModified|fsevItemRenamed),
		file(nm+"/c/package.json", fsevItemRenamed),
		file(nm+"/old.js", fsevItemRemoved),
		file(nm+"/bin.js", fsevItemInodeMetaMod),
		fsevEvent{nm + "/c", fsevItemCreated | fsevItemIsDir},
		fsevEvent{nm + "/.bin/x", fsevItemCreated | fsevItemIsSymlink},
		file(nm+"/clone.bin", fsevItemCreated|fsevItemCloned),
	)
	wantCalls(t, r, "changed node_modules/c/package.json.1234", "changed node_modules/c/package.json",
		"changed node_modules/old.js", "changed node_modules/bin.js", "changed node_modules/c",
		"changed node_modules/.bin/x", "changed node_modules/clone.bin")

	// What no refresh records, at any depth (the stream is recursive):
	// vrift's own directory, .git, vrift's temp names; and what is not
	// below the watched directory, the watched directory itself, and
	// events that carry no change.
	feed(t, x, t0,
		file(nm+"/.vrift/manifest.lmdb/data.mdb", fsevItemModified),
		file(nm+"/dep/.git/index", fsevItemModified),
		fsevEvent{nm + "/d/.vrift-tmp-x.js", fsevItemCreated | fsevItemRenamed | fsevItemIsSymlink},
		file(nm+"/.vrift-swap-y/z", fsevItemModified),
		file("/private/var/t/p/package.json", fsevItemModified),
		file("/private/var/t/p/node_modules2/x", fsevItemModified),
		fsevEvent{nm, fsevItemInodeMetaMod | fsevItemIsDir},
		fsevEvent{"", fsevHistoryDone},
		fsevEvent{nm, fsevEventIDsWrapped},
	)
	wantCalls(t, r)
}

// A file only created is held for its first write (FSEvents has no close
// event); its next event, a sync cookie or fsevOpenHold releases it.
func TestFSEventsOpenHold(t *testing.T) {
	x, r := newTestTranslator(true)
	t0 := time.Unix(1000, 0)
	created := func(name string) fsevEvent { return fsevEvent{nm + "/" + name, fsevItemCreated | fsevItemIsFile} }

	feed(t, x, t0, created("big.tar"), created("empty"), created("gone"))
	wantCalls(t, r)
	if x.holding() != 3 {
		t.Fatalf("holding %d files, want 3", x.holding())
	}
	// Its writer closes it: the close's content event (flags may still
	// carry Created) releases it through the debounce.
	feed(t, x, t0.Add(300*time.Millisecond), fsevEvent{nm + "/big.tar", fsevItemCreated | fsevItemModified | fsevItemIsFile})
	wantCalls(t, r, "changed node_modules/big.tar")
	// Deleted before it was ever written: refreshed (it leaves nothing).
	feed(t, x, t0.Add(400*time.Millisecond), fsevEvent{nm + "/gone", fsevItemCreated | fsevItemRemoved | fsevItemIsFile})
	wantCalls(t, r, "changed node_modules/gone")
	// A second Created-only event does not restart its hold.
	feed(t, x, t0.Add(900*time.Millisecond), created("empty"))
	x.tick(t0.Add(fsevOpenHold - time.Millisecond))
	wantCalls(t, r)
	x.tick(t0.Add(fsevOpenHold))
	wantCalls(t, r, "changed node_modules/empty")
	if x.holding() != 0 {
		t.Fatalf("holding %d files after release", x.holding())
	}

	// A sync cookie answers for files held for their first write too,
	// and they go to the watcher before the cookie does.
	feed(t, x, t0, created("late"))
	feed(t, x, t0.Add(10*time.Millisecond), fsevEvent{ckd + "/cookie-42-1", fsevItemCreated | fsevItemIsFile})
	wantCalls(t, r, "changed node_modules/late", "barrier cookie-42-1")
}

func TestFSEventsCookies(t *testing.T) {
	x, r := newTestTranslator(true)
	t0 := time.Unix(1000, 0)
	feed(t, x, t0,
		fsevEvent{ckd + "/cookie-1-2", fsevItemCreated | fsevItemIsFile},
		fsevEvent{"/var/t/p/.vrift/watch/cookie-1-3", fsevItemCreated | fsevItemIsFile},
		fsevEvent{ckd + "/self-1-4", fsevItemCreated | fsevItemIsFile},
		// Its removal by the watcher, with the creation's flag still set.
		fsevEvent{ckd + "/cookie-1-2", fsevItemCreated | fsevItemRemoved | fsevItemIsFile},
		// The error beside a cookie, the watcher's state and lock, and
		// a cookie directory's own attributes.
		fsevEvent{ckd + "/cookie-1-2.err", fsevItemCreated | fsevItemIsFile},
		fsevEvent{ckd + "/.state.json.77", fsevItemCreated | fsevItemModified | fsevItemRenamed | fsevItemIsFile},
		fsevEvent{ckd + "/state.json", fsevItemRenamed | fsevItemIsFile},
		fsevEvent{ckd, fsevItemInodeMetaMod | fsevItemIsDir},
	)
	wantCalls(t, r, "barrier cookie-1-2", "barrier cookie-1-3", "ownEventsEnd self-1-4")

	// The project root watched: the watch directory lies inside the
	// tree, and its events are cookies, not files.
	rootTree := fsevRoot{"/private/var/t/p"}
	x = newFSEvTranslator(r, rootTree, fsevRoot{ckd}, ".", nil)
	feed(t, x, t0,
		fsevEvent{ckd + "/cookie-9-9", fsevItemCreated | fsevItemIsFile},
		fsevEvent{"/private/var/t/p/.vrift/manifest.lmdb/data.mdb", fsevItemModified | fsevItemIsFile},
		fsevEvent{"/private/var/t/p/src/main.go", fsevItemModified | fsevItemIsFile},
	)
	wantCalls(t, r, "barrier cookie-9-9", "changed src/main.go")
}

// Lost events are rescans, never silence.
func TestFSEventsDropped(t *testing.T) {
	x, r := newTestTranslator(true)
	t0 := time.Unix(1000, 0)
	held := fsevEvent{nm + "/held", fsevItemCreated | fsevItemIsFile}

	// Coalesced into one directory: that directory, walked whole.
	feed(t, x, t0, fsevEvent{nm + "/lodash", fsevMustScanSubDirs})
	wantCalls(t, r, "changed node_modules/lodash")
	feed(t, x, t0, fsevEvent{nm, fsevMustScanSubDirs})
	wantCalls(t, r, "changed node_modules")

	// Dropped by fseventsd or the kernel: the whole tree, and what was
	// held is covered by that rescan.
	for _, f := range []uint32{fsevUserDropped, fsevKernelDropped} {
		feed(t, x, t0, held, fsevEvent{nm + "/lodash", fsevMustScanSubDirs | f})
		wantCalls(t, r, "overflowed")
		if x.holding() != 0 {
			t.Errorf("%#x: still holding %d files after a rescan", f, x.holding())
		}
	}
	// Coalesced above the watched directory, or in the cookie
	// directory (a cookie may be among them): the whole tree, and the
	// watcher rereads the cookie directory.
	feed(t, x, t0, fsevEvent{"/private/var/t", fsevMustScanSubDirs})
	wantCalls(t, r, "overflowed")
	feed(t, x, t0, fsevEvent{ckd, fsevMustScanSubDirs})
	wantCalls(t, r, "overflowed")
	// Elsewhere: not ours.
	feed(t, x, t0, fsevEvent{"/private/var/other", fsevMustScanSubDirs})
	wantCalls(t, r)
}

func TestFSEventsRootChanged(t *testing.T) {
	// Still the same directory (a parent renamed and back): a rescan.
	x, r := newTestTranslator(true)
	feed(t, x, time.Unix(1000, 0), fsevEvent{"/var/t/p/node_modules", fsevRootChanged})
	wantCalls(t, r, "overflowed")

	// Gone, or another directory now: the source ends with an error.
	x, r = newTestTranslator(false)
	err := x.handle([]fsevEvent{{"/var/t/p/node_modules", fsevRootChanged}}, time.Unix(1000, 0))
	if err == nil || !strings.Contains(err.Error(), "/var/t/p/node_modules") || !strings.Contains(err.Error(), "moved or deleted") {
		t.Errorf("root gone: err %v", err)
	}
	wantCalls(t, r)
}

// While the watcher projects, every event in the tree is held for it to
// sort (its own renames are not told apart by FSEvents' flags), cookies
// are not, and a held file is not also held for its first write.
func TestFSEventsOwnEvents(t *testing.T) {
	x, r := newTestTranslator(true)
	r.holding = true
	t0 := time.Unix(1000, 0)
	feed(t, x, t0,
		fsevEvent{nm + "/a.js", fsevItemRenamed | fsevItemIsSymlink},
		fsevEvent{nm + "/a", fsevItemInodeMetaMod | fsevItemIsDir},
		fsevEvent{nm + "/new.js", fsevItemCreated | fsevItemIsFile},
		fsevEvent{nm + "/.vrift-tmp-a.js", fsevItemCreated | fsevItemRenamed | fsevItemIsSymlink},
		fsevEvent{ckd + "/self-5-6", fsevItemCreated | fsevItemIsFile},
	)
	wantCalls(t, r, "held node_modules/a.js dir=false", "held node_modules/a dir=true",
		"held node_modules/new.js dir=false", "ownEventsEnd self-5-6")
	if x.holding() != 0 {
		t.Errorf("a file held for the projection is also held for its first write")
	}
}
