package remote

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for in, want := range map[string][2]string{
		"s3://bucket":          {"bucket", ""},
		"s3://bucket/":         {"bucket", ""},
		"s3://bucket/a/b":      {"bucket", "a/b"},
		"s3://bucket/a/b/":     {"bucket", "a/b"},
		"s3://my.bucket/cache": {"my.bucket", "cache"},
	} {
		b, p, err := ParseURL(in)
		if err != nil || b != want[0] || p != want[1] {
			t.Errorf("%q: %q %q %v", in, b, p, err)
		}
	}
	for _, bad := range []string{"", "bucket", "http://bucket/x", "s3:///x", "s3://bucket/a//b",
		"s3://bucket/../x", "s3://user:secret@bucket/x", "s3://us er:secret@bucket", "s3://bucket/x?y=1"} {
		if _, _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "secret@") {
			t.Errorf("%q: error repeats the credentials: %v", bad, err)
		}
	}
}

func TestMerge(t *testing.T) {
	c := Config{URL: "s3://b/p", Endpoint: "http://127.0.0.1:9", Region: "r"}
	m := c.Merge(Config{URL: "s3://other"})
	if m.URL != "s3://other" || m.Endpoint != c.Endpoint || m.Region != "r" {
		t.Fatalf("flags over file: %+v", m)
	}
}

func TestRedacted(t *testing.T) {
	cause := errors.New("signing with abc123secret failed")
	err := redacted{cause, "abc123secret"}
	if strings.Contains(err.Error(), "abc123secret") || !errors.Is(err, cause) {
		t.Fatalf("%v", err)
	}
}
