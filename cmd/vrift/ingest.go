package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/units"
	"github.com/vrift/vrift/watch"
)

func (a *app) ingestCommand() *cobra.Command {
	var tier, mode, manifestPath, method string
	var copyAll bool
	cmd := &cobra.Command{
		Use:   "ingest DIR",
		Short: "Store a tree's files and record it in the project manifest",
		Long: `Walks DIR, stores every regular file in the store and records directories,
files and symlinks in the project's manifest. The project root is the nearest
directory at or above DIR holding .vrift/manifest.lmdb or a project marker
(package.json, go.mod, Cargo.toml, pyproject.toml, setup.py, .git); failing
that, DIR's parent.

  --tier tier1   (default) replace each file in place by a symlink to its blob
                 (--method hardlink: by the blob's own inode, direct mode)
  --tier tier2   leave files as they are; the store keeps a copy
  --mode phantom remove the ingested files; restore them with vrift link or
                 serve them with vrift mount

Unchanged files (same size, mtime, ctime and inode as recorded) and existing
projections are not read again.

Adoption (tier1, direct mode): instead of copying a file into the store,
vrift makes the file itself read-only (0444, or 0555 if executable) and
links that very inode into the store, then puts the symlink in its place.
No byte is copied. It does so only for a file with a single link, owned by
you, on the store's filesystem, that no other process has open (a write
lease proves it and keeps writers out while it is hashed). Anything else is
copied. --copy copies every file. In daemon mode files are always copied:
shared blobs belong to the daemon.

--method hardlink (tier1, direct mode) projects in place by hardlinks
instead of symlinks: each path is the blob's own inode, read-only. Node
tools work on such a node_modules (they resolve symlinks into the store and
fail), and an adopted file already is its blob, so nothing is swapped. It
needs the store on the project's filesystem. Writing to a projected file
needs chmod first, and then changes the blob of every project sharing it:
replace files (write a new one and rename it over), don't edit them in
place.`,
		Example: `  vrift ingest node_modules
  vrift ingest --tier tier2 --json ~/go/pkg/mod
  vrift ingest --mode phantom node_modules && vrift link --method hardlink`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Bad flag values are usage errors (exit 2), like bad flags.
			if t := engine.Tier(tier); t != engine.Tier1 && t != engine.Tier2 {
				return usageError{fmt.Errorf("ingest: unknown tier %q (want tier1 or tier2)", tier)}
			}
			if m := engine.Mode(mode); m != engine.Solid && m != engine.Phantom {
				return usageError{fmt.Errorf("ingest: unknown mode %q (want solid or phantom)", mode)}
			}
			if m := vfs.Method(method); m != vfs.Symlink && m != vfs.Hardlink {
				return usageError{fmt.Errorf("ingest: unknown method %q (want symlink or hardlink)", method)}
			}
			opts := engine.IngestOptions{Dir: args[0], ManifestPath: manifestPath,
				Tier: engine.Tier(tier), Mode: engine.Mode(mode), Warn: a.warn, AllowOtherOwner: a.allowOtherOwner,
				Copy: copyAll, Method: vfs.Method(method)}
			bar := a.progress()
			if bar != nil {
				opts.Progress = func(files, bytes int64) {
					bar.Describe(fmt.Sprintf("ingesting: %d files", files))
					bar.Set64(bytes)
				}
			}
			ctx := cmd.Context()
			// A watched project: what its watcher has queued is stored
			// first, so this ingest finds it all and reads nothing again.
			if _, ok, _ := watch.Status(args[0]); ok {
				if err := watch.Sync(ctx, args[0]); err != nil {
					return fmt.Errorf("ingest %s: %w", args[0], err)
				}
			}
			res, err := withStore(ctx, a, func(s engine.Store) (*engine.IngestResult, error) { return s.Ingest(ctx, opts) })
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(a.stderr)
			}
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) { printIngest(w, res) })
		},
	}
	cmd.Flags().StringVar(&tier, "tier", string(engine.Tier1), "tier1 (project in place) or tier2 (keep files)")
	cmd.Flags().StringVar(&mode, "mode", string(engine.Solid), "solid (keep the tree) or phantom (remove it after ingest)")
	cmd.Flags().StringVar(&manifestPath, "manifest", "", "manifest path (default <project>/.vrift/manifest.lmdb)")
	cmd.Flags().BoolVar(&copyAll, "copy", false, "copy every file into the store; never adopt a file's own inode")
	cmd.Flags().StringVar(&method, "method", string(vfs.Symlink), "how tier1 projects files in place: symlink, or hardlink (direct mode; Node-safe)")
	return cmd
}

// progress returns a bar on stderr when it is a terminal, nil otherwise.
func (a *app) progress() *progressbar.ProgressBar {
	f, ok := a.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(f),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetDescription("ingesting"),
		progressbar.OptionClearOnFinish(),
	)
}

func printIngest(w io.Writer, r *engine.IngestResult) {
	fmt.Fprintf(w, "ingested %d files (%s), %d unique, %d dirs, %d symlinks in %s\n",
		r.Files, units.FormatSize(r.Bytes), r.Unique, r.Dirs, r.Symlinks, time.Duration(r.DurationMS)*time.Millisecond)
	fmt.Fprintf(w, "  new blobs: %d (%s): %d adopted, %d copied; reused without reading: %d\n",
		r.NewBlobs, units.FormatSize(r.NewBytes), r.Adopted, r.Copied, r.Reused)
	fmt.Fprintf(w, "  read: %d files (%s)\n", r.ReadFiles, units.FormatSize(r.ReadBytes))
	switch {
	case r.Mode == engine.Phantom:
		fmt.Fprintf(w, "  phantom: removed %d paths; restore with vrift link or vrift mount\n", r.Removed)
	case r.Tier == engine.Tier1:
		fmt.Fprintf(w, "  projected in place: %d files\n", r.Projected)
	}
	if r.Private > 0 {
		fmt.Fprintf(w, "  private files left in place (not world-readable): %d\n", r.Private)
	}
	if r.Skipped > 0 {
		fmt.Fprintf(w, "  skipped special files: %d\n", r.Skipped)
	}
	fmt.Fprintf(w, "  manifest: %s\n", r.ManifestPath)
}
