// Package doctor checks a machine's vrift setup and says what to fix: the
// mode the CLI would use and why, the daemon socket, the store, FUSE,
// hardlink protections, reflinks, inotify limits and the team cache
// configuration. `vrift doctor` prints its Report; the checks live here so
// that they can be tested against injected paths (a missing /dev/fuse, a
// /proc/sys of the test's choosing) without root.
//
// Nothing here prints a credential: the team cache check says only whether
// credentials are present and where from, and names an endpoint by host.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/units"
)

// Status is a check's outcome.
type Status string

const (
	// OK: nothing to fix.
	OK Status = "ok"
	// Warn: something an optional feature needs is missing (FUSE for
	// mount, reflinks, ...); it fails the run only when required.
	Warn Status = "warn"
	// Fail: the current mode cannot work until it is fixed.
	Fail Status = "fail"
)

// Check IDs, also the names --require takes.
const (
	CheckMode      = "mode"
	CheckSocket    = "socket"
	CheckStore     = "store"
	CheckFUSE      = "fuse"
	CheckHardlinks = "hardlinks"
	CheckReflink   = "reflink"
	CheckInotify   = "inotify"
	CheckRemote    = "remote"
)

// Optional are the checks whose warnings fail a run only when required.
var Optional = []string{CheckFUSE, CheckHardlinks, CheckReflink, CheckInotify, CheckRemote}

