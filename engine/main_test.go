package engine_test

import (
	"os"
	"testing"

	"github.com/vrift/vrift/service"
)

// TestMain lets the test binary serve as the in-process daemon's manifest
// reader child (service.RunChild), as vrift-daemon's own binary does.
func TestMain(m *testing.M) {
	if code, ran := service.RunChild(); ran {
		os.Exit(code)
	}
	os.Exit(m.Run())
}
