package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReport feeds a recorded-shape event stream through the report: the
// package start, go test's result lines, a slow test, a skip reason, a
// failing test's whole output and the closing count must all show.
func TestReport(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"start","Package":"github.com/vrift/vrift/cas"}`,
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestFast"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestFast","Output":"=== RUN   TestFast\n"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestFast","Output":"--- PASS: TestFast (0.01s)\n"}`,
		`{"Action":"pass","Package":"github.com/vrift/vrift/cas","Test":"TestFast","Elapsed":0.01}`,
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestSlow"}`,
		`{"Action":"pass","Package":"github.com/vrift/vrift/cas","Test":"TestSlow","Elapsed":12.5}`,
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestRoot"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestRoot","Output":"=== RUN   TestRoot\n"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestRoot","Output":"    users_test.go:26: needs root to create users\n"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestRoot","Output":"--- SKIP: TestRoot (0.00s)\n"}`,
		`{"Action":"skip","Package":"github.com/vrift/vrift/cas","Test":"TestRoot","Elapsed":0}`,
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestBad"}`,
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestBad/sub"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestBad/sub","Output":"    store_test.go:9: got 1, want 2\n"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestBad/sub","Output":"    --- FAIL: TestBad/sub (0.00s)\n"}`,
		`{"Action":"fail","Package":"github.com/vrift/vrift/cas","Test":"TestBad/sub","Elapsed":0}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"github.com/vrift/vrift/cas","Test":"TestBad","Elapsed":0}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Output":"FAIL\n"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Output":"FAIL\tgithub.com/vrift/vrift/cas\t12.6s\n"}`,
		`{"Action":"fail","Package":"github.com/vrift/vrift/cas","Elapsed":12.6}`,
		`{"Action":"start","Package":"github.com/vrift/vrift/rpc"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/rpc","Output":"PASS\n"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/rpc","Output":"ok  \tgithub.com/vrift/vrift/rpc\t0.1s\n"}`,
		`{"Action":"pass","Package":"github.com/vrift/vrift/rpc","Elapsed":0.1}`,
		`{"ImportPath":"github.com/vrift/vrift/fs","Action":"build-output","Output":"fs/x.go:1:1: syntax error\n"}`,
		`{"ImportPath":"github.com/vrift/vrift/fs","Action":"build-fail"}`,
		`{"Action":"start","Package":"github.com/vrift/vrift/fs"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/fs","Output":"FAIL\tgithub.com/vrift/vrift/fs [build failed]\n"}`,
		`{"Action":"fail","Package":"github.com/vrift/vrift/fs","Elapsed":0}`,
		`not json at all`,
	}, "\n") + "\n"
	var out bytes.Buffer
	r := newReport(&out, time.Now)
	r.read(strings.NewReader(in))
	r.summary()
	got := out.String()
	for _, want := range []string{
		">>> github.com/vrift/vrift/cas\n",
		"    cas TestSlow (12.5s)\n",
		"    SKIP cas TestRoot: needs root to create users\n",
		"    store_test.go:9: got 1, want 2\n    --- FAIL: TestBad/sub (0.00s)\n--- FAIL: TestBad (0.00s)\n",
		"FAIL\tgithub.com/vrift/vrift/cas\t12.6s\n",
		"ok  \tgithub.com/vrift/vrift/rpc\t0.1s\n",
		"fs/x.go:1:1: syntax error\n",
		"FAIL\tgithub.com/vrift/vrift/fs [build failed]\n",
		"not json at all\n",
		// TestFast and TestSlow passed; TestBad/sub, TestBad and the fs
		// build failed.
		"tests: 2 passed, 3 failed, 1 skipped\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"TestFast", "PASS\n>>>"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q (a passing quick test is not named):\n%s", unwanted, got)
		}
	}
	if !strings.HasSuffix(got, "tests: 2 passed, 3 failed, 1 skipped\n") {
		t.Errorf("the count is not the last line:\n%s", got)
	}
}

