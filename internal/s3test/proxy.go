package s3test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// IgnoreRange starts a proxy in front of endpoint that behaves like a
// server ignoring Range headers: a partial answer (206) is passed on as a
// 200 without its Content-Range, as such a server sends its whole object.
// It returns the proxy's endpoint.
func IgnoreRange(t testing.TB, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(r *http.Response) error {
		if r.StatusCode == http.StatusPartialContent {
			r.StatusCode, r.Status = http.StatusOK, "200 OK"
			r.Header.Del("Content-Range")
		}
		return nil
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}
