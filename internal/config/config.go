// Package config is vrift's one configuration file, config.toml, as the
// CLI and the daemon read it: one lookup rule (Path), one typed struct
// (File) holding every key either reads, strict keys (an unknown or
// misspelt key is refused, with its line), and one way for flags to
// override the file (Overrides).
//
// The daemon reads the whole file (default /etc/vrift/config.toml); the CLI
// reads [remote] (the team cache, direct mode) and [store] max_bytes and
// min_free (the per-user store's limits) from the user's file (default
// os.UserConfigDir()/vrift/config.toml: ~/.config on Linux, ~/Library/
// Application Support on macOS). Both honour --config, then $VRIFT_CONFIG.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/trust"
	"github.com/vrift/vrift/units"
)

// DaemonPath is the daemon's default config file.
const DaemonPath = "/etc/vrift/config.toml"

// EnvVar names a config file for whichever program reads one.
const EnvVar = "VRIFT_CONFIG"

// UserPath is the CLI's default config file:
// os.UserConfigDir()/vrift/config.toml ("" when there is no such
// directory).
func UserPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "vrift", "config.toml")
}

// Path is the one lookup rule: the --config flag's value, else
// $VRIFT_CONFIG, else fallback (DaemonPath or UserPath()). explicit says
// the file was named (flag or variable): then it must exist.
func Path(flagValue, fallback string) (path string, explicit bool) {
	if flagValue != "" {
		return flagValue, true
	}
	if env := os.Getenv(EnvVar); env != "" {
		return env, true
	}
	return fallback, false
}

// DaemonDefaults are the daemon's values for the keys a file leaves out.
func DaemonDefaults() File {
	f := File{Store: Store{Path: "/var/lib/vrift/the_source"}, State: "/var/lib/vrift/state",
		Socket: "/run/vrift/daemon.sock", MaxFrame: rpc.DefaultMaxFrame, LogLevel: "info"}
	if runtime.GOOS == "darwin" {
		// The RFC's ~/Library/Application Support/vrift/daemon.sock, in the
		// home of the daemon's user.
		if home, err := os.UserHomeDir(); err == nil {
			f.Socket = filepath.Join(home, "Library", "Application Support", "vrift", "daemon.sock")
		}
	}
	return f
}

// File is config.toml: every key the CLI or the daemon reads.
type File struct {
	// Store is `store = "/path"` or a [store] table (see Store).
	Store        Store  `toml:"store"`
	Socket       string `toml:"socket"`
	State        string `toml:"state"`
	SharePrivate bool   `toml:"share_private"`
	MaxFrame     int    `toml:"max_frame"`
	LogLevel     string `toml:"log_level"`
	// Remote is the team cache ([remote] url, endpoint, region, push);
	// credentials come from the reader's AWS_* environment or its
	// credentials file, never from this file.
	Remote remote.Config `toml:"remote"`

	// Bounds (0: the service's default; see docs/protocol.md).
	MaxManifest        int64    `toml:"max_manifest"`
	MaxSessionBytes    int64    `toml:"max_session_bytes"`
	MaxSessionsPerUser int      `toml:"max_sessions_per_user"`
	MaxRootsPerUser    int      `toml:"max_roots_per_user"`
	MinUserGrace       Duration `toml:"min_user_grace"`
	AuditMaxBytes      int64    `toml:"audit_max_bytes"`
	AuditKeep          int      `toml:"audit_keep"`
	// Transport bounds (see docs/protocol.md); 0 means the default.
	CallTimeout    string `toml:"call_timeout"`
	MaxConns       int    `toml:"max_conns"`
	MaxConnsPerUID int    `toml:"max_conns_per_uid"`
	MaxFDsPerUID   int    `toml:"max_fds_per_uid"`
	MaxInflight    int    `toml:"max_inflight"`
	// Quotas and metrics (the daemon's; docs/admin-guide.md).
	Quota   Quota   `toml:"quota"`
	Metrics Metrics `toml:"metrics"`
}

// Duration reads a TOML string such as "1h30m".
type Duration struct{ time.Duration }

// MarshalText writes it back the same way.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads it.
func (d *Duration) UnmarshalText(b []byte) error {
	var err error
	d.Duration, err = time.ParseDuration(string(b))
	return err
}

