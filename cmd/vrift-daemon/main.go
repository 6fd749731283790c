// Command vrift-daemon owns the shared vrift store and serves the vrift
// protocol (JSON-RPC 2.0) on a unix socket. It runs as the unprivileged
// vrift user; see docs/protocol.md and docs/admin-guide.md.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/vrift/vrift/internal/config"
	"github.com/vrift/vrift/internal/heapprof"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/service"
)

var version = "dev"

// softMemoryLimit is the Go heap's soft limit (see main).
const softMemoryLimit = 128 << 20

// maxMaxFrame bounds max_frame: a frame is read into memory whole.
const maxMaxFrame = 1 << 30

// parseConfig decodes a config file's text over the daemon's defaults
// (strict keys, config.Parse) and checks it.
func parseConfig(data []byte) (config.File, error) {
	cfg, err := config.Parse(data, config.DaemonDefaults())
	if err == nil {
		err = check(cfg)
	}
	if err != nil {
		return config.File{}, err
	}
	return cfg, nil
}

// check validates a configuration, after flags are applied too.
func check(c config.File) error {
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
	// A soft limit on the Go heap unless GOMEMLIMIT sets one, as in the
	// CLI (cmd/vrift): the collector works harder near it rather than let
	// the heap double over what is live.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
	}
	// VRIFT_HEAPPROFILE=FILE: a heap profile at the peak (bench-scale).
	endProfile := heapprof.Start(os.Getenv("VRIFT_HEAPPROFILE"))
	code := run(os.Args[1:], os.Stderr)
	endProfile()
	os.Exit(code)
}

func run(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("vrift-daemon", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgFile := fl.String("config", "", "TOML config file (default $"+config.EnvVar+" or "+config.DaemonPath+" if present)")
	// Flags override the file's keys (config.Overrides).
	ov := config.NewOverrides(fl)
	ov.String("store", "shared store directory (default /var/lib/vrift/the_source)", func(f *config.File) *string { return &f.Store.Path })
	ov.String("socket", "unix socket path (default /run/vrift/daemon.sock)", func(f *config.File) *string { return &f.Socket })
	ov.String("state", "state directory: roots, audit log (default /var/lib/vrift/state)", func(f *config.File) *string { return &f.State })
	ov.Bool("share-private", "let files without o+r into the shared store", func(f *config.File) *bool { return &f.SharePrivate })
	ov.Int("max-frame", "largest accepted frame in bytes (default 16 MiB)", func(f *config.File) *int { return &f.MaxFrame })
	allowRoot := fl.Bool("allow-root", false, "run as root (the store would then be root-owned)")
	ov.String("log-level", "debug, info, warn or error", func(f *config.File) *string { return &f.LogLevel })
	ov.String("call-timeout", "longest one call may run (default 1h)", func(f *config.File) *string { return &f.CallTimeout })
	ov.Int("max-conns", "most connections open at once (default 1024)", func(f *config.File) *int { return &f.MaxConns })
	ov.Int("max-conns-per-uid", "most connections one user may have open (default 64)", func(f *config.File) *int { return &f.MaxConnsPerUID })
	ov.Int("max-fds-per-uid", "most passed descriptors the daemon holds for one user (default 4096, at most a quarter of RLIMIT_NOFILE)",
		func(f *config.File) *int { return &f.MaxFDsPerUID })
	ov.String("metrics-addr", "serve Prometheus /metrics on this TCP address, e.g. 127.0.0.1:9464 (default off)",
		func(f *config.File) *string { return &f.Metrics.Addr })
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
	path, explicit := config.Path(*cfgFile, config.DaemonPath)
	cfg, src, err := config.Load(path, explicit, config.DaemonDefaults())
	if err == nil {
		if err = check(cfg); err != nil {
			err = fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "vrift-daemon: %v\n", err)
		return 2
	}
	lim, err := cfg.Limits(path, src)
	if err != nil {
		fmt.Fprintf(stderr, "vrift-daemon: config %v\n", err)
		return 2
	}
	ov.Apply(&cfg)
	if err := check(cfg); err != nil {
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

func serve(cfg config.File, lim config.Limits, log *slog.Logger) error {
	var rem *service.TeamCache
	if cfg.Remote.URL != "" {
		b, err := remote.OpenS3(cfg.Remote)
		if err != nil {
			return fmt.Errorf("team cache: %w", err)
		}
		pol, err := cfg.TrustPolicy()
		if err != nil {
			return fmt.Errorf("team cache: %w", err)
		}
		if cfg.Remote.SignKey != "" {
			return errors.New("team cache: [remote] sign_key belongs in a user's config: a push through the daemon is signed by the user's key, the daemon signs nothing")
		}
		rem = &service.TeamCache{Backend: b, AllowPush: cfg.Remote.Push, Trust: pol, IndexCache: filepath.Join(cfg.State, "pack-indexes")}
		log.Info("team cache", "remote", b.String(), "push", cfg.Remote.Push, "trusted_keys", pol.Names())
	}
	svc, err := service.New(service.Config{Store: cfg.Store.Path, State: cfg.State, SharePrivate: cfg.SharePrivate,
		Version: version, Log: log, MaxManifest: cfg.MaxManifest, MaxSessionBytes: cfg.MaxSessionBytes,
		MaxSessionsPerUser: cfg.MaxSessionsPerUser, MaxRootsPerUser: cfg.MaxRootsPerUser,
		MinUserGrace: cfg.MinUserGrace.Duration, AuditMaxBytes: cfg.AuditMaxBytes, AuditKeep: cfg.AuditKeep,
		TeamCache: rem, QuotaDefault: lim.QuotaDefault, QuotaUsers: lim.QuotaUsers, MaxStoreBytes: lim.MaxBytes, MinFree: lim.MinFree})
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
