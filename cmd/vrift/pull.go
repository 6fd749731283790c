package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/teamcache"
)

func (a *app) pullCommand() *cobra.Command {
	var rf remoteFlags
	var to, method, subtree string
	var force bool
	cmd := &cobra.Command{
		Use:   "pull [NAME]",
		Short: "Restore a tree from the team cache and project it",
		Long: `Downloads trees/NAME from the team cache, fetches the blobs the local store lacks
(each verified, BLAKE3 and size, before it enters the store: a mismatch is an
error naming the object, and nothing of it is stored), records the tree as the
manifest of the project at --to (default: the current directory) and projects
it as vrift link does, or serves it read-only with --method mount.

NAME defaults to the key derived from the project's lock file (see vrift push).`,
		Example: `  vrift pull --method hardlink                    # by lock-file key, into .
  vrift pull app-main --to /tmp/app --method copy
  vrift pull --method mount --subtree node_modules`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			mount := method == "mount"
			var m vfs.Method
			if !mount {
				var err error
				if m, err = vfs.ParseMethod(method); err != nil {
					return usageError{err}
				}
			} else if subtree == "" {
				return usageError{errors.New("--method mount needs --subtree (the directory to mount, e.g. node_modules)")}
			}
			root, err := filepath.Abs(to)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(root, 0o755); err != nil {
				return fmt.Errorf("pull: %w", err)
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			if name, err = a.treeName(name, root); err != nil {
				return err
			}
			s, err := a.store(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := rf.run(a, s, func(opts engine.TransferOptions) (*teamcache.Result, error) {
				return s.Pull(ctx, name, root, opts)
			})
			if err != nil {
				return err
			}
			if mount {
				mp := filepath.Join(root, filepath.FromSlash(manifest.CleanKey(subtree)))
				if err := os.MkdirAll(mp, 0o755); err != nil {
					return fmt.Errorf("pull: %w", err)
				}
				if err := a.emitPull(res, nil); err != nil {
					return err
				}
				if a.jsonOut {
					// stdout holds one JSON object; the mount's line goes
					// with the other messages.
					a.stdout = a.stderr
				}
				return a.mountDetached([]string{root, mp}, mp, subtree, false)
			}
			lres, err := engine.Link(ctx, s, engine.LinkOptions{ManifestPath: res.ManifestPath, Subtree: subtree,
				Method: m, Force: force, Warn: a.warn})
			if lres != nil {
				if perr := a.emitPull(res, lres); perr != nil {
					return perr
				}
			}
			if errors.Is(err, vfs.ErrConflict) {
				return &codedError{exitConflict, err}
			}
			return err
		},
	}
	rf.add(cmd)
	rf.trust.addAllowUnsigned(cmd)
	cmd.Flags().StringVar(&to, "to", ".", "project root to restore into (created if missing)")
	cmd.Flags().StringVar(&method, "method", string(vfs.Symlink), "symlink, hardlink, reflink, copy or mount")
	cmd.Flags().StringVar(&subtree, "subtree", "", "only this path (relative to the project root), e.g. node_modules")
	cmd.Flags().BoolVar(&force, "force", false, "replace files that are not projections")
	return cmd
}

func (a *app) emitPull(res *teamcache.Result, l *vfs.LinkResult) error {
	v := struct {
		*teamcache.Result
		Link *vfs.LinkResult `json:"link,omitempty"`
	}{res, l}
	return a.emit(v, func(w io.Writer) {
		printTransfer(w, "pulled", res)
		if l != nil {
			printLink(w, l)
		}
	})
}