// TestQuiet: a package quiet for a minute gets a line naming what runs.
func TestQuiet(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	r := newReport(&out, func() time.Time { return now })
	r.read(strings.NewReader(`{"Action":"start","Package":"github.com/vrift/vrift/cmd/vrift"}` + "\n" +
		`{"Action":"run","Package":"github.com/vrift/vrift/cmd/vrift","Test":"TestDaemonMount"}` + "\n"))
	now = now.Add(30 * time.Second)
	r.tick()
	if strings.Contains(out.String(), "running") {
		t.Fatalf("spoke after 30s of quiet:\n%s", out.String())
	}
	now = now.Add(45 * time.Second)
	r.tick()
	if want := "    ... running cmd/vrift TestDaemonMount (1m15s); 1m15s in all\n"; !strings.HasSuffix(out.String(), want) {
		t.Fatalf("want %q, got:\n%s", want, out.String())
	}
}

// TestExitStatus runs the real command on a real failing test package: the
// exit status is go test's, and the failure's output shows.
func TestExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs go test twice")
	}
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/p\n\ngo 1.22\n")
	write("p_test.go", "package p\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\n"+
		"func TestMaybe(t *testing.T) {\n\tif os.Getenv(\"P_FAIL\") != \"\" {\n\t\tt.Fatal(\"asked to fail\")\n\t}\n}\n")
	bin := filepath.Join(t.TempDir(), "testprogress")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, fail := range []bool{false, true} {
		cmd := exec.Command(bin, "go", "test", "-json", "-count=1", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if fail {
			cmd.Env = append(cmd.Env, "P_FAIL=1")
		}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		switch {
		case !fail && (code != 0 || !strings.Contains(string(out), "ok  \texample.com/p") ||
			!strings.HasSuffix(string(out), "tests: 1 passed, 0 failed, 0 skipped\n")):
			t.Errorf("passing run: exit %d\n%s", code, out)
		case fail && (code != 1 || !strings.Contains(string(out), "p_test.go:10: asked to fail") ||
			!strings.Contains(string(out), "FAIL\texample.com/p") ||
			!strings.HasSuffix(string(out), "tests: 0 passed, 1 failed, 0 skipped\n")):
			t.Errorf("failing run: exit %d\n%s", code, out)
		}
	}
}

// TestAllowSkip: with an allowed-skip pattern, a (sub)test skipped for
// another reason is named and counted, one skipped for the allowed reason
// is not.
func TestAllowSkip(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestRoot"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestRoot","Output":"    users_test.go:26: needs root to create users\n"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestRoot","Output":"--- SKIP: TestRoot (0.00s)\n"}`,
		`{"Action":"skip","Package":"github.com/vrift/vrift/cas","Test":"TestRoot","Elapsed":0}`,
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestTools"}`,
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestTools/zstd"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestTools/zstd","Output":"    tools_test.go:9: zstd not installed\n"}`,
		`{"Action":"output","Package":"github.com/vrift/vrift/cas","Test":"TestTools/zstd","Output":"    --- SKIP: TestTools/zstd (0.00s)\n"}`,
		`{"Action":"skip","Package":"github.com/vrift/vrift/cas","Test":"TestTools/zstd","Elapsed":0}`,
		`{"Action":"run","Package":"github.com/vrift/vrift/cas","Test":"TestTools/gzip"}`,
		`{"Action":"pass","Package":"github.com/vrift/vrift/cas","Test":"TestTools/gzip","Elapsed":0}`,
		`{"Action":"pass","Package":"github.com/vrift/vrift/cas","Test":"TestTools","Elapsed":0}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	r := newReport(&out, time.Now)
	r.allowSkip = regexp.MustCompile("needs root")
	r.read(strings.NewReader(in))
	r.summary()
	got := out.String()
	if r.badSkips != 1 {
		t.Errorf("badSkips = %d, want 1", r.badSkips)
	}
	for _, want := range []string{
		"    SKIP cas TestRoot: needs root to create users\n",
		"    SKIP NOT ALLOWED cas TestTools/zstd: zstd not installed",
		"tests: 1 skipped for a reason not allowed here",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "NOT ALLOWED cas TestRoot") {
		t.Errorf("the allowed skip was refused:\n%s", got)
	}
}
