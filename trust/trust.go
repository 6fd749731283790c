// Package trust signs team-cache trees and decides which ones to accept:
// ed25519 keys (crypto/ed25519), public keys as one line NAME:<base64> to
// paste into configs (as Nix's trusted-public-keys), secret key files
// readable by their owner only, and a Policy of trusted keys that a pull
// checks before a single blob enters the store.
//
// A signature covers the tree's body bytes (by their BLAKE3), the name the
// tree was published under and the signing time, so a tree signed as
// npm-a cannot be replayed as npm-b. Signatures live in the tree object's
// signature block (package treefile, Split and Join); adding one leaves
// the body untouched, so re-signing never re-uploads blobs.
package trust

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/treefile"
)

// ErrUntrusted is the kind of every refusal: a tree that is unsigned,
// signed by an untrusted key or for another name, altered after signing,
// or whose signature block does not parse. It is errdefs.ErrUntrusted, so
// errors.Is holds for a daemon's refusal too.
var ErrUntrusted = errdefs.ErrUntrusted

// ErrBadKey marks a key (line or file) that does not parse.
var ErrBadKey = errors.New("bad key")

// keyNameRE is the key name's alphabet; its length is checked apart (see
// teamcache's nameRE: a counted repetition costs every start of vrift).
var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

// CheckKeyName accepts key names of letters, digits, '.', '_' and '-'
// (not starting with '.' or '-'), at most 100 bytes: no ':' (the key
// line's separator) and no newline (the signed message's).
func CheckKeyName(name string) error {
	if len(name) > 100 || !keyNameRE.MatchString(name) {
		return fmt.Errorf("%w: key name %q: use letters, digits, '.', '_' and '-' (at most 100, not starting with '.' or '-')", ErrBadKey, name)
	}
	return nil
}

// PublicKey is a named ed25519 public key.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// String is the key's line, NAME:<base64>.
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// ParsePublicKey reads a NAME:<base64> line.
func ParsePublicKey(line string) (PublicKey, error) {
	name, b64, ok := strings.Cut(strings.TrimSpace(line), ":")
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: public key: want NAME:<base64>", ErrBadKey)
	}
	if err := CheckKeyName(name); err != nil {
		return PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("%w: public key %s: want %d bytes of base64 after the name", ErrBadKey, name, ed25519.PublicKeySize)
	}
	return PublicKey{Name: name, Key: b}, nil
}

// SecretKey is a named ed25519 private key. Its String, GoString and
// Format never show the key, so it cannot leak into a log or an error.
type SecretKey struct {
	Name string
	key  ed25519.PrivateKey
}

// String names the key without showing it.
func (k SecretKey) String() string { return "secret key " + k.Name }

// GoString names the key without showing it (%#v).
func (k SecretKey) GoString() string { return k.String() }

// Format names the key without showing it, whatever the verb.
func (k SecretKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// Public returns the key's public half.
func (k SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.key.Public().(ed25519.PublicKey)}
}

// Generate makes a key pair named name.
func Generate(name string) (SecretKey, error) {
	if err := CheckKeyName(name); err != nil {
		return SecretKey{}, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SecretKey{}, fmt.Errorf("generate key: %w", err)
	}
	return SecretKey{Name: name, key: priv}, nil
}

// marshal is the secret key file's text, NAME:<base64 of the 64-byte
// ed25519 private key>, as Nix writes its secret keys.
func (k SecretKey) marshal() []byte {
	return []byte(k.Name + ":" + base64.StdEncoding.EncodeToString(k.key) + "\n")
}

// parseSecretKey reads a secret key file's text. Errors never quote it.
func parseSecretKey(b []byte) (SecretKey, error) {
	name, b64, ok := strings.Cut(string(bytes.TrimSpace(b)), ":")
	if !ok {
		return SecretKey{}, fmt.Errorf("%w: not a vrift secret key (want one line NAME:<base64>)", ErrBadKey)
	}
	if err := CheckKeyName(name); err != nil {
		return SecretKey{}, fmt.Errorf("%w: not a vrift secret key (bad key name)", ErrBadKey)
	}
	priv, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(priv) != ed25519.PrivateKeySize {
		return SecretKey{}, fmt.Errorf("%w: secret key %s: want %d bytes of base64 after the name", ErrBadKey, name, ed25519.PrivateKeySize)
	}
	k := ed25519.PrivateKey(priv)
	// The last 32 bytes are the public key: a file whose halves disagree
	// would sign with a key its public line does not name.
	if !bytes.Equal(ed25519.NewKeyFromSeed(k.Seed()), k) {
		return SecretKey{}, fmt.Errorf("%w: secret key %s: its halves disagree (damaged file?)", ErrBadKey, name)
	}
	return SecretKey{Name: name, key: k}, nil
}

// Message is what a signature signs: the format's tag, the key's name,
// the tree's name, the signing time (RFC 3339, nanoseconds, UTC) and the
// hex BLAKE3-256 of the body, one per line. Every field is free of
// newlines (CheckKeyName, tree names, RFC 3339), so the message is
// unambiguous.
func Message(keyName, treeName string, signed time.Time, body []byte) []byte {
	h := cas.NewHasher()
	h.Write(body)
	return []byte("vrift-tree-signature-v1\n" + keyName + "\n" + treeName + "\n" +
		signed.UTC().Format(time.RFC3339Nano) + "\n" + hex.EncodeToString(h.Sum(nil)))
}

