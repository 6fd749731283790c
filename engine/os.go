package engine

import "runtime"

const isDarwin = runtime.GOOS == "darwin"