// Store is the config's store key: the flat `store = "/path"` of earlier
// versions, or the table
//
//	[store]
//	path = "/var/lib/vrift/the_source"
//	max_bytes = "500GiB"
//	min_free = "10GiB"
//
// (TOML cannot have both: a key is a string or a table.) It encodes as the
// table. A bad size is kept in bad and reported by Parse with its line (the
// decoder would name only the [store] line).
type Store struct {
	Path     string     `toml:"path"`
	MaxBytes units.Size `toml:"max_bytes,omitempty"`
	MinFree  units.Size `toml:"min_free,omitempty"`
	bad      error
	badKey   string
}

// UnmarshalTOML reads the string or the table.
func (s *Store) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		s.Path = x
		return nil
	case map[string]any:
		for k, val := range x {
			switch k {
			case "path":
				p, ok := val.(string)
				if !ok {
					return fmt.Errorf("store.path: want a string, got %v", val)
				}
				s.Path = p
			case "max_bytes", "min_free":
				n, err := sizeOf(val)
				if err != nil {
					if s.bad == nil {
						s.bad, s.badKey = err, k
					}
					continue
				}
				if k == "max_bytes" {
					s.MaxBytes = units.Size(n)
				} else {
					s.MinFree = units.Size(n)
				}
			default:
				return fmt.Errorf("store.%s: unknown key (want path, max_bytes or min_free)", k)
			}
		}
		return nil
	}
	return fmt.Errorf("store: want a path or a [store] table, got %v", v)
}

// sizeOf reads a TOML size: a string with a unit, or an integer (bytes).
func sizeOf(v any) (int64, error) {
	switch x := v.(type) {
	case string:
		return units.ParseSize(x)
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("size %d: negative", x)
		}
		return x, nil
	}
	return 0, fmt.Errorf("want a size such as \"10GiB\", got %v", v)
}

// Quota is the [quota] table; sizes are checked as they are decoded (the
// TOML decoder names the line of a bad one).
type Quota struct {
	Default units.Size            `toml:"default"`
	Users   map[string]units.Size `toml:"users"`
}

// Metrics is the [metrics] table.
type Metrics struct {
	Addr string `toml:"addr"`
}

// Load reads the file at path over base (the reader's defaults). A missing
// file is base, unless explicit (named by flag or $VRIFT_CONFIG). It
// returns the file's text too, for Limits to name lines with. Errors name
// the file.
func Load(path string, explicit bool, base File) (File, []byte, error) {
	if path == "" {
		return base, nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return base, nil, nil
		}
		return File{}, nil, fmt.Errorf("config %s: %w", path, err)
	}
	f, err := Parse(data, base)
	if err != nil {
		return File{}, nil, fmt.Errorf("config %s: %w", path, err)
	}
	return f, data, nil
}

// Parse decodes a config file's text over base. Unknown keys are refused
// (a misspelt key would otherwise be silently ignored, and a typo in
// [remote] could send data elsewhere), naming their line, and so are
// values of the wrong type.
func Parse(data []byte, base File) (File, error) {
	f := base
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return File{}, err
	}
	if s := f.Store; s.bad != nil {
		where := ""
		if n := KeyLine(data, "store", s.badKey); n > 0 {
			where = fmt.Sprintf("line %d: ", n)
		}
		return File{}, fmt.Errorf("%sstore.%s: %w", where, s.badKey, s.bad)
	}
	if err := checkTrustedKeys(data, f.Remote.TrustedKeys); err != nil {
		return File{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		where := ""
		if n := KeyLine(data, strings.Join(k[:len(k)-1], "."), k[len(k)-1]); n > 0 {
			where = fmt.Sprintf("line %d: ", n)
		}
		return File{}, fmt.Errorf("%sunknown key %q (the known ones: man 5 vrift.toml, or docs/admin-guide.md)", where, k.String())
	}
	return f, nil
}

// checkTrustedKeys parses [remote] trusted_keys, naming the line of a bad
// entry (the decoder knows only the key's line; an array may span many).
func checkTrustedKeys(src []byte, keys []string) error {
	if _, err := trust.NewPolicy(keys); err == nil {
		return nil
	}
	for i, k := range keys {
		if _, err := trust.ParsePublicKey(k); err != nil {
			return fmt.Errorf("%sremote.trusted_keys entry %d: %w", lineOf(src, k, "remote", "trusted_keys"), i+1, err)
		}
	}
	_, err := trust.NewPolicy(keys)
	return fmt.Errorf("%sremote.trusted_keys: %w", lineOf(src, "", "remote", "trusted_keys"), err)
}

