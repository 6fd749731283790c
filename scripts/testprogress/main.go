// Command testprogress runs `go test -json ...` and prints what a person
// waiting on a long suite wants to see: each package as it starts, tests
// that are slow as they finish, a line now and then while a package is
// quiet, each skipped test with its reason, and the full output of every
// failing test. go test's own per-package result lines ("ok", "FAIL", "?")
// are printed as go test prints them, and a closing
// "tests: N passed, N failed, N skipped" line follows. The exit status is
// go test's.
//
// With TESTPROGRESS_ALLOW_SKIP set to a regular expression, a skipped test
// (or subtest) whose reason does not match it fails the run: the
// unprivileged pass (scripts/test-unprivileged.sh) allows only skips that
// say the test needs root.
//
// Usage: go run ./scripts/testprogress go test -json [flags] [packages]
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time       time.Time
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Elapsed    float64
	Output     string
}

const (
	slowTest  = 10 * time.Second // a passing test this slow is named
	quietTime = 60 * time.Second // after this long without a line, say what runs
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testprogress go test -json [flags] [packages]")
		os.Exit(2)
	}
	var allowSkip *regexp.Regexp
	if re := os.Getenv("TESTPROGRESS_ALLOW_SKIP"); re != "" {
		var err error
		if allowSkip, err = regexp.Compile(re); err != nil {
			fmt.Fprintf(os.Stderr, "testprogress: TESTPROGRESS_ALLOW_SKIP: %v\n", err)
			os.Exit(2)
		}
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stderr = os.Stderr
	cmd.Stdin = os.Stdin
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testprogress: %v\n", err)
		os.Exit(1)
	}
	// Ctrl-C reaches go test too (same process group); stay to report
	// whatever it prints on the way out.
	signal.Ignore(os.Interrupt)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "testprogress: %v\n", err)
		os.Exit(1)
	}
	r := newReport(os.Stdout, time.Now)
	r.allowSkip = allowSkip
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				r.tick()
			}
		}
	}()
	r.read(out)
	close(stop)
	werr := cmd.Wait()
	r.summary()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(werr, &exit):
		code = exit.ExitCode()
		if code < 0 { // killed by a signal
			code = 1
		}
	case werr != nil:
		fmt.Fprintf(os.Stderr, "testprogress: %v\n", werr)
		code = 1
	}
	if code == 0 && (r.failed > 0 || r.badSkips > 0) {
		code = 1
	}
	os.Exit(code)
}

// test is one top-level test of a package while it runs; its subtests'
// output goes into its buffer.
type test struct {
	start time.Time
	out   strings.Builder
	// said is each (sub)test's own output, for its skip reason.
	said map[string]*strings.Builder
}

type pkgState struct {
	start       time.Time
	running     map[string]*test
	testsFailed bool
}

type report struct {
	mu       sync.Mutex
	w        io.Writer
	now      func() time.Time
	pkgs     map[string]*pkgState
	lastLine time.Time
	start    time.Time

	passed, failed, skipped int

	// allowSkip, if set, is what a skip's reason must match; badSkips
	// counts those that did not.
	allowSkip *regexp.Regexp
	badSkips  int
}

func newReport(w io.Writer, now func() time.Time) *report {
	return &report{w: w, now: now, pkgs: map[string]*pkgState{}, lastLine: now(), start: now()}
}

func (r *report) printf(format string, args ...any) {
	fmt.Fprintf(r.w, format, args...)
	r.lastLine = r.now()
}

func (r *report) read(in io.Reader) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			r.mu.Lock()
			r.printf("%s\n", line) // not an event: pass it on as is
			r.mu.Unlock()
			continue
		}
		r.event(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "testprogress: reading go test's output: %v\n", err)
	}
}

func topLevel(name string) string {
	top, _, _ := strings.Cut(name, "/")
	return top
}

