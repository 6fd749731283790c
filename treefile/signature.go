package treefile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// A signed tree object is one zstd skippable frame holding the signature
// block, then the tree body (the zstd frame Writer writes). Standard zstd
// decoders skip a skippable frame, so the body still decodes; a signed
// body's header is version 2 or later, so a reader that predates
// signatures (version 1 only) refuses it instead of ignoring them. See
// docs/tree-format.md, "Signatures".

// SignatureMagic is the skippable frame's magic number (little-endian on
// the wire): 0x184D2A5E, one of the sixteen zstd reserves for skippable
// frames.
const SignatureMagic = 0x184D2A5E

// Bounds of a signature block: a signature entry is about 200 bytes, so
// these leave room for key rotation while refusing a block that could only
// be an attack, before any of it is parsed.
const (
	MaxSignatureBlock = 64 << 10
	MaxSignatures     = 16
)

// ErrSignatureBlock marks a signature block that is malformed, truncated
// or too large.
var ErrSignatureBlock = errors.New("bad tree signature block")

// Signature is one signature of a tree body: key names the signing key
// (as in its public key line NAME:<base64>), Tree the name the tree was
// signed for, Signed when, and Sig the ed25519 signature (base64) of the
// message package trust builds from them and the body.
type Signature struct {
	Key    string    `json:"key"`
	Tree   string    `json:"tree"`
	Signed time.Time `json:"signed"`
	Sig    string    `json:"sig"`
}

// Block is the signature block's JSON.
type Block struct {
	Signatures []Signature `json:"signatures"`
}

// frameHeader is the skippable frame's magic and length.
const frameHeader = 8

// Split separates a tree object into its signature block (nil if the
// object is unsigned) and its body. A block that is malformed, truncated,
// larger than MaxSignatureBlock, empty or holding more than MaxSignatures
// signatures is an error wrapping ErrSignatureBlock (and ErrFormat); the
// length is checked before anything of the block is parsed.
func Split(raw []byte) (*Block, []byte, error) {
	if len(raw) < 4 || binary.LittleEndian.Uint32(raw) != SignatureMagic {
		return nil, raw, nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %w: %s", ErrFormat, ErrSignatureBlock, fmt.Sprintf(format, args...))
	}
	if len(raw) < frameHeader {
		return nil, nil, bad("truncated frame header")
	}
	n := binary.LittleEndian.Uint32(raw[4:])
	if n > MaxSignatureBlock {
		return nil, nil, bad("%d bytes (at most %d)", n, MaxSignatureBlock)
	}
	if uint64(len(raw)-frameHeader) < uint64(n) {
		return nil, nil, bad("truncated: %d of %d bytes", len(raw)-frameHeader, n)
	}
	data, body := raw[frameHeader:frameHeader+n], raw[frameHeader+n:]
	var blk Block
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&blk); err != nil {
		return nil, nil, bad("%v", err)
	}
	if dec.More() {
		return nil, nil, bad("data after the JSON")
	}
	if len(blk.Signatures) == 0 {
		return nil, nil, bad("no signatures")
	}
	if len(blk.Signatures) > MaxSignatures {
		return nil, nil, bad("%d signatures (at most %d)", len(blk.Signatures), MaxSignatures)
	}
	if len(body) == 0 {
		return nil, nil, bad("no tree after it")
	}
	if len(body) >= 4 && binary.LittleEndian.Uint32(body) == SignatureMagic {
		return nil, nil, bad("a second signature block")
	}
	return &blk, body, nil
}

// Join prepends blk to body (a body without a block). A nil or empty
// block returns body unchanged.
func Join(blk *Block, body []byte) ([]byte, error) {
	if blk == nil || len(blk.Signatures) == 0 {
		return body, nil
	}
	if len(blk.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("%w: %d signatures (at most %d)", ErrSignatureBlock, len(blk.Signatures), MaxSignatures)
	}
	if len(body) >= 4 && binary.LittleEndian.Uint32(body) == SignatureMagic {
		return nil, fmt.Errorf("%w: the body is already signed", ErrSignatureBlock)
	}
	data, err := json.Marshal(blk)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignatureBlock, err)
	}
	if len(data) > MaxSignatureBlock {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrSignatureBlock, len(data), MaxSignatureBlock)
	}
	out := make([]byte, frameHeader, frameHeader+len(data)+len(body))
	binary.LittleEndian.PutUint32(out, SignatureMagic)
	binary.LittleEndian.PutUint32(out[4:], uint32(len(data)))
	out = append(out, data...)
	return append(out, body...), nil
}
