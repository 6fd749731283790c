package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// soakProject is one project of the soak and the content it should have.
type soakProject struct {
	dir  string
	want map[string]string
}

func (p *soakProject) write(t *testing.T, rel, content string) {
	t.Helper()
	abs := filepath.Join(p.dir, rel)
	os.MkdirAll(filepath.Dir(abs), 0o755)
	os.Remove(abs) // a projection is a symlink into the read-only store
	if err := os.WriteFile(abs, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	p.want[rel] = content
}

// fresh recreates the project from scratch: 24 files, half of them content
// every project shares (dedup across projects), half its own.
func (p *soakProject) fresh(t *testing.T, gen string) {
	t.Helper()
	if err := os.RemoveAll(p.dir); err != nil {
		t.Fatal(err)
	}
	p.want = map[string]string{}
	p.write(t, "package.json", "{}")
	for i := range 24 {
		content := fmt.Sprintf("shared module %d\n%s", i, strings.Repeat("x", 100*i))
		if i%2 == 1 {
			content = fmt.Sprintf("own module %d of %s\n%s", i, gen, strings.Repeat("y", 300*i))
		}
		p.write(t, fmt.Sprintf("node_modules/m%d/f%02d.js", i%5, i), content)
	}
}

// check reads every file of the project through its projection.
func (p *soakProject) check(dir string) error {
	for rel, want := range p.want {
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("%s: content differs from its source", rel)
		}
	}
	return nil
}

// soakRounds reads VRIFT_SOAK_ROUNDS (default 50) and VRIFT_SOAK_TIME
// (default none).
func soakRounds(t *testing.T) (int, time.Duration) {
	rounds := 50
	if s := os.Getenv("VRIFT_SOAK_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		rounds = n
	}
	var budget time.Duration
	if s := os.Getenv("VRIFT_SOAK_TIME"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		budget = d
	}
	return rounds, budget
}

// TestSoak runs rounds of concurrent ingest, link, project deletion, gc
// with no grace and verify on one store (direct mode, each operation its
// own vrift process: LMDB forbids one process opening the same environment
// twice at once), then checks: verify finds 0 corrupt and 0 missing blobs
// (no root names a blob that is gone) and every live project reads back
// byte-identical, in place and through a fresh copy. VRIFT_SOAK_ROUNDS
// (default 50) and VRIFT_SOAK_TIME bound it; make soak runs 1,000 rounds
// within 10 minutes.
func TestSoak(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	bin := buildVrift(t, base)
	runSoak(t, base, func(owner int, args ...string) (string, int) {
		return runCode(bin, append([]string{"--store", store}, args...)...)
	}, nil)
}

// TestDaemonSoak (root) is TestSoak in daemon mode: the daemon as vrift,
// two projects of alice's and two of bob's, every operation run as its
// project's owner (gc as the other user, so one user's sweep runs under
// the other's ingests).
func TestDaemonSoak(t *testing.T) {
	e := newDaemonEnv(t)
	e.start()
	users := []string{"alice", "bob"}
	runSoak(t, e.base, func(owner int, args ...string) (string, int) {
		return e.as(users[owner%2], args...)
	}, func(owner int, dir string) {
		sh(t, "chown", "-R", users[owner%2]+":"+users[owner%2], dir)
	})
}