func (r *report) event(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Action {
	case "build-output":
		r.printf("%s", e.Output)
		return
	case "build-fail":
		return
	}
	p := r.pkgs[e.Package]
	if p == nil {
		p = &pkgState{start: r.now(), running: map[string]*test{}}
		r.pkgs[e.Package] = p
	}
	if e.Test == "" {
		r.packageEvent(e, p)
		return
	}
	top := topLevel(e.Test)
	t := p.running[top]
	if t == nil {
		t = &test{start: r.now(), said: map[string]*strings.Builder{}}
		p.running[top] = t
	}
	switch e.Action {
	case "output":
		t.out.WriteString(e.Output)
		if t.said[e.Test] == nil {
			t.said[e.Test] = &strings.Builder{}
		}
		t.said[e.Test].WriteString(e.Output)
	case "pass":
		r.passed++
		if e.Test == top {
			if d := time.Duration(e.Elapsed * float64(time.Second)); d >= slowTest {
				r.printf("    %s %s (%.1fs)\n", short(e.Package), top, e.Elapsed)
			}
			delete(p.running, top)
		}
	case "skip":
		r.skipped++
		reason := "(no reason given)"
		if b := t.said[e.Test]; b != nil {
			reason = skipReason(b.String())
		}
		if r.allowSkip != nil && !r.allowSkip.MatchString(reason) {
			r.badSkips++
			r.printf("    SKIP NOT ALLOWED %s %s: %s (a skip here must match %q)\n", short(e.Package), e.Test, reason, r.allowSkip)
		} else if e.Test == top {
			r.printf("    SKIP %s %s: %s\n", short(e.Package), top, reason)
		}
		if e.Test == top {
			delete(p.running, top)
		}
	case "fail":
		r.failed++
		p.testsFailed = true
		if e.Test == top {
			r.printf("%s", t.out.String())
			delete(p.running, top)
		}
	}
}

func (r *report) packageEvent(e event, p *pkgState) {
	switch e.Action {
	case "start":
		p.start = r.now()
		r.printf(">>> %s\n", e.Package)
	case "output":
		// go test without -v prints no bare "PASS" for a passing package.
		if e.Output != "PASS\n" {
			r.printf("%s", e.Output)
		}
	case "fail":
		// A test still running when its package failed (a panic, a
		// timeout) has no verdict of its own: show what it printed.
		names := make([]string, 0, len(p.running))
		for name := range p.running {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			r.printf("--- (unfinished) %s\n%s", name, p.running[name].out.String())
			r.failed++
		}
		if len(names) == 0 && !p.testsFailed {
			r.failed++ // build failure, TestMain, or a failure outside any test
		}
		delete(r.pkgs, e.Package)
	case "pass", "skip":
		delete(r.pkgs, e.Package)
	}
}

// tick names the tests running when nothing was printed for a while.
func (r *report) tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.lastLine) < quietTime {
		return
	}
	var parts []string
	for pkg, p := range r.pkgs {
		for name, t := range p.running {
			parts = append(parts, fmt.Sprintf("%s %s (%s)", short(pkg), name, now.Sub(t.start).Round(time.Second)))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		r.printf("    ... (%s in all)\n", now.Sub(r.start).Round(time.Second))
		return
	}
	r.printf("    ... running %s; %s in all\n", strings.Join(parts, ", "), now.Sub(r.start).Round(time.Second))
}

func (r *report) summary() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.printf("tests: %d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
	if r.badSkips > 0 {
		r.printf("tests: %d skipped for a reason not allowed here (TESTPROGRESS_ALLOW_SKIP=%q)\n", r.badSkips, r.allowSkip)
	}
}

// short drops the module path from a package name for the progress lines.
func short(pkg string) string {
	if i := strings.Index(pkg, "/vrift/vrift/"); i >= 0 {
		return pkg[i+len("/vrift/vrift/"):]
	}
	return pkg
}

// skipReason is what a skipped test said, without go test's framing.
func skipReason(out string) string {
	var said []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		// "file_test.go:12: reason" -> "reason"
		if i := strings.Index(l, ".go:"); i >= 0 && !strings.Contains(l[:i], " ") {
			if j := strings.Index(l[i+4:], ": "); j >= 0 {
				l = l[i+4+j+2:]
			}
		}
		said = append(said, l)
	}
	if len(said) == 0 {
		return "(no reason given)"
	}
	return strings.Join(said, "; ")
}
