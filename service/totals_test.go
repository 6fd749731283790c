package service

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/rpc"
)

// TestDaemonStatusKeptTotals: the daemon's status answers from the totals
// the store keeps (equal to a walk); --recount is for root and vrift; the
// totals are saved when the daemon stops and trusted at the next start
// (no walk); after a writer died unsaved (its writer file left unlocked)
// the next start recounts, whatever the totals file said.
func TestDaemonStatusKeptTotals(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{})
	admin := h.client(h.self())
	sess := begin(t, admin)
	mustPut(t, admin, sess, h.file("a", "alpha"), h.file("b", "beta"))
	var st rpc.StatusResult
	if err := admin.Call(ctx, rpc.MethodStatus, nil, &st); err != nil || !st.StoreCounted || st.Blobs != 2 || st.Recounted {
		t.Fatalf("status: %+v, %v; want 2 blobs from the kept totals", st, err)
	}
	alice := h.client(1001)
	if err := alice.Call(ctx, rpc.MethodStatus, rpc.StatusParams{Recount: true}, &st); !errors.Is(err, errdefs.ErrPermission) {
		t.Fatalf("alice's --recount: %v, want refused", err)
	}
	if err := admin.Call(ctx, rpc.MethodStatus, rpc.StatusParams{Recount: true}, &st); err != nil || !st.Recounted || st.Blobs != 2 {
		t.Fatalf("admin's --recount: %+v, %v", st, err)
	}

	// Stopped and started again on the same store: trusted, no walk.
	cfg := Config{Store: filepath.Join(h.dir, "store2"), State: filepath.Join(h.dir, "state2"), Log: slog.New(slog.DiscardHandler)}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"one", "two", "three"} {
		if _, err := svc.store.Put(ctx, strings.NewReader(c), false); err != nil {
			t.Fatal(err)
		}
	}
	want := svc.store.Totals().Counts()
	svc.Close()
	svc, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !svc.store.TotalsTrusted() || svc.store.Totals().Counts() != want || want.Blobs != 3 {
		t.Fatalf("restarted: trusted %v, %+v, want %+v", svc.store.TotalsTrusted(), svc.store.Totals().Counts(), want)
	}
	svc.Close()

	// A writer that died unsaved, and totals that say something else: the
	// next start recounts.
	os.WriteFile(filepath.Join(cfg.Store, "totals"), []byte("vrift-totals 1 9 999 999 999\n"), 0o644)
	os.WriteFile(filepath.Join(cfg.Store, "writers", "put-1-dead"), nil, 0o600)
	svc, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if got := svc.store.Totals().Counts(); got != want || !svc.store.TotalsTrusted() {
		t.Fatalf("after a writer died: %+v (trusted %v), want the walk's %+v", got, svc.store.TotalsTrusted(), want)
	}
	if _, err := os.Stat(filepath.Join(cfg.Store, "writers", "put-1-dead")); err == nil {
		t.Fatal("the dead writer's file survived the recount")
	}
	st2, err := svc.store.StoredTotals()
	if err != nil || !st2.Trusted || st2.Counts != want {
		t.Fatalf("saved totals after the recount: %+v, %v", st2, err)
	}
}
