package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vrift/vrift/internal/config"
	"github.com/vrift/vrift/teamcache"
	"github.com/vrift/vrift/treefile"
	"github.com/vrift/vrift/trust"
)

// trustFlags are the signing and trust flags of push, pull and remote
// sign (docs/team-cache-trust.md).
type trustFlags struct {
	signKey       string
	signing       bool // the command signs: --sign-key, else [remote] sign_key
	allowUnsigned bool
}

func (f *trustFlags) addSign(cmd *cobra.Command) {
	f.signing = true
	cmd.Flags().StringVar(&f.signKey, "sign-key", "", "secret key file to sign the tree with (default: [remote] sign_key; see vrift key generate)")
}

func (f *trustFlags) addAllowUnsigned(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.allowUnsigned, "allow-unsigned", false, "pull a tree your trusted keys refuse (unsigned, untrusted): loudly, for this pull only; a daemon's trusted keys still bind")
}

// options resolves the trust settings: [remote] trusted_keys of the user's
// config (configFlag, or the default file), and for a signing command the
// secret key from --sign-key or [remote] sign_key, checked and loaded.
func (f *trustFlags) options(a *app, configFlag string) (teamcache.TrustOptions, error) {
	file, err := userConfig(configFlag)
	if err != nil {
		return teamcache.TrustOptions{}, err
	}
	return f.optionsFrom(a, file)
}

func (f *trustFlags) optionsFrom(a *app, file config.File) (teamcache.TrustOptions, error) {
	pol, err := file.TrustPolicy()
	if err != nil {
		return teamcache.TrustOptions{}, err
	}
	o := teamcache.TrustOptions{Policy: pol, AllowUnsigned: f.allowUnsigned, Warn: a.loud}
	if f.signing {
		path := f.signKey
		if path == "" {
			path = file.Remote.SignKey
		}
		if path != "" {
			k, err := trust.LoadSecretKey(path)
			if err != nil {
				return o, err
			}
			o.SignKey = &k
		}
	}
	return o, nil
}

// loud prints a warning that must not be missed, on its own lines.
func (a *app) loud(msg string) {
	bar := strings.Repeat("!", 72)
	fmt.Fprintf(a.stderr, "vrift: %s\nvrift: %s\nvrift: %s\n", bar, msg, bar)
}

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Make signing keys for the team cache",
	}
	var out string
	gen := &cobra.Command{
		Use:   "generate NAME",
		Short: "Make an ed25519 key pair for signing team-cache trees",
		Long: `Writes a new ed25519 secret key, readable by you only (0600), to --out or
` + trust.DefaultSecretPath("NAME") + `, and prints the public key as one line,
NAME:<base64>. Put the secret key where pushes run (CI: a secret file, then
vrift push --sign-key FILE or [remote] sign_key), and the public line in
[remote] trusted_keys of every config that pulls (developers' and the daemon's).
An existing file is never overwritten.`,
		Example: `  vrift key generate ci-2026 --out /secure/ci-2026.secret`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := trust.Generate(args[0])
			if err != nil {
				return usageError{err}
			}
			path := out
			if path == "" {
				if path = trust.DefaultSecretPath(k.Name); path == "" {
					return usageError{errors.New("no config directory for the secret key: pass --out FILE")}
				}
			}
			if err := trust.WriteSecretKey(path, k); err != nil {
				return err
			}
			pub := k.Public().String()
			fmt.Fprintf(a.stderr, "vrift: secret key written to %s (keep it secret; never commit it)\n", path)
			return a.emit(map[string]string{"name": k.Name, "public_key": pub, "secret_key_file": path}, func(w io.Writer) {
				fmt.Fprintln(w, pub)
			})
		},
	}
	gen.Flags().StringVar(&out, "out", "", "secret key file (default: "+trust.DefaultSecretPath("NAME")+")")
	cmd.AddCommand(gen)
	return cmd
}

func (a *app) remoteSignCommand() *cobra.Command {
	var rf remoteFlags
	var tf trustFlags
	cmd := &cobra.Command{
		Use:   "sign NAME",
		Short: "Add a signature to a tree in the team cache (no blob is uploaded)",
		Long: `Adds a signature by --sign-key (or [remote] sign_key) to trees/NAME, keeping its
other signatures and its bytes: for rotating keys, sign existing trees with the
new key before the old one is no longer trusted. The tree must pass your
[remote] trusted_keys first (--allow-unsigned to sign one they refuse).`,
		Example: `  vrift remote sign npm-3f2a9c0d1e4b5a6f --sign-key ci-2027.secret`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			to, err := tf.options(a, rf.config)
			if err != nil {
				return err
			}
			if to.SignKey == nil {
				return usageError{errors.New("remote sign: no key: pass --sign-key FILE or set [remote] sign_key")}
			}
			b, err := rf.open()
			if err != nil {
				return err
			}
			s, err := teamcache.SignRemote(cmd.Context(), b, args[0], *to.SignKey, to)
			if err != nil {
				return err
			}
			return a.emit(map[string]any{"name": args[0], "remote": b.String(), "signer": s}, func(w io.Writer) {
				fmt.Fprintf(w, "signed %s (%s) with %s at %s\n", args[0], b, s.Key, s.Signed.Format(time.RFC3339))
			})
		},
	}
	rf.add(cmd)
	tf.addSign(cmd)
	tf.addAllowUnsigned(cmd)
	return cmd
}

// signedTree is a tree as vrift remote ls shows it.
type signedTree struct {
	teamcache.TreeInfo
	// Signatures as recorded in the tree (unverified: pull verifies).
	Signatures []treefile.Signature `json:"signatures"`
}

// signerText is the signer column: key names and signing times.
func signerText(sigs []treefile.Signature) string {
	if len(sigs) == 0 {
		return "unsigned"
	}
	var parts []string
	for _, s := range sigs {
		parts = append(parts, s.Key+" "+s.Signed.UTC().Format(time.RFC3339))
	}
	return "signed by " + strings.Join(parts, ", ")
}
