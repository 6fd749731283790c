// Command vrift-daemon owns the shared vrift store and serves the vrift
// protocol (JSON-RPC 2.0) on a unix socket. It runs as the unprivileged
// vrift user; see docs/protocol.md and the README's daemon section.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/service"
)

var version = "dev"

// config is the daemon's configuration: the TOML file's keys, overridden by
// flags given on the command line.
type config struct {
	// Store is `store = "/path"` or a [store] table (quota.go).
	Store        storeConfig `toml:"store"`
	Socket       string      `toml:"socket"`
	State        string      `toml:"state"`
	SharePrivate bool        `toml:"share_private"`
	MaxFrame     int         `toml:"max_frame"`
	LogLevel     string      `toml:"log_level"`
	// Remote is the team cache ([remote] url, endpoint, region, push); the
	// daemon's own credentials come from its AWS_* environment or its
	// credentials file.
	Remote remote.Config `toml:"remote"`

	// Bounds (0: the service's default; see docs/protocol.md).
	MaxManifest        int64    `toml:"max_manifest"`
	MaxSessionBytes    int64    `toml:"max_session_bytes"`
	MaxSessionsPerUser int      `toml:"max_sessions_per_user"`
	MaxRootsPerUser    int      `toml:"max_roots_per_user"`
	MinUserGrace       duration `toml:"min_user_grace"`
	AuditMaxBytes      int64    `toml:"audit_max_bytes"`
	AuditKeep          int      `toml:"audit_keep"`
	// Transport bounds (see docs/protocol.md); 0 means the default.
	CallTimeout    string `toml:"call_timeout"`
	MaxConns       int    `toml:"max_conns"`
	MaxConnsPerUID int    `toml:"max_conns_per_uid"`
	MaxFDsPerUID   int    `toml:"max_fds_per_uid"`
	MaxInflight    int    `toml:"max_inflight"`
	// Quotas, store-wide limits and metrics (quota.go, README).
	Quota   quotaConfig   `toml:"quota"`
	Metrics metricsConfig `toml:"metrics"`
}

// duration reads a TOML string such as "1h30m".
type duration struct{ time.Duration }

// MarshalText writes it back the same way.
func (d duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *duration) UnmarshalText(b []byte) error {
	var err error
	d.Duration, err = time.ParseDuration(string(b))
	return err
}

// decodeConfig parses a config file's text (parseConfig) into cfg.
func decodeConfig(src []byte, cfg *config) error {
	c, err := parseConfig(src)
	if err == nil {
		*cfg = c
	}
	return err
}

const defaultConfigFile = "/etc/vrift/config.toml"

func defaults() config {
	c := config{Store: storeConfig{Path: "/var/lib/vrift/the_source"}, State: "/var/lib/vrift/state",
		Socket: "/run/vrift/daemon.sock", MaxFrame: rpc.DefaultMaxFrame, LogLevel: "info"}
	if runtime.GOOS == "darwin" {
		// The RFC's ~/Library/Application Support/vrift/daemon.sock, in the
		// home of the daemon's user.
		if home, err := os.UserHomeDir(); err == nil {
			c.Socket = filepath.Join(home, "Library", "Application Support", "vrift", "daemon.sock")
		}
	}
	return c
}

// maxMaxFrame bounds max_frame: a frame is read into memory whole.
const maxMaxFrame = 1 << 30

// loadConfig reads the TOML file at path over the defaults. A missing file
// is an error only when it was named explicitly.
func loadConfig(path string, explicit bool) (config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return defaults(), nil
		}
		return config{}, err
	}
	return parseConfig(data)
}

