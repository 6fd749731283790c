package main

import (
	"os"
	"testing"
)

// TestPackagedConfig: the packaged /etc/vrift/config.toml parses, and
// uncommenting its quota, store and metrics examples gives the documented
// limits.
func TestPackagedConfig(t *testing.T) {
	src, err := os.ReadFile("../../packaging/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	if err := decodeConfig(src, &cfg); err != nil {
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
	cfg = defaults()
	if err := decodeConfig(uncommented, &cfg); err != nil {
		t.Fatalf("uncommented examples: %v\n%s", err, uncommented)
	}
	l, err := checkLimits("config.toml", uncommented, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.maxBytes != 500<<30 || l.minFree != 10<<30 || l.quotaDefault != 20<<30 || l.quotaUsers[1001] != 50<<30 || cfg.Metrics.Addr != "127.0.0.1:9464" {
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
