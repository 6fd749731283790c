package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/PowerDNS/lmdb-go/lmdb"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/vrift/vrift/service"
)

func writeRawManifest(path string, keys []string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	env, err := lmdb.NewEnv()
	if err != nil {
		return err
	}
	defer env.Close()
	env.SetMaxDBs(4)
	if err := env.Open(path, lmdb.NoSubdir, 0o644); err != nil {
		return err
	}
	// A directory entry: version 1, kind 1 (dir), mode 0755, mtime 0.
	val := []byte{1, 1}
	val = binary.LittleEndian.AppendUint32(val, 0o755)
	val = binary.LittleEndian.AppendUint64(val, 0)
	return env.Update(func(txn *lmdb.Txn) error {
		db, err := txn.CreateDBI("entries")
		if err != nil {
			return err
		}
		if _, err := txn.CreateDBI("meta"); err != nil {
			return err
		}
		for _, k := range keys {
			if err := txn.Put(db, []byte(k), val, 0); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestMain(m *testing.M) {
	// The in-process daemons of some tests re-run this binary as their
	// manifest reader (service.RunChild), as vrift-daemon does.
	if code, ran := service.RunChild(); ran {
		os.Exit(code)
	}
	testscript.Main(m, map[string]func(){
		"vrift": func() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the end-to-end CLI scenarios in testdata/script: each is a
// real vrift process against a real store and project in a temp dir.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("VRIFT_STORE", filepath.Join(env.WorkDir, "store"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// mkfifo PATH
			"mkfifo": func(ts *testscript.TestScript, neg bool, args []string) {
				ts.Check(syscall.Mkfifo(ts.MkAbs(args[0]), 0o644))
			},
			// mksocket PATH: a unix socket file, left behind.
			"mksocket": func(ts *testscript.TestScript, neg bool, args []string) {
				fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
				ts.Check(err)
				defer syscall.Close(fd)
				ts.Check(syscall.Bind(fd, &syscall.SockaddrUnix{Name: ts.MkAbs(args[0])}))
			},
			// mksparse PATH SIZE: a file of SIZE bytes that is all hole but
			// for one byte at the end.
			"mksparse": func(ts *testscript.TestScript, neg bool, args []string) {
				size, err := strconv.ParseInt(args[1], 10, 64)
				ts.Check(err)
				f, err := os.Create(ts.MkAbs(args[0]))
				ts.Check(err)
				_, err = f.WriteAt([]byte{1}, size-1)
				ts.Check(err)
				ts.Check(f.Close())
			},
			// mkbytename DIR HEX: a file in DIR whose name is the given
			// bytes (for names that are not UTF-8).
			"mkbytename": func(ts *testscript.TestScript, neg bool, args []string) {
				var name []byte
				_, err := fmt.Sscanf(args[1], "%x", &name)
				ts.Check(err)
				ts.Check(os.WriteFile(filepath.Join(ts.MkAbs(args[0]), string(name)), []byte("odd name\n"), 0o644))
			},
			// chmod MODE PATH (octal), since the script's chmod is not recursive
			"chmodr": func(ts *testscript.TestScript, neg bool, args []string) {
				mode, err := strconv.ParseUint(args[0], 8, 32)
				ts.Check(err)
				ts.Check(os.Chmod(ts.MkAbs(args[1]), os.FileMode(mode)))
			},
			// mkbadmanifest PATH KEY...: a manifest holding directory
			// entries under the given raw keys, written with LMDB directly
			// because the manifest package refuses unsafe keys.
			"mkbadmanifest": func(ts *testscript.TestScript, neg bool, args []string) {
				ts.Check(writeRawManifest(ts.MkAbs(args[0]), args[1:]))
			},
			// corrupt PATH: flip the first byte of the blob PATH links to,
			// through its read-only mode.
			"corrupt": func(ts *testscript.TestScript, neg bool, args []string) {
				p, err := filepath.EvalSymlinks(ts.MkAbs(args[0]))
				ts.Check(err)
				ts.Check(os.Chmod(p, 0o644))
				b, err := os.ReadFile(p)
				ts.Check(err)
				b[0] ^= 0xff
				ts.Check(os.WriteFile(p, b, 0o644))
				ts.Check(os.Chmod(p, 0o444))
			},
		},
	})
}
