package fs

// PassthroughFd lets the kernel read the blob directly (FUSE passthrough)
// where it and the server's privileges allow; go-fuse falls back to Read
// quietly where they do not.
func (b *blobFile) PassthroughFd() (int, bool) { return int(b.f.Fd()), true }
