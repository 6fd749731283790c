package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
)

func (a *app) linkCommand() *cobra.Command {
	var to, subtree, method, manifestPath string
	var force, keepSpecial bool
	cmd := &cobra.Command{
		Use:   "link [PROJECT]",
		Short: "Materialize a project's manifest from the store",
		Long: `Projects the tree recorded in PROJECT's manifest (default: the project around
the current directory) back in place, or under --to DIR at the same relative
paths. It creates what is missing, fixes projections that differ and leaves
what matches. A file that is not a projection is never replaced unless
--force: conflicts are listed and the exit status is 3.

Setuid, setgid and sticky bits recorded in the manifest are masked unless
--keep-special-bits is given and the destination is yours. A destination
another user owns is refused unless --allow-other-owner; either way nothing
outside the destination is touched and no symlink inside it is followed.

Methods:
  symlink   (default) symlinks into the store; Node tools do not work on these
  hardlink  share the blob's inode (same filesystem, direct mode); Node-safe
  reflink   clone extents (btrfs, xfs); Node-safe
  copy      user-owned copies; Node-safe`,
		Example: `  vrift link
  vrift link --method hardlink --subtree node_modules
  vrift link ~/src/app --to /tmp/app-copy --method copy`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := vfs.ParseMethod(method)
			if err != nil {
				return usageError{err}
			}
			opts := engine.LinkOptions{To: to, Subtree: subtree, Method: m, Force: force, Warn: a.warn,
				AllowOtherOwner: a.allowOtherOwner, KeepSpecialBits: keepSpecial}
			if len(args) == 1 {
				opts.Project = args[0]
			}
			if manifestPath != "" {
				if opts.ManifestPath, err = filepath.Abs(manifestPath); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			res, err := withStore(ctx, a, func(s engine.Store) (*vfs.LinkResult, error) { return engine.Link(ctx, s, opts) })
			if res != nil {
				if perr := a.emit(res, func(w io.Writer) { printLink(w, res) }); perr != nil {
					return perr
				}
			}
			if errors.Is(err, vfs.ErrConflict) {
				return &codedError{exitConflict, err}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "materialize under this directory instead of the project root")
	cmd.Flags().StringVar(&subtree, "subtree", "", "only this path (relative to the project root), e.g. node_modules")
	cmd.Flags().StringVar(&method, "method", string(vfs.Symlink), "symlink, hardlink, reflink or copy")
	cmd.Flags().BoolVar(&force, "force", false, "replace files that are not projections")
	cmd.Flags().BoolVar(&keepSpecial, "keep-special-bits", false, "apply the manifest's setuid, setgid and sticky bits (only in a destination you own)")
	cmd.Flags().StringVar(&manifestPath, "manifest", "", "manifest to link (default: found from PROJECT)")
	return cmd
}

func printLink(w io.Writer, r *vfs.LinkResult) {
	fmt.Fprintf(w, "linked %s (%s): %d created, %d fixed, %d unchanged\n",
		r.Dest, r.Method, r.Created, r.Fixed, r.Unchanged)
	for _, c := range r.Conflicts {
		fmt.Fprintf(w, "  conflict: %s\n", c)
	}
}