// runSoak runs the soak with cli running vrift as the owner of project
// owner (0-3); chown, if set, gives a project or output directory to it.
func runSoak(t *testing.T, base string, cli func(owner int, args ...string) (string, int), chown func(owner int, dir string)) {
	rounds, budget := soakRounds(t)
	direct := chown == nil
	if chown == nil {
		chown = func(int, string) {}
	}
	homes := filepath.Join(base, "soak")
	os.MkdirAll(homes, 0o755)
	projects := make([]*soakProject, 4)
	for i := range projects {
		projects[i] = &soakProject{dir: filepath.Join(homes, fmt.Sprintf("p%d", i))}
		projects[i].fresh(t, "r0")
		chown(i, projects[i].dir)
		if out, code := cli(i, "ingest", projects[i].dir); code != 0 {
			t.Fatalf("first ingest: exit %d\n%s", code, out)
		}
	}
	start := time.Now()
	ops := map[string]int{}
	var opsMu sync.Mutex
	count := func(op string) { opsMu.Lock(); ops[op]++; opsMu.Unlock() }
	done := 0
	for r := 1; r <= rounds; r++ {
		if budget > 0 && time.Since(start) > budget {
			break
		}
		ia, ib, ic := r%4, (r+1)%4, (r+2)%4
		a, b, c := projects[ia], projects[ib], projects[ic]
		// Changes are made before the round's operations start: each
		// project is touched by one operation per round.
		a.write(t, fmt.Sprintf("node_modules/m%d/f%02d.js", r%5, r%24), fmt.Sprintf("changed in round %d\n", r))
		a.write(t, fmt.Sprintf("node_modules/new/r%d.js", r), fmt.Sprintf("added in round %d\n", r))
		chown(ia, a.dir)
		deleted := r%5 == 0
		if deleted {
			c.fresh(t, "r"+strconv.Itoa(r))
			chown(ic, c.dir)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		do := func(owner int, op string, args ...string) {
			defer wg.Done()
			out, code := cli(owner, args...)
			if code != 0 {
				errs <- fmt.Errorf("round %d: %s: exit %d\n%s", r, op, code, out)
				return
			}
			count(op)
		}
		wg.Add(4)
		go do(ia, "ingest", "ingest", a.dir)
		go func() {
			defer wg.Done()
			out := filepath.Join(homes, "out", strconv.Itoa(r))
			os.MkdirAll(out, 0o755)
			chown(ib, out)
			stderr, code := cli(ib, "link", "--method", "copy", "--to", out, b.dir)
			if code != 0 {
				errs <- fmt.Errorf("round %d: link: exit %d: %s", r, code, stderr)
				return
			}
			if err := b.check(out); err != nil {
				errs <- fmt.Errorf("round %d: linked copy: %v", r, err)
			}
			os.RemoveAll(out)
			count("link")
		}()
		go do(ia+1, "gc", "gc", "--grace", "0s")
		if deleted {
			go do(ic, "ingest (recreated project)", "ingest", c.dir)
		} else {
			go do(ic, "verify", "verify")
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		done = r
	}
	// Afterwards: nothing dangling, nothing corrupt, every projection whole.
	for owner := range 2 {
		if out, code := cli(owner, "gc", "--grace", "0s"); code != 0 {
			t.Fatalf("final gc: exit %d\n%s", code, out)
		}
	}
	var vr struct {
		Blobs   int64    `json:"blobs"`
		Corrupt []string `json:"corrupt"`
		Roots   int      `json:"roots"`
		Missing []string `json:"missing"`
	}
	roots, owners := 0, 2
	if direct {
		owners = 1 // one store, one view of it
	}
	for owner := range owners {
		out, code := cli(owner, "--json", "verify")
		if i := strings.Index(out, "{"); i >= 0 {
			out = out[i:] // warnings go to stderr, mixed in here
		}
		if err := json.Unmarshal([]byte(out), &vr); err != nil || code != 0 || len(vr.Corrupt) > 0 || len(vr.Missing) > 0 {
			t.Fatalf("verify after the soak: exit %d, %+v, %v\n%s", code, vr, err, out)
		}
		roots += vr.Roots
	}
	for i, p := range projects {
		if err := p.check(p.dir); err != nil {
			t.Fatalf("project %s in place: %v", p.dir, err)
		}
		copyDir := p.dir + "-final"
		os.MkdirAll(copyDir, 0o755)
		chown(i, copyDir)
		if out, code := cli(i, "link", "--method", "copy", "--to", copyDir, p.dir); code != 0 {
			t.Fatalf("final link: exit %d\n%s", code, out)
		}
		if err := p.check(copyDir); err != nil {
			t.Fatalf("project %s copied: %v", p.dir, err)
		}
	}
	total := 0
	for _, n := range ops {
		total += n
	}
	t.Logf("soak: %d rounds in %s, %d operations %v; after: %d blobs, %d roots, 0 corrupt, 0 missing, %d projects byte-identical",
		done, time.Since(start).Round(time.Second), total, ops, vr.Blobs, roots, len(projects))
}
