package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/units"
)

func (a *app) gcCommand() *cobra.Command {
	var opts engine.GCOptions
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete blobs no manifest references",
		Long: `Drops roots (registered manifests) whose manifest file is gone, then deletes
blobs that no remaining root references and that are older than the grace
period. It waits for in-flight ingests and keeps new ones out while it runs.`,
		Example: `  vrift gc --dry-run
  vrift gc --grace 0s`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Grace < 0 {
				return usageError{fmt.Errorf("gc: negative grace period %s", opts.Grace)}
			}
			opts.Waiting = func() { fmt.Fprintln(a.stderr, "vrift: gc: waiting for in-flight ingests to finish") }
			ctx := cmd.Context()
			res, err := withStore(ctx, a, func(s engine.Store) (*engine.GCResult, error) { return s.GC(ctx, opts) })
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				verb := "removed"
				if res.DryRun {
					verb = "would remove"
				}
				fmt.Fprintf(w, "%s %d blobs (%s); kept %d referenced and %d younger than the grace period\n",
					verb, res.Removed, units.FormatSize(res.FreedBytes), res.Kept, res.KeptYoung)
				fmt.Fprintf(w, "roots: %d live, %d dropped (manifest gone)\n", res.Roots, len(res.DroppedRoots))
			})
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "report what would be deleted, delete nothing")
	cmd.Flags().DurationVar(&opts.Grace, "grace", engine.DefaultGrace, "keep unreferenced blobs younger than this")
	cmd.Flags().BoolVar(&opts.DropStale, "drop-stale", false,
		"daemon mode, root or vrift only: also drop every user's roots whose pinned manifest copy, or record, the daemon can no longer read")
	return cmd
}
