package service_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vrift/vrift/internal/testenv"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/service"
)

var methods = []string{rpc.MethodStatus, rpc.MethodIngest, rpc.MethodIngestBegin, rpc.MethodIngestPut,
	rpc.MethodIngestFlush, rpc.MethodLink, rpc.MethodGC, rpc.MethodVerify}

// FuzzServiceParams sends arbitrary params to every method of the real
// daemon service over a real socket (no descriptors). Every call must be
// answered: with a result or with a JSON-RPC error of a defined code, never
// an internal error (-32603, which means the daemon failed rather than the
// caller), and the connection must go on serving.
func FuzzServiceParams(f *testing.F) {
	seeds := []struct {
		m      uint8
		params string
	}{
		{0, `{}`}, {1, `{"path":"/etc"}`}, {2, `{"path":"/home/a/p"}`},
		{3, `{"session":"nope","files":[]}`}, {3, `{"session":"x","files":[{"name":"a"}]}`},
		{4, `{"session":"nope"}`}, {5, `{"manifest_path":"rel"}`}, {5, `{"manifest_path":"/abs"}`},
		{6, `{"dry_run":true,"grace":0,"drop":["/a","/b"]}`}, {6, `{"grace":-5}`}, {7, `{}`},
		{6, `{"dry_run":"yes"}`}, {2, `null`}, {4, `[]`}, {3, `{"files":[{"exec":1}]}`},
	}
	for _, s := range seeds {
		f.Add(s.m, []byte(s.params))
	}
	sock := testenv.ServeDaemon(f, service.Config{Version: "fuzz"})
	f.Fuzz(func(t *testing.T, m uint8, params []byte) {
		if !json.Valid(params) {
			// The client cannot send a frame that is not JSON: the stream
			// fuzz covers those bytes.
			return
		}
		method := methods[int(m)%len(methods)]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := rpc.Dial(ctx, sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var res json.RawMessage
		err = c.Call(ctx, method, json.RawMessage(params), &res)
		switch code := rpc.CodeOf(err); {
		case err == nil:
		case code == rpc.CodeInternalError:
			t.Fatalf("%s %s: internal error: %v", method, params, err)
		case code == 0:
			t.Fatalf("%s %s: no JSON-RPC answer: %v", method, params, err)
		}
		var st rpc.StatusResult
		if err := c.Call(ctx, rpc.MethodStatus, nil, &st); err != nil {
			t.Fatalf("after %s %s: status failed: %v", method, params, err)
		}
	})
}