// Check is one line of the report.
type Check struct {
	ID      string `json:"id"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Fix says what to do when Status is not OK.
	Fix string `json:"fix,omitempty"`
}

// Report is every check, in order, and the verdict.
type Report struct {
	Mode       string  `json:"mode"`
	ModeReason string  `json:"mode_reason"`
	Checks     []Check `json:"checks"`
	// OK: no check failed (warnings of required checks count as failures).
	OK bool `json:"ok"`
}

// Config is what the caller knows: the mode it chose and why, where things
// are, and the limits and team cache its config files name.
type Config struct {
	// Mode is "daemon" or "direct", as the CLI would choose it; Reason
	// says why.
	Mode, Reason string
	// Socket is the daemon socket the CLI looks at ("" when none).
	Socket string
	// Store is the per-user store (direct mode).
	Store string
	// Project is the directory whose filesystem the reflink check reads.
	Project string
	// MinFree and MaxBytes are the store's limits ([store] min_free,
	// max_bytes: the user's file in direct mode, the daemon's in daemon
	// mode when it is readable).
	MinFree, MaxBytes int64
	// Remote is the team cache of the user's config (direct mode) or of
	// the daemon's config (daemon mode).
	Remote remote.Config
	// Version is the CLI's version, compared with the daemon's.
	Version string
	// Require names optional checks whose warnings fail the run.
	Require []string

	// For tests; zero values are the machine's.
	DevFuse  string                             // default /dev/fuse
	ProcSys  string                             // default /proc/sys
	LookPath func(string) (string, error)       // default exec.LookPath
	Getenv   func(string) string                // default os.Getenv
	Dial     func(network, addr string) error   // default: a TCP dial with a 3 s timeout
	Statfs   func(string, *unix.Statfs_t) error // default unix.Statfs
}

func (c *Config) defaults() {
	if c.DevFuse == "" {
		c.DevFuse = "/dev/fuse"
	}
	if c.ProcSys == "" {
		c.ProcSys = "/proc/sys"
	}
	if c.LookPath == nil {
		c.LookPath = exec.LookPath
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.Dial == nil {
		c.Dial = func(network, addr string) error {
			conn, err := net.DialTimeout(network, addr, 3*time.Second)
			if err == nil {
				conn.Close()
			}
			return err
		}
	}
	if c.Statfs == nil {
		c.Statfs = unix.Statfs
	}
}

// Run performs every check.
func Run(ctx context.Context, cfg Config) Report {
	cfg.defaults()
	r := Report{Mode: cfg.Mode, ModeReason: cfg.Reason}
	r.Checks = append(r.Checks, Check{ID: CheckMode, Status: OK, Message: cfg.Mode + " mode: " + cfg.Reason})
	storePath := cfg.Store
	if cfg.Mode == "daemon" {
		c, shared := checkSocket(ctx, cfg)
		r.Checks = append(r.Checks, c)
		if shared != "" {
			storePath = shared
		} else {
			storePath = ""
		}
	} else {
		r.Checks = append(r.Checks, socketInDirectMode(cfg))
	}
	r.Checks = append(r.Checks, checkStore(cfg, storePath), checkFUSE(cfg), checkHardlinks(cfg),
		checkReflink(cfg, storePath), checkInotify(cfg), checkRemote(cfg))
	r.OK = true
	for i, c := range r.Checks {
		if c.Status == Warn && contains(cfg.Require, c.ID) {
			r.Checks[i].Status = Fail
		}
		if r.Checks[i].Status == Fail {
			r.OK = false
		}
	}
	return r
}

// cause is the innermost error, without the op and path wrappers.
func cause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// socketInDirectMode says whether a daemon is there to be used.
func socketInDirectMode(cfg Config) Check {
	if cfg.Socket == "" {
		return Check{ID: CheckSocket, Status: OK, Message: "no daemon socket named (direct mode)"}
	}
	if _, err := os.Lstat(cfg.Socket); err != nil {
		return Check{ID: CheckSocket, Status: OK, Message: fmt.Sprintf("no daemon socket at %s: no daemon set up (fine for direct mode)", cfg.Socket)}
	}
	return Check{ID: CheckSocket, Status: OK, Message: fmt.Sprintf("a daemon socket exists at %s, unused in direct mode (drop --direct/--store to use it)", cfg.Socket)}
}

// checkSocket dials the daemon and compares versions; it returns the shared
// store's path the daemon reports ("" if it could not be asked).
func checkSocket(ctx context.Context, cfg Config) (Check, string) {
	c := Check{ID: CheckSocket}
	fi, err := os.Lstat(cfg.Socket)
	if err != nil {
		c.Status, c.Message = Fail, fmt.Sprintf("%s: %v", cfg.Socket, err)
		c.Fix = "start the daemon (systemctl start vrift-daemon.socket) or pass --direct"
		return c, ""
	}
	owner := ownerOf(fi)
	desc := fmt.Sprintf("%s (%s, owner %s)", cfg.Socket, fi.Mode().Perm(), owner)
	if fi.Mode().Type() != os.ModeSocket {
		c.Status, c.Message = Fail, desc+": not a socket"
		c.Fix = "remove it and restart the daemon (systemctl restart vrift-daemon.socket)"
		return c, ""
	}
	// A plain connect first: engine.Connect names the cause in text,
	// and the fix depends on which it is.
	conn, err := net.DialTimeout("unix", cfg.Socket, 2*time.Second)
	var d *engine.Daemon
	if err == nil {
		conn.Close()
		d, err = engine.Connect(ctx, cfg.Socket)
	}
	if err != nil {
		c.Status = Fail
		switch {
		case errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission):
			c.Message = desc + ": permission denied: this user cannot talk to the daemon"
			c.Fix = "the packaged socket is mode 0666; ask an admin to restore it (systemctl restart vrift-daemon.socket), or pass --direct"
		case errors.Is(err, syscall.ECONNREFUSED):
			c.Message = desc + ": connection refused: no daemon answers (a stale socket)"
			c.Fix = "start the daemon (systemctl start vrift-daemon.socket), or pass --direct to use your own store"
		default:
			c.Message = fmt.Sprintf("%s: %v", desc, cause(err))
			c.Fix = "check the daemon (systemctl status vrift-daemon), or pass --direct"
		}
		return c, ""
	}
	if d == nil { // the socket went away since the Lstat
		c.Status, c.Message = Fail, cfg.Socket+": gone while checking"
		c.Fix = "start the daemon (systemctl start vrift-daemon.socket) or pass --direct"
		return c, ""
	}
	defer d.Close()
	st, err := d.Status(ctx, engine.StatusOptions{})
	if err != nil {
		c.Status, c.Message = Fail, fmt.Sprintf("%s: connected, but status failed: %v", desc, err)
		c.Fix = "check the daemon's log (journalctl -u vrift-daemon)"
		return c, ""
	}
	dv := ""
	if st.Daemon != nil {
		dv = st.Daemon.Version
	}
	c.Status, c.Message = OK, fmt.Sprintf("%s: daemon %s answers, serving %s", desc, dv, st.Store)
	if dv != cfg.Version {
		c.Status = Warn
		c.Message = fmt.Sprintf("%s: daemon version %s differs from this CLI's %s", desc, dv, cfg.Version)
		c.Fix = "restart the daemon after an upgrade (systemctl restart vrift-daemon)"
	}
	return c, st.Store
}

func ownerOf(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "?"
	}
	id := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return "uid " + id
}

// checkStore looks at the store's directory: owner marker, permissions,
// free space against the limits.
func checkStore(cfg Config, path string) Check {
	c := Check{ID: CheckStore, Status: OK}
	if path == "" {
		c.Status, c.Message = Fail, "no store to check (the daemon could not be asked where its store is)"
		c.Fix = "fix the socket check first"
		return c
	}
	dir := path
	exists := true
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		exists = false
		// The first ingest creates it: the nearest existing parent must
		// be writable.
		for dir = filepath.Dir(path); ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(dir); err == nil || dir == filepath.Dir(dir) {
				break
			}
		}
	} else if err != nil {
		c.Status, c.Message = Fail, fmt.Sprintf("store %s: %v", path, err)
		c.Fix = "make the store readable, or name another with --store"
		return c
	}
	var parts []string
	var sfs unix.Statfs_t
	if err := cfg.Statfs(dir, &sfs); err != nil {
		c.Status, c.Message = Fail, fmt.Sprintf("store %s: statfs: %v", path, err)
		return c
	}
	free := int64(sfs.Bavail) * int64(sfs.Bsize)
	if exists {
		parts = append(parts, fmt.Sprintf("store %s on %s", path, fsName(&sfs)))
	} else {
		parts = append(parts, fmt.Sprintf("store %s not created yet (the first ingest creates it) on %s", path, fsName(&sfs)))
	}
	parts = append(parts, units.FormatSize(free)+" free")
	if cfg.MinFree > 0 {
		parts = append(parts, "min_free "+units.FormatSize(cfg.MinFree))
	}
	if cfg.MaxBytes > 0 {
		parts = append(parts, "max_bytes "+units.FormatSize(cfg.MaxBytes))
	}
	c.Message = strings.Join(parts, ", ")
	if cfg.Mode == "direct" {
		if b, err := os.ReadFile(filepath.Join(path, "owner")); err == nil && strings.TrimSpace(string(b)) == "daemon" {
			c.Status, c.Message = Fail, c.Message+": it is a daemon's store (owner marker \"daemon\"); direct mode refuses to change it"
			c.Fix = "use the daemon (drop --direct/--store), or name your own store with --store"
			return c
		}
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			c.Status, c.Message = Fail, c.Message+fmt.Sprintf(": %s is not writable by this user (%v)", dir, err)
			c.Fix = "fix the directory's owner or mode, or name another store with --store"
			return c
		}
	}
	switch {
	case free == 0:
		c.Status, c.Message = Fail, c.Message+": the filesystem is full"
		c.Fix = "free space on it (vrift gc sweeps unreferenced blobs), or move the store"
	case cfg.MinFree > 0 && free < cfg.MinFree:
		c.Status, c.Message = Fail, c.Message+": free space is under min_free: an ingest first sweeps unreferenced blobs, then is refused"
		c.Fix = "free space (vrift gc), or lower [store] min_free"
	}
	return c
}

// checkFUSE: vrift mount needs the FUSE device and, as non-root,
// fusermount3.
func checkFUSE(cfg Config) Check {
	c := Check{ID: CheckFUSE, Status: Warn, Fix: "install fuse3 (apt install fuse3) and load the module (modprobe fuse); only vrift mount needs it"}
	fi, err := os.Stat(cfg.DevFuse)
	if err != nil {
		c.Message = fmt.Sprintf("%s: %v: vrift mount will not work", cfg.DevFuse, cause(err))
		return c
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeCharDevice == 0 || !ok || unix.Major(uint64(st.Rdev)) != 10 || unix.Minor(uint64(st.Rdev)) != 229 {
		c.Message = fmt.Sprintf("%s is not the FUSE device (char 10:229): vrift mount will not work", cfg.DevFuse)
		return c
	}
	if os.Geteuid() == 0 {
		f, err := os.OpenFile(cfg.DevFuse, os.O_RDWR, 0)
		if err != nil {
			c.Message = fmt.Sprintf("%s: %v: vrift mount will not work", cfg.DevFuse, cause(err))
			return c
		}
		f.Close()
		c.Status, c.Message, c.Fix = OK, fmt.Sprintf("%s usable; %s", cfg.DevFuse, passthrough(cfg)), ""
		return c
	}
	fm, err := cfg.LookPath("fusermount3")
	if err != nil {
		c.Message = cfg.DevFuse + " present, but no fusermount3 in PATH: vrift mount will not work for this user"
		return c
	}
	if fi, err := os.Stat(fm); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		c.Message = fm + " is not setuid: vrift mount will not work for this user"
		c.Fix = "reinstall fuse3 (its fusermount3 is setuid root)"
		return c
	}
	c.Status, c.Message, c.Fix = OK, fmt.Sprintf("%s present, %s setuid; reads served by vrift (passthrough needs root)", cfg.DevFuse, fm), ""
	return c
}

// passthrough says whether the kernel offers FUSE passthrough (Linux 6.9).
func passthrough(cfg Config) string {
	rel := osRelease(cfg)
	var major, minor int
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		return "passthrough unknown (kernel " + rel + ")"
	}
	if major > 6 || major == 6 && minor >= 9 {
		return "passthrough available (kernel " + rel + ")"
	}
	return "no passthrough before Linux 6.9 (kernel " + rel + "): reads go through vrift"
}

func osRelease(cfg Config) string {
	b, err := os.ReadFile(filepath.Join(cfg.ProcSys, "kernel", "osrelease"))
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func readInt(cfg Config, rel string) (int64, bool) {
	b, err := os.ReadFile(filepath.Join(cfg.ProcSys, rel))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// checkHardlinks: with fs.protected_hardlinks=1 the kernel refuses a user's
// hardlink to a file they do not own: the daemon's blobs belong to vrift.
func checkHardlinks(cfg Config) Check {
	c := Check{ID: CheckHardlinks, Status: OK}
	v, ok := readInt(cfg, "fs/protected_hardlinks")
	switch {
	case !ok:
		c.Message = "fs.protected_hardlinks unknown (no " + filepath.Join(cfg.ProcSys, "fs/protected_hardlinks") + ")"
	case v == 0:
		c.Message = "fs.protected_hardlinks = 0: hardlinks to another user's files are allowed"
	case cfg.Mode == "daemon" && os.Geteuid() != 0:
		c.Status = Warn
		c.Message = "fs.protected_hardlinks = 1: --method hardlink is refused in daemon mode (the shared blobs belong to vrift)"
		c.Fix = "use --method copy, reflink or vrift mount in daemon mode (or --direct for hardlinks into your own store)"
	default:
		c.Message = "fs.protected_hardlinks = 1: no effect here (hardlinks go to blobs this user owns)"
	}
	return c
}

// checkReflink reads the project's filesystem: reflinks need btrfs, XFS
// (reflink=1), bcachefs or similar, and the store on the same filesystem.
func checkReflink(cfg Config, store string) Check {
	c := Check{ID: CheckReflink, Status: OK}
	var p, s unix.Statfs_t
	if err := cfg.Statfs(cfg.Project, &p); err != nil {
		c.Status, c.Message = Warn, fmt.Sprintf("project %s: statfs: %v", cfg.Project, err)
		return c
	}
	name := fsName(&p)
	if !reflinkFS(&p) {
		c.Status = Warn
		c.Message = fmt.Sprintf("project %s is on %s, which has no reflinks: --method reflink will fail", cfg.Project, name)
		c.Fix = "use --method hardlink or copy, or keep projects on btrfs or XFS"
		return c
	}
	c.Message = fmt.Sprintf("project %s is on %s (reflinks supported)", cfg.Project, name)
	if store != "" && cfg.Statfs(store, &s) == nil && s.Fsid != p.Fsid {
		c.Status = Warn
		c.Message += ", but the store is on another filesystem: reflinks need both on one"
		c.Fix = "put the store on the project's filesystem (--store)"
	}
	return c
}

// checkInotify: vrift watch holds one inotify instance per project and one
// watch per directory.
func checkInotify(cfg Config) Check {
	c := Check{ID: CheckInotify, Status: OK}
	w, okW := readInt(cfg, "fs/inotify/max_user_watches")
	i, okI := readInt(cfg, "fs/inotify/max_user_instances")
	if !okW || !okI {
		c.Message = "inotify limits unknown (vrift watch needs inotify)"
		return c
	}
	c.Message = fmt.Sprintf("inotify: %d watches (one per watched directory), %d instances (one per watched project) per user", w, i)
	// The npm fixture's node_modules has 2,636 directories; a monorepo's
	// tens of thousands.
	if w < 65536 || i < 16 {
		c.Status = Warn
		c.Message += ": low for vrift watch on large trees"
		c.Fix = "raise them: sysctl fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=256"
	}
	return c
}

// checkRemote: the team cache of the config in use. Credentials are
// reported as present or not, never shown; the endpoint by host only.
func checkRemote(cfg Config) Check {
	c := Check{ID: CheckRemote, Status: OK}
	if cfg.Remote.URL == "" {
		c.Message = "no team cache configured ([remote] url)"
		return c
	}
	host := "s3.amazonaws.com:443"
	if cfg.Remote.Region != "" {
		host = "s3." + cfg.Remote.Region + ".amazonaws.com:443"
	}
	if cfg.Remote.Endpoint != "" {
		u, err := url.Parse(cfg.Remote.Endpoint)
		if err != nil || u.Host == "" {
			c.Status, c.Message = Warn, "team cache: [remote] endpoint is not a URL"
			c.Fix = "set endpoint to http(s)://host[:port]"
			return c
		}
		host = u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), map[bool]string{true: "443", false: "80"}[u.Scheme == "https"])
		}
	}
	c.Message = fmt.Sprintf("team cache %s via %s", redact(cfg.Remote.URL), host)
	if cfg.Mode == "daemon" {
		c.Message += " (the daemon's, with its own credentials)"
	} else {
		creds := credentialSource(cfg)
		if creds == "" {
			c.Status = Warn
			c.Message += ": no credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials)"
			c.Fix = "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials"
			return c
		}
		c.Message += ", credentials from " + creds
	}
	if err := cfg.Dial("tcp", host); err != nil {
		c.Status = Warn
		c.Message += fmt.Sprintf(": endpoint unreachable (%v)", cause(err))
		c.Fix = "check the endpoint and the network (the daemon's unit has none by default; see docs/admin-guide.md)"
		return c
	}
	c.Message += ": endpoint reachable"
	return c
}

// redact drops any user:password@ from a URL before it is shown.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	u.User = nil
	return u.String()
}

// credentialSource names where credentials would come from, or "".
func credentialSource(cfg Config) string {
	if cfg.Getenv("AWS_ACCESS_KEY_ID") != "" && cfg.Getenv("AWS_SECRET_ACCESS_KEY") != "" {
		return "the environment (AWS_ACCESS_KEY_ID set)"
	}
	file := cfg.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if file == "" {
		if home, err := os.UserHomeDir(); err == nil {
			file = filepath.Join(home, ".aws", "credentials")
		}
	}
	if file != "" {
		if _, err := os.Stat(file); err == nil {
			return "the credentials file " + file
		}
	}
	return ""
}
