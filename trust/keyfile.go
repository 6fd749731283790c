package trust

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// maxKeyFile bounds a secret key file (one line of about 130 bytes).
const maxKeyFile = 4 << 10

// DefaultSecretPath is where `vrift key generate NAME` puts the secret key:
// os.UserConfigDir()/vrift/keys/NAME.secret ("" when there is no config
// directory).
func DefaultSecretPath(name string) string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "vrift", "keys", name+".secret")
}

// WriteSecretKey writes k to path, readable by its owner only (0600),
// atomically and never over an existing file (a key overwritten by
// mistake cannot be recovered). Missing parent directories are made 0700.
func WriteSecretKey(path string, k SecretKey) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secret key: %w", err)
	}
	f, err := os.CreateTemp(dir, ".vrift-key-*")
	if err != nil {
		return fmt.Errorf("secret key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	// CreateTemp makes it 0600 already; say so, whatever the umask.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(k.marshal())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("secret key %s: %w", path, err)
	}
	// link(2), unlike rename, fails if path exists.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("secret key %s: already exists (remove it first, or pass --out)", path)
		}
		return fmt.Errorf("secret key: %w", err)
	}
	return nil
}

// LoadSecretKey reads a secret key file. A file that group or others may
// read or write, a symlink or a non-regular file is refused before it is
// read; errors never quote its contents.
func LoadSecretKey(path string) (SecretKey, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return SecretKey{}, fmt.Errorf("%w: secret key %s: a symlink (name the file itself)", ErrBadKey, path)
		}
		return SecretKey{}, fmt.Errorf("secret key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return SecretKey{}, fmt.Errorf("secret key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return SecretKey{}, fmt.Errorf("%w: secret key %s: not a regular file", ErrBadKey, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return SecretKey{}, fmt.Errorf("%w: secret key %s is accessible by group or others (mode %04o): run chmod 600 %s, and consider the key leaked if others could read it", ErrBadKey, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return SecretKey{}, fmt.Errorf("secret key: %w", err)
	}
	if len(b) > maxKeyFile {
		return SecretKey{}, fmt.Errorf("%w: secret key %s: larger than %d bytes", ErrBadKey, path, maxKeyFile)
	}
	k, err := parseSecretKey(b)
	if err != nil {
		return SecretKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
