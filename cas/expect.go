package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrMismatch marks content whose hash or size is not the one it was
// announced with (a blob downloaded from a remote that does not match its
// name).
var ErrMismatch = errors.New("content does not match its name")

// PutExpect is Batch.Put for content that claims to be want: it hashes the
// bytes while writing them to a temp file and stores them only when their
// hash and size are want's. On a mismatch nothing is stored, the temp file
// is removed and the error wraps ErrMismatch. At most want.Size+1 bytes are
// read, so an oversized source cannot fill the disk.
func (b *Batch) PutExpect(ctx context.Context, r io.Reader, want Key) (PutResult, error) {
	return b.putExpect(ctx, r, want, b.has)
}

// PutFetched is PutExpect for content its caller has just found missing
// from the store (a pull's download): it skips the store's existence
// check, an lstat per blob (22k in a cold pull of the npm fixture), and
// checks only this batch's pending blobs. A blob another writer stores
// meanwhile is still deduplicated, when the temp file is given its name.
func (b *Batch) PutFetched(ctx context.Context, r io.Reader, want Key) (PutResult, error) {
	return b.putExpect(ctx, r, want, b.pendingHas)
}

func (b *Batch) putExpect(ctx context.Context, r io.Reader, want Key, present func(Key) bool) (PutResult, error) {
	tmp, k, err := b.s.write(ctx, io.LimitReader(r, want.Size+1), want.Exec, present)
	if err != nil {
		return PutResult{}, err
	}
	if k != want {
		if tmp != nil {
			discard(tmp)
		}
		return PutResult{}, fmt.Errorf("%w: expected %s, got %d bytes hashing to %s", ErrMismatch, want.Name(), k.Size, k.Hex())
	}
	if tmp == nil {
		return PutResult{Key: k}, nil
	}
	sl, err := b.s.seal(tmp, k)
	if err != nil {
		return PutResult{}, err
	}
	return b.add(k, sl, k.Size)
}
