package main

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzConfig parses arbitrary bytes as the daemon's TOML config. It must not
// panic; what it accepts passes check() and survives a TOML round trip
// unchanged (nothing in the file was silently dropped or mangled).
func FuzzConfig(f *testing.F) {
	if b, err := os.ReadFile("../../packaging/config.toml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"", "store = \"/s\"\n", "max_frame = -1\n", "max_frame = 99999999999999999999\n", "max_frame = \"big\"\n",
		"stor = \"/typo\"\n", "share_private = \"yes\"\n", "log_level = \"loud\"\n", "[store]\nx = 1\n",
		"store = \"\"\n", "store = \"a\\u0000b\"\n", "= 1\n", "store = '''\nmulti\n'''\n", "max_frame = 1e3\n",
		"max_frame = 0x10\n", "[[a]]\n[[a]]\n", "store = \"/a\"\nstore = \"/b\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := check(cfg); err != nil {
			t.Fatalf("accepted a config that fails check: %v", err)
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
			t.Fatalf("accepted config does not re-encode: %v", err)
		}
		again, err := parseConfig(buf.Bytes())
		if err != nil {
			t.Fatalf("re-encoded config %q refused: %v", buf.String(), err)
		}
		if !reflect.DeepEqual(again, cfg) {
			t.Fatalf("round trip changed the config: %+v -> %+v", cfg, again)
		}
	})
}
