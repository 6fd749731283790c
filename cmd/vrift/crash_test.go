package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillMidIngest kills vrift (SIGKILL) at several points of a tier1
// ingest of the real npm tree. Whatever the moment, no file may be lost or
// half-replaced (the tree still diffs equal to the original), the store
// holds no corrupt blob, and a re-run completes.
func TestKillMidIngest(t *testing.T) {
	fix := fixtureDir(t)
	dir := t.TempDir()
	bin := buildVrift(t, dir)
	orig := filepath.Join(fix, "base", "node_modules")
	for i, delay := range []time.Duration{150 * time.Millisecond, 600 * time.Millisecond, 1500 * time.Millisecond} {
		work := filepath.Join(dir, "run", string(rune('a'+i)))
		store := filepath.Join(work, "store")
		proj := filepath.Join(work, "app")
		os.MkdirAll(work, 0o755)
		copyProject(t, filepath.Join(fix, "base"), proj)

		cmd := exec.Command(bin, "--store", store, "ingest", filepath.Join(proj, "node_modules"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		killed := err != nil
		t.Logf("kill after %v: killed=%v", delay, killed)

		// Nothing lost: every path still has its original bytes, either as
		// the original file or through a projection.
		sh(t, "diff", "-r", orig, filepath.Join(proj, "node_modules"))
		if out, code := runCode(bin, "--store", store, "verify"); code != 0 && !strings.Contains(out, "missing") {
			t.Fatalf("verify after kill: exit %d\n%s", code, out)
		}
		// The re-run completes, and then everything verifies.
		if out, code := runCode(bin, "--store", store, "ingest", filepath.Join(proj, "node_modules")); code != 0 {
			t.Fatalf("re-run after kill: exit %d\n%s", code, out)
		}
		if out, code := runCode(bin, "--store", store, "verify"); code != 0 {
			t.Fatalf("verify after re-run: exit %d\n%s", code, out)
		}
		sh(t, "diff", "-r", orig, filepath.Join(proj, "node_modules"))
		if left, _ := os.ReadDir(filepath.Join(store, "tmp")); len(left) != 0 {
			t.Fatalf("%d temp files of the killed writer survived the re-run", len(left))
		}
		// No file's own mode was lost to a read-only adoption the killed
		// writer never published: a copy from the manifest has them all.
		restored := filepath.Join(work, "restored")
		mustVrift(t, "--store", store, "link", proj, "--to", restored, "--subtree", "node_modules", "--method", "copy")
		modes := func(dir string) string {
			return sh(t, "sh", "-c", `cd "$1" && find . -type f -printf '%P %m\n' | sort`, "sh", dir)
		}
		if want, got := modes(orig), modes(filepath.Join(restored, "node_modules")); want != got {
			t.Fatalf("modes differ after kill and re-run:\n%s", tail(lineDiff(want, got), 2000))
		}
		os.RemoveAll(restored)
	}
}

// TestGCDuringIngest runs gc --grace 0s over and over while an ingest of the
// real npm tree is in flight. gc must wait for the ingest rather than sweep
// blobs the ingest has deduplicated against: afterwards every file of the
// manifest has its blob.
func TestGCDuringIngest(t *testing.T) {
	fix := fixtureDir(t)
	dir := t.TempDir()
	bin := buildVrift(t, dir)
	store := filepath.Join(dir, "store")
	// A first project puts most blobs in the store; deleting it makes them
	// garbage that the second ingest will deduplicate against.
	first := filepath.Join(dir, "first")
	copyProject(t, filepath.Join(fix, "bumped"), first)
	mustVrift(t, "--store", store, "ingest", "--tier", "tier2", filepath.Join(first, "node_modules"))
	os.RemoveAll(first)

	second := filepath.Join(dir, "second")
	copyProject(t, filepath.Join(fix, "base"), second)
	ingest := exec.Command(bin, "--store", store, "ingest", filepath.Join(second, "node_modules"))
	var ingestOut bytes.Buffer
	ingest.Stdout, ingest.Stderr = &ingestOut, &ingestOut
	if err := ingest.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ingest.Wait() }()
	waited := false
	gcs := 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("ingest: %v\n%s", err, ingestOut.String())
			}
			running = false
		default:
			out, code := runCode(bin, "--store", store, "gc", "--grace", "0s")
			if code != 0 {
				t.Fatalf("gc: exit %d\n%s", code, out)
			}
			waited = waited || strings.Contains(out, "waiting for in-flight ingests")
			gcs++
		}
	}
	t.Logf("%d gc runs during the ingest; one waited for it: %v", gcs, waited)
	if out, code := runCode(bin, "--store", store, "verify"); code != 0 {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	sh(t, "diff", "-r", filepath.Join(fix, "base", "node_modules"), filepath.Join(second, "node_modules"))
}

func runCode(bin string, args ...string) (string, int) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}

// TestSparseGiBStreams ingests a 1 GiB sparse file in a separate process and
// checks the process never held it in memory, and the blob stayed sparse.
func TestSparseGiBStreams(t *testing.T) {
	dir := t.TempDir()
	bin := buildVrift(t, dir)
	proj := filepath.Join(dir, "proj")
	os.MkdirAll(filepath.Join(proj, "data"), 0o755)
	os.WriteFile(filepath.Join(proj, "go.mod"), []byte("module x\n"), 0o644)
	f, err := os.Create(filepath.Join(proj, "data", "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("end"), 1<<30-3)
	f.Close()
	store := filepath.Join(dir, "store")
	cmd := exec.Command(bin, "--store", store, "ingest", filepath.Join(proj, "data"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ingest: %v\n%s", err, out)
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	t.Logf("peak RSS ingesting a 1 GiB sparse file: %d MiB", rss>>10)
	if rss > 256<<10 {
		t.Fatalf("peak RSS %d MiB: the file was not streamed", rss>>10)
	}
	var st syscall.Stat_t
	blob, _ := filepath.EvalSymlinks(filepath.Join(proj, "data", "disk.img"))
	if err := syscall.Stat(blob, &st); err != nil || st.Size != 1<<30 || st.Blocks*512 > 1<<20 {
		t.Fatalf("blob %s: size %d, %d bytes on disk (%v)", blob, st.Size, st.Blocks*512, err)
	}
}

// lineDiff lists the lines of a and b that the other lacks.
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out strings.Builder
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			fmt.Fprintf(&out, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			fmt.Fprintf(&out, "+ %s\n", l)
		}
	}
	return out.String()
}
