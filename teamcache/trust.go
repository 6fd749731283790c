package teamcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/treefile"
	"github.com/vrift/vrift/trust"
)

// TrustOptions are a transfer's signing and trust settings (docs/
// team-cache-trust.md).
type TrustOptions struct {
	// SignKey, if set, signs every tree a push publishes.
	SignKey *trust.SecretKey
	// Policy holds the trusted keys: once it has any, a pull refuses a
	// tree it does not accept before fetching a single blob.
	Policy *trust.Policy
	// AllowUnsigned pulls a tree the policy refuses (but not one whose
	// signature block does not parse), after calling Warn with why.
	AllowUnsigned bool
	// Warn shows the --allow-unsigned warning (default: none).
	Warn func(msg string)
}

// CheckTree applies the policy to raw, the object of trees/<name>, and
// returns the signature it was accepted by (nil for an unsigned tree
// accepted because no key is trusted, or by AllowUnsigned). A refusal
// wraps trust.ErrUntrusted and names the tree and the reason.
func (o TrustOptions) CheckTree(name string, raw []byte) (*trust.Signer, error) {
	s, err := trust.Verify(o.Policy, name, raw)
	if err != nil && o.AllowUnsigned && errors.Is(err, trust.ErrUntrusted) && !errors.Is(err, treefile.ErrFormat) {
		if o.Warn != nil {
			o.Warn(fmt.Sprintf("WARNING: --allow-unsigned: pulling a tree the trusted keys refuse (%v). Its files may be anyone's code: do not run them unless you know where they came from.", err))
		}
		return nil, nil
	}
	return s, err
}

// MergeSignatures merges the signatures of tree (a signed object about to
// be pushed as name) into old (the object already there). same reports
// whether both have the same body and old's block parses: only then is
// merged meaningful. changed reports whether tree brings a key that had
// not signed old for name; then merged is old's body with both blocks'
// signatures, to write back instead of re-sending the tree. A key that
// signed old for name keeps its signature there (without the keys'
// public halves neither can be checked here; a pull checks).
func MergeSignatures(old, tree []byte, name string) (merged []byte, same, changed bool) {
	blk, body, err := treefile.Split(tree)
	if err != nil || blk == nil {
		return nil, false, false
	}
	oldBlk, oldBody, err := treefile.Split(old)
	if err != nil || oldBlk == nil || !bytes.Equal(oldBody, body) {
		return nil, false, false
	}
	out := &treefile.Block{Signatures: oldBlk.Signatures}
	for _, s := range blk.Signatures {
		if !hasKey(oldBlk, s.Key, name) {
			out.Signatures = append(out.Signatures, s)
		}
	}
	if len(out.Signatures) == len(oldBlk.Signatures) {
		return old, true, false
	}
	if len(out.Signatures) > treefile.MaxSignatures {
		return nil, false, false // too many to keep: the push replaces the tree
	}
	if merged, err = treefile.Join(out, body); err != nil {
		return nil, false, false
	}
	return merged, true, true
}

func hasKey(blk *treefile.Block, key, name string) bool {
	for _, s := range blk.Signatures {
		if s.Key == key && s.Tree == name {
			return true
		}
	}
	return false
}

// SignUnchanged finishes a signed push that found old, the object already
// at trees/<name>, to hold the tree it would publish: nothing is written
// if k already signed old for name (the push costs the one GET that read
// old), else k's signature is added to old's block (its body and other
// signatures kept, no blob sent) and written back.
func SignUnchanged(ctx context.Context, b remote.Backend, name string, old []byte, k trust.SecretKey, res *Result) error {
	if trust.HasSignature(old, name, k.Public()) {
		return nil
	}
	resigned, err := trust.Sign(old, name, k, time.Now())
	if err != nil {
		return err
	}
	if err := b.Put(ctx, TreeKey(name), bytes.NewReader(resigned), int64(len(resigned))); err != nil {
		return err
	}
	res.Trees, res.BytesSent = 1, res.BytesSent+int64(len(resigned))
	return nil
}

// SignRemote adds k's signature to trees/<name> without touching its
// body or blobs. The tree must pass opts' policy first (so a second key
// only ever vouches for what a trusted key already vouched for, unless
// opts allow unsigned), and must decode.
func SignRemote(ctx context.Context, b remote.Backend, name string, k trust.SecretKey, opts TrustOptions) (*trust.Signer, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	_, raw, err := FetchTree(ctx, b, name)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if _, err := opts.CheckTree(name, raw); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	now := time.Now().UTC()
	signed, err := trust.Sign(raw, name, k, now)
	if err != nil {
		return nil, err
	}
	if err := b.Put(ctx, TreeKey(name), bytes.NewReader(signed), int64(len(signed))); err != nil {
		return nil, fmt.Errorf("sign %s: %w", name, err)
	}
	return &trust.Signer{Key: k.Name, Signed: now.Round(0)}, nil
}

// ReadSignatures returns the signatures recorded in trees/<name>, as they
// are (unverified: a pull verifies), reading only the object's signature
// block (at most 64 KiB), not its body. An unsigned tree has none.
func ReadSignatures(ctx context.Context, b remote.Backend, name string) ([]treefile.Signature, error) {
	rc, err := b.Get(ctx, TreeKey(name))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	head := make([]byte, 8, 8+treefile.MaxSignatureBlock+4)
	if _, err := io.ReadFull(rc, head); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, nil // too short to be signed; a pull says what is wrong
		}
		return nil, err
	}
	if n := binary.LittleEndian.Uint32(head); n == treefile.SignatureMagic {
		size := binary.LittleEndian.Uint32(head[4:])
		if size <= treefile.MaxSignatureBlock {
			// The block and the start of the body (Split wants one).
			rest, err := io.ReadAll(io.LimitReader(rc, int64(size)+4))
			if err != nil {
				return nil, err
			}
			head = append(head, rest...)
		}
	}
	blk, _, err := treefile.Split(head)
	if err != nil || blk == nil {
		return nil, err
	}
	return blk.Signatures, nil
}
