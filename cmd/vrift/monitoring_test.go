package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// monitoringDir holds the shipped Grafana dashboard and alert rules.
const monitoringDir = "../../packaging/monitoring"

type dashTarget struct{ panel, expr string }

// dashboardTargets reads every panel query of the dashboard.
func dashboardTargets(t *testing.T) []dashTarget {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var out []dashTarget
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, dashTarget{p.Title, tg.Expr})
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d dashboard queries", len(out))
	}
	return out
}

// ruleExprs reads the alert rules' expressions (one `expr:` line each).
func ruleExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "prometheus-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "expr: "); ok {
			out = append(out, e)
		}
	}
	if len(out) < 5 {
		t.Fatalf("only %d rule expressions", len(out))
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:vrift|go|process)_[a-z0-9_]+\b`)

// promResult runs an instant query and returns its status and how many
// series it returned.
func promResult(t *testing.T, addr, q string) (string, int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return "unreachable", 0, err.Error()
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "undecodable", 0, err.Error()
	}
	return r.Status, len(r.Data.Result), r.Error
}

// TestMonitoringMetrics: against a real daemon, with quotas and store
// limits set, scraped by the real Prometheus during an ingest (the npm
// fixture when installed), a quota refusal, a link and a gc: every metric
// the dashboard and the alert rules name is one the daemon exports, every
// dashboard query returns data, and every rule's expression evaluates.
func TestMonitoringMetrics(t *testing.T) {
	prom := requireProgram(t, "prometheus")
	e := newDaemonEnv(t)
	cfg := filepath.Join(e.base, "daemon.toml")
	os.WriteFile(cfg, []byte("[store]\nmax_bytes = \"100GiB\"\nmin_free = \"1KiB\"\n\n[quota]\ndefault = \"100GiB\"\n[quota.users]\nbob = \"1KiB\"\n"), 0o644)
	maddr := freePort(t)
	e.start("--config", cfg, "--metrics-addr", maddr)
	paddr, plog := startPrometheus(t, prom, filepath.Join(e.base, "prom"), maddr)

	proj, sub := e.aliceApp(2000)
	e.mustAs("alice", "ingest", "--tier", "tier2", filepath.Join(proj, sub))
	e.mustAs("alice", "link", "--method", "copy", "--to", filepath.Join(e.base, "alice", "copy"), proj)
	bobProj := filepath.Join(e.base, "bob", "app")
	e.tree("bob", bobProj, generatedTree(20))
	if out, code := e.as("bob", "ingest", filepath.Join(bobProj, "data")); code == 0 || !strings.Contains(out, "quota") {
		t.Fatalf("bob's ingest over a 1 KiB quota: exit %d\n%s", code, out)
	}
	e.mustAs("alice", "gc", "--grace", "1h")

	text, err := scrape(maddr)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	exported := func(name string) bool {
		if types[name] != "" {
			return true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && types[base] == "histogram" {
				return true
			}
		}
		return false
	}
	var exprs []string
	for _, d := range dashboardTargets(t) {
		exprs = append(exprs, d.expr)
	}
	exprs = append(exprs, ruleExprs(t)...)
	seen := map[string]bool{}
	for _, ex := range exprs {
		for _, name := range metricName.FindAllString(ex, -1) {
			if !seen[name] {
				seen[name] = true
				if !exported(name) {
					t.Errorf("metric %s (in %q) is not exported by the daemon", name, ex)
				}
			}
		}
	}
	t.Logf("%d metric names used; the daemon exported %d families", len(seen), len(types))

	// Let Prometheus take a few scrapes after the last event, so rates
	// over a minute have two samples.
	deadline := time.Now().Add(60 * time.Second)
	for promQuery(t, paddr, `vrift_gc_runs_total{trigger="gc"}`) < 1 || promQuery(t, paddr, `count_over_time(vrift_gc_runs_total{trigger="gc"}[1m])`) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has not scraped the gc run\n%s", plog)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Each panel gets until the deadline to show data: on a loaded machine
	// a scrape can miss its 1 s timeout, and a rate needs two samples of
	// its series in the window (CI once queried the RPC error panel before
	// it had them).
	deadline = time.Now().Add(60 * time.Second)
	for _, d := range dashboardTargets(t) {
		q := strings.NewReplacer(`$job`, ".*", `$__rate_interval`, "1m").Replace(d.expr)
		for {
			st, n, msg := promResult(t, paddr, q)
			if st == "success" && n > 0 {
				break
			}
			if st != "success" || time.Now().After(deadline) {
				text, _ := scrape(maddr)
				t.Errorf("panel %q: %s: %s, %d series %s\nPrometheus log:\n%s\nthe daemon's RPC counters now:\n%s", d.panel, q, st, n, msg, plog, grepLines(text, "vrift_rpc_requests_total"))
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, ex := range ruleExprs(t) {
		if st, _, msg := promResult(t, paddr, ex); st != "success" {
			t.Errorf("rule %s: %s %s", ex, st, msg)
		}
	}
}

// grepLines returns the lines of text that contain sub.
func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
