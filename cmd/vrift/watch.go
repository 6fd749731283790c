package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/units"
	"github.com/vrift/vrift/watch"
)

func (a *app) watchCommand() *cobra.Command {
	var sync bool
	var quiet, projectAfter time.Duration
	var method string
	cmd := &cobra.Command{
		Use:   "watch [DIR]",
		Short: "Store each file of a tree as its writer closes it (live ingest)",
		Long: `Watches DIR (default: the project around the current directory) and stores
each file once its writer has closed it, recording it in the project's
manifest at once, so that the store never lags the tree: the ingest after an
npm install finds every file stored and reads none.

Files are stored without being touched (as ingest --tier tier2 does: a copy
in the store); run vrift ingest or vrift link to project them. A file still
open elsewhere waits until it is closed; a file rewritten many times is
stored once, with its last content. A queue overflow or a directory that
could not be watched falls back to a rescan of the tree (stat speed for
unchanged files). It runs in the foreground: Ctrl-C or SIGTERM stores what is
queued, commits and exits 0. One watcher per project.

On a terminal it shows one progress line; with --json it prints a JSON line
per commit. Under systemd (Type=notify) it reports READY once its start-up
scan is committed; see the vrift-watch@.service user unit.

  --project-after DURATION
           once the tree has been quiet that long, project it in place as
           vrift ingest does (--method symlink or hardlink); the watcher
           recognises the events of its own projection and skips them
  --sync   returns once the project's running watcher has stored and
           committed everything closed before the call; fails when no
           watcher runs for the project

Events come from inotify on Linux and from FSEvents on macOS (built and
vetted for macOS, not yet run on a Mac; see docs/macos.md, and
packaging/macos/watch-agent.sh for a launchd agent per project).`,
		Example: `  vrift watch &            # in a project
  npm install && vrift watch --sync && vrift ingest node_modules
  systemctl --user enable --now "vrift-watch@$(systemd-escape --path ~/src/app).service"`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if m := vfs.Method(method); m != vfs.Symlink && m != vfs.Hardlink {
				return usageError{fmt.Errorf("watch: unknown method %q (want symlink or hardlink)", method)}
			}
			ctx := cmd.Context()
			if sync {
				return watch.Sync(ctx, dir)
			}
			s, err := a.store(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			opts := watch.Options{Dir: dir, Store: s, AllowOtherOwner: a.allowOtherOwner, Warn: a.warn, Quiet: quiet,
				ProjectAfter: projectAfter, Method: vfs.Method(method),
				Ready: func() { daemon.SdNotify(false, daemon.SdNotifyReady) }}
			tty := false
			if f, ok := a.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				tty = true
			}
			var last watch.Stats
			switch {
			case a.jsonOut:
				enc := json.NewEncoder(a.stdout)
				opts.Progress = func(st watch.Stats) {
					if st != last {
						enc.Encode(st)
						last = st
					}
				}
			case tty:
				opts.Progress = func(st watch.Stats) {
					fmt.Fprintf(a.stderr, "\r\033[Kwatching: %d queued (%d busy), %d files stored (%s), lag %s",
						st.Queued, st.Busy, st.Files, units.FormatSize(st.Bytes), time.Duration(st.LagMS)*time.Millisecond)
				}
			}
			w, err := watch.New(opts)
			if err != nil {
				return err
			}
			if !a.jsonOut {
				fmt.Fprintf(a.stderr, "vrift: watching %s (%s mode, project %s)\n", w.Dir(), s.Mode(), w.Root())
			}
			err = w.Run(ctx)
			if tty && !a.jsonOut {
				fmt.Fprintln(a.stderr)
			}
			if err != nil {
				return err
			}
			st := w.Stats()
			if !a.jsonOut {
				fmt.Fprintf(a.stderr, "vrift: stopped watching: %d files stored (%s) in %d commits\n", st.Files, units.FormatSize(st.Bytes), st.Commits)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&sync, "sync", false, "wait until the running watcher has committed everything closed before now")
	cmd.Flags().DurationVar(&quiet, "quiet", watch.DefaultQuiet, "how long a file must see no event before it is stored")
	cmd.Flags().DurationVar(&projectAfter, "project-after", 0, "project the tree in place once it has been quiet this long (off: 0)")
	cmd.Flags().StringVar(&method, "method", string(vfs.Symlink), "how --project-after projects: symlink, or hardlink (direct mode; Node-safe)")
	return cmd
}
