package pack

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// BenchmarkFrames decodes a pack of 1,000 small frames (4 KiB of text
// each, as node_modules is mostly), one Frame call each, as a pull does.
func BenchmarkFrames(b *testing.B) {
	enc, _ := NewEncoder(1)
	var bld Builder
	for i := range 1000 {
		data := bytes.Repeat([]byte(fmt.Sprintf("module.exports.f%d = function () {}\n", i)), 110)
		bld.Add(keyOf(data, false), enc.EncodeAll(data, nil))
	}
	_, data, ix, _ := bld.Finish()
	dec, _ := NewDecoder(0)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		r := bytes.NewReader(data)
		for _, e := range ix.Entries {
			content, done, err := Frame(dec, r, e.Length, e.Key.Size)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, content); err != nil {
				b.Fatal(err)
			}
			done()
		}
	}
}
