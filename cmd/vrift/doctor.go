package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/doctor"
	"github.com/vrift/vrift/internal/config"
)

func (a *app) doctorCommand() *cobra.Command {
	var require []string
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine's vrift setup and say what to fix",
		Long: `Checks, one line each: which mode vrift would use and why; the daemon socket
(exists, owner, whether this user may talk to it, the daemon's version against
this CLI's); the store (filesystem, free space against [store] min_free and
max_bytes, owner marker, permissions); FUSE for vrift mount (/dev/fuse,
fusermount3, passthrough); fs.protected_hardlinks and what it means for
--method hardlink in daemon mode; reflinks on the current directory's
filesystem; inotify limits for vrift watch; the team cache ([remote]:
endpoint reachable, credentials present; they are never printed).

Each line starts with ok, warn or FAIL. The exit status is 0 when everything
the current mode needs is fine, 1 otherwise. A warning (say, no FUSE) fails
the run only when its check is named with --require.`,
		Example: `  vrift doctor
  vrift doctor --json
  vrift doctor --require fuse,reflink   # also fail if vrift mount or reflinks would not work`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, r := range require {
				if !contains(doctor.Optional, r) {
					return usageError{fmt.Errorf("--require %s: want one of %s", r, strings.Join(doctor.Optional, ", "))}
				}
			}
			socket, mode, reason := a.chooseMode()
			cfg := doctor.Config{Mode: mode, Reason: reason, Socket: socket, Version: version, Require: require}
			var err error
			if cfg.Project, err = os.Getwd(); err != nil {
				return err
			}
			if mode == "direct" {
				if cfg.Store, err = a.storeRoot(); err != nil {
					return err
				}
				f, err := userConfig(cfgFile)
				if err != nil {
					return err
				}
				cfg.MinFree, cfg.MaxBytes, cfg.Remote = int64(f.Store.MinFree), int64(f.Store.MaxBytes), f.Remote
			} else if f, _, err := config.Load(config.DaemonPath, false, config.File{}); err == nil {
				// The daemon's own limits and remote, when its file is
				// readable (the packaged one is 0644).
				cfg.MinFree, cfg.MaxBytes, cfg.Remote = int64(f.Store.MinFree), int64(f.Store.MaxBytes), f.Remote
			}
			rep := doctor.Run(cmd.Context(), cfg)
			if err := a.emit(rep, func(w io.Writer) { printDoctor(w, rep) }); err != nil {
				return err
			}
			if !rep.OK {
				return &codedError{code: exitError, err: fmt.Errorf("doctor: %s", failed(rep))}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&require, "require", nil, "also fail on warnings of these checks: "+strings.Join(doctor.Optional, ", "))
	cmd.Flags().StringVar(&cfgFile, "config", "", "config file (default $"+config.EnvVar+" or "+config.UserPath()+")")
	return cmd
}

func printDoctor(w io.Writer, r doctor.Report) {
	for _, c := range r.Checks {
		tag := string(c.Status)
		if c.Status == doctor.Fail {
			tag = "FAIL"
		}
		fmt.Fprintf(w, "%-4s  %-9s %s\n", tag, c.ID, c.Message)
		if c.Fix != "" && c.Status != doctor.OK {
			fmt.Fprintf(w, "      %-9s fix: %s\n", "", c.Fix)
		}
	}
}

// failed names the failed checks.
func failed(r doctor.Report) string {
	var ids []string
	for _, c := range r.Checks {
		if c.Status == doctor.Fail {
			ids = append(ids, c.ID)
		}
	}
	return "failed: " + strings.Join(ids, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
