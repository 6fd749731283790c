package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigLimitErrors: a bad size (negative, unknown unit) or an unknown
// user stops the daemon at startup with an error naming the line and key.
func TestConfigLimitErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"negative quota", "log_level = \"info\"\n\n[quota]\ndefault = \"-5GiB\"\n", []string{"line 4", "quota.default", "negative"}},
		{"unknown unit", "[quota]\ndefault = \"20GiB\"\n[quota.users]\n\"0\" = \"5XB\"\n", []string{"line 4", "quota.users", "unknown unit"}},
		{"negative integer", "[quota.users]\nroot = -1\n", []string{"line 2", "negative"}},
		{"unknown user", "[quota]\ndefault = \"1GiB\"\n\n[quota.users]\nroot = \"1GiB\"\nno_such_user_vrift = \"5GiB\"\n", []string{"line 6", "quota.users.no_such_user_vrift", "unknown user"}},
		{"bad max_bytes", "[store]\npath = \"/x\"\nmax_bytes = \"10 parsecs\"\n", []string{"line 3", "store.max_bytes", "unknown unit"}},
		{"negative min_free", "[store]\nmin_free = -100\n", []string{"line 2", "store.min_free", "negative"}},
		{"unknown store key", "[store]\nmax_byte = \"1GiB\"\n", []string{"store.max_byte", "unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.toml")
			os.WriteFile(p, []byte(tc.text), 0o644)
			var out strings.Builder
			if code := run([]string{"--config", p}, &out); code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stderr %q lacks %q", out.String(), w)
				}
			}
		})
	}
}

// TestConfigLimitsParsed: the keys of the issue, both store forms, by name
// and by uid.
func TestConfigLimitsParsed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.toml")
	text := `log_level = "info"

[quota]
default = "20GiB"

[quota.users]
root = "5GiB"
"1001" = "1.5MB"

[store]
path = "/srv/vrift"
max_bytes = "500GiB"
min_free = 1000

[metrics]
addr = "127.0.0.1:9464"
`
	os.WriteFile(p, []byte(text), 0o644)
	cfg := defaults()
	src, _ := os.ReadFile(p)
	if err := decodeConfig(src, &cfg); err != nil {
		t.Fatal(err)
	}
	l, err := checkLimits(p, src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.quotaDefault != 20<<30 || l.quotaUsers[0] != 5<<30 || l.quotaUsers[1001] != 1500000 || l.maxBytes != 500<<30 || l.minFree != 1000 {
		t.Errorf("limits %+v", l)
	}
	if cfg.Store.Path != "/srv/vrift" || cfg.Metrics.Addr != "127.0.0.1:9464" {
		t.Errorf("config %+v", cfg)
	}
	// The flat form of earlier versions still works.
	cfg = defaults()
	if err := decodeConfig([]byte("store = \"/old\"\nsocket = \"/s\"\n"), &cfg); err != nil || cfg.Store.Path != "/old" {
		t.Errorf("flat store key: %v %+v", err, cfg.Store)
	}
}
