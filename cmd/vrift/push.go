package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/teamcache"
)

// treeName returns name, or the lock-file name of the project at root,
// announced on stderr so CI logs show the key.
func (a *app) treeName(name, root string) (string, error) {
	if name != "" {
		return name, teamcache.CheckName(name)
	}
	name, lock, err := teamcache.LockName(root)
	if err != nil {
		return "", usageError{err}
	}
	fmt.Fprintf(a.stderr, "vrift: tree name %s (from %s)\n", name, lock)
	return name, nil
}

func (a *app) pushCommand() *cobra.Command {
	var rf remoteFlags
	var name string
	cmd := &cobra.Command{
		Use:   "push [PROJECT]",
		Short: "Upload a project's tree and the blobs the team cache lacks",
		Long: `Uploads the blobs of PROJECT's manifest (default: the project around the current
directory) that the team cache (an S3 bucket) does not have yet, then the tree
itself as trees/NAME. The tree goes last: a tree in the cache always has all
its blobs. An interrupted push leaves no tree; running it again sends only what
is still missing.

NAME defaults to a key derived from the project's lock file (package-lock.json,
pnpm-lock.yaml, yarn.lock, go.sum, poetry.lock, uv.lock), printed on stderr,
e.g. npm-3f2a9c0d1e4b5a6f: a machine with the same lock file pulls it by the
same key.

The remote comes from --remote/--endpoint or [remote] url/endpoint/region in
~/.config/vrift/config.toml; credentials from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE in
~/.aws/credentials.`,
		Example: `  vrift ingest --mode phantom node_modules && vrift push
  vrift push ~/src/app --name app-main --remote s3://team-cache/vrift`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project := "."
			if len(args) == 1 {
				project = args[0]
			}
			mpath, err := engine.ProjectManifest(project)
			if err != nil {
				return fmt.Errorf("push %w", err)
			}
			if name, err = a.treeName(name, filepath.Dir(filepath.Dir(mpath))); err != nil {
				return err
			}
			s, err := a.store(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := rf.run(a, s, func(opts engine.TransferOptions) (*teamcache.Result, error) {
				return s.Push(ctx, mpath, name, opts)
			})
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) { printTransfer(w, "pushed", res) })
		},
	}
	rf.add(cmd)
	rf.trust.addSign(cmd)
	cmd.Flags().StringVar(&name, "name", "", "tree name (default: derived from the lock file)")
	return cmd
}
