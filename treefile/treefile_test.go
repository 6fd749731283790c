package treefile

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/vrift/vrift/manifest"
)

type rec struct {
	p string
	e manifest.Entry
}

func sample() []rec {
	var sum [32]byte
	sum[0], sum[31] = 0xab, 0x01
	return []rec{
		{".", manifest.Entry{Kind: manifest.Dir, Mode: 0o755, MTime: 1}},
		{"-dash", manifest.Entry{Kind: manifest.File, Mode: 0o644, MTime: 2, Size: 0, Sum: sum}},
		{"bin", manifest.Entry{Kind: manifest.Dir, Mode: 0o2755, MTime: 3}},
		{"bin/run", manifest.Entry{Kind: manifest.File, Mode: 0o755, MTime: 4, Size: 12, Sum: sum}},
		{"bin/\xff\xfename", manifest.Entry{Kind: manifest.Symlink, Mode: 0o777, MTime: 5, Target: []byte("../\xfetarget")}},
		{"link", manifest.Entry{Kind: manifest.Symlink, Mode: 0o777, MTime: -6, Target: []byte("bin/run")}},
	}
}

func encode(t *testing.T, recs []rec) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Created: time.Unix(1700000000, 0).UTC(), Subtrees: []string{"bin"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Add(r.p, r.e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	in := sample()
	raw := encode(t, in)
	var out []rec
	h, err := Read(bytes.NewReader(raw), func(p string, e manifest.Entry) error {
		out = append(out, rec{p, e})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != Version || len(h.Subtrees) != 1 || !h.Created.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("header %+v", h)
	}
	if len(out) != len(in) {
		t.Fatalf("%d entries back, want %d", len(out), len(in))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.p != b.p || a.e.Kind != b.e.Kind || a.e.Mode != b.e.Mode || a.e.MTime != b.e.MTime ||
			a.e.Size != b.e.Size || a.e.Sum != b.e.Sum || !bytes.Equal(a.e.Target, b.e.Target) {
			t.Errorf("entry %d: %q %+v != %q %+v", i, a.p, a.e, b.p, b.e)
		}
	}
	// Deterministic: the same input encodes to the same bytes.
	if !bytes.Equal(raw, encode(t, in)) {
		t.Error("encoding is not deterministic")
	}
}

// rewrite decompresses a tree, applies f to its text and recompresses it.
func rewrite(t *testing.T, raw []byte, f func([]byte) []byte) []byte {
	t.Helper()
	zr, _ := zstd.NewReader(nil)
	plain, err := zr.DecodeAll(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := zstd.NewWriter(nil)
	return zw.EncodeAll(f(plain), nil)
}

func TestRejects(t *testing.T) {
	raw := encode(t, sample())
	lines := func(b []byte) [][]byte { return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) }
	cases := map[string][]byte{
		"truncated object": raw[:len(raw)/2],
		"no trailer": rewrite(t, raw, func(b []byte) []byte {
			l := lines(b)
			return bytes.Join(l[:len(l)-1], nil)
		}),
		"entry dropped": rewrite(t, raw, func(b []byte) []byte {
			l := lines(b)
			return bytes.Join(append(append([][]byte{}, l[:2]...), l[3:]...), nil)
		}),
		"future version": rewrite(t, raw, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"version":2`), []byte(`"version":3`), 1)
		}),
		"escaping path": rewrite(t, raw, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"p":"link"`), []byte(`"p":"../../etc/passwd"`), 1)
		}),
		"exec flag lies": rewrite(t, raw, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"m":"755","t":4`), []byte(`"m":"644","t":4`), 1)
		}),
		"not a tree": []byte("hello"),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(data), func(string, manifest.Entry) error { return nil })
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
		})
	}
}

var packA = strings.Repeat("a1", 32)
var packB = strings.Repeat("b2", 32)

// encodeAt encodes sample() with locations on its files.
func encodeAt(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Created: time.Unix(1700000000, 0).UTC(), Packs: []string{packA, packB}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sample() {
		var where Where
		switch r.p {
		case "-dash":
			where = Where{Zstd: true}
		case "bin/run":
			where = Where{Pack: packB, Offset: 1 << 20, Length: 9}
		}
		if err := w.AddAt(r.p, r.e, where); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLocations(t *testing.T) {
	raw := encodeAt(t)
	got := map[string]Where{}
	h, err := ReadTree(bytes.NewReader(raw), func(p string, _ manifest.Entry, w Where) error {
		got[p] = w
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Packs) != 2 || got["-dash"] != (Where{Zstd: true}) ||
		got["bin/run"] != (Where{Pack: packB, Offset: 1 << 20, Length: 9}) || got["link"] != (Where{}) {
		t.Fatalf("header packs %v, locations %+v", h.Packs, got)
	}
	// A pack the header does not name cannot be written.
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{})
	if err := w.AddAt("f", sample()[1].e, Where{Pack: packA, Length: 1}); err == nil {
		t.Error("wrote a location in an unnamed pack")
	}
	if _, err := NewWriter(&buf, Header{Packs: []string{"../x"}}); err == nil {
		t.Error("wrote a bad pack ID")
	}
}

func TestLocationRejects(t *testing.T) {
	raw := encodeAt(t)
	cases := map[string]func([]byte) []byte{
		"pack out of range": func(b []byte) []byte { return bytes.Replace(b, []byte(`"pk":2`), []byte(`"pk":3`), 1) },
		"pack zero":         func(b []byte) []byte { return bytes.Replace(b, []byte(`"pk":2`), []byte(`"pk":-1`), 1) },
		"frame longer than its blob can be": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"c":9`), []byte(`"c":1000`), 1)
		},
		"negative offset": func(b []byte) []byte { return bytes.Replace(b, []byte(`"o":1048576`), []byte(`"o":-5`), 1) },
		"pack and zstd":   func(b []byte) []byte { return bytes.Replace(b, []byte(`"c":9`), []byte(`"c":9,"z":true`), 1) },
		"location on a dir": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"k":"dir","m":"2755"`), []byte(`"k":"dir","z":true,"m":"2755"`), 1)
		},
		"bad pack ID": func(b []byte) []byte { return bytes.Replace(b, []byte(packA), []byte("../../x"), 1) },
		"packs in version 1": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"version":2`), []byte(`"version":1`), 1)
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			data := rewrite(t, raw, func(b []byte) []byte {
				out := f(b)
				if bytes.Equal(out, b) {
					t.Fatal("rewrite changed nothing")
				}
				return out
			})
			_, err := ReadTree(bytes.NewReader(data), func(string, manifest.Entry, Where) error { return nil })
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
		})
	}
}

// TestReadsVersion1 reads a tree as version 1 wrote it.
func TestReadsVersion1(t *testing.T) {
	raw := rewrite(t, encode(t, sample()), func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"version":2`), []byte(`"version":1`), 1)
	})
	n := 0
	h, err := ReadTree(bytes.NewReader(raw), func(_ string, _ manifest.Entry, w Where) error {
		if w != (Where{}) {
			t.Errorf("a version 1 entry has a location %+v", w)
		}
		n++
		return nil
	})
	if err != nil || h.Version != 1 || n != len(sample()) {
		t.Fatalf("version 1: %v, header %+v, %d entries", err, h, n)
	}
}
