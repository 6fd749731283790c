//go:build genman

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// buildCommands are the commands only a build of vrift with the genman
// tag has (make man): the shipped binary leaves them out, since cobra/doc
// brings blackfriday and yaml, whose package initialisers compiled
// regular expressions at every start of vrift, status included: 2.3 and
// 0.4 ms of a 30 ms start (GODEBUG=inittrace=1).
func (a *app) buildCommands() []*cobra.Command { return []*cobra.Command{a.genManCommand()} }

// genManCommand writes vrift(1) and one page per subcommand
// (vrift-ingest(1), ...) from the commands themselves, for make package;
// hidden, since users read the pages, not make them.
func (a *app) genManCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages of vrift and its commands into DIR",
		Hidden: true,
		Args:   exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return genMan(cmd.Root(), args[0])
		},
	}
}

func genMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root.InitDefaultCompletionCmd()
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{Section: "1", Source: "vrift " + version, Manual: "vrift manual"}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	// vrift(1) points at the daemon's and the config file's pages too,
	// which are not cobra commands.
	top := filepath.Join(dir, "vrift.1")
	b, err := os.ReadFile(top)
	if err != nil {
		return err
	}
	s := strings.Replace(string(b), ".SH SEE ALSO\n", ".SH SEE ALSO\n\\fBvrift-daemon(8)\\fP, \\fBvrift.toml(5)\\fP, ", 1)
	return os.WriteFile(top, []byte(s), 0o644)
}
