package remote

import (
	"errors"
	"os"
	"path/filepath"
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

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	if c, err := LoadConfig(filepath.Join(dir, "missing.toml")); err != nil || c != (Config{}) {
		t.Fatalf("missing file: %+v %v", c, err)
	}
	p := filepath.Join(dir, "config.toml")
	os.WriteFile(p, []byte("store = \"x\"\n[remote]\nurl = \"s3://b/p\"\nendpoint = \"http://127.0.0.1:9\"\nregion = \"r\"\n"), 0o644)
	c, err := LoadConfig(p)
	if err != nil || c.URL != "s3://b/p" || c.Endpoint != "http://127.0.0.1:9" || c.Region != "r" {
		t.Fatalf("%+v %v", c, err)
	}
	m := c.Merge(Config{URL: "s3://other"})
	if m.URL != "s3://other" || m.Endpoint != c.Endpoint {
		t.Fatalf("flags over file: %+v", m)
	}
	os.WriteFile(p, []byte("[remote]\nurl = \"s3://b\"\nendpiont = \"typo\"\n"), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "endpiont") {
		t.Fatalf("a typo in [remote] must be an error: %v", err)
	}
}

func TestRedacted(t *testing.T) {
	cause := errors.New("signing with abc123secret failed")
	err := redacted{cause, "abc123secret"}
	if strings.Contains(err.Error(), "abc123secret") || !errors.Is(err, cause) {
		t.Fatalf("%v", err)
	}
}
