package pack

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Level is the compression level of frames, chosen by measurement
// (internal/tools/zlevel) on the npm fixture, 26k files, 374 MB, one frame
// per file, against its 83 MB zstd -3 tarball (which compresses across
// files): Default 105 MB (1.27x the tarball), Better 99 MB (1.20x), Best
// 94 MB (1.13x). Best took 5x Better's CPU (about 2.7 min on one core
// under load 13-17, against 26 s), paid once per blob by the pusher; the
// bytes are paid by every pull, and decoding costs the same at every
// level. The target was <= 1.2x the tarball's bytes.
const Level = zstd.SpeedBestCompression

// maxWindow bounds the memory a frame's decoder may need. A blob of up to
// LargeBlob bytes never needs more; big zstd objects are decoded with
// their own limit (NewDecoder).
const maxWindow = 8 << 20

// NewEncoder returns an encoder whose EncodeAll makes one frame per call,
// with the content size and a checksum, safe for jobs concurrent calls.
func NewEncoder(jobs int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(Level), zstd.WithEncoderConcurrency(max(jobs, 1)),
		zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
}

// NewDecoder returns a streaming decoder for one goroutine, bounded to a
// window of maxWindow (big objects: window), so a hostile frame cannot
// make it allocate more.
func NewDecoder(window uint64) (*zstd.Decoder, error) {
	if window == 0 {
		window = maxWindow
	}
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(window),
		zstd.WithDecoderMaxMemory(window*2))
}

// Frame decodes the frame of length bytes at the front of r: the returned
// reader yields its content, cut at size+1 bytes (so content longer than
// the blob it claims to be fails the blob's size check instead of filling
// a disk), and done reads whatever of the frame the decoder left unread,
// leaving r just past the frame.
func Frame(dec *zstd.Decoder, r io.Reader, length, size int64) (content io.Reader, done func() error, err error) {
	lr := &io.LimitedReader{R: r, N: length}
	if err := dec.Reset(lr); err != nil {
		return nil, nil, fmt.Errorf("frame: %w", err)
	}
	done = func() error {
		if _, err := io.Copy(io.Discard, lr); err != nil {
			return err
		}
		return nil
	}
	return io.LimitReader(dec, size+1), done, nil
}
