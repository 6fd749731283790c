// Command mangen writes the man pages that are not cobra commands, for
// make package: vrift-daemon(8) from the daemon's own -help (its flags are
// declared once, in cmd/vrift-daemon), and vrift.toml(5) from the
// configuration reference in docs/admin-guide.md (which a test keeps equal
// to the keys the parser accepts). vrift(1) and its commands' pages come
// from `vrift gen-man`.
//
//	mangen daemon BIN VERSION OUT     # runs BIN -help
//	mangen config GUIDE VERSION OUT
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: mangen daemon BIN VERSION OUT | mangen config GUIDE VERSION OUT")
		os.Exit(2)
	}
	var page []byte
	var err error
	switch os.Args[1] {
	case "daemon":
		page, err = daemonPage(os.Args[2], os.Args[3])
	case "config":
		page, err = configPage(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown page %q", os.Args[1])
	}
	if err == nil {
		err = os.WriteFile(os.Args[4], page, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mangen: %v\n", err)
		os.Exit(1)
	}
}

// esc makes text safe in roff: backslashes, and a leading . or '.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

type flagDoc struct{ name, arg, usage string }

// parseFlags reads the flag package's PrintDefaults layout:
// "  -name type" then "    \tusage" lines.
func parseFlags(help []byte) ([]flagDoc, error) {
	var out []flagDoc
	sc := bufio.NewScanner(bytes.NewReader(help))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "  -"):
			name, arg, _ := strings.Cut(strings.TrimPrefix(l, "  -"), " ")
			if n, u, ok := strings.Cut(name, "\t"); ok { // a one-letter flag's usage is on its line
				name, arg = n, ""
				out = append(out, flagDoc{name: name, usage: u})
				continue
			}
			out = append(out, flagDoc{name: name, arg: strings.TrimSpace(arg)})
		case strings.HasPrefix(l, "    \t") && len(out) > 0:
			f := &out[len(out)-1]
			f.usage = strings.TrimSpace(f.usage + " " + strings.TrimPrefix(l, "    \t"))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no flags found in the -help output")
	}
	return out, nil
}

func daemonPage(bin, version string) ([]byte, error) {
	cmd := exec.Command(bin, "-help")
	var help bytes.Buffer
	cmd.Stdout, cmd.Stderr = &help, &help
	cmd.Run() // -help exits 2 by the flag package's convention
	flags, err := parseFlags(help.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s -help: %w\n%s", bin, err, help.Bytes())
	}
	var b strings.Builder
	fmt.Fprintf(&b, ".TH VRIFT\\-DAEMON 8 \"\" \"vrift %s\" \"vrift manual\"\n", esc(version))
	b.WriteString(`.SH NAME
vrift\-daemon \- serve the shared vrift store on a unix socket
.SH SYNOPSIS
.B vrift\-daemon
[\fIflags\fR]
.SH DESCRIPTION
.B vrift\-daemon
owns the store shared by every user of the machine
(\fI/var/lib/vrift/the_source\fR) and serves the vrift protocol (JSON\-RPC 2.0
with descriptor passing) on a unix socket, mode 0666: every user may connect,
and the daemon tells them apart by \fBSO_PEERCRED\fR. It never opens a user's
path: \fBvrift\fR(1) opens the files as the user and passes the descriptors.
Every write is audited.
.PP
It runs as the unprivileged \fBvrift\fR user and refuses to run as root
unless given \fB\-allow\-root\fR. It logs to stderr, sends READY=1, STATUS= and
STOPPING=1 to systemd, accepts a socket\-activated listener (systemd's
\fBvrift\-daemon.socket\fR, or launchd's on macOS), and on SIGTERM stops
accepting, lets calls in flight finish and exits 0.
.PP
Settings come from the configuration file (\fBvrift.toml\fR(5)); flags
override its keys. An unknown key, a bad size or an unknown user stops the
daemon at startup, naming the file's line.
.SH OPTIONS
Flags take one or two dashes.
`)
	for _, f := range flags {
		b.WriteString(".TP\n")
		if f.arg != "" {
			fmt.Fprintf(&b, "\\fB\\-%s\\fR \\fI%s\\fR\n", esc(f.name), esc(f.arg))
		} else {
			fmt.Fprintf(&b, "\\fB\\-%s\\fR\n", esc(f.name))
		}
		b.WriteString(esc(f.usage) + "\n")
	}
	b.WriteString(`.SH FILES
.TP
.I /etc/vrift/config.toml
the configuration (\fBvrift.toml\fR(5))
.TP
.I /run/vrift/daemon.sock
the socket
.TP
.I /var/lib/vrift/the_source
the shared store: blobs owned by vrift, mode 0444 (0555 with an execute bit),
fan\-out directories 0711
.TP
.I /var/lib/vrift/state
pinned manifests (GC roots), usage.lmdb, audit.log; mode 0700
.SH EXIT STATUS
0 after SIGTERM or SIGINT; 1 when serving failed; 2 for bad flags or a bad
configuration.
.SH SEE ALSO
\fBvrift\fR(1), \fBvrift\-doctor\fR(1), \fBvrift.toml\fR(5),
\fBsystemctl\fR(1); /usr/share/doc/vrift/docs/admin\-guide.md,
/usr/share/doc/vrift/protocol.md
`)
	return []byte(b.String()), nil
}

var (
	mdLink   = regexp.MustCompile(`\[([^\]]+)\]\([^)]+\)`)
	tableRow = regexp.MustCompile(`^\| *(.+?) *\| *(.+?) *\| *(.+?) *\|$`)
)

// configPage renders the admin guide's "Configuration reference" section.
func configPage(guide, version string) ([]byte, error) {
	data, err := os.ReadFile(guide)
	if err != nil {
		return nil, err
	}
	_, sec, ok := strings.Cut(string(data), "\n## Configuration reference\n")
	if !ok {
		return nil, fmt.Errorf("%s: no \"## Configuration reference\" section", guide)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	sec = mdLink.ReplaceAllString(sec, "$1")
	// The table is a definition list here: a terminal is too narrow for
	// three columns of prose.
	var out []string
	for _, l := range strings.Split(sec, "\n") {
		if m := tableRow.FindStringSubmatch(l); m != nil {
			if m[1] != "key" && !strings.HasPrefix(m[1], "---") {
				out = append(out, m[1], ": "+m[3]+" (default: "+m[2]+")", "")
			}
			continue
		}
		out = append(out, l)
	}
	sec = strings.Join(out, "\n")
	md := fmt.Sprintf(`# VRIFT.TOML 5 "" "vrift %s" "vrift manual"

# NAME

vrift.toml - the configuration file of vrift and vrift-daemon

# SYNOPSIS

*/etc/vrift/config.toml* (the daemon's), *~/.config/vrift/config.toml* (a user's)

# DESCRIPTION
%s
# EXAMPLE

    [store]
    path = "/var/lib/vrift/the_source"
    max_bytes = "500GiB"
    min_free = "10GiB"

    [quota]
    default = "20GiB"
    [quota.users]
    alice = "5GiB"

    [metrics]
    addr = "127.0.0.1:9464"

# SEE ALSO

**vrift**(1), **vrift-daemon**(8), **vrift-doctor**(1); /usr/share/doc/vrift/docs/admin-guide.md
`, version, sec)
	return md2man.Render([]byte(md)), nil
}
