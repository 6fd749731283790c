package trust

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/errdefs"
	"github.com/vrift/vrift/manifest"
	"github.com/vrift/vrift/treefile"
)

func body(t *testing.T, target string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := treefile.NewWriter(&buf, treefile.Header{Created: time.Unix(1700000000, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add("link", manifest.Entry{Kind: manifest.Symlink, Mode: 0o777, Target: []byte(target)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func key(t *testing.T, name string) SecretKey {
	t.Helper()
	k, err := Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func policy(t *testing.T, keys ...SecretKey) *Policy {
	t.Helper()
	var lines []string
	for _, k := range keys {
		lines = append(lines, k.Public().String())
	}
	p, err := NewPolicy(lines)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func secretText(k SecretKey) string { return base64.StdEncoding.EncodeToString(k.key) }

func TestSignVerify(t *testing.T) {
	ci, ci2, other := key(t, "ci-1"), key(t, "ci-2"), key(t, "attacker")
	b := body(t, "target")
	now := time.Date(2026, 12, 3, 22, 0, 0, 123456789, time.UTC)
	raw, err := Sign(b, "npm-a", ci, now)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Verify(policy(t, ci), "npm-a", raw)
	if err != nil || s.Key != "ci-1" || !s.Signed.Equal(now) {
		t.Fatalf("verify: %+v, %v", s, err)
	}
	if !HasSignature(raw, "npm-a", ci.Public()) || HasSignature(raw, "npm-b", ci.Public()) || HasSignature(raw, "npm-a", ci2.Public()) {
		t.Fatal("HasSignature")
	}
	// Re-signing by a second key keeps the first and the body.
	raw2, err := Sign(raw, "npm-a", ci2, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, got, _ := treefile.Split(raw2); !bytes.Equal(got, b) {
		t.Fatal("re-signing changed the body")
	}
	for _, k := range []SecretKey{ci, ci2} {
		if s, err := Verify(policy(t, k), "npm-a", raw2); err != nil || s.Key != k.Name {
			t.Fatalf("after re-signing, %s: %+v %v", k.Name, s, err)
		}
	}
	// Re-signing by the same key replaces its signature.
	raw3, _ := Sign(raw2, "npm-a", ci, now.Add(2*time.Hour))
	if sigs, _ := Signatures(raw3); len(sigs) != 2 {
		t.Fatalf("%d signatures after re-signing with the same key", len(sigs))
	}
	// No trusted key: anything that parses passes.
	if s, err := Verify(nil, "npm-a", b); s != nil || err != nil {
		t.Fatalf("no policy, unsigned: %v %v", s, err)
	}

	p := policy(t, ci)
	forged, _ := Sign(b, "npm-a", other, now)
	// The attacker's key under the trusted key's name.
	impostor := SecretKey{Name: "ci-1", key: other.key}
	impostorRaw, _ := Sign(b, "npm-a", impostor, now)
	blk, _, _ := treefile.Split(raw)
	altered, _ := treefile.Join(blk, body(t, "evil"))
	otherName, _ := Sign(b, "npm-b", ci, now)
	cut := *blk
	cut.Signatures = []treefile.Signature{blk.Signatures[0]}
	cut.Signatures[0].Sig = cut.Signatures[0].Sig[:40]
	truncated, _ := treefile.Join(&cut, b)
	retimed := *blk
	retimed.Signatures = []treefile.Signature{blk.Signatures[0]}
	retimed.Signatures[0].Signed = now.Add(time.Second)
	retimedRaw, _ := treefile.Join(&retimed, b)
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint32(huge, treefile.SignatureMagic)
	binary.LittleEndian.PutUint32(huge[4:], 1<<30)
	for _, c := range []struct {
		name, want string
		raw        []byte
	}{
		{"unsigned", "not signed (trusted keys: ci-1)", b},
		{"untrusted key", `signed only by untrusted keys ("attacker"`, forged},
		{"impostor", "does not match the tree", impostorRaw},
		{"altered body", "does not match the tree", altered},
		{"signed for another name", `signed for another tree name (ci-1 for "npm-b")`, otherName},
		{"truncated signature", "does not parse (truncated?)", truncated},
		{"other signing time", "does not match the tree", retimedRaw},
		{"huge block", "at most 65536", append(huge, b...)},
		{"garbage block", "invalid character", append(append(append([]byte(nil), huge[:4]...), 3, 0, 0, 0, 'x', 'y', 'z'), b...)},
	} {
		s, err := Verify(p, "npm-a", c.raw)
		if s != nil || !errors.Is(err, ErrUntrusted) || !errors.Is(err, errdefs.ErrUntrusted) || !strings.Contains(err.Error(), c.want) ||
			!strings.HasPrefix(err.Error(), "tree npm-a: ") {
			t.Errorf("%s: %v %v (want %q)", c.name, s, err, c.want)
		}
	}
}

func TestKeyLines(t *testing.T) {
	k := key(t, "ci.team_1")
	pub := k.Public().String()
	got, err := ParsePublicKey(" " + pub + "\n")
	if err != nil || got.String() != pub {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "nocolon", ":AAAA", "-x:" + pub[strings.Index(pub, ":")+1:], "a b:AAAA", "ci:AAAA", "ci:" + strings.Repeat("A", 43) + "!",
		"ci:" + base64.StdEncoding.EncodeToString(make([]byte, 31))} {
		if _, err := ParsePublicKey(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := NewPolicy([]string{pub, "ci:junk"}); err == nil || !strings.HasPrefix(err.Error(), "trusted key 2: ") {
		t.Errorf("policy error does not name the entry: %v", err)
	}
	other := key(t, "ci.team_1")
	if _, err := NewPolicy([]string{pub, other.Public().String()}); err == nil {
		t.Error("two keys of one name accepted")
	}
	if _, err := Generate("bad:name"); !errors.Is(err, ErrBadKey) {
		t.Errorf("generate bad name: %v", err)
	}
}

func TestSecretKeyFile(t *testing.T) {
	dir := t.TempDir()
	k := key(t, "ci")
	path := filepath.Join(dir, "keys", "ci.secret")
	if err := WriteSecretKey(path, k); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	if err := WriteSecretKey(path, key(t, "ci")); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := LoadSecretKey(path)
	if err != nil || got.Public().String() != k.Public().String() {
		t.Fatalf("load: %v", err)
	}
	secret := secretText(k)
	// The secret never shows, whatever the formatting.
	for _, s := range []string{fmt.Sprint(got), fmt.Sprintf("%v %+v %#v %s %q %x", got, got, got, got, got, got)} {
		if strings.Contains(s, secret) || strings.Contains(s, secret[:20]) {
			t.Fatalf("secret key formatted: %s", s)
		}
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o700 | 0o002} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSecretKey(path)
		if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "accessible by group or others") || strings.Contains(err.Error(), secret[:20]) {
			t.Errorf("mode %o: %v", mode, err)
		}
	}
	os.Chmod(path, 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(path, link)
	if _, err := LoadSecretKey(link); !errors.Is(err, ErrBadKey) {
		t.Errorf("symlink: %v", err)
	}
	// A damaged file: its error does not quote it.
	damaged := filepath.Join(dir, "damaged")
	text := strings.Replace(string(k.marshal()), secret[:4], "AAAA", 1)
	os.WriteFile(damaged, []byte(text), 0o600)
	if _, err := LoadSecretKey(damaged); !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), secret[4:20]) {
		t.Errorf("damaged: %v", err)
	}
	pubAsSecret := filepath.Join(dir, "pub")
	os.WriteFile(pubAsSecret, []byte(k.Public().String()+"\n"), 0o600)
	if _, err := LoadSecretKey(pubAsSecret); !errors.Is(err, ErrBadKey) {
		t.Errorf("public key as secret: %v", err)
	}
}

// BenchmarkSignVerify signs and verifies a body the size of a large
// node_modules tree's (4 MiB compressed): one BLAKE3 pass and one ed25519
// operation each.
func BenchmarkSignVerify(b *testing.B) {
	k, _ := Generate("ci")
	p, _ := NewPolicy([]string{k.Public().String()})
	body := make([]byte, 4<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	b.Run("sign", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := Sign(body, "npm-a", k, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	raw, _ := Sign(body, "npm-a", k, time.Now())
	b.Run("verify", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := Verify(p, "npm-a", raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCheckKeyName: letters, digits, '.', '_' and '-', not starting with
// '.' or '-', at most 100 bytes.
func TestCheckKeyName(t *testing.T) {
	for _, bad := range []string{"", ".k", "-k", "a:b", "a\nb", "a b", "é", strings.Repeat("k", 101)} {
		if err := CheckKeyName(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("key name %q: %v, want ErrBadKey", bad, err)
		}
	}
	for _, good := range []string{"k", "_k", "ci-2026.v1_a", strings.Repeat("k", 100)} {
		if err := CheckKeyName(good); err != nil {
			t.Errorf("key name %q refused: %v", good, err)
		}
	}
}