// Sign adds k's signature of raw (a tree object, signed or not) as the
// tree name, signed at now, and returns the new object. A signature by a
// key of the same name is replaced; others are kept. The body is not
// touched, and hashed once.
func Sign(raw []byte, name string, k SecretKey, now time.Time) ([]byte, error) {
	if k.key == nil {
		return nil, fmt.Errorf("%w: sign: no secret key", ErrBadKey)
	}
	blk, body, err := treefile.Split(raw)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", name, err)
	}
	if blk == nil {
		blk = &treefile.Block{}
	}
	now = now.UTC().Round(0)
	sig := ed25519.Sign(k.key, Message(k.Name, name, now, body))
	s := treefile.Signature{Key: k.Name, Tree: name, Signed: now, Sig: base64.StdEncoding.EncodeToString(sig)}
	kept := blk.Signatures[:0]
	for _, o := range blk.Signatures {
		if o.Key != k.Name {
			kept = append(kept, o)
		}
	}
	blk.Signatures = append(kept, s)
	out, err := treefile.Join(blk, body)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", name, err)
	}
	return out, nil
}

// Signer is the signature a tree was accepted by.
type Signer struct {
	Key    string    `json:"key"`
	Signed time.Time `json:"signed,omitzero"`
}

// Policy is a set of trusted public keys. The zero Policy (or nil) trusts
// nothing and enforces nothing: Enforced is false.
type Policy struct {
	keys map[string]ed25519.PublicKey
}

// NewPolicy parses trusted key lines. An error names the bad entry by its
// position (from 1) and never quotes more than the key's name.
func NewPolicy(lines []string) (*Policy, error) {
	p := &Policy{keys: map[string]ed25519.PublicKey{}}
	for i, l := range lines {
		k, err := ParsePublicKey(l)
		if err != nil {
			return nil, fmt.Errorf("trusted key %d: %w", i+1, err)
		}
		if old, ok := p.keys[k.Name]; ok && !bytes.Equal(old, k.Key) {
			return nil, fmt.Errorf("trusted key %d: %w: two different keys named %s", i+1, ErrBadKey, k.Name)
		}
		p.keys[k.Name] = k.Key
	}
	return p, nil
}

// Enforced reports whether any key is trusted: then unsigned trees are
// refused.
func (p *Policy) Enforced() bool { return p != nil && len(p.keys) > 0 }

// Names lists the trusted keys' names, sorted.
func (p *Policy) Names() []string {
	var out []string
	if p != nil {
		for n := range p.keys {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Keys returns the trusted keys' lines, NAME:<base64>, sorted by name.
func (p *Policy) Keys() []string {
	var out []string
	for _, n := range p.Names() {
		out = append(out, PublicKey{Name: n, Key: p.keys[n]}.String())
	}
	return out
}

// Verify checks that raw, the object of trees/<name>, carries a valid
// signature by a trusted key made for name, and returns the first such
// signer. Otherwise the error wraps ErrUntrusted and says why: unsigned,
// signed only by untrusted keys, signed for another name, altered after
// signing, or a block that does not parse (also treefile.ErrFormat). With
// no trusted key at all, Verify accepts any tree whose block parses, and
// returns no signer.
func Verify(p *Policy, name string, raw []byte) (*Signer, error) {
	blk, body, err := treefile.Split(raw)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w (%w)", name, ErrUntrusted, err)
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("tree %s: %w: %s", name, ErrUntrusted, fmt.Sprintf(format, args...))
	}
	if !p.Enforced() {
		// Nothing checked, so no signer to report: "signed by" is only
		// ever said of a verified signature.
		return nil, nil
	}
	if blk == nil {
		return nil, refuse("not signed (trusted keys: %s)", strings.Join(p.Names(), ", "))
	}
	var untrusted, otherName, altered, malformed []string
	for _, s := range blk.Signatures {
		pub, ok := p.keys[s.Key]
		if !ok {
			untrusted = append(untrusted, quote(s.Key))
			continue
		}
		sig, err := base64.StdEncoding.Strict().DecodeString(s.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize {
			malformed = append(malformed, s.Key)
			continue
		}
		if s.Tree != name {
			otherName = append(otherName, fmt.Sprintf("%s for %s", s.Key, quote(s.Tree)))
			continue
		}
		if !ed25519.Verify(pub, Message(s.Key, s.Tree, s.Signed, body), sig) {
			altered = append(altered, s.Key)
			continue
		}
		return &Signer{Key: s.Key, Signed: s.Signed.UTC()}, nil
	}
	switch {
	case len(altered) > 0:
		return nil, refuse("the signature by %s does not match the tree (altered after signing, or signed over other bytes)", strings.Join(altered, ", "))
	case len(otherName) > 0:
		return nil, refuse("signed for another tree name (%s): a tree cannot be replayed under another name", strings.Join(otherName, ", "))
	case len(malformed) > 0:
		return nil, refuse("the signature by %s does not parse (truncated?)", strings.Join(malformed, ", "))
	}
	return nil, refuse("signed only by untrusted keys (%s; trusted: %s)", strings.Join(untrusted, ", "), strings.Join(p.Names(), ", "))
}

// quote shows a key or tree name from a block (untrusted input) safely
// and briefly.
func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// HasSignature reports whether raw carries a valid signature by pub made
// for name: a push with that key has nothing to add.
func HasSignature(raw []byte, name string, pub PublicKey) bool {
	p := &Policy{keys: map[string]ed25519.PublicKey{pub.Name: pub.Key}}
	s, err := Verify(p, name, raw)
	return err == nil && s != nil
}

// Signatures returns raw's signatures as recorded, unverified (for
// listing), or nil for an unsigned tree.
func Signatures(raw []byte) ([]treefile.Signature, error) {
	blk, _, err := treefile.Split(raw)
	if err != nil || blk == nil {
		return nil, err
	}
	return blk.Signatures, nil
}
