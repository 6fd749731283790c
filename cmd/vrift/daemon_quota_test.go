package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrift/vrift/internal/testenv"
	"github.com/vrift/vrift/rpc"
)

// These tests run the quotas of issue 11 with the real daemon (as vrift)
// and the real users alice and bob.

func (e *daemonEnv) config(text string) string {
	e.t.Helper()
	p := filepath.Join(e.base, fmt.Sprintf("config-%d.toml", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// usage runs vrift usage --json as user.
func (e *daemonEnv) usage(user string, args ...string) rpc.UsageResult {
	e.t.Helper()
	out := e.mustAs(user, append([]string{"usage", "--json"}, args...)...)
	var res rpc.UsageResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		e.t.Fatalf("vrift usage --json: %v\n%s", err, out)
	}
	return res
}

func usageFor(res rpc.UsageResult, uid uint32) rpc.UserUsage {
	for _, u := range res.Users {
		if u.UID == uid {
			return u
		}
	}
	return rpc.UserUsage{UID: uid}
}

func sized(tag string, n int) string { return tag + strings.Repeat(tag[:1], n-len(tag)) }

func isSymlink(p string) bool {
	info, err := os.Lstat(p)
	return err == nil && info.Mode()&os.ModeSymlink != 0
}

// TestDaemonQuota: alice over her quota is refused before her project
// changes, with a one-line error giving the figures; her earlier tree
// still links; bob is unaffected; content both reference counts in both
// referenced figures and neither exclusive; alice deleting a tree lowers
// her usage and not bob's; the accounting survives kill -9 and equals
// vrift usage --recount.
func TestDaemonQuota(t *testing.T) {
	e := newDaemonEnv(t)
	alice, bob := uidOf(t, "alice"), uidOf(t, "bob")
	e.start("--config", e.config("[quota]\ndefault = \"1MiB\"\n\n[quota.users]\nalice = \"40KiB\"\n"))
	shared := sized("shared", 10<<10)
	p1 := filepath.Join(e.base, "alice", "p1")
	e.tree("alice", p1, map[string]string{"go.mod": "module p1\n", "data/a.txt": sized("alice-a", 20<<10), "data/s.txt": shared})
	e.mustAs("alice", "ingest", filepath.Join(p1, "data"))
	pb := filepath.Join(e.base, "bob", "pb")
	e.tree("bob", pb, map[string]string{"go.mod": "module pb\n", "data/s.txt": shared, "data/b.txt": sized("bob-b", 5<<10)})
	e.mustAs("bob", "ingest", filepath.Join(pb, "data"))

	all := e.usage("root")
	ua, ub := usageFor(all, alice), usageFor(all, bob)
	if ua.Referenced != 30<<10 || ua.Exclusive != 20<<10 || ua.FairShare != 25<<10 || ua.Limit != 40<<10 {
		t.Errorf("alice: %+v", ua)
	}
	if ub.Referenced != 15<<10 || ub.Exclusive != 5<<10 || ub.FairShare != 10<<10 || ub.Limit != 1<<20 {
		t.Errorf("bob: %+v", ub)
	}
	if own := e.usage("alice"); len(own.Users) != 1 || own.Users[0].UID != alice || own.StoreBlobs != 0 {
		t.Errorf("alice sees: %+v", own)
	}
	if out, code := e.as("alice", "usage", "--recount"); code == 0 {
		t.Errorf("alice's recount was allowed:\n%s", out)
	}
	text := e.mustAs("alice", "usage")
	if !strings.Contains(text, "alice") || strings.Contains(text, "bob") || !strings.Contains(text, "75%") {
		t.Errorf("vrift usage as alice:\n%s", text)
	}

	// 30 KiB + 20 KiB > 40 KiB: refused before p2 changes.
	p2 := filepath.Join(e.base, "alice", "p2")
	e.tree("alice", p2, map[string]string{"go.mod": "module p2\n", "data/big.txt": sized("alice-big", 20<<10)})
	out, code := e.as("alice", "ingest", filepath.Join(p2, "data"))
	if code == 0 {
		t.Fatalf("alice's ingest over quota succeeded:\n%s", out)
	}
	t.Logf("alice over quota: %s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.Contains(out, "quota exceeded") || !strings.Contains(out, "40.0 KiB") || !strings.Contains(out, "30.0 KiB") {
		t.Errorf("over-quota error is not one line with the figures:\n%s", out)
	}
	if isSymlink(filepath.Join(p2, "data", "big.txt")) {
		t.Errorf("the refused ingest projected alice's file")
	}
	if _, err := os.Stat(filepath.Join(p2, ".vrift", "manifest.lmdb")); err == nil {
		t.Errorf("the refused ingest left a manifest")
	}
	if got, _ := os.ReadFile(filepath.Join(p2, "data", "big.txt")); string(got) != sized("alice-big", 20<<10) {
		t.Errorf("the refused ingest changed alice's file")
	}
	// Her earlier tree still links.
	dest := filepath.Join(e.base, "alice", "p1copy")
	e.mustAs("alice", "link", p1, "--to", dest, "--subtree", "data", "--method", "copy")
	sh(t, "diff", "-r", filepath.Join(p1, "data"), filepath.Join(dest, "data"))
	// Bob is unaffected.
	pb2 := filepath.Join(e.base, "bob", "pb2")
	e.tree("bob", pb2, map[string]string{"go.mod": "module pb2\n", "data/c.txt": sized("bob-c", 30<<10)})
	e.mustAs("bob", "ingest", filepath.Join(pb2, "data"))
	if !isSymlink(filepath.Join(pb2, "data", "c.txt")) {
		t.Errorf("bob's ingest did not project")
	}
	// Near 90%: a warning.
	p3 := filepath.Join(e.base, "alice", "p3")
	e.tree("alice", p3, map[string]string{"go.mod": "module p3\n", "data/c.txt": sized("alice-c", 7<<10)})
	if out := e.mustAs("alice", "ingest", filepath.Join(p3, "data")); !strings.Contains(out, "warning") || !strings.Contains(out, "quota") {
		t.Errorf("no warning at 92%% of the quota:\n%s", out)
	}

	// Alice deletes p1; gc drops her root: her usage drops, bob's does not.
	before := e.usage("root")
	os.RemoveAll(p1)
	e.mustAs("alice", "gc")
	after := e.usage("root")
	if got := usageFor(after, alice).Referenced; got != 7<<10 {
		t.Errorf("alice after deleting p1: referenced %d, want %d", got, 7<<10)
	}
	if b0, b1 := usageFor(before, bob), usageFor(after, bob); b1.Referenced != b0.Referenced || b1.Exclusive != b0.Exclusive+10<<10 {
		t.Errorf("bob before %+v, after alice's delete %+v", b0, b1)
	}

	// kill -9 during bob's pins; after each restart the accounting equals
	// a recount.
	interrupted := 0
	for i := range 6 {
		d := filepath.Join(e.base, "bob", fmt.Sprintf("k%d", i))
		e.tree("bob", d, generatedTree(300))
		ing := exec.Command("setpriv", "--reuid=bob", "--regid=bob", "--init-groups", "--", e.bin, "ingest", d)
		ing.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(e.base, "bob"), "VRIFT_SOCKET=" + e.socket}
		ing.Start()
		time.Sleep(time.Duration(100+i*60) * time.Millisecond)
		e.cmd.Process.Signal(syscall.SIGKILL)
		e.cmd.Wait()
		if ing.Wait() != nil {
			interrupted++
		}
		e.start("--config", e.config("[quota]\ndefault = \"1MiB\"\n\n[quota.users]\nalice = \"40KiB\"\n"))
		if rc := e.usage("root", "--recount"); !rc.Recounted || !rc.Consistent {
			t.Fatalf("round %d: after kill -9 and restart the accounting differs from a recount: %+v\n%s", i, rc, e.log)
		}
	}
	t.Logf("kill -9 interrupted %d of 6 ingests", interrupted)
	if interrupted == 0 {
		t.Errorf("no kill landed mid-ingest: the restart check tests nothing")
	}
	if rc := e.usage("root"); usageFor(rc, alice).Referenced != 7<<10 {
		t.Errorf("alice after the restarts: %+v", usageFor(rc, alice))
	}
}

// TestDaemonMinFree: on a small loop-mounted filesystem, an ingest that
// takes free space under min_free sweeps unreferenced blobs (those of a
// deleted tree, however young) and never referenced ones; when that is
// not enough, the ingest is refused with a clear error.
func TestDaemonMinFree(t *testing.T) {
	e := newDaemonEnv(t)
	mnt := testenv.LoopFSIn(t, e.base, "64M", "-b", "4096")
	t.Cleanup(e.stop) // before the unmount
	sh(t, "chown", "vrift:vrift", mnt)
	e.store, e.state = filepath.Join(mnt, "the_source"), filepath.Join(mnt, "state")
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	free := int64(st.Bavail) * int64(st.Bsize) // Bsize is uint32 on darwin
	// Room for ~12 MiB of blobs before min_free.
	minFree := free - 12<<20
	e.start("--config", e.config(fmt.Sprintf("[store]\nmin_free = %d\n", minFree)))

	big := func(tag string, n int) map[string]string {
		files := map[string]string{"go.mod": "module " + tag + "\n"}
		for i := range n {
			files[fmt.Sprintf("data/%s%d.bin", tag, i)] = sized(fmt.Sprintf("%s-%d-", tag, i), 1<<20)
		}
		return files
	}
	// A tree of 8 MiB, then deleted: its root dropped, its blobs (younger
	// than gc's grace) stay.
	old := filepath.Join(e.base, "alice", "old")
	e.tree("alice", old, big("old", 8))
	e.mustAs("alice", "ingest", filepath.Join(old, "data"))
	os.RemoveAll(old)
	e.mustAs("alice", "gc")
	if _, err := os.Stat(blobPathOf(e.store, sized("old-0-", 1<<20), false)); err != nil {
		t.Fatalf("gc's grace should have kept the deleted tree's blobs: %v", err)
	}
	// 6 MiB more crosses min_free: the deleted tree's blobs go, the new
	// tree's stay.
	keep := filepath.Join(e.base, "bob", "keep")
	e.tree("bob", keep, big("keep", 6))
	e.mustAs("bob", "ingest", filepath.Join(keep, "data"))
	gone := 0
	for i := range 8 {
		if _, err := os.Stat(blobPathOf(e.store, sized(fmt.Sprintf("old-%d-", i), 1<<20), false)); err != nil {
			gone++
		}
	}
	if gone == 0 {
		t.Errorf("crossing min_free swept none of the unreferenced blobs\n%s", e.log)
	}
	for i := range 6 {
		if _, err := os.Stat(blobPathOf(e.store, sized(fmt.Sprintf("keep-%d-", i), 1<<20), false)); err != nil {
			t.Fatalf("a referenced blob was swept: %v", err)
		}
	}
	// 16 MiB more cannot fit: refused, bob's tree untouched.
	huge := filepath.Join(e.base, "bob", "huge")
	e.tree("bob", huge, big("huge", 16))
	out, code := e.as("bob", "ingest", filepath.Join(huge, "data"))
	if code == 0 || !strings.Contains(out, "min_free") {
		t.Errorf("ingest past min_free: exit %d\n%s", code, out)
	}
	if isSymlink(filepath.Join(huge, "data", "huge0.bin")) {
		t.Errorf("the refused ingest projected")
	}
	for i := range 6 {
		if _, err := os.Stat(blobPathOf(e.store, sized(fmt.Sprintf("keep-%d-", i), 1<<20), false)); err != nil {
			t.Fatalf("a referenced blob was swept: %v", err)
		}
	}
	e.mustAs("bob", "verify")
}

// TestDaemonMaxBytes: crossing max_bytes sweeps unreferenced blobs and
// never a referenced one.
func TestDaemonMaxBytes(t *testing.T) {
	e := newDaemonEnv(t)
	e.start("--config", e.config("[store]\nmax_bytes = \"100KiB\"\n"))
	old := filepath.Join(e.base, "alice", "old")
	e.tree("alice", old, map[string]string{"go.mod": "module o\n", "data/o.txt": sized("old", 60<<10)})
	e.mustAs("alice", "ingest", filepath.Join(old, "data"))
	os.RemoveAll(old)
	e.mustAs("alice", "gc")
	keep := filepath.Join(e.base, "bob", "keep")
	e.tree("bob", keep, map[string]string{"go.mod": "module k\n", "data/k.txt": sized("keep", 30<<10)})
	e.mustAs("bob", "ingest", filepath.Join(keep, "data"))
	if _, err := os.Stat(blobPathOf(e.store, sized("old", 60<<10), false)); err != nil {
		t.Fatalf("the unreferenced blob went before the store crossed max_bytes: %v", err)
	}
	more := filepath.Join(e.base, "bob", "more")
	e.tree("bob", more, map[string]string{"go.mod": "module m\n", "data/m.txt": sized("more", 30<<10)})
	e.mustAs("bob", "ingest", filepath.Join(more, "data"))
	if _, err := os.Stat(blobPathOf(e.store, sized("old", 60<<10), false)); err == nil {
		t.Errorf("crossing max_bytes did not sweep the unreferenced blob")
	}
	for _, c := range []string{sized("keep", 30<<10), sized("more", 30<<10)} {
		if _, err := os.Stat(blobPathOf(e.store, c, false)); err != nil {
			t.Fatalf("a referenced blob was swept: %v", err)
		}
	}
	e.mustAs("bob", "verify")
}
