//go:build !genman

package main

import "github.com/spf13/cobra"

// buildCommands: none in the shipped binary (man.go has gen-man).
func (a *app) buildCommands() []*cobra.Command { return nil }