// lineOf is "line N: " for the first line holding the quoted string s
// (or, for s == "" or not found, the line of table.key), "" if neither is
// found.
func lineOf(src []byte, s, table, key string) string {
	if s != "" {
		for n, l := range strings.Split(string(src), "\n") {
			if strings.Contains(l, `"`+s+`"`) || strings.Contains(l, `'`+s+`'`) {
				return fmt.Sprintf("line %d: ", n+1)
			}
		}
	}
	if n := KeyLine(src, table, key); n > 0 {
		return fmt.Sprintf("line %d: ", n)
	}
	return ""
}

// TrustPolicy is the [remote] trusted_keys policy (checked by Parse).
func (f File) TrustPolicy() (*trust.Policy, error) {
	p, err := trust.NewPolicy(f.Remote.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("remote.trusted_keys: %w", err)
	}
	return p, nil
}

// Limits are the checked quota and store limits.
type Limits struct {
	QuotaDefault int64
	QuotaUsers   map[uint32]int64
	MaxBytes     int64
	MinFree      int64
}

// Limits resolves the quota's user names, naming the config line of an
// unknown one: src is the file's text as Load returned it (nil when there
// was none). Sizes were checked when the file was parsed.
func (f File) Limits(path string, src []byte) (Limits, error) {
	l := Limits{QuotaDefault: int64(f.Quota.Default), QuotaUsers: map[uint32]int64{},
		MaxBytes: int64(f.Store.MaxBytes), MinFree: int64(f.Store.MinFree)}
	for name, lim := range f.Quota.Users {
		uid, err := lookupUID(name)
		if err != nil {
			where := path
			if n := KeyLine(src, "quota.users", name); n > 0 {
				where = fmt.Sprintf("%s line %d", path, n)
			}
			return l, fmt.Errorf("%s: quota.users.%s: %w", where, name, err)
		}
		l.QuotaUsers[uid] = int64(lim)
	}
	return l, nil
}

// lookupUID reads a user name or a numeric uid.
func lookupUID(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("unknown user %q (give a local user name or a uid)", name)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has a non-numeric uid %q", name, u.Uid)
	}
	return uint32(n), nil
}

var tableRE = regexp.MustCompile(`^\s*\[\s*([^\]]+?)\s*\]`)

// KeyLine finds the line (from 1) of key in table ("" for the top level)
// in a TOML text; 0 if not found. It reads only plain `key = ...` lines
// under `[table]` headers, which is how the packaged config is written.
func KeyLine(src []byte, table, key string) int {
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := tableRE.FindStringSubmatch(line); m != nil {
			cur = strings.ReplaceAll(m[1], " ", "")
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if ok && cur == table && strings.Trim(strings.TrimSpace(k), `"'`) == key {
			return n
		}
	}
	return 0
}

// Overrides are flags that override the file's keys: each flag is
// declared once, with the key it sets, and Apply sets the keys of the
// flags given on the command line, after the file is read.
type Overrides struct {
	fl  *flag.FlagSet
	set map[string]func(*File)
}

// NewOverrides declares override flags on fl.
func NewOverrides(fl *flag.FlagSet) *Overrides {
	return &Overrides{fl: fl, set: map[string]func(*File){}}
}

// String declares a string flag setting the key field points at.
func (o *Overrides) String(name, usage string, field func(*File) *string) {
	v := o.fl.String(name, "", usage)
	o.set[name] = func(f *File) { *field(f) = *v }
}

// Int declares an integer flag setting the key field points at.
func (o *Overrides) Int(name, usage string, field func(*File) *int) {
	v := o.fl.Int(name, 0, usage)
	o.set[name] = func(f *File) { *field(f) = *v }
}

// Bool declares a boolean flag setting the key field points at.
func (o *Overrides) Bool(name, usage string, field func(*File) *bool) {
	v := o.fl.Bool(name, false, usage)
	o.set[name] = func(f *File) { *field(f) = *v }
}

// Apply sets in f the key of every override flag given on the command
// line (a flag given as its zero value still overrides the file).
func (o *Overrides) Apply(f *File) {
	o.fl.Visit(func(fl *flag.Flag) {
		if set, ok := o.set[fl.Name]; ok {
			set(f)
		}
	})
}
