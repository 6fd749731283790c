package rpc

import (
	"encoding/json"
	"reflect"
	"testing"
)

// paramTypes are the params of every method that takes some, as the server
// decodes them (Call.Decode). status and verify take none.
var paramTypes = map[string]func() any{
	MethodIngest:      func() any { return new(IngestParams) },
	MethodIngestBegin: func() any { return new(BeginParams) },
	MethodIngestPut:   func() any { return new(PutParams) },
	MethodIngestFlush: func() any { return new(SessionParams) },
	MethodLink:        func() any { return new(LinkParams) },
	MethodGC:          func() any { return new(GCParams) },
}

// FuzzDecodeParams decodes arbitrary bytes as the params of every method.
// Decode must not panic, must fail with -32602 (never another code), and
// whatever it accepts must survive a JSON round trip unchanged, so that what
// the server acted on is what a client could have sent.
func FuzzDecodeParams(f *testing.F) {
	for _, s := range []string{
		`{"path":"/home/alice/proj","tier":"tier1","mode":"solid"}`,
		`{"path":"/p"}`,
		`{"session":"0123456789abcdef01234567","files":[{"name":"a","exec":true},{"name":"b"}]}`,
		`{"session":""}`,
		`{"manifest_path":"/home/a/.vrift/manifest.lmdb","session":"s"}`,
		`{"dry_run":true,"grace":3600000000000,"drop":["/x"]}`,
		`{"grace":-1}`,
		`{"grace":1e400}`,
		`{"files":null}`,
		`{"files":[null]}`,
		`{"unknown":1}`,
		`[]`, `null`, `1`, `"x"`, ``, `{`, `{"path":"\ud800"}`, `{"path":"a\u0000b"}`,
		`{"session":"a","session":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		for method, newParams := range paramTypes {
			c := &Call{Method: method, Params: params}
			v := newParams()
			err := c.Decode(v)
			if err != nil {
				if code := CodeOf(err); code != CodeInvalidParams {
					t.Fatalf("%s: error code %d, want %d: %v", method, code, CodeInvalidParams, err)
				}
				continue
			}
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%s: accepted params do not re-encode: %v", method, err)
			}
			w := newParams()
			if err := (&Call{Method: method, Params: again}).Decode(w); err != nil {
				t.Fatalf("%s: re-encoded params %s refused: %v", method, again, err)
			}
			if !reflect.DeepEqual(v, w) {
				t.Fatalf("%s: round trip changed params: %#v -> %#v", method, v, w)
			}
		}
	})
}
