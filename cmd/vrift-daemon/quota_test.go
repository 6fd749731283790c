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
