package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/fs/tree"
)

func (a *app) mountCommand() *cobra.Command {
	var subtree string
	var foreground, noPassthrough bool
	var readyFD int
	cmd := &cobra.Command{
		Use:   "mount [PROJECT] MOUNTPOINT",
		Short: "Serve a project's manifest read-only at MOUNTPOINT (FUSE)",
		Long: `Serves the tree recorded in PROJECT's manifest (default: the project around the
current directory), or one --subtree of it, as a read-only FUSE filesystem at
MOUNTPOINT. Files are the store's blobs, with the manifest's modes, exec bits
and mtimes; every write fails with EROFS. Unlike symlink projections, Node
tools work on it.

Without --foreground the server detaches and vrift returns once the mount is
live. vrift umount MOUNTPOINT takes it down. A stale mount (its server was
killed) at MOUNTPOINT is cleaned up first.`,
		Example: `  vrift ingest --mode phantom node_modules
  vrift mount . node_modules --subtree node_modules
  vrift umount node_modules`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{errors.New("want [PROJECT] MOUNTPOINT")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			project, mountpoint := ".", args[len(args)-1]
			if len(args) == 2 {
				project = args[0]
			}
			mp, err := filepath.Abs(mountpoint)
			if err != nil {
				return err
			}
			// Mounting follows symlinks: a mount point is never one, and
			// one another user owns is refused unless allowed, so a tree
			// someone else controls cannot steer root's mount elsewhere.
			var st unix.Stat_t
			if err := unix.Lstat(mp, &st); err == nil {
				if st.Mode&unix.S_IFMT == unix.S_IFLNK {
					return fmt.Errorf("mount: %s is a symlink; name the directory itself", mp)
				}
				if err := tree.CheckOwner(mp, st.Uid, a.allowOtherOwner); err != nil {
					return fmt.Errorf("mount: %w", err)
				}
			}
			if vfs.IsStale(mp) {
				fmt.Fprintf(a.stderr, "vrift: %s is a stale mount (its server is gone); unmounting it first\n", mp)
				if err := vfs.Unmount(mp); err != nil {
					return fmt.Errorf("mount %s: clean up stale mount: %w", mp, err)
				}
			}
			if !foreground {
				return a.mountDetached(args, mp, subtree, noPassthrough)
			}
			return a.serveMount(cmd.Context(), project, mp, subtree, noPassthrough, readyFD)
		},
	}
	cmd.Flags().StringVar(&subtree, "subtree", "", "serve only this path of the manifest, e.g. node_modules")
	cmd.Flags().BoolVar(&foreground, "foreground", false, "serve in the foreground until unmounted or interrupted")
	cmd.Flags().BoolVar(&noPassthrough, "no-passthrough", false, "serve every read through vrift, even where FUSE passthrough is possible")
	cmd.Flags().IntVar(&readyFD, "ready-fd", 0, "internal: descriptor to report readiness on")
	cmd.Flags().MarkHidden("ready-fd")
	return cmd
}

// serveMount serves the view in this process.
func (a *app) serveMount(ctx context.Context, project, mp, subtree string, noPassthrough bool, readyFD int) error {
	report := func(msg string) {
		if readyFD > 0 {
			f := os.NewFile(uintptr(readyFD), "ready")
			fmt.Fprintln(f, msg)
			f.Close()
			readyFD = 0
		}
	}
	err := func() error {
		info, err := os.Stat(mp)
		if err != nil || !info.IsDir() {
			return fmt.Errorf("mount: %s is not a directory", mp)
		}
		s, err := a.store(ctx)
		if err != nil {
			return err
		}
		// The pin outlives the connection: the store can close at once.
		v, m, source, err := engine.OpenView(ctx, s, engine.ViewOptions{Project: project, Subtree: subtree, NoPassthrough: noPassthrough})
		s.Close()
		if err != nil {
			return err
		}
		defer m.Close()
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return v.Serve(ctx, mp, source, func(passthrough bool) {
			mode := "reads through vrift: no FUSE passthrough (it needs root and kernel support, and no --no-passthrough)"
			if passthrough {
				mode = "FUSE passthrough (the kernel reads blobs directly)"
			} else if ok, note := vfs.PassthroughSupport(); !ok {
				mode = "reads through vrift: FUSE passthrough is " + note
			}
			report("ok " + mode)
		})
	}()
	if err != nil {
		report("error " + err.Error())
	}
	return err
}

// mountDetached re-runs the mount in the foreground as a detached process
// and returns once it reports the mount live (or failed).
func (a *app) mountDetached(args []string, mp, subtree string, noPassthrough bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	childArgs := append([]string{"mount", "--foreground", "--ready-fd", "3"}, passGlobal(a)...)
	if subtree != "" {
		childArgs = append(childArgs, "--subtree", subtree)
	}
	if noPassthrough {
		childArgs = append(childArgs, "--no-passthrough")
	}
	childArgs = append(childArgs, args...)
	cmd := exec.Command(self, childArgs...)
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	devnull, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mount: start server: %w", err)
	}
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	cmd.Process.Release()
	line = strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, "ok "):
		fmt.Fprintf(a.stdout, "mounted %s (%s)\n", mp, strings.TrimPrefix(line, "ok "))
		return nil
	case strings.HasPrefix(line, "error "):
		return errors.New(strings.TrimPrefix(line, "error "))
	default:
		return fmt.Errorf("mount %s: the server exited before the mount was live (%v)", mp, err)
	}
}

// passGlobal forwards the global flags that decide the store.
func passGlobal(a *app) []string {
	var out []string
	if a.storeFlag != "" {
		out = append(out, "--store", a.storeFlag)
	}
	if a.socketFlag != "" {
		out = append(out, "--socket", a.socketFlag)
	}
	if a.direct {
		out = append(out, "--direct")
	}
	return out
}

func (a *app) umountCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "umount MOUNTPOINT",
		Short:   "Take down a vrift mount (also one whose server was killed)",
		Example: `  vrift umount node_modules`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mp, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			stale := vfs.IsStale(mp)
			if err := vfs.Unmount(mp); err != nil {
				return fmt.Errorf("umount %s: %w", mp, err)
			}
			if stale {
				fmt.Fprintf(a.stdout, "unmounted %s (it was stale: its server had died)\n", mp)
			} else {
				fmt.Fprintf(a.stdout, "unmounted %s\n", mp)
			}
			return nil
		},
	}
}
