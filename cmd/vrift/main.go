// Command vrift deduplicates project trees into a content-addressed store and
// projects them back. Without a daemon it works directly on a per-user store
// (~/.vrift/the_source).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/internal/heapprof"
)

// Exit codes, documented in the root command's help.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitConflict = 3
	exitVerify   = 4
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a specific exit code for an error already explained.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

type usageError struct{ error }

// app holds what every command shares: global flags and output streams.
type app struct {
	storeFlag  string
	socketFlag string
	direct     bool
	// allowOtherOwner lets vrift act in a tree another user owns.
	allowOtherOwner bool
	jsonOut         bool
	stdout          io.Writer
	stderr          io.Writer
}

// softMemoryLimit is the Go heap's soft limit (see main).
const softMemoryLimit = 128 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A soft limit on the Go heap unless GOMEMLIMIT sets one: the
	// collector then works harder near it rather than letting the heap
	// double (GOGC=100) over what is live. What an ingest keeps per file
	// is bounded (engine hashSet, cas batches); the garbage of its
	// per-file work is not, and at 1M files it was most of the RSS.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
	}
	// And a heap of 1.5x what is live rather than 2x, unless GOGC says
	// otherwise: a 1M-file tier1 ingest keeps about 60 MB live (hash sets,
	// the adoption record) beside LMDB's dirty pages (about 130 MB, in C),
	// so the limit above hardly binds. Its peak RSS was 274 MB at GOGC=100
	// and 250 MB at 50. A 300k-file tier2 cold ingest, 3 rounds each:
	// 88-95 MB against 80-85 MB, and no more CPU in user time (10.9-12.8
	// s against 9.6-11.4 s; the wall time was the disk's, which swung 3x).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	// VRIFT_HEAPPROFILE=FILE: a heap profile at the peak (bench-scale).
	endProfile := heapprof.Start(os.Getenv("VRIFT_HEAPPROFILE"))
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	endProfile()
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "vrift: %v\n", err)
	var ce *codedError
	var ue usageError
	switch {
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ue):
		return exitUsage
	case strings.HasPrefix(err.Error(), "unknown command "):
		// cobra's own error for a misspelt subcommand: bad usage too.
		return exitUsage
	}
	return exitError
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "vrift",
		Short: "Store each distinct file once and project project trees back from the store",
		Long: `vrift stores every distinct file of a tree (node_modules, .venv, module caches)
once in a content-addressed store keyed by BLAKE3, records the tree in an LMDB
manifest (<project>/.vrift/manifest.lmdb) and projects it back as symlinks,
hardlinks, reflinks or copies.

When a vrift daemon answers on its socket (--socket, VRIFT_SOCKET, default
/run/vrift/daemon.sock), vrift works in daemon mode: files go into the shared
store owned by the daemon, which reads them only through descriptors vrift
passes. Otherwise, or with --direct, vrift works in direct mode on a per-user
store at ~/.vrift/the_source (override with --store or VRIFT_STORE).

Exit codes:
  0  success
  1  error (the message says what failed; nothing was half-done)
  2  bad usage (unknown flag, wrong arguments)
  3  link left conflicting paths alone (listed; use --force)
  4  verify found corrupt or missing blobs (listed)`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.storeFlag, "store", "", "store directory (default $VRIFT_STORE or ~/.vrift/the_source)")
	root.PersistentFlags().BoolVar(&a.jsonOut, "json", false, "print one JSON object on stdout instead of text")
	root.PersistentFlags().StringVar(&a.socketFlag, "socket", "", "daemon socket (default $VRIFT_SOCKET or "+engine.DefaultSocket()+")")
	root.PersistentFlags().BoolVar(&a.direct, "direct", false, "never use a daemon: work on the per-user store")
	root.PersistentFlags().BoolVar(&a.allowOtherOwner, "allow-other-owner", os.Getenv("VRIFT_ALLOW_OTHER_OWNER") == "1",
		"act in a project or directory another user owns (refused by default; also VRIFT_ALLOW_OTHER_OWNER=1)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.ingestCommand(), a.linkCommand(), a.mountCommand(), a.umountCommand(),
		a.statusCommand(), a.gcCommand(), a.verifyCommand(),
		a.pushCommand(), a.pullCommand(), a.remoteCommand(), a.watchCommand(), a.keyCommand())
	root.AddCommand(a.usageCommand(), a.doctorCommand())
	root.AddCommand(a.buildCommands()...)
	return root
}

// storeRoot resolves the direct-mode store location.
func (a *app) storeRoot() (string, error) {
	if a.storeFlag != "" {
		return filepath.Abs(a.storeFlag)
	}
	if s := os.Getenv("VRIFT_STORE"); s != "" {
		return filepath.Abs(s)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no --store given and no home directory: %w", err)
	}
	return filepath.Join(home, ".vrift", "the_source"), nil
}

// store opens the store every command works on: the daemon's when one is
// set up on the socket, the per-user store with --direct, with an explicit
// --store/VRIFT_STORE (and no socket named), or when no daemon socket
// exists. The caller closes it.
func (a *app) store(ctx context.Context) (engine.Store, error) {
	socket, mode, _ := a.chooseMode()
	var root string
	if mode == "direct" {
		var err error
		if root, err = a.storeRoot(); err != nil {
			return nil, err
		}
	}
	s, err := engine.Open(ctx, socket, a.direct, root)
	if d, ok := s.(*engine.Direct); ok && err == nil {
		// [store] max_bytes and min_free of the user's config file (usage.go)
		if d.Limits, err = directLimits(); err != nil {
			return nil, err
		}
	}
	return s, err
}

// chooseMode is the one rule for which store a command uses: the socket
// to try ("" for none), the mode ("daemon" or "direct") and why (vrift
// doctor prints the reason). A socket that exists but cannot be used
// still means daemon mode: engine.Open then fails, naming it.
func (a *app) chooseMode() (socket, mode, reason string) {
	socket, from := a.socketFlag, "--socket"
	if socket == "" {
		socket, from = os.Getenv("VRIFT_SOCKET"), "VRIFT_SOCKET"
	}
	explicitStore := a.storeFlag != "" || os.Getenv("VRIFT_STORE") != ""
	if socket == "" && !explicitStore {
		socket, from = engine.DefaultSocket(), "the default path"
	}
	switch {
	case a.direct:
		return socket, "direct", "--direct given"
	case socket == "":
		return "", "direct", "--store or VRIFT_STORE given, and no socket named"
	case !engine.SocketExists(socket):
		return socket, "direct", fmt.Sprintf("no daemon socket at %s (%s): no daemon set up", socket, from)
	}
	return socket, "daemon", fmt.Sprintf("daemon socket at %s (%s)", socket, from)
}

// withStore runs fn on the command's store.
func withStore[T any](ctx context.Context, a *app, fn func(engine.Store) (T, error)) (T, error) {
	s, err := a.store(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	defer s.Close()
	return fn(s)
}

// emit prints v as JSON with --json, or calls text otherwise.
func (a *app) emit(v any, text func(w io.Writer)) error {
	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.stdout)
	return nil
}

func (a *app) warn(msg string) { fmt.Fprintf(a.stderr, "vrift: warning: %s\n", msg) }

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MaximumNArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
