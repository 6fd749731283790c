// zlevel measures what each zstd level makes of a tree's files, one frame
// per file as a team-cache push writes them: bytes and time, for files up
// to 1 MiB (packed) and larger ones (zstd objects). It chose pack.Level.
//
//	go run ./internal/tools/zlevel ~/.cache/vrift/npm-fixture/base/node_modules
package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
)

func main() {
	var files [][]byte
	var raw, rawSmall int64
	filepath.WalkDir(os.Args[1], func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			files = append(files, b)
			raw += int64(len(b))
			if len(b) <= 1<<20 {
				rawSmall += int64(len(b))
			}
		}
		return nil
	})
	fmt.Printf("%d files, %d bytes (%d in files <= 1 MiB)\n", len(files), raw, rawSmall)
	for _, lvl := range []zstd.EncoderLevel{zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
		var small, large int64
		var ts, tl time.Duration
		for _, b := range files {
			s := time.Now()
			n := int64(len(enc.EncodeAll(b, nil)))
			if len(b) <= 1<<20 {
				small += n
				ts += time.Since(s)
			} else {
				large += n
				tl += time.Since(s)
			}
		}
		fmt.Printf("%-8v small %d (%.1f%%) in %v, large %d (%.1f%%) in %v, total %d\n", lvl, small, 100*float64(small)/float64(rawSmall), ts.Round(time.Millisecond), large, 100*float64(large)/float64(raw-rawSmall), tl.Round(time.Millisecond), small+large)
	}
}
