package service

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/internal/s3test"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/teamcache"
)

// walkTotals counts the store's blobs the slow way.
func walkTotals(t *testing.T, s *cas.Store) (blobs, bytes int64) {
	t.Helper()
	err := s.Walk(context.Background(), func(b cas.Blob) error {
		blobs++
		bytes += b.Key.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return blobs, bytes
}

// TestPullKeepsStoreTotals: blobs a team-cache pull adds to the shared
// store count in the store's totals (the usage RPC's store figures, the
// vrift_store_* gauges, and so max_bytes) as an ingest's do. The pull runs
// as alice through the daemon against a real versitygw.
func TestPullKeepsStoreTotals(t *testing.T) {
	srv := s3test.Start(t, "team")
	srv.SetEnv(t)
	be, err := remote.OpenS3(remote.Config{URL: "s3://team/shared", Endpoint: srv.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	// A tree pushed from another machine's store.
	src, err := cas.Open(filepath.Join(t.TempDir(), "src"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	contents := []string{content("pulled-a", 3000), content("pulled-b", 5000), content("pulled-c", 70000)}
	for _, c := range contents {
		if _, err := src.Put(context.Background(), strings.NewReader(c), false); err != nil {
			t.Fatal(err)
		}
	}
	mpath := filepath.Join(t.TempDir(), "m.lmdb")
	writeManifest(t, mpath, nil, contents...)
	if _, err := teamcache.Push(context.Background(), src, mpath, be, "tree1", teamcache.Options{}); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, Config{TeamCache: &TeamCache{Backend: be}})
	admin := h.client(h.self())
	// One blob of the daemon's own first, so the totals start non-zero.
	if _, err := h.ingestAs(t, h.client(aliceUID), filepath.Join(h.dir, "alice", "own.lmdb"), content("own", 1000)); err != nil {
		t.Fatal(err)
	}
	var res rpc.RemoteResult
	if err := h.client(aliceUID).Call(context.Background(), rpc.MethodRemotePull, rpc.RemotePullParams{Name: "tree1"}, &res); err != nil {
		t.Fatal(err)
	}
	if res.BlobsFetched != int64(len(contents)) {
		t.Fatalf("pull fetched %d blobs, want %d", res.BlobsFetched, len(contents))
	}
	blobs, bytes := walkTotals(t, h.svc.store)
	if blobs != 4 {
		t.Fatalf("the store holds %d blobs after the pull, want 4", blobs)
	}
	u := usageOf(t, admin, false)
	if u.StoreBlobs != blobs || u.StoreBytes != bytes {
		t.Errorf("usage: the store holds %d blobs, %d bytes; the daemon's totals say %d blobs, %d bytes",
			blobs, bytes, u.StoreBlobs, u.StoreBytes)
	}
	fams := metricsOf(t, admin)
	if g, l := sample(fams, "vrift_store_blobs", ""), sample(fams, "vrift_store_logical_bytes", ""); int64(g) != blobs || int64(l) != bytes {
		t.Errorf("metrics: the store holds %d blobs, %d bytes; vrift_store_blobs %v, vrift_store_logical_bytes %v", blobs, bytes, g, l)
	}
	var st rpc.StatusResult
	if err := admin.Call(context.Background(), rpc.MethodStatus, nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blobs != blobs || st.Bytes != bytes {
		t.Errorf("status: %d blobs, %d bytes; the walk %d, %d", st.Blobs, st.Bytes, blobs, bytes)
	}
	// A second pull fetches nothing and adds nothing.
	if err := h.client(aliceUID).Call(context.Background(), rpc.MethodRemotePull, rpc.RemotePullParams{Name: "tree1"}, &res); err != nil {
		t.Fatal(err)
	}
	if u := usageOf(t, admin, false); u.StoreBlobs != blobs || u.StoreBytes != bytes {
		t.Errorf("after a second pull: %d blobs, %d bytes in the totals; %d, %d in the store", u.StoreBlobs, u.StoreBytes, blobs, bytes)
	}
}
