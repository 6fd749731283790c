package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/internal/testenv"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/service"
)

// badInput is one bad input and the clear error it must get. Exactly one of
// cli, rpc (method or raw) and config is set.
type badInput struct {
	name string

	// cli: vrift's arguments, in direct mode on a fresh store; "$D" is the
	// fixture directory. Want exits with code and a stderr line matching
	// want, and the fixture directory is unchanged.
	cli []string

	// rpc: a call to the real daemon service over a real socket, answered
	// with JSON-RPC error code and a message matching want. raw is a whole
	// frame body sent as is; otherwise method and params (raw JSON, ""
	// for none), with fds descriptors of a garbage file passed along.
	method string
	params string
	raw    string
	fds    int

	// config: the daemon started with this TOML as --config (or, if
	// daemonArgs is set, with those arguments); it exits with code and a
	// stderr line matching want, before serving anything.
	config     string
	daemonArgs []string

	code int
	want string
}

var badInputs = []badInput{
	// CLI
	{name: "ingest a missing dir", cli: []string{"ingest", "$D/nope"}, code: 1, want: `^vrift: ingest .*/nope: no such directory$`},
	{name: "ingest a file", cli: []string{"ingest", "$D/file.txt"}, code: 1, want: `^vrift: ingest .*/file.txt: not a directory$`},
	{name: "ingest a symlink loop", cli: []string{"ingest", "$D/loop"}, code: 1, want: `^vrift: ingest .*/loop: too many levels of symbolic links`},
	{name: "ingest unknown tier", cli: []string{"ingest", "--tier", "tier9", "$D/proj"}, code: 2, want: `unknown tier "tier9" \(want tier1 or tier2\)`},
	{name: "ingest unknown mode", cli: []string{"ingest", "--mode", "ghost", "$D/proj"}, code: 2, want: `unknown mode "ghost" \(want solid or phantom\)`},
	{name: "ingest without a dir", cli: []string{"ingest"}, code: 2, want: `accepts 1 arg\(s\), received 0`},
	{name: "ingest two dirs", cli: []string{"ingest", "$D/proj", "$D/done"}, code: 2, want: `accepts 1 arg\(s\), received 2`},
	{name: "ingest into a manifest that is a dir", cli: []string{"ingest", "--manifest", "$D/proj", "$D/proj/sub"}, code: 1, want: `open manifest .*/proj: .*is a directory`},
	{name: "ingest into a store that is a file", cli: []string{"--store", "$D/file.txt", "ingest", "$D/proj/sub"}, code: 1, want: `^vrift: open store: .*not a directory`},
	{name: "link unknown method", cli: []string{"link", "--method", "teleport", "$D/done"}, code: 2, want: `unknown link method "teleport" \(want symlink, hardlink, reflink or copy\)`},
	{name: "link without a manifest", cli: []string{"link", "$D/proj"}, code: 1, want: `no manifest here or above \(run vrift ingest first\)`},
	{name: "link a manifest that is not LMDB", cli: []string{"link", "--manifest", "$D/garbage.lmdb", "$D/done"}, code: 1, want: `open manifest .*garbage.lmdb: .*not an LMDB file`},
	{name: "link a subtree with ..", cli: []string{"link", "--subtree", "../escape", "$D/done"}, code: 1, want: `subtree "\.\./escape": unsafe path`},
	{name: "link an absolute subtree", cli: []string{"link", "--subtree", "/etc", "$D/done"}, code: 1, want: `subtree "/etc": unsafe path`},
	{name: "link a subtree not in the manifest", cli: []string{"link", "--subtree", "nothere", "$D/done"}, code: 1, want: `"nothere" is not in manifest .*manifest.lmdb`},
	{name: "link to a file", cli: []string{"link", "--to", "$D/file.txt", "$D/done"}, code: 1, want: `create .*/file.txt: not a directory`},
	{name: "gc negative grace", cli: []string{"gc", "--grace", "-1h"}, code: 2, want: `gc: negative grace period -1h0m0s`},
	{name: "gc grace not a duration", cli: []string{"gc", "--grace", "banana"}, code: 2, want: `invalid argument "banana" for "--grace" flag`},
	{name: "gc with an argument", cli: []string{"gc", "x"}, code: 2, want: `accepts 0 arg\(s\), received 1`},
	{name: "verify with an argument", cli: []string{"verify", "x"}, code: 2, want: `accepts 0 arg\(s\), received 1`},
	{name: "status two dirs", cli: []string{"status", "$D/a", "$D/b"}, code: 2, want: `accepts at most 1 arg\(s\), received 2`},
	{name: "status a missing dir", cli: []string{"status", "$D/nope"}, code: 1, want: `status .*/nope: no such directory`},
	{name: "unknown command", cli: []string{"frob"}, code: 2, want: `unknown command "frob" for "vrift"`},
	{name: "unknown flag", cli: []string{"--frobnicate", "status"}, code: 2, want: `unknown flag: --frobnicate`},
	{name: "umount what is not mounted", cli: []string{"umount", "$D/proj"}, code: 1, want: `umount .*/proj: not a mount point`},

	// RPC, against the real service
	{name: "rpc body not JSON", raw: `{"jsonrpc":"2.0","id":1,"method":`, code: rpc.CodeParseError, want: `parse error: frame body is not JSON`},
	{name: "rpc batch", raw: `[{"jsonrpc":"2.0","id":1,"method":"status"}]`, code: rpc.CodeInvalidRequest, want: `batches are not supported`},
	{name: "rpc JSON-RPC 1.0", raw: `{"jsonrpc":"1.0","id":1,"method":"status"}`, code: rpc.CodeInvalidRequest, want: `"jsonrpc" must be "2.0"`},
	{name: "rpc method not a string", raw: `{"jsonrpc":"2.0","id":1,"method":7}`, code: rpc.CodeInvalidRequest, want: `method must be a non-empty string`},
	{name: "rpc no method", raw: `{"jsonrpc":"2.0","id":1}`, code: rpc.CodeInvalidRequest, want: `no method`},
	{name: "rpc unknown method", method: "rm -rf", params: `{}`, code: rpc.CodeMethodNotFound, want: `unknown method "rm -rf"`},
	{name: "rpc path-based ingest", method: rpc.MethodIngest, params: `{"path":"/etc"}`, code: rpc.CodeNeedDescriptors, want: `ingest /etc: the daemon never opens paths`},
	{name: "rpc begin without params", method: rpc.MethodIngestBegin, code: rpc.CodeInvalidParams, want: `ingest.begin: params required`},
	{name: "rpc begin path not a string", method: rpc.MethodIngestBegin, params: `{"path":1}`, code: rpc.CodeInvalidParams, want: `ingest.begin: bad params: .*cannot unmarshal number`},
	{name: "rpc put unknown session", method: rpc.MethodIngestPut, params: `{"session":"nope","files":[]}`, code: rpc.CodeNotFound, want: `no ingest session "nope"`},
	{name: "rpc put fewer descriptors than files", method: rpc.MethodIngestPut, params: `{"session":"x","files":[{"name":"a"},{"name":"b"}]}`, fds: 1, code: rpc.CodeInvalidParams, want: `2 files described, 1 descriptors passed`},
	{name: "rpc flush unknown session", method: rpc.MethodIngestFlush, params: `{"session":"nope"}`, code: rpc.CodeNotFound, want: `no ingest session "nope"`},
	{name: "rpc link without a descriptor", method: rpc.MethodLink, params: `{"manifest_path":"/m.lmdb"}`, code: rpc.CodeNeedDescriptors, want: `pass the manifest as exactly one descriptor \(got 0\)`},
	{name: "rpc link relative path", method: rpc.MethodLink, params: `{"manifest_path":"m.lmdb"}`, fds: 1, code: rpc.CodeInvalidParams, want: `manifest_path must be absolute`},
	{name: "rpc link a file that is no manifest", method: rpc.MethodLink, params: `{"manifest_path":"/m.lmdb"}`, fds: 1, code: rpc.CodeInvalidParams, want: `not a vrift manifest`},
	{name: "rpc gc negative grace", method: rpc.MethodGC, params: `{"grace":-1}`, code: rpc.CodeInvalidParams, want: `gc: negative grace`},
	{name: "rpc gc unknown field", method: rpc.MethodGC, params: `{"dry_run":true,"bogus":1}`, code: rpc.CodeInvalidParams, want: `unknown field "bogus"`},
	{name: "rpc gc dry_run not a bool", method: rpc.MethodGC, params: `{"dry_run":"yes"}`, code: rpc.CodeInvalidParams, want: `gc: bad params: .*cannot unmarshal string`},

	// daemon config
	{name: "config not TOML", config: "store = \n", code: 2, want: `config .*: toml: line 1`},
	{name: "config unknown key", config: "stor = \"/var/lib/x\"\n", code: 2, want: `unknown key "stor"`},
	{name: "config negative max_frame", config: "max_frame = -1\n", code: 2, want: `max_frame -1: must be between 0`},
	{name: "config huge max_frame", config: "max_frame = 4294967296\n", code: 2, want: `max_frame 4294967296: must be between 0 .* and 1073741824 bytes`},
	{name: "config max_frame not a number", config: "max_frame = \"16M\"\n", code: 2, want: `toml: .*max_frame.*string`},
	{name: "config share_private not a bool", config: "share_private = \"yes\"\n", code: 2, want: `toml: .*share_private.*string`},
	{name: "config unknown log level", config: "log_level = \"loud\"\n", code: 2, want: `log_level "loud": want debug, info, warn or error`},
	{name: "config empty store", config: "store = \"\"\n", code: 2, want: `store: must not be empty`},
	{name: "config a table for a bool", config: "[share_private]\nx = 1\n", code: 2, want: `toml: .*share_private`},
	{name: "config file missing", daemonArgs: []string{"--config", "$D/no-such.toml"}, code: 2, want: `config .*no-such.toml: .*no such file or directory`},
	{name: "config file is a dir", daemonArgs: []string{"--config", "$D"}, code: 2, want: `config .*: .*is a directory`},
	{name: "flag negative max-frame", daemonArgs: []string{"--config", "/dev/null", "--max-frame", "-5"}, code: 2, want: `max_frame -5: must be between 0`},
	{name: "flag not a number", daemonArgs: []string{"--max-frame", "big"}, code: 2, want: `invalid value "big" for flag -max-frame`},
}

