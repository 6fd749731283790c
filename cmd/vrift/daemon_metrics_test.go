package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// requireProgram finds a program the test needs; CI (VRIFT_REQUIRE_ROOT=1)
// installs it, so there a missing one fails.
func requireProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("VRIFT_REQUIRE_ROOT") == "1" {
			t.Fatalf("%s is required (Debian's prometheus package): %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func scrape(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metricValue reads an unlabelled sample from the text format.
func metricValue(text, name string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestDaemonPrometheus: the daemon's /metrics (--metrics-addr) passes
// promtool check metrics; the real Prometheus server scrapes it during an
// ingest of the npm fixture (or a generated tree), and a PromQL query
// through its HTTP API returns the ingested bytes.
func TestDaemonPrometheus(t *testing.T) {
	promtool := requireProgram(t, "promtool")
	prom := requireProgram(t, "prometheus")
	e := newDaemonEnv(t)
	maddr := freePort(t)
	e.start("--metrics-addr", maddr)
	text, err := scrape(maddr)
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, e.log)
	}
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(text)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	paddr, plog := startPrometheus(t, prom, filepath.Join(e.base, "prom"), maddr)

	proj, sub := e.aliceApp(3000)
	e.mustAs("alice", "ingest", filepath.Join(proj, sub))
	final, err := scrape(maddr)
	if err != nil {
		t.Fatal(err)
	}
	want, ok := metricValue(final, "vrift_ingest_new_bytes_total")
	if !ok || want <= 0 {
		t.Fatalf("no ingested bytes in /metrics:\n%s", final)
	}
	if logical, _ := metricValue(final, "vrift_store_logical_bytes"); logical != want {
		t.Errorf("new bytes %v != the store's logical bytes %v (the store was empty)", want, logical)
	}
	// Prometheus scrapes every second; poll the query until it has the
	// final value.
	var got float64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got = promQuery(t, paddr, "vrift_ingest_new_bytes_total")
		if got == want {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("PromQL vrift_ingest_new_bytes_total = %v, want %v\nprometheus log:\n%s", got, want, plog.String())
	}
	t.Logf("PromQL returned %v ingested bytes", got)
	if up := promQuery(t, paddr, `up{job="vrift"}`); up != 1 {
		t.Errorf("up = %v", up)
	}
}

// startPrometheus runs the real Prometheus server in dir, scraping target
// every second as job "vrift"; it returns its address and log.
func startPrometheus(t *testing.T, prom, dir, target string) (string, *bytes.Buffer) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	paddr := freePort(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vrift\n    static_configs:\n      - targets: ['%s']\n", target)), 0o644)
	p := exec.Command(prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+paddr, "--log.level=warn")
	plog := &bytes.Buffer{}
	p.Stdout, p.Stderr = plog, plog
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Process.Signal(syscall.SIGTERM); p.Wait() })
	return paddr, plog
}

// aliceApp copies the npm fixture to alice's project "app" (sub
// node_modules), or, where the fixture is not installed, writes a tree of n
// generated files (sub data).
func (e *daemonEnv) aliceApp(n int) (proj, sub string) {
	t := e.t
	t.Helper()
	proj, sub = filepath.Join(e.base, "alice", "app"), "node_modules"
	if fixtureExists() {
		sh(t, "cp", "-a", filepath.Join(fixtureRoot(), "base"), proj)
	} else {
		e.tree("alice", proj, generatedTree(n))
		sub = "data"
	}
	sh(t, "chown", "-R", "alice:alice", proj)
	return proj, sub
}

func fixtureRoot() string {
	if d := os.Getenv("VRIFT_FIXTURE_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "vrift", "npm-fixture")
}

func fixtureExists() bool {
	_, err := os.Stat(filepath.Join(fixtureRoot(), "base", "node_modules"))
	return err == nil
}

// promQuery runs an instant PromQL query and returns its one value (-1 if
// there is none yet).
func promQuery(t *testing.T, addr, q string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return -1 // not up yet
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" || len(r.Data.Result) == 0 {
		return -1
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// TestDaemonScrapeDuringIngest: scraping /metrics ten times a second
// during an ingest of the npm fixture does not slow it (a scrape reads
// counters, never the store). It compares the median of three ingests
// with and without scraping.
func TestDaemonScrapeDuringIngest(t *testing.T) {
	fix := fixtureDir(t)
	e := newDaemonEnv(t)
	maddr := freePort(t)
	e.start("--metrics-addr", maddr)
	ingest := func(i int, scraping bool) time.Duration {
		proj := filepath.Join(e.base, "alice", fmt.Sprintf("app%d-%v", i, scraping))
		sh(t, "cp", "-a", filepath.Join(fix, "base"), proj)
		sh(t, "chown", "-R", "alice:alice", proj)
		var stop atomic.Bool
		var wg sync.WaitGroup
		var scrapes atomic.Int64
		if scraping {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					if _, err := scrape(maddr); err == nil {
						scrapes.Add(1)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
		}
		start := time.Now()
		e.mustAs("alice", "ingest", "--tier", "tier2", filepath.Join(proj, "node_modules"))
		d := time.Since(start)
		stop.Store(true)
		wg.Wait()
		if scraping && scrapes.Load() == 0 {
			t.Fatal("no scrape succeeded during the ingest")
		}
		return d
	}
	// The first ingest fills the store; the measured ones all store the
	// same content again (read and hashed, deduplicated by the daemon).
	ingest(0, false)
	var with, without []time.Duration
	for i := 1; i <= 3; i++ {
		without = append(without, ingest(i, false))
		with = append(with, ingest(i, true))
	}
	med := func(d []time.Duration) time.Duration {
		s := append([]time.Duration{}, d...)
		for i := range s {
			for j := i + 1; j < len(s); j++ {
				if s[j] < s[i] {
					s[i], s[j] = s[j], s[i]
				}
			}
		}
		return s[len(s)/2]
	}
	ratio := float64(med(with)) / float64(med(without))
	t.Logf("ingest of the npm fixture: %v without scraping, %v while scraped every 100ms (ratio %.2f)", med(without), med(with), ratio)
	// The machine is shared: allow noise, catch a scrape that walks the
	// store (which would multiply the time).
	if ratio > 1.3 {
		t.Errorf("scraping slowed the ingest %.2fx", ratio)
	}
}
