package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/internal/config"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/teamcache"
	"github.com/vrift/vrift/units"
)

// remoteFlags are the flags of every command that talks to a team cache.
type remoteFlags struct {
	url, endpoint, region, config string
	jobs                          int
	trust                         trustFlags
}

func (f *remoteFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "remote", "", "team cache, s3://bucket/prefix (default: [remote] url in the config file)")
	cmd.Flags().StringVar(&f.endpoint, "endpoint", "", "S3 endpoint URL, e.g. http://127.0.0.1:7070 (default: [remote] endpoint, or AWS)")
	cmd.Flags().StringVar(&f.region, "region", "", "S3 region (default: [remote] region)")
	cmd.Flags().StringVar(&f.config, "config", "", "config file (default $"+config.EnvVar+" or "+config.UserPath()+")")
	cmd.Flags().IntVar(&f.jobs, "jobs", teamcache.DefaultJobs, "transfers in flight")
}

// open resolves the remote from flags over the config file and opens it.
// Credentials come from AWS_* variables or the credentials file; no secret
// is ever printed.
func (f *remoteFlags) open() (*remote.S3, error) {
	file, err := userConfig(f.config)
	if err != nil {
		return nil, err
	}
	cfg := file.Remote.Merge(remote.Config{URL: f.url, Endpoint: f.endpoint, Region: f.region})
	return remote.OpenS3(cfg)
}

// daemonMode refuses remote flags under a daemon, which transfers with
// its own configured remote and credentials.
func (f *remoteFlags) daemonMode() error {
	if f.url != "" || f.endpoint != "" || f.region != "" || f.config != "" {
		return usageError{errors.New("in daemon mode the daemon uses the remote in its own config; --remote, --endpoint, --region and --config apply to direct mode (--direct)")}
	}
	return nil
}

func (f *remoteFlags) options(a *app) teamcache.Options {
	opts := teamcache.Options{Jobs: f.jobs, Progress: a.transferBar()}
	// Pack indexes are immutable by name: kept, a later push or gc reads
	// only the new ones. Without a cache dir they are read each time.
	if dir, err := os.UserCacheDir(); err == nil {
		opts.CacheDir = filepath.Join(dir, "vrift", "pack-indexes")
	}
	return opts
}

// run does a push or pull on s: in direct mode with the remote the flags
// and config name (and counts its requests), in daemon mode with none,
// since the daemon uses its own.
func (f *remoteFlags) run(a *app, s engine.Store, do func(engine.TransferOptions) (*teamcache.Result, error)) (*teamcache.Result, error) {
	opts := engine.TransferOptions{Options: f.options(a)}
	if s.Mode() == "daemon" {
		if err := f.daemonMode(); err != nil {
			return nil, err
		}
		// The user's keys: a daemon-mode push is signed here, and the
		// user's trusted keys add to the daemon's (trust.go).
		to, err := f.trust.options(a, "")
		if err != nil {
			return nil, err
		}
		opts.TrustOptions = to
		return do(opts)
	}
	to, err := f.trust.options(a, f.config)
	if err != nil {
		return nil, err
	}
	opts.TrustOptions = to
	b, err := f.open()
	if err != nil {
		return nil, err
	}
	opts.Backend = b
	res, err := do(opts)
	if res != nil {
		res.Requests = b.Stats().Requests()
	}
	return res, err
}

// transferBar returns a progress reporter drawing a bar on stderr when it
// is a terminal (and not --json), or nil.
func (a *app) transferBar() func(string, int64) func(int64) {
	f, ok := a.stderr.(*os.File)
	if !ok || a.jsonOut || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(phase string, total int64) func(int64) {
		if total == 0 {
			return func(int64) {}
		}
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(f),
			progressbar.OptionShowBytes(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetDescription(phase),
			progressbar.OptionClearOnFinish(),
		)
		var mu sync.Mutex
		return func(done int64) {
			mu.Lock()
			defer mu.Unlock()
			bar.Set64(done)
			if done >= total {
				bar.Finish()
			}
		}
	}
}

func printTransfer(w io.Writer, verb string, r *teamcache.Result) {
	fmt.Fprintf(w, "%s %s (%s): %d files, %d blobs: %d sent (%s), %d fetched (%s), %d reused, %d ms\n",
		verb, r.Name, r.Remote, r.Files, r.Blobs, r.BlobsSent, units.FormatSize(r.BytesSent),
		r.BlobsFetched, units.FormatSize(r.BytesFetched), r.Reused, r.DurationMS)
	if s := r.Signer; s != nil {
		when := ""
		if !s.Signed.IsZero() {
			when = " at " + s.Signed.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "signed by %s%s\n", s.Key, when)
	}
}

func (a *app) remoteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remote",
		Short: "Inspect and collect a team cache (S3)",
	}
	cmd.AddCommand(a.remoteLsCommand(), a.remoteGCCommand(), a.remoteSignCommand())
	return cmd
}

func (a *app) remoteLsCommand() *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:     "ls",
		Short:   "List the named trees in the team cache",
		Example: `  vrift remote ls --remote s3://team-cache/vrift`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := rf.open()
			if err != nil {
				return err
			}
			trees, err := teamcache.List(cmd.Context(), b)
			if err != nil {
				return err
			}
			out := make([]signedTree, len(trees))
			for i, t := range trees {
				out[i].TreeInfo = t
				// One small GET each: only the signature block is read.
				if out[i].Signatures, err = teamcache.ReadSignatures(cmd.Context(), b, t.Name); err != nil {
					return fmt.Errorf("remote ls: %s: %w", t.Name, err)
				}
			}
			return a.emit(map[string]any{"remote": b.String(), "trees": out}, func(w io.Writer) {
				for _, t := range out {
					fmt.Fprintf(w, "%-40s %10s  %s  %s\n", t.Name, units.FormatSize(t.Size), t.Modified.UTC().Format(time.RFC3339), signerText(t.Signatures))
				}
			})
		},
	}
	rf.add(cmd)
	return cmd
}

func (a *app) remoteGCCommand() *cobra.Command {
	var rf remoteFlags
	var dry bool
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Delete blobs no tree in the team cache references",
		Long: `Reads every tree in the team cache, then deletes every blob object none of them
references that is older than --grace (a push uploads its blobs before its
tree). A tree that cannot be read stops the collection before anything is
deleted. Run it when no push is in flight, or with a grace longer than any
push takes.`,
		Example: `  vrift remote gc --dry-run
  vrift remote gc --grace 72h`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := rf.open()
			if err != nil {
				return err
			}
			res, err := teamcache.GC(cmd.Context(), b, grace, dry, rf.options(a))
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				verb := "removed"
				if dry {
					verb = "would remove"
				}
				fmt.Fprintf(w, "%d trees, %d live blobs; %s %d blobs (%s); kept %d young\n",
					res.Trees, res.Live, verb, res.Removed, units.FormatSize(res.FreedBytes), res.KeptYoung)
			})
		},
	}
	rf.add(cmd)
	cmd.Flags().BoolVar(&dry, "dry-run", false, "report what would be deleted, delete nothing")
	cmd.Flags().DurationVar(&grace, "grace", teamcache.DefaultRemoteGrace, "keep unreferenced blobs younger than this")
	return cmd
}