// TestBadInputs runs every bad input of the table: each must get its clear
// error, with the right exit or JSON-RPC code.
func TestBadInputs(t *testing.T) {
	var ncli, nrpc, ncfg int
	for _, c := range badInputs {
		switch {
		case c.cli != nil:
			ncli++
		case c.method != "" || c.raw != "":
			nrpc++
		default:
			ncfg++
		}
	}
	t.Logf("bad inputs: %d (CLI %d, RPC %d, config %d)", len(badInputs), ncli, nrpc, ncfg)
	if len(badInputs) < 30 {
		t.Fatalf("only %d bad inputs", len(badInputs))
	}

	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"proj/package.json": "{}", "proj/sub/a": "a\n", "file.txt": "not a dir\n",
		"done/package.json": "{}", "done/d/b": "b\n", "garbage.lmdb": strings.Repeat("not lmdb ", 1000)})
	if err := os.Symlink("loop", filepath.Join(dir, "loop")); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	mustVrift(t, "--store", store, "ingest", "--tier", "tier2", filepath.Join(dir, "done", "d"))
	subst := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = strings.ReplaceAll(a, "$D", dir)
		}
		return out
	}
	sock := testenv.ServeDaemon(t, service.Config{})
	var daemonBin string

	for _, c := range badInputs {
		t.Run(c.name, func(t *testing.T) {
			want := regexp.MustCompile("(?m)" + c.want)
			switch {
			case c.cli != nil:
				before := snapshot(t, dir)
				_, stderr, code := vrift(t, append([]string{"--store", store}, subst(c.cli)...)...)
				if code != c.code || !want.MatchString(stderr) {
					t.Errorf("vrift %s: exit %d, stderr %q; want exit %d and /%s/", strings.Join(c.cli, " "), code, stderr, c.code, c.want)
				}
				if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
					t.Errorf("more than one line on stderr: %q", stderr)
				}
				if after := snapshot(t, dir); after != before {
					t.Errorf("the bad input changed the tree:\nbefore %s\nafter  %s", before, after)
				}
			case c.method != "" || c.raw != "":
				code, msg := badCall(t, sock, dir, c)
				if code != int64(c.code) || !want.MatchString(msg) {
					t.Errorf("got %d %q; want %d and /%s/", code, msg, c.code, c.want)
				}
			default:
				if daemonBin == "" {
					daemonBin = filepath.Join(dir, "bin", "vrift-daemon")
					sh(t, "go", "build", "-o", daemonBin, "../vrift-daemon")
				}
				args := subst(c.daemonArgs)
				if c.daemonArgs == nil {
					cfg := filepath.Join(t.TempDir(), "config.toml")
					if err := os.WriteFile(cfg, []byte(c.config), 0o644); err != nil {
						t.Fatal(err)
					}
					args = []string{"--config", cfg}
				}
				// Flags that would let it start must not be needed: it
				// refuses before opening the store or the socket.
				state := filepath.Join(t.TempDir(), "never")
				args = append(args, "--allow-root", "--store", state, "--state", state, "--socket", state+".sock")
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, daemonBin, args...).CombinedOutput()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != c.code || !want.MatchString(string(out)) {
					t.Errorf("vrift-daemon %s: exit %d, output %q; want exit %d and /%s/", strings.Join(args, " "), code, out, c.code, c.want)
				}
				if _, err := os.Stat(state); err == nil {
					t.Errorf("the refused daemon created %s", state)
				}
			}
		})
	}
}

