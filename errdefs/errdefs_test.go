package errdefs

import (
	"errors"
	"io/fs"
	"testing"
)

// TestNewf: the message is exactly the text (no kind prefix), the kind and
// a wrapped cause both match errors.Is.
func TestNewf(t *testing.T) {
	err := Newf(ErrBusy, "gc: another gc is running: %w", fs.ErrExist)
	if err.Error() != "gc: another gc is running: file already exists" {
		t.Errorf("message %q", err)
	}
	if !errors.Is(err, ErrBusy) || !errors.Is(err, fs.ErrExist) || errors.Is(err, ErrQuota) {
		t.Errorf("errors.Is: busy %v, cause %v, quota %v", errors.Is(err, ErrBusy), errors.Is(err, fs.ErrExist), errors.Is(err, ErrQuota))
	}
}