// parseConfig decodes a config file over the defaults. Unknown keys are
// refused (a misspelt key would otherwise be silently ignored), and so are
// values of the wrong type or out of range.
func parseConfig(data []byte) (config, error) {
	cfg := defaults()
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		return config{}, err
	}
	if err := checkStoreSizes(data, cfg.Store); err != nil {
		return config{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return config{}, fmt.Errorf("unknown key %q (see /etc/vrift/config.toml and docs/protocol.md for the known ones)", und[0].String())
	}
	if err := cfg.check(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// check validates a configuration, after flags are applied too.
func (c config) check() error {
	if c.MaxFrame < 0 || c.MaxFrame > maxMaxFrame {
		return fmt.Errorf("max_frame %d: must be between 0 (the default, 16 MiB) and %d bytes", c.MaxFrame, maxMaxFrame)
	}
	for _, p := range []struct{ name, v string }{{"store", c.Store.Path}, {"state", c.State}, {"socket", c.Socket}} {
		if p.v == "" {
			return fmt.Errorf("%s: must not be empty", p.name)
		}
		if strings.IndexByte(p.v, 0) >= 0 {
			return fmt.Errorf("%s %q: contains a NUL byte", p.name, p.v)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	return nil
}

func main() {
	// The daemon re-executes itself to read untrusted manifests.
	if code, ran := service.RunChild(); ran {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("vrift-daemon", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgFile := fl.String("config", "", "TOML config file (default "+defaultConfigFile+" if present)")
	store := fl.String("store", "", "shared store directory (default /var/lib/vrift/the_source)")
	socket := fl.String("socket", "", "unix socket path (default /run/vrift/daemon.sock)")
	state := fl.String("state", "", "state directory: roots, audit log (default /var/lib/vrift/state)")
	sharePrivate := fl.Bool("share-private", false, "let files without o+r into the shared store")
	maxFrame := fl.Int("max-frame", 0, "largest accepted frame in bytes (default 16 MiB)")
	allowRoot := fl.Bool("allow-root", false, "run as root (the store would then be root-owned)")
	logLevel := fl.String("log-level", "", "debug, info, warn or error")
	callTimeout := fl.String("call-timeout", "", "longest one call may run (default 1h)")
	maxConns := fl.Int("max-conns", 0, "most connections open at once (default 1024)")
	maxConnsPerUID := fl.Int("max-conns-per-uid", 0, "most connections one user may have open (default 64)")
	maxFDsPerUID := fl.Int("max-fds-per-uid", 0, "most passed descriptors the daemon holds for one user (default 4096, at most a quarter of RLIMIT_NOFILE)")
	metricsAddr := fl.String("metrics-addr", "", "serve Prometheus /metrics on this TCP address, e.g. 127.0.0.1:9464 (default off)")
	showVersion := fl.Bool("version", false, "print the version and exit")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: vrift-daemon [flags]\n\nServes the shared vrift store on a unix socket. Flags override the config file.\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println("vrift-daemon", version)
		return 0
	}
	path, explicit := *cfgFile, *cfgFile != ""
	if !explicit {
		path = defaultConfigFile
	}
	cfg, err := loadConfig(path, explicit)
	if err != nil {
		fmt.Fprintf(stderr, "vrift-daemon: config %s: %v\n", path, err)
		return 2
	}
	// The file's text again, only to name the line of a bad limit.
	src, _ := os.ReadFile(path)
	lim, err := checkLimits(path, src, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "vrift-daemon: config %v\n", err)
		return 2
	}
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["store"] {
		cfg.Store.Path = *store
	}
	if set["metrics-addr"] {
		cfg.Metrics.Addr = *metricsAddr
	}
	if set["socket"] {
		cfg.Socket = *socket
	}
	if set["state"] {
		cfg.State = *state
	}
	if set["share-private"] {
		cfg.SharePrivate = *sharePrivate
	}
	if set["max-frame"] {
		cfg.MaxFrame = *maxFrame
	}
	if set["log-level"] {
		cfg.LogLevel = *logLevel
	}
	if set["call-timeout"] {
		cfg.CallTimeout = *callTimeout
	}
	if set["max-conns"] {
		cfg.MaxConns = *maxConns
	}
	if set["max-conns-per-uid"] {
		cfg.MaxConnsPerUID = *maxConnsPerUID
	}
	if set["max-fds-per-uid"] {
		cfg.MaxFDsPerUID = *maxFDsPerUID
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintf(stderr, "vrift-daemon: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintf(stderr, "vrift-daemon: log level %q: %v\n", cfg.LogLevel, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if os.Geteuid() == 0 && !*allowRoot {
		log.Error("refusing to run as root: the shared store would become root-owned; run as the vrift user (or pass --allow-root)")
		return 1
	}
	if err := serve(cfg, lim, log); err != nil {
		log.Error("daemon failed", "err", err)
		daemon.SdNotify(false, "STATUS=failed: "+err.Error())
		return 1
	}
	return 0
}

func serve(cfg config, lim limits, log *slog.Logger) error {
	var rem *service.TeamCache
	if cfg.Remote.URL != "" {
		b, err := remote.OpenS3(cfg.Remote)
		if err != nil {
			return fmt.Errorf("team cache: %w", err)
		}
		rem = &service.TeamCache{Backend: b, AllowPush: cfg.Remote.Push}
		log.Info("team cache", "remote", b.String(), "push", cfg.Remote.Push)
	}
	svc, err := service.New(service.Config{Store: cfg.Store.Path, State: cfg.State, SharePrivate: cfg.SharePrivate,
		Version: version, Log: log, MaxManifest: cfg.MaxManifest, MaxSessionBytes: cfg.MaxSessionBytes,
		MaxSessionsPerUser: cfg.MaxSessionsPerUser, MaxRootsPerUser: cfg.MaxRootsPerUser,
		MinUserGrace: cfg.MinUserGrace.Duration, AuditMaxBytes: cfg.AuditMaxBytes, AuditKeep: cfg.AuditKeep,
		TeamCache: rem, QuotaDefault: lim.quotaDefault, QuotaUsers: lim.quotaUsers, MaxStoreBytes: lim.maxBytes, MinFree: lim.minFree})
	if err != nil {
		return err
	}
	defer svc.Close()
	if cfg.Metrics.Addr != "" {
		stopMetrics, err := serveMetrics(context.Background(), cfg.Metrics.Addr, svc.MetricsHandler(), log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	l, activated, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var callTimeout time.Duration
	if cfg.CallTimeout != "" {
		if callTimeout, err = time.ParseDuration(cfg.CallTimeout); err != nil || callTimeout <= 0 {
			return fmt.Errorf("call_timeout %q: want a positive duration such as 30m", cfg.CallTimeout)
		}
	}
	srv := &rpc.Server{Handler: svc, Log: log, MaxFrame: cfg.MaxFrame, ShutdownTimeout: 20 * time.Second,
		CallTimeout: callTimeout, MaxConns: cfg.MaxConns, MaxConnsPerUID: cfg.MaxConnsPerUID, MaxFDsPerUID: cfg.MaxFDsPerUID,
		MaxInflight: cfg.MaxInflight}
	conns, connsPerUID, fdsPerUID, fdsTotal, callLimit := srv.Limits()
	log.Info("serving", "socket", cfg.Socket, "store", cfg.Store.Path, "state", cfg.State, "socket_activated", activated,
		"uid", os.Getuid(), "version", version, "max_conns", conns, "max_conns_per_uid", connsPerUID,
		"max_fds_per_uid", fdsPerUID, "max_fds_total", fdsTotal, "call_timeout", callLimit,
		"max_inflight", cmp.Or(cfg.MaxInflight, rpc.DefaultMaxInflight))
	daemon.SdNotify(false, daemon.SdNotifyReady)
	daemon.SdNotify(false, "STATUS=serving "+cfg.Store.Path+" on "+cfg.Socket)
	err = srv.Serve(ctx, l)
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	if !activated {
		os.Remove(cfg.Socket)
	}
	log.Info("stopped")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// launchdSocket names the plist's Sockets entry (packaging/launchd).
const launchdSocket = "Listeners"

// listen returns the socket systemd or launchd passed (socket activation) or
// binds path itself with mode 0666: every user may connect, and the daemon
// tells them apart by SO_PEERCRED (LOCAL_PEERCRED on macOS).
func listen(path string) (*net.UnixListener, bool, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, false, fmt.Errorf("socket activation: %w", err)
	}
	if len(ls) == 0 {
		if ls, err = launchdListeners(launchdSocket); err != nil {
			return nil, false, fmt.Errorf("socket activation: %w", err)
		}
	}
	for _, l := range ls {
		if ul, ok := l.(*net.UnixListener); ok {
			return ul, true, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, err
	}
	// A socket file left by a daemon that died answers no one: replace it.
	// One that answers belongs to a running daemon: refuse.
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, false, fmt.Errorf("%s: another daemon is already serving it", path)
	}
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, false, err
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, false, err
	}
	return l, false, nil
}