// snapshot lists a tree's names, types, modes and sizes, skipping the store
// (a refused command may still have opened it).
func snapshot(t *testing.T, root string) string {
	var b strings.Builder
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "store" || rel == "bin" {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		size := info.Size()
		if info.IsDir() {
			size = 0
		}
		fmt.Fprintf(&b, "%s %v %d;", rel, info.Mode(), size)
		return nil
	})
	return b.String()
}

// badCall sends c to the service and returns the error code and message.
func badCall(t *testing.T, sock, dir string, c badInput) (int64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if c.raw != "" {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(conn, "Content-Length: %d\r\n\r\n%s", len(c.raw), c.raw)
		r := bufio.NewReader(conn)
		hdr, err := textproto.NewReader(r).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		n, err := strconv.Atoi(hdr.Get("Content-Length"))
		if err != nil {
			t.Fatalf("answer without Content-Length: %v", hdr)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Error *struct {
				Code    int64  `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &resp); err != nil || resp.Error == nil {
			t.Fatalf("answer is not an error: %s", body)
		}
		return resp.Error.Code, resp.Error.Message
	}
	cl, err := rpc.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var files []*os.File
	for range c.fds {
		f, err := os.Open(filepath.Join(dir, "garbage.lmdb"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	var params any
	if c.params != "" {
		params = json.RawMessage(c.params)
	}
	err = cl.CallWithFiles(ctx, c.method, params, files, nil)
	if err == nil {
		t.Fatalf("%s %s: accepted", c.method, c.params)
	}
	msg := err.Error()
	if i := strings.Index(msg, "jsonrpc2: code "); i >= 0 {
		// jsonrpc2's Error() is "jsonrpc2: code N message M".
		if j := strings.Index(msg, " message "); j >= 0 {
			msg = msg[j+len(" message "):]
		}
	}
	return rpc.CodeOf(err), msg
}
