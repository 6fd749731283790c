package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/engine"
	"github.com/vrift/vrift/units"
)

func (a *app) verifyCommand() *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Re-hash every blob and check every root's blobs are present",
		Long: `Re-hashes every blob in the store against its name and checks that every file
of every registered manifest has its blob. Exits 4 naming each corrupt or
missing blob. --repair moves corrupt blobs aside (to <store>/corrupt/), so
that the next ingest of that content stores it again.`,
		Example: `  vrift verify
  vrift verify --repair --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			res, err := withStore(ctx, a, func(s engine.Store) (*engine.VerifyResult, error) {
				return s.Verify(ctx, engine.VerifyOptions{Repair: repair})
			})
			if errors.Is(err, engine.ErrRepairShared) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			if err := a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "checked %d blobs (%s) and %d roots\n", res.Blobs, units.FormatSize(res.Bytes), res.Roots)
				for _, c := range res.Corrupt {
					fmt.Fprintf(w, "  corrupt: %s\n", c)
				}
				for _, q := range res.Quarantined {
					fmt.Fprintf(w, "  moved aside: %s\n", q)
				}
				for _, m := range res.Missing {
					if m.Manifest == "" {
						fmt.Fprintf(w, "  missing: %s\n", m.Blob)
						continue
					}
					fmt.Fprintf(w, "  missing: %s (%s in %s)\n", m.Blob, m.Path, m.Manifest)
				}
			}); err != nil {
				return err
			}
			if !res.OK() {
				return &codedError{exitVerify, fmt.Errorf("verify: %d corrupt, %d missing blobs", len(res.Corrupt), len(res.Missing))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "move corrupt blobs aside")
	return cmd
}
