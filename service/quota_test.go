package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/roots"
	"github.com/vrift/vrift/rpc"
)

// ingestAs stores contents as uid in one session and pins a manifest
// naming them at mpath, as vrift ingest does.
func (h *harness) ingestAs(t *testing.T, c *rpc.Client, mpath string, contents ...string) (rpc.LinkResult, error) {
	t.Helper()
	sess := begin(t, c)
	var paths []string
	for _, content := range contents {
		k := keyOf(content)
		paths = append(paths, h.file(k.Hex()[:16], content))
	}
	if _, err := put(context.Background(), c, sess, paths...); err != nil {
		return rpc.LinkResult{}, err
	}
	writeManifest(t, mpath, nil, contents...)
	return link(c, mpath, sess)
}

func usageOf(t *testing.T, c *rpc.Client, recount bool) rpc.UsageResult {
	t.Helper()
	var res rpc.UsageResult
	if err := c.Call(context.Background(), rpc.MethodUsage, rpc.UsageParams{Recount: recount}, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func userOf(res rpc.UsageResult, uid uint32) rpc.UserUsage {
	for _, u := range res.Users {
		if u.UID == uid {
			return u
		}
	}
	return rpc.UserUsage{UID: uid}
}

func content(tag string, n int) string { return tag + strings.Repeat("x", n-len(tag)) }

func figures(u rpc.UserUsage) [3]int64 { return [3]int64{u.Referenced, u.Exclusive, u.FairShare} }

// TestUsageAccounting: content alice and bob both reference counts in both
// users' referenced and in neither's exclusive, shared fairly; alice
// dropping her tree lowers her usage and not bob's; a recount equals the
// incremental figures; a user sees their own usage only.
func TestUsageAccounting(t *testing.T) {
	h := newHarness(t, Config{})
	alice, bob, admin := h.client(aliceUID), h.client(bobUID), h.client(h.self())
	a, shared, b := content("a", 1000), content("s", 3001), content("b", 500)
	ma, mb := filepath.Join(h.dir, "alice", "m.lmdb"), filepath.Join(h.dir, "bob", "m.lmdb")
	if _, err := h.ingestAs(t, alice, ma, a, shared); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ingestAs(t, bob, mb, shared, b); err != nil {
		t.Fatal(err)
	}
	all := usageOf(t, admin, false)
	if got, want := figures(userOf(all, aliceUID)), [3]int64{4001, 1000, 1000 + 3001/2}; got != want {
		t.Errorf("alice referenced/exclusive/fair = %v, want %v", got, want)
	}
	if got, want := figures(userOf(all, bobUID)), [3]int64{3501, 500, 500 + 3001/2}; got != want {
		t.Errorf("bob referenced/exclusive/fair = %v, want %v", got, want)
	}
	if r := userOf(all, aliceUID).Roots; len(r) != 1 || r[0].Referenced != 4001 || r[0].ManifestPath != ma {
		t.Errorf("alice's roots: %+v", r)
	}
	// Alice sees herself only.
	own := usageOf(t, alice, false)
	if len(own.Users) != 1 || own.Users[0].UID != aliceUID || own.StoreBlobs != 0 {
		t.Errorf("alice's usage shows %+v", own)
	}
	// A recount equals the incremental figures.
	if rc := usageOf(t, admin, true); !rc.Recounted || !rc.Consistent {
		t.Errorf("recount: %+v", rc)
	}
	// Only root and vrift recount.
	var res rpc.UsageResult
	if err := alice.Call(context.Background(), rpc.MethodUsage, rpc.UsageParams{Recount: true}, &res); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("alice's recount: %v", err)
	}
	// Alice deletes her tree; gc drops her root.
	os.Remove(ma)
	var gr rpc.GCResult
	if err := alice.Call(context.Background(), rpc.MethodGC, rpc.GCParams{Grace: 2 * DefaultMinUserGrace, Drop: []string{ma}}, &gr); err != nil {
		t.Fatal(err)
	}
	all = usageOf(t, admin, false)
	if got := figures(userOf(all, aliceUID)); got != [3]int64{} {
		t.Errorf("alice after dropping her tree: %v, want zeros", got)
	}
	if got, want := figures(userOf(all, bobUID)), [3]int64{3501, 3501, 3501}; got != want {
		t.Errorf("bob after alice dropped hers: %v, want %v", got, want)
	}
	if rc := usageOf(t, admin, true); !rc.Consistent {
		t.Errorf("recount after the drop: %+v", rc)
	}
	// Re-pinning the same manifest path replaces the root.
	if _, err := h.ingestAs(t, bob, mb, b); err != nil {
		t.Fatal(err)
	}
	if got := figures(userOf(usageOf(t, admin, false), bobUID)); got != [3]int64{500, 500, 500} {
		t.Errorf("bob after re-pinning with one blob: %v", got)
	}
	if rc := usageOf(t, admin, true); !rc.Consistent {
		t.Errorf("recount after the re-pin: %+v", rc)
	}
}

// TestQuotaRefusals: alice over her quota is refused (-32003, with the
// figures) at the put that would cross it and at a pin; bob is not;
// sharing content alice already holds costs her nothing.
func TestQuotaRefusals(t *testing.T) {
	h := newHarness(t, Config{QuotaDefault: 1 << 20, QuotaUsers: map[uint32]int64{aliceUID: 2000}})
	alice, bob := h.client(aliceUID), h.client(bobUID)
	first := content("first", 1500)
	m1 := filepath.Join(h.dir, "alice", "1.lmdb")
	if _, err := h.ingestAs(t, alice, m1, first); err != nil {
		t.Fatal(err)
	}
	// 1500 + 1000 > 2000: the put is refused.
	big := content("big", 1000)
	_, err := h.ingestAs(t, alice, filepath.Join(h.dir, "alice", "2.lmdb"), big)
	var re *rpc.Error
	if !errors.Is(err, errdefs.ErrQuota) || !errors.As(err, &re) {
		t.Fatalf("alice over quota: %v, want a quota error", err)
	}
	var data rpc.QuotaData
	if err := json.Unmarshal(re.Data, &data); err != nil {
		t.Fatalf("quota data %q: %v", re.Data, err)
	}
	if data != (rpc.QuotaData{UID: aliceUID, Used: 1500, Limit: 2000, Needed: 1000}) {
		t.Errorf("quota data %+v", data)
	}
	if !strings.Contains(re.Message, "over the limit") {
		t.Errorf("message %q", re.Message)
	}
	// The refused session left nothing pinned and nothing in flight.
	admin := h.client(h.self())
	if !waitFor(5*time.Second, func() bool { return userOf(usageOf(t, admin, false), aliceUID).InFlight == 0 }) {
		t.Errorf("alice's refused ingest still counts in flight")
	}
	if u := userOf(usageOf(t, admin, false), aliceUID); u.Referenced != 1500 || len(u.Roots) != 1 {
		t.Errorf("alice after the refusal: %+v", u)
	}
	// Bob stores the big content; alice pinning a manifest of it (no
	// session: vrift link) is refused too, before anything is published.
	if _, err := h.ingestAs(t, bob, filepath.Join(h.dir, "bob", "1.lmdb"), big); err != nil {
		t.Fatalf("bob: %v", err)
	}
	m3 := filepath.Join(h.dir, "alice", "3.lmdb")
	writeManifest(t, m3, nil, big)
	if _, err := link(alice, m3, ""); !errors.Is(err, errdefs.ErrQuota) {
		t.Fatalf("alice pinning bob's content over her quota: %v", err)
	}
	if _, err := h.svc.reg.Get(aliceUID, roots.ID(m3)); err == nil {
		t.Errorf("the refused pin was published")
	}
	// Re-pinning what she holds costs nothing; 90% warns.
	res, err := h.ingestAs(t, alice, filepath.Join(h.dir, "alice", "4.lmdb"), first, content("small", 400))
	if err != nil {
		t.Fatalf("alice within quota: %v", err)
	}
	if !strings.Contains(res.Warning, "quota") {
		t.Errorf("no warning at 95%% of the quota: %+v", res)
	}
	// A new ingest when at the limit is refused at begin.
	if _, err := h.ingestAs(t, alice, filepath.Join(h.dir, "alice", "5.lmdb"), content("more", 200)); !errors.Is(err, errdefs.ErrQuota) {
		t.Errorf("alice at 1900/2000 adding 200: %v", err)
	}
	// The refusals are counted by uid.
	fams := metricsOf(t, h.client(h.self()))
	if v := sample(fams, "vrift_quota_refusals_total", fmt.Sprint(aliceUID)); v != 3 {
		t.Errorf("quota refusals for alice = %v, want 3", v)
	}
	// Exactly at her limit, re-ingesting what she holds still works.
	cfg := h.svc.cfg
	cfg.QuotaUsers = map[uint32]int64{aliceUID: 1900}
	h.svc.Close()
	h.svc, _ = New(cfg)
	if _, err := h.ingestAs(t, h.client(aliceUID), filepath.Join(h.dir, "alice", "4.lmdb"), first, content("small", 400)); err != nil {
		t.Errorf("re-ingest at exactly the limit: %v", err)
	}
	// With the limit lowered under her usage, a new ingest is refused at
	// begin.
	cfg.QuotaUsers = map[uint32]int64{aliceUID: 1000}
	h.svc.Close()
	h.svc, _ = New(cfg)
	defer h.svc.Close()
	var br rpc.BeginResult
	if err := h.client(aliceUID).Call(context.Background(), rpc.MethodIngestBegin, rpc.BeginParams{Path: "/p"}, &br); !errors.Is(err, errdefs.ErrQuota) {
		t.Errorf("begin over a lowered quota: %v", err)
	}
}

// TestAccountingSurvivesRestart: the accounting persists; a crash between
// removing a root and recording it (simulated by removing the files with
// the daemon stopped) is noticed at startup and recounted.
func TestAccountingSurvivesRestart(t *testing.T) {
	h := newHarness(t, Config{})
	alice, bob := h.client(aliceUID), h.client(bobUID)
	ma := filepath.Join(h.dir, "alice", "m.lmdb")
	shared := content("s", 2000)
	if _, err := h.ingestAs(t, alice, ma, content("a", 100), shared); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ingestAs(t, bob, filepath.Join(h.dir, "bob", "m.lmdb"), shared); err != nil {
		t.Fatal(err)
	}
	want := h.svc.acct.All()
	cfg := h.svc.cfg
	h.svc.Close()
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.acct.All(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after a restart: %v, want %v", got, want)
	}
	svc.Close()
	// Alice's root vanishes while the daemon is down.
	base := filepath.Join(filepath.Join(cfg.State, "roots", fmt.Sprint(aliceUID)), roots.ID(ma))
	os.Remove(base + ".json")
	os.Remove(base + ".lmdb")
	svc, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if got := svc.acct.User(aliceUID); got != (Totals{}) {
		t.Errorf("alice after her root vanished: %+v", got)
	}
	if got := svc.acct.User(bobUID); got.Exclusive != 2000 || got.Referenced != 2000 {
		t.Errorf("bob after alice's root vanished: %+v", got)
	}
}

// TestMaxBytesSweep: crossing max_bytes sweeps unreferenced blobs, oldest
// first, and never a referenced one; when nothing more can go, new ingests
// are refused.
func TestMaxBytesSweep(t *testing.T) {
	h := newHarness(t, Config{MaxStoreBytes: 10000})
	alice := h.client(aliceUID)
	kept := content("kept", 4000)
	if _, err := h.ingestAs(t, alice, filepath.Join(h.dir, "alice", "m.lmdb"), kept); err != nil {
		t.Fatal(err)
	}
	// Two unreferenced blobs: stored, flushed, never pinned.
	old, young := content("old", 3000), content("young", 2000)
	for _, c := range []string{old, young} {
		cl := h.client(bobUID)
		sess := begin(t, cl)
		mustPut(t, cl, sess, h.file("u"+c[:3], c))
		if err := cl.Call(context.Background(), rpc.MethodIngestFlush, rpc.SessionParams{Session: sess}, nil); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		if !waitFor(5*time.Second, func() bool { return h.svc.inFlight(bobUID, nil) == 0 && sessionsOf(h.svc) == 0 }) {
			t.Fatal("session did not end")
		}
	}
	// 9000 bytes: under the limit; the next 2000 cross it.
	if _, err := h.ingestAs(t, alice, filepath.Join(h.dir, "alice", "n.lmdb"), content("new", 2000)); err != nil {
		t.Fatal(err)
	}
	st := h.svc.store
	if st.Has(keyOf(old)) {
		t.Errorf("the oldest unreferenced blob survived crossing max_bytes")
	}
	if !st.Has(keyOf(young)) {
		t.Errorf("the younger unreferenced blob went although removing the oldest was enough")
	}
	if !st.Has(keyOf(kept)) || !st.Has(keyOf(content("new", 2000))) {
		t.Fatalf("a referenced blob was swept")
	}
	// Fill with referenced content: the store cannot get under its limit.
	_, err := h.ingestAs(t, alice, filepath.Join(h.dir, "alice", "o.lmdb"), content("fill", 5000))
	if !errors.Is(err, errdefs.ErrQuota) || !strings.Contains(err.Error(), "store is full") {
		t.Fatalf("ingest into a full store: %v", err)
	}
	if !st.Has(keyOf(kept)) {
		t.Fatalf("a referenced blob was swept")
	}
	// The refused ingest's blob went with its session (ended in the
	// background): there is room again.
	if !waitFor(5*time.Second, func() bool { return sessionsOf(h.svc) == 0 }) {
		t.Fatal("the refused session did not end")
	}
	if _, err := h.ingestAs(t, alice, filepath.Join(h.dir, "alice", "p.lmdb"), content("later", 10)); err != nil {
		t.Errorf("a small ingest once the refused one is gone: %v", err)
	}
	// Restarted with a limit under what pinned trees hold: new ingests
	// are refused at begin, and nothing referenced goes.
	cfg := h.svc.cfg
	cfg.MaxStoreBytes = 5000
	h.svc.Close()
	h.svc, _ = New(cfg)
	defer h.svc.Close()
	var br rpc.BeginResult
	if err := h.client(bobUID).Call(context.Background(), rpc.MethodIngestBegin, rpc.BeginParams{Path: "/proj"}, &br); !errors.Is(err, errdefs.ErrQuota) || !strings.Contains(err.Error(), "max_bytes") {
		t.Errorf("a new ingest into the full store: %v", err)
	}
	if !h.svc.store.Has(keyOf(kept)) {
		t.Fatalf("a referenced blob was swept")
	}
}

func sessionsOf(s *Service) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// metricsOf reads the metrics RPC.
func metricsOf(t *testing.T, c *rpc.Client) []map[string]any {
	t.Helper()
	var res struct {
		Families []map[string]any `json:"families"`
	}
	if err := c.Call(context.Background(), rpc.MethodMetrics, nil, &res); err != nil {
		t.Fatal(err)
	}
	return res.Families
}

// sample sums the values of name's series whose labels include value.
func sample(fams []map[string]any, name, label string) float64 {
	var sum float64
	for _, f := range fams {
		if f["name"] != name {
			continue
		}
		for _, m := range f["metric"].([]any) {
			mm := m.(map[string]any)
			match := label == ""
			for _, l := range asSlice(mm["label"]) {
				if l.(map[string]any)["value"] == label {
					match = true
				}
			}
			if !match {
				continue
			}
			for _, kind := range []string{"counter", "gauge", "untyped"} {
				if v, ok := mm[kind].(map[string]any); ok {
					if x, ok := v["value"].(float64); ok {
						sum += x
					}
				}
			}
		}
	}
	return sum
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// TestMetrics: /metrics passes promtool check metrics; the metrics RPC
// returns the same families, with other users' series hidden from a user.
func TestMetrics(t *testing.T) {
	h := newHarness(t, Config{QuotaDefault: 1 << 30})
	alice, bob := h.client(aliceUID), h.client(bobUID)
	if _, err := h.ingestAs(t, alice, filepath.Join(h.dir, "a.lmdb"), content("a", 1234), content("b", 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ingestAs(t, bob, filepath.Join(h.dir, "b.lmdb"), content("c", 99)); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.svc.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	text := rec.Body.String()
	for _, fam := range []string{"vrift_rpc_requests_total", "vrift_rpc_request_duration_seconds", "vrift_ingest_files_total",
		"vrift_ingest_read_bytes_total", "vrift_ingest_new_blobs_total", "vrift_ingest_new_bytes_total",
		"vrift_ingest_reused_blobs_total", "vrift_store_blobs", "vrift_store_logical_bytes", "vrift_store_disk_bytes",
		"vrift_user_referenced_bytes", "vrift_gc_runs_total", "vrift_gc_removed_blobs_total", "vrift_gc_duration_seconds",
		"vrift_quota_refusals_total", "vrift_ingest_sessions_in_flight", "vrift_pins_total", "go_goroutines",
		"process_cpu_seconds_total"} {
		if !strings.Contains(text, "# TYPE "+fam+" ") {
			t.Errorf("/metrics has no %s", fam)
		}
	}
	if !strings.Contains(text, `vrift_ingest_new_bytes_total 1343`) {
		t.Errorf("ingested bytes not counted:\n%s", grepLines(text, "vrift_ingest"))
	}
	if !strings.Contains(text, fmt.Sprintf(`vrift_user_referenced_bytes{uid="%d"} 1244`, aliceUID)) {
		t.Errorf("alice's bytes:\n%s", grepLines(text, "vrift_user"))
	}
	promtool := requireTool(t, "promtool")
	if promtool != "" {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	// The RPC: the admin sees everyone's series; alice her own.
	if v := sample(metricsOf(t, h.client(h.self())), "vrift_user_referenced_bytes", fmt.Sprint(bobUID)); v != 99 {
		t.Errorf("admin's view of bob's bytes: %v", v)
	}
	fa := metricsOf(t, alice)
	if v := sample(fa, "vrift_user_referenced_bytes", fmt.Sprint(bobUID)); v != 0 {
		t.Errorf("alice sees bob's bytes: %v", v)
	}
	if v := sample(fa, "vrift_user_referenced_bytes", fmt.Sprint(aliceUID)); v != 1244 {
		t.Errorf("alice's own bytes over the RPC: %v", v)
	}
	if v := sample(fa, "vrift_ingest_new_bytes_total", ""); v != 1343 {
		t.Errorf("new bytes over the RPC: %v", v)
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// requireTool finds a program; missing, it skips, or fails in CI
// (VRIFT_REQUIRE_ROOT=1), where .ci/run installs it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("VRIFT_REQUIRE_ROOT") == "1" {
			t.Fatalf("%s is required (VRIFT_REQUIRE_ROOT=1): install Debian's prometheus package", name)
		}
		t.Logf("%s not installed: that check is skipped", name)
		return ""
	}
	return p
}

// TestAccountingConcurrent: pins and drops of several users at once leave
// the incremental accounting equal to a recount.
func TestAccountingConcurrent(t *testing.T) {
	h := newHarness(t, Config{})
	shared := []string{content("s1", 700), content("s2", 900), content("s3", 1100)}
	var paths []string
	for i, c := range shared {
		paths = append(paths, h.file(fmt.Sprintf("shared%d", i), c))
	}
	errs := make(chan error, 16)
	for u := range 4 {
		uid := uint32(aliceUID + u)
		c := h.client(uid)
		go func() {
			errs <- func() error {
				for r := range 4 {
					var br rpc.BeginResult
					if err := c.Call(context.Background(), rpc.MethodIngestBegin, rpc.BeginParams{Path: "/p"}, &br); err != nil {
						return err
					}
					own := content(fmt.Sprintf("u%dr%d", u, r), 500+u)
					p := h.file(fmt.Sprintf("own%d-%d", u, r), own)
					if _, err := put(context.Background(), c, br.Session, append([]string{p}, paths...)...); err != nil {
						return err
					}
					m := filepath.Join(h.dir, fmt.Sprintf("u%d", u), fmt.Sprintf("m%d.lmdb", r%2))
					writeManifest(t, m, nil, append([]string{own}, shared[:1+r%3]...)...)
					if _, err := link(c, m, br.Session); err != nil {
						return err
					}
					if r == 2 {
						if err := c.Call(context.Background(), rpc.MethodGC, rpc.GCParams{Grace: 2 * DefaultMinUserGrace, Drop: []string{m}}, nil); err != nil && !errors.Is(err, errdefs.ErrBusy) {
							return err
						}
					}
				}
				return nil
			}()
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if rc := usageOf(t, h.client(h.self()), true); !rc.Consistent {
		t.Errorf("after concurrent pins and drops the accounting differs from a recount: %+v", rc)
	}
}
