package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/units"
	"github.com/vrift/vrift/watch"
)

type statusOutput struct {
	Mode    string                `json:"mode"`
	Store   engine.StoreStatus    `json:"store"`
	Project *engine.ProjectStatus `json:"project,omitempty"`
	// Daemon mode: the daemon's version and the caller's pinned roots.
	Daemon *engine.DaemonStatus `json:"daemon,omitempty"`
	// Mounts are the vrift views mounted in this namespace.
	Mounts []vfs.Mount `json:"mounts"`
	// Passthrough says whether views can use FUSE passthrough here
	// (Linux only).
	Passthrough string `json:"passthrough"`
	// Watcher is the project's running watcher, if any.
	Watcher *watch.State `json:"watcher,omitempty"`
}

func (a *app) statusCommand() *cobra.Command {
	var recount bool
	cmd := &cobra.Command{
		Use:   "status [PROJECT]",
		Short: "Show the store and, for a project, its manifest totals",
		Long: `Prints the mode in use (direct or daemon), the store path, its blob count and
size, and for PROJECT (or the project around the current directory, if it has
a manifest) the manifest's totals and dedup ratio: logical bytes over the
bytes of distinct content.

The store's figures are the totals the store keeps as blobs come and go,
read without walking the store. When they cannot be trusted (a vrift process
was killed before it saved them, or the store predates them), status
recounts them by walking the store, as --recount does (daemon mode: root and
vrift only).`,
		Example: `  vrift status
  vrift status ~/src/app --json
  vrift status --recount`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out statusOutput
			s, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.Status(cmd.Context(), engine.StatusOptions{Recount: recount})
			if err != nil {
				return err
			}
			out = statusOutput{Mode: s.Mode(), Store: *st, Daemon: st.Daemon}
			if out.Mounts, err = vfs.Mounts(); err != nil {
				return fmt.Errorf("status: mounts: %w", err)
			}
			_, out.Passthrough = vfs.PassthroughSupport()
			if out.Mounts == nil {
				out.Mounts = []vfs.Mount{}
			}
			project := "."
			if len(args) == 1 {
				project = args[0]
			}
			mpath, err := engine.ProjectManifest(project)
			if err != nil && len(args) == 1 {
				return fmt.Errorf("status %w", err)
			}
			if err == nil {
				ps, err := engine.ReadProjectStatus(mpath)
				if err != nil {
					return fmt.Errorf("status %s: %w", project, err)
				}
				out.Project = &ps
				if st, ok, err := watch.Status(ps.Root); err == nil && ok {
					out.Watcher = &st
				}
			}
			return a.emit(out, func(w io.Writer) { printStatus(w, out) })
		},
	}
	cmd.Flags().BoolVar(&recount, "recount", false, "walk the store and save its totals before answering (daemon mode: root and vrift)")
	return cmd
}

func printStatus(w io.Writer, s statusOutput) {
	fmt.Fprintf(w, "mode:    %s\n", s.Mode)
	fmt.Fprintf(w, "store:   %s\n", s.Store.Store)
	if s.Store.Counted {
		how := ""
		switch s.Store.Totals {
		case engine.TotalsRecounted:
			how = " (recounted)"
		case engine.TotalsWalked:
			how = " (counted by a walk, not saved: another vrift process holds the store)"
		}
		fmt.Fprintf(w, "blobs:   %d (%s, %s on disk)%s\n", s.Store.Blobs, units.FormatSize(s.Store.Bytes), units.FormatSize(s.Store.DiskBytes), how)
	} else {
		fmt.Fprintf(w, "blobs:   (store-wide figures are for root and vrift)\n")
	}
	fmt.Fprintf(w, "roots:   %d\n", s.Store.Roots)
	if s.Daemon != nil {
		fmt.Fprintf(w, "daemon:  %s, %d ingests in flight\n", s.Daemon.Version, s.Daemon.Sessions)
		u := s.Daemon.Usage
		fmt.Fprintf(w, "yours:   %d roots, %d files, %s\n", u.Roots, u.Files, units.FormatSize(u.Bytes))
		for _, r := range s.Daemon.Roots {
			fmt.Fprintf(w, "  root:  %s (uid %d, %d files)\n", r.ManifestPath, r.UID, r.Files)
		}
	}
	for _, m := range s.Mounts {
		state := "live"
		if m.Reads != "" {
			state += ", reads: " + m.Reads
		}
		if m.Stale {
			state = "STALE (server gone; vrift umount it)"
		}
		fmt.Fprintf(w, "mount:   %s <- %s (%s)\n", m.Mountpoint, m.Source, state)
	}
	if ok, _ := vfs.PassthroughSupport(); len(s.Mounts) > 0 || !ok {
		fmt.Fprintf(w, "passthrough: %s\n", s.Passthrough)
	}
	if p := s.Project; p != nil {
		t := p.Totals
		fmt.Fprintf(w, "project: %s\n", p.Root)
		fmt.Fprintf(w, "  manifest: %s\n", p.Manifest)
		fmt.Fprintf(w, "  subtrees: %v\n", p.Subtrees)
		fmt.Fprintf(w, "  files %d (%s), unique %d (%s), dirs %d, symlinks %d\n",
			t.Files, units.FormatSize(t.Bytes), t.Unique, units.FormatSize(t.UniqueBytes), t.Dirs, t.Symlinks)
		fmt.Fprintf(w, "  dedup ratio: %.2fx\n", p.DedupRatio)
		if st := s.Watcher; st != nil {
			fmt.Fprintf(w, "  watcher: pid %d (%s mode) since %s, watching %s; backlog %d (%d busy)\n",
				st.PID, st.Mode, st.Since.Local().Format(time.DateTime), st.Dir, st.Backlog, st.Busy)
			if st.Error != "" {
				fmt.Fprintf(w, "  watcher's last commit failed: %s\n", st.Error)
			}
		} else {
			fmt.Fprintf(w, "  watcher: none\n")
		}
	}
}
