package teamcache_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/vrift/vrift/teamcache"

	"github.com/vrift/vrift/remote"
)

// faulty sits in front of the real server and answers the first n requests
// of a method with a throttling or server error, as S3 does under load;
// the rest it forwards untouched (the Host header too, so signatures made
// for it still verify).
type faulty struct {
	method string
	n      int64
	status int
	code   string
	served atomic.Int64
	proxy  *httputil.ReverseProxy
}

func (f *faulty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == f.method && f.served.Add(1) <= f.n {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(f.status)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + f.code + `</Code><Message>injected</Message></Error>`))
		return
	}
	f.proxy.ServeHTTP(w, r)
}

// TestRetriesOnThrottlingAndServerErrors: SlowDown (503) on uploads and
// InternalError (500) on downloads are retried with backoff; push and pull
// complete.
func TestRetriesOnThrottlingAndServerErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	target, _ := url.Parse(e.srv.Endpoint())
	for _, f := range []*faulty{
		{method: http.MethodPut, n: 6, status: http.StatusServiceUnavailable, code: "SlowDown"},
		{method: http.MethodGet, n: 6, status: http.StatusInternalServerError, code: "InternalError"},
	} {
		t.Run(f.code, func(t *testing.T) {
			f.proxy = httputil.NewSingleHostReverseProxy(target)
			front := httptest.NewServer(f)
			defer front.Close()
			b, err := remote.OpenS3(remote.Config{URL: "s3://" + bucket + "/" + f.code, Endpoint: front.URL})
			if err != nil {
				t.Fatal(err)
			}
			d1, root := project(t, sampleFiles(3))
			res, err := teamcache.Push(ctx, d1.Store, mpathOf(root), b, "app", teamcache.Options{Jobs: 2})
			if err != nil {
				t.Fatalf("push through %s: %v", f.code, err)
			}
			d2 := newStore(t)
			pres, err := teamcache.Pull(ctx, d2.Store, b, "app", filepath.Join(t.TempDir(), "r"), nil, teamcache.Options{Jobs: 2})
			if err != nil {
				t.Fatalf("pull through %s: %v", f.code, err)
			}
			if pres.BlobsFetched != res.Blobs {
				t.Fatalf("fetched %d of %d", pres.BlobsFetched, res.Blobs)
			}
			if f.served.Load() <= f.n {
				t.Fatalf("only %d %s requests: the faults were not all hit", f.served.Load(), f.method)
			}
		})
	}
}
