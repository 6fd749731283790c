package rpc

import (
	"bytes"
	"fmt"
	"io"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func sprintf(format string, v ...any) string { return fmt.Sprintf(format, v...) }
