package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
	cfg, src, err := Load(p, true, DaemonDefaults())
	if err != nil {
		t.Fatal(err)
	}
	l, err := cfg.Limits(p, src)
	if err != nil {
		t.Fatal(err)
	}
	if l.QuotaDefault != 20<<30 || l.QuotaUsers[0] != 5<<30 || l.QuotaUsers[1001] != 1500000 || l.MaxBytes != 500<<30 || l.MinFree != 1000 {
		t.Errorf("limits %+v", l)
	}
	if cfg.Store.Path != "/srv/vrift" || cfg.Metrics.Addr != "127.0.0.1:9464" {
		t.Errorf("config %+v", cfg)
	}
	// The flat form of earlier versions still works.
	cfg, err = Parse([]byte("store = \"/old\"\nsocket = \"/s\"\n"), DaemonDefaults())
	if err != nil || cfg.Store.Path != "/old" {
		t.Errorf("flat store key: %v %+v", err, cfg.Store)
	}
}

// TestPackagedConfig: the packaged /etc/vrift/config.toml parses, and
// uncommenting its quota, store and metrics examples gives the documented
// limits.
func TestPackagedConfig(t *testing.T) {
	src, err := os.ReadFile("../../packaging/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(src, DaemonDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Path != "/var/lib/vrift/the_source" || cfg.Metrics.Addr != "" || cfg.Quota.Default != 0 {
		t.Errorf("packaged config: %+v", cfg)
	}
	uncommented := []byte{}
	for _, line := range splitLines(src) {
		for _, p := range []string{"# max_bytes", "# min_free", "# [quota", "# default", "# [metrics]", "# addr", "# \"1001\""} {
			if len(line) >= len(p) && string(line[:len(p)]) == p {
				line = line[2:]
			}
		}
		uncommented = append(append(uncommented, line...), '\n')
	}
	cfg, err = Parse(uncommented, DaemonDefaults())
	if err != nil {
		t.Fatalf("uncommented examples: %v\n%s", err, uncommented)
	}
	l, err := cfg.Limits("config.toml", uncommented)
	if err != nil {
		t.Fatal(err)
	}
	if l.MaxBytes != 500<<30 || l.MinFree != 10<<30 || l.QuotaDefault != 20<<30 || l.QuotaUsers[1001] != 50<<30 || cfg.Metrics.Addr != "127.0.0.1:9464" {
		t.Errorf("uncommented examples give %+v, %+v", l, cfg.Metrics)
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	return append(out, b[start:])
}

// TestLookupRule: --config, then $VRIFT_CONFIG, then the reader's default;
// a named file must exist, the default need not.
func TestLookupRule(t *testing.T) {
	t.Setenv(EnvVar, "")
	if p, explicit := Path("", "/default"); p != "/default" || explicit {
		t.Errorf("no flag, no variable: %q %v", p, explicit)
	}
	t.Setenv(EnvVar, "/from/env")
	if p, explicit := Path("", "/default"); p != "/from/env" || !explicit {
		t.Errorf("variable: %q %v", p, explicit)
	}
	if p, explicit := Path("/from/flag", "/default"); p != "/from/flag" || !explicit {
		t.Errorf("flag: %q %v", p, explicit)
	}
	missing := filepath.Join(t.TempDir(), "missing.toml")
	base := File{LogLevel: "info"}
	if f, src, err := Load(missing, false, base); err != nil || f.LogLevel != "info" || src != nil {
		t.Errorf("missing default file: %+v %v", f, err)
	}
	if _, _, err := Load(missing, true, base); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing named file: %v", err)
	}
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if p := UserPath(); p != "/xdg/vrift/config.toml" {
		t.Errorf("UserPath %q (os.UserConfigDir)", p)
	}
}

// TestStrictKeys: an unknown key anywhere, [remote] included, is refused
// with its line; the CLI's keys and the daemon's are one file.
func TestStrictKeys(t *testing.T) {
	for text, want := range map[string][]string{
		"[remote]\nurl = \"s3://b\"\nendpiont = \"typo\"\n": {"line 3", "remote.endpiont", "unknown key"},
		"log_level = \"info\"\nstor = \"/typo\"\n":          {"line 2", "stor", "unknown key"},
		"[metrics]\n\naddress = \"x\"\n":                    {"line 3", "metrics.address"},
	} {
		_, err := Parse([]byte(text), File{})
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%q: %v, want %q", text, err, w)
			}
		}
	}
	f, err := Parse([]byte("[remote]\nurl = \"s3://b/p\"\nendpoint = \"http://127.0.0.1:9\"\n[store]\nmax_bytes = \"1GiB\"\n"), File{})
	if err != nil || f.Remote.URL != "s3://b/p" || f.Remote.Endpoint != "http://127.0.0.1:9" || f.Store.MaxBytes != 1<<30 {
		t.Errorf("the CLI's keys: %+v %v", f, err)
	}
}

// TestOverrides: a flag given overrides the file's key, even with its zero
// value; a flag not given leaves the key.
func TestOverrides(t *testing.T) {
	fl := flag.NewFlagSet("t", flag.ContinueOnError)
	ov := NewOverrides(fl)
	ov.String("socket", "", func(f *File) *string { return &f.Socket })
	ov.Int("max-frame", "", func(f *File) *int { return &f.MaxFrame })
	ov.Bool("share-private", "", func(f *File) *bool { return &f.SharePrivate })
	if err := fl.Parse([]string{"--max-frame", "0", "--share-private"}); err != nil {
		t.Fatal(err)
	}
	f := File{Socket: "/from/file", MaxFrame: 99}
	ov.Apply(&f)
	if f.Socket != "/from/file" || f.MaxFrame != 0 || !f.SharePrivate {
		t.Errorf("%+v", f)
	}
}

// TestTrustedKeys: [remote] trusted_keys and sign_key parse; a bad key
// line is refused naming its own line, not the array's first.
func TestTrustedKeys(t *testing.T) {
	good := "ci-1:" + strings.Repeat("A", 42) + "4="
	text := "[remote]\nurl = \"s3://b/p\"\nsign_key = \"/k/ci.secret\"\ntrusted_keys = [\n  \"" + good + "\",\n  \"ci-2:notbase64\",\n]\n"
	_, err := Parse([]byte(text), File{})
	if err == nil || !strings.HasPrefix(err.Error(), "line 6: remote.trusted_keys entry 2: ") || !strings.Contains(err.Error(), "ci-2") {
		t.Fatalf("bad key line: %v", err)
	}
	text = strings.Replace(text, "  \"ci-2:notbase64\",\n", "", 1)
	f, err := Parse([]byte(text), File{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.TrustPolicy()
	if err != nil || !p.Enforced() || f.Remote.SignKey != "/k/ci.secret" || len(f.Remote.TrustedKeys) != 1 {
		t.Fatalf("%+v %v", f.Remote, err)
	}
	// Unknown keys in [remote] are still refused.
	if _, err := Parse([]byte("[remote]\ntrusted_key = []\n"), File{}); err == nil || !strings.Contains(err.Error(), `line 2: unknown key "remote.trusted_key"`) {
		t.Fatalf("misspelt key: %v", err)
	}
	if _, err := Parse([]byte("[remote]\ntrusted_keys = [\"a:AAAA\", \"a:AAAA\"]\n"), File{}); err == nil || !strings.HasPrefix(err.Error(), "line 2: ") {
		t.Fatalf("bad key on one line: %v", err)
	}
}
