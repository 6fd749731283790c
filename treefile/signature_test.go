package treefile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/manifest"
)

func sigBlock() *Block {
	return &Block{Signatures: []Signature{{Key: "ci-1", Tree: "npm-a", Signed: time.Unix(1700000000, 5).UTC(), Sig: "AAAA"}}}
}

// A signed object still decodes with a plain zstd reader (the block is a
// skippable frame), and Split gives back the block and the exact body.
func TestSignatureSplitJoin(t *testing.T) {
	body := encode(t, sample())
	raw, err := Join(sigBlock(), body)
	if err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint32(raw) != SignatureMagic {
		t.Fatal("no skippable frame in front")
	}
	n := 0
	if _, err := Read(bytes.NewReader(raw), func(string, manifest.Entry) error { n++; return nil }); err != nil || n != len(sample()) {
		t.Fatalf("signed object through Read: %d entries, %v", n, err)
	}
	blk, got, err := Split(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) || len(blk.Signatures) != 1 || blk.Signatures[0] != sigBlock().Signatures[0] {
		t.Fatalf("split: %+v, body equal %v", blk, bytes.Equal(got, body))
	}
	// An unsigned object splits into no block and itself.
	if blk, got, err := Split(body); err != nil || blk != nil || !bytes.Equal(got, body) {
		t.Fatalf("unsigned: %v %v", blk, err)
	}
	if _, err := Join(sigBlock(), raw); !errors.Is(err, ErrSignatureBlock) {
		t.Fatalf("join over a signed object: %v", err)
	}
}

func frame(data []byte, n uint32) []byte {
	b := make([]byte, 8, 8+len(data))
	binary.LittleEndian.PutUint32(b, SignatureMagic)
	binary.LittleEndian.PutUint32(b[4:], n)
	return append(b, data...)
}

func TestSignatureSplitBad(t *testing.T) {
	body := encode(t, sample())
	signed, _ := Join(sigBlock(), body)
	many := &Block{}
	for i := 0; i <= MaxSignatures; i++ {
		many.Signatures = append(many.Signatures, sigBlock().Signatures[0])
	}
	manyJSON := []byte(`{"signatures":[` + strings.Repeat(`{"key":"k","tree":"t","signed":"2026-01-01T00:00:00Z","sig":"AA"},`, MaxSignatures) +
		`{"key":"k","tree":"t","signed":"2026-01-01T00:00:00Z","sig":"AA"}]}`)
	for _, c := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"short header", []byte{0x5e, 0x2a, 0x4d, 0x18, 1}, "truncated frame header"},
		{"huge block", append(frame(nil, MaxSignatureBlock+1), body...), "at most 65536"},
		{"length past the end", frame([]byte(`{}`), 1000), "truncated"},
		{"cut inside the block", signed[:20], "truncated"},
		{"not JSON", append(frame([]byte("garbage"), 7), body...), "invalid character"},
		{"unknown field", append(frame([]byte(`{"signatures":[],"x":1}`), 23), body...), "unknown field"},
		{"no signatures", append(frame([]byte(`{"signatures":[]}`), 17), body...), "no signatures"},
		{"too many", append(frame(manyJSON, uint32(len(manyJSON))), body...), "at most 16"},
		{"no body", frame([]byte(`{"signatures":[{"key":"k"}]}`), 28), "no tree after it"},
		{"two blocks", append(frame([]byte(`{"signatures":[{"key":"k"}]}`), 28), signed...), "second signature block"},
		{"bad time", append(frame([]byte(`{"signatures":[{"signed":"x"}]}`), 31), body...), "cannot parse"},
	} {
		_, _, err := Split(c.raw)
		if !errors.Is(err, ErrSignatureBlock) || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want %q)", c.name, err, c.want)
		}
	}
	if _, err := Join(many, body); !errors.Is(err, ErrSignatureBlock) {
		t.Errorf("join of %d signatures: %v", len(many.Signatures), err)
	}
}

func FuzzSignatureSplit(f *testing.F) {
	var body []byte
	{
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, Header{})
		_ = w.Close()
		body = buf.Bytes()
	}
	signed, _ := Join(sigBlock(), body)
	f.Add(signed)
	f.Add(body)
	f.Add(frame([]byte(`{"signatures":[{"key":"a","tree":"b","signed":"2026-01-01T00:00:00Z","sig":"AA=="}]}`), 81))
	f.Add(frame(nil, 1<<31))
	f.Fuzz(func(t *testing.T, raw []byte) {
		blk, rest, err := Split(raw)
		if err != nil {
			if !errors.Is(err, ErrSignatureBlock) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		if blk == nil {
			if !bytes.Equal(rest, raw) {
				t.Fatal("unsigned object changed")
			}
			return
		}
		if len(blk.Signatures) == 0 || len(blk.Signatures) > MaxSignatures || len(rest) == 0 {
			t.Fatalf("accepted %d signatures, %d body bytes", len(blk.Signatures), len(rest))
		}
		// What parses joins back to an object that splits the same.
		again, err := Join(blk, rest)
		if err != nil {
			t.Fatal(err)
		}
		blk2, rest2, err := Split(again)
		if err != nil || !bytes.Equal(rest2, rest) || len(blk2.Signatures) != len(blk.Signatures) {
			t.Fatalf("rejoined object: %v", err)
		}
	})
}
