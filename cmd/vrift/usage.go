package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/internal/config"
	"github.com/vrift/vrift/rpc"
	"github.com/vrift/vrift/units"
)

func (a *app) usageCommand() *cobra.Command {
	var recount bool
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show what your pinned trees hold in the shared store, and your quota",
		Long: `Shows, per user and per pinned tree, the daemon's accounting of the shared store:

  referenced  bytes of the distinct blobs your trees (and ingests in flight)
              reference: this is what your quota limits
  exclusive   bytes that no other user's trees reference
  fair share  each blob's size divided by the number of users referencing it
  in flight   what your open ingests add to referenced

You see your own figures; root and the vrift user see everyone's and the
store's totals. --recount (root and vrift only) recounts the accounting from
the pinned manifests, replaces it, and says whether it matched.

Daemon mode only: a per-user store in direct mode has one user.`,
		Example: `  vrift usage
  vrift usage --json
  sudo vrift usage --recount`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			res, err := withStore(ctx, a, func(s engine.Store) (*rpc.UsageResult, error) {
				r, ok := s.(*engine.Daemon)
				if !ok {
					return nil, errors.New("usage: no daemon: usage accounting and quotas are the shared store's (direct mode has one user; see vrift status)")
				}
				var res rpc.UsageResult
				if err := r.Client.Call(ctx, rpc.MethodUsage, rpc.UsageParams{Recount: recount}, &res); err != nil {
					return nil, fmt.Errorf("usage: daemon: %w", err)
				}
				return &res, nil
			})
			if err != nil {
				return err
			}
			if err := a.emit(res, func(w io.Writer) { printUsage(w, res) }); err != nil {
				return err
			}
			if res.Recounted && !res.Consistent {
				return errors.New("usage: the recount differed from the incremental accounting (now replaced by the recount)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&recount, "recount", false, "recount from the pinned manifests (root and vrift only)")
	return cmd
}

func printUsage(w io.Writer, r *rpc.UsageResult) {
	if r.Recounted {
		if r.Consistent {
			fmt.Fprintln(w, "recounted: equal to the incremental accounting")
		} else {
			fmt.Fprintln(w, "recounted: DIFFERENT from the incremental accounting (replaced)")
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tREFERENCED\tEXCLUSIVE\tFAIR SHARE\tIN FLIGHT\tQUOTA\tROOTS")
	for _, u := range r.Users {
		name := u.Name
		if name == "" {
			name = fmt.Sprint(u.UID)
		}
		quota := "none"
		if u.Limit > 0 {
			quota = fmt.Sprintf("%s (%.0f%%)", units.FormatSize(u.Limit), 100*float64(u.Referenced+u.InFlight)/float64(u.Limit))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", name, units.FormatSize(u.Referenced), units.FormatSize(u.Exclusive),
			units.FormatSize(u.FairShare), units.FormatSize(u.InFlight), quota, len(u.Roots))
	}
	tw.Flush()
	for _, u := range r.Users {
		for _, rt := range u.Roots {
			fmt.Fprintf(w, "  %s  %s, %d files\n", rt.ManifestPath, units.FormatSize(rt.Referenced), rt.Files)
		}
	}
	if r.StoreBlobs > 0 || r.MaxBytes > 0 {
		fmt.Fprintf(w, "store: %d blobs, %s (%s on disk)", r.StoreBlobs, units.FormatSize(r.StoreBytes), units.FormatSize(r.StoreDiskBytes))
		if r.MaxBytes > 0 {
			fmt.Fprintf(w, ", max_bytes %s", units.FormatSize(r.MaxBytes))
		}
		if r.MinFree > 0 {
			fmt.Fprintf(w, ", min_free %s", units.FormatSize(r.MinFree))
		}
		fmt.Fprintln(w)
	}
}

// userConfig reads the user's config file by the one lookup rule
// (--config, $VRIFT_CONFIG, os.UserConfigDir()/vrift/config.toml): the
// CLI uses its [remote] table and its [store] limits. No file means none.
func userConfig(flagValue string) (config.File, error) {
	path, explicit := config.Path(flagValue, config.UserPath())
	f, _, err := config.Load(path, explicit, config.File{})
	return f, err
}

// directLimits reads the per-user store's limits, with the daemon's key
// names ([store] max_bytes, min_free).
func directLimits() (engine.StoreLimits, error) {
	f, err := userConfig("")
	if err != nil {
		return engine.StoreLimits{}, err
	}
	return engine.StoreLimits{MaxBytes: int64(f.Store.MaxBytes), MinFree: int64(f.Store.MinFree)}, nil
}
