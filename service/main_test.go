package service

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the daemon's manifest reader
// child (see RunChild), as the daemon's own binary does.
func TestMain(m *testing.M) {
	if code, ran := RunChild(); ran {
		os.Exit(code)
	}
	os.Exit(m.Run())
}
