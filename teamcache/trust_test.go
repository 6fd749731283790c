package teamcache_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/engine"
	vfs "github.com/vrift/vrift/fs"
	"github.com/vrift/vrift/remote"
	"github.com/vrift/vrift/teamcache"
	"github.com/vrift/vrift/treefile"
	"github.com/vrift/vrift/trust"
)

func genKey(t *testing.T, name string) trust.SecretKey {
	t.Helper()
	k, err := trust.Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func trusting(t *testing.T, keys ...trust.SecretKey) *trust.Policy {
	t.Helper()
	var lines []string
	for _, k := range keys {
		lines = append(lines, k.Public().String())
	}
	p, err := trust.NewPolicy(lines)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func getObject(t *testing.T, b remote.Backend, key string) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// storeFiles lists every regular file under a store's root.
func storeFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() && strings.Contains(p, cas.HashDir) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestSignedRoundTrip pushes a signed tree, pulls it with the key trusted,
// pushes it unchanged (one request), re-signs it with a second key (no
// blob sent) and with vrift remote sign's SignRemote, and checks each
// key alone is then enough.
func TestSignedRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ci, ci2, ci3 := genKey(t, "ci-1"), genKey(t, "ci-2"), genKey(t, "ci-3")
	d1, root := project(t, sampleFiles(20))
	opts := teamcache.Options{TrustOptions: teamcache.TrustOptions{SignKey: &ci}}
	res, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app", opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Trees != 1 || res.BlobsSent == 0 || res.Signer == nil || res.Signer.Key != "ci-1" {
		t.Fatalf("signed push: %+v", res)
	}
	raw := getObject(t, e.b, teamcache.TreeKey("app"))
	want, _ := teamcache.ReadManifest(mpathOf(root))
	blk, body, err := treefile.Split(raw)
	if err != nil || blk == nil {
		t.Fatalf("the pushed object is not signed: %v", err)
	} else if tr, err := teamcache.DecodeTree(body); err != nil || !tr.SameContent(want) {
		t.Fatalf("the pushed object's body is not the project's tree: %v", err)
	}

	d2 := newStore(t)
	dest := filepath.Join(t.TempDir(), "restored")
	pres, err := teamcache.Pull(ctx, d2.Store, e.b, "app", dest, d2.AddRoot, teamcache.Options{TrustOptions: teamcache.TrustOptions{Policy: trusting(t, ci)}})
	if err != nil {
		t.Fatal(err)
	}
	if pres.Signer == nil || pres.Signer.Key != "ci-1" || pres.Signer.Signed.IsZero() || pres.BlobsFetched != res.BlobsSent {
		t.Fatalf("signed pull: %+v", pres)
	}
	if _, err := engine.Link(ctx, d2, engine.LinkOptions{ManifestPath: pres.ManifestPath, Method: vfs.Copy}); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, filepath.Join(root, "node_modules"), filepath.Join(dest, "node_modules"))

	// Unchanged and already signed by this key: one request (the GET).
	before := e.b.Stats().Requests()
	again, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app", opts)
	if n := e.b.Stats().Requests() - before; err != nil || n != 1 || again.Trees != 0 || again.BlobsSent != 0 {
		t.Fatalf("unchanged signed push: %d requests, %+v, %v", n, again, err)
	}
	if !bytes.Equal(getObject(t, e.b, teamcache.TreeKey("app")), raw) {
		t.Fatal("an unchanged push rewrote the tree")
	}

	// A second key: the signature is added, no blob sent (GET and PUT).
	before = e.b.Stats().Requests()
	re, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "app", teamcache.Options{TrustOptions: teamcache.TrustOptions{SignKey: &ci2}})
	if n := e.b.Stats().Requests() - before; err != nil || n != 2 || re.Trees != 1 || re.BlobsSent != 0 {
		t.Fatalf("re-signing push: %d requests, %+v, %v", n, re, err)
	}
	// And vrift remote sign's way, checked against the trusted keys first.
	if _, err := teamcache.SignRemote(ctx, e.b, "app", ci3, teamcache.TrustOptions{Policy: trusting(t, genKey(t, "other"))}); !errors.Is(err, trust.ErrUntrusted) {
		t.Fatalf("signing a tree the policy refuses: %v", err)
	}
	if s, err := teamcache.SignRemote(ctx, e.b, "app", ci3, teamcache.TrustOptions{Policy: trusting(t, ci2)}); err != nil || s.Key != "ci-3" {
		t.Fatalf("remote sign: %v, %v", s, err)
	}
	raw = getObject(t, e.b, teamcache.TreeKey("app"))
	sigs, _ := trust.Signatures(raw)
	if _, got, _ := treefile.Split(raw); len(sigs) != 3 || !bytes.Equal(got, body) {
		t.Fatalf("%d signatures, body unchanged %v", len(sigs), bytes.Equal(got, body))
	}
	for _, k := range []trust.SecretKey{ci, ci2, ci3} {
		if s, err := trust.Verify(trusting(t, k), "app", raw); err != nil || s.Key != k.Name {
			t.Fatalf("%s: %v %v", k.Name, s, err)
		}
	}
	if n := checkTreesComplete(t, e.b); n != 1 {
		t.Fatalf("%d trees", n)
	}
}

// TestPullRefusesUntrusted plants each kind of bad tree and checks the
// pull refuses it, naming the tree and the reason, before anything enters
// the store or the project directory is even made.
func TestPullRefusesUntrusted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ci, attacker := genKey(t, "ci"), genKey(t, "attacker")
	d1, root := project(t, sampleFiles(5))
	if _, err := teamcache.Push(ctx, d1.Store, mpathOf(root), e.b, "good", teamcache.Options{TrustOptions: teamcache.TrustOptions{SignKey: &ci}}); err != nil {
		t.Fatal(err)
	}
	good := getObject(t, e.b, teamcache.TreeKey("good"))
	blk, body, _ := treefile.Split(good)
	// Another project's tree, unsigned: what an attacker with write
	// access to the bucket would plant (its blobs are uploaded too).
	d3, evilRoot := project(t, map[string]string{"node_modules/a/index.js": "require('child_process').exec('evil')\n"})
	if _, err := teamcache.Push(ctx, d3.Store, mpathOf(evilRoot), e.b, "evil", teamcache.Options{}); err != nil {
		t.Fatal(err)
	}
	evilBody := getObject(t, e.b, teamcache.TreeKey("evil"))
	byAttacker, _ := trust.Sign(evilBody, "good", attacker, time.Now())
	impostor, _ := trust.Sign(evilBody, "other", ci, time.Now())
	altered, _ := treefile.Join(blk, evilBody)
	cut := *blk
	cut.Signatures = []treefile.Signature{blk.Signatures[0]}
	cut.Signatures[0].Sig = cut.Signatures[0].Sig[:len(cut.Signatures[0].Sig)/2]
	truncated, _ := treefile.Join(&cut, body)
	huge := make([]byte, 8, 8+len(body))
	binary.LittleEndian.PutUint32(huge, treefile.SignatureMagic)
	binary.LittleEndian.PutUint32(huge[4:], 1<<31)
	huge = append(huge, body...)
	garbage := append([]byte{0x5e, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, '{', '"', 'x', ':'}, body...)
	policy := teamcache.Options{TrustOptions: teamcache.TrustOptions{Policy: trusting(t, ci)}}
	for _, c := range []struct {
		name, want string
		raw        []byte
		format     bool
	}{
		{"unsigned", "not signed (trusted keys: ci)", evilBody, false},
		{"untrusted key", `signed only by untrusted keys ("attacker"`, byAttacker, false},
		{"signed for another name", `signed for another tree name (ci for "other")`, impostor, false},
		{"altered after signing", "does not match the tree", altered, false},
		{"truncated signature", "does not parse (truncated?)", truncated, false},
		{"huge block", "bad tree signature block: 2147483648 bytes (at most 65536)", huge, true},
		{"unparseable block", "bad tree signature block", garbage, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			putObject(t, e.b, teamcache.TreeKey("good"), c.raw)
			d2 := newStore(t)
			dest := filepath.Join(t.TempDir(), "project")
			_, err := teamcache.Pull(ctx, d2.Store, e.b, "good", dest, d2.AddRoot, policy)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "good") {
				t.Fatalf("pull: %v (want %q)", err, c.want)
			}
			if !c.format && !errors.Is(err, trust.ErrUntrusted) {
				t.Fatalf("not ErrUntrusted: %v", err)
			}
			if c.format && !errors.Is(err, treefile.ErrSignatureBlock) {
				t.Fatalf("not ErrSignatureBlock: %v", err)
			}
			t.Logf("refused: %v", err)
			if f := storeFiles(t, d2.Store.Root()); len(f) > 0 {
				t.Fatalf("blobs entered the store: %v", f)
			}
			if _, err := os.Stat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the project directory was made: %v", err)
			}
			if roots, _ := d2.RootManifests(); len(roots) > 0 {
				t.Fatalf("roots registered: %v", roots)
			}
			// --allow-unsigned pulls what the policy refuses, loudly; never
			// a block that does not parse.
			var warned []string
			o := policy
			o.AllowUnsigned, o.Warn = true, func(m string) { warned = append(warned, m) }
			res, err := teamcache.Pull(ctx, d2.Store, e.b, "good", dest, d2.AddRoot, o)
			if c.format {
				if err == nil || len(warned) > 0 {
					t.Fatalf("allow-unsigned took a bad block: %v", err)
				}
				return
			}
			if err != nil || res.Signer != nil || len(warned) != 1 || !strings.Contains(warned[0], "WARNING: --allow-unsigned") || !strings.Contains(warned[0], c.want) {
				t.Fatalf("allow-unsigned: %+v %v %q", res, err, warned)
			}
		})
	}
	// With no trusted key, an unsigned tree is pulled as before.
	putObject(t, e.b, teamcache.TreeKey("good"), evilBody)
	d2 := newStore(t)
	if res, err := teamcache.Pull(ctx, d2.Store, e.b, "good", filepath.Join(t.TempDir(), "p"), nil, teamcache.Options{}); err != nil || res.Signer != nil {
		t.Fatalf("no policy: %+v %v", res, err)
	}
}

// TestPushClientSigned: a push signed by a client (as through the daemon,
// which never holds the key: Prepare, the client signs, PublishSigned)
// publishes a tree with where each blob is; again with the same signer it
// is one GET; another signer's signature is merged into the remote's
// block; no blob is sent again either way.
func TestPushClientSigned(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ci, ci2 := genKey(t, "ci"), genKey(t, "ci-2")
	d1, root := project(t, sampleFiles(10))
	tree, err := teamcache.ReadManifest(mpathOf(root))
	if err != nil {
		t.Fatal(err)
	}
	keys := tree.Keys()
	push := func(k trust.SecretKey) (*teamcache.Result, int64) {
		t.Helper()
		res := &teamcache.Result{}
		before := e.b.Stats().Requests()
		obj, unchanged, err := teamcache.Prepare(ctx, d1.Store, e.b, "app", tree, res, teamcache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if unchanged && trust.HasSignature(obj, "app", k.Public()) {
			return res, e.b.Stats().Requests() - before
		}
		signed, err := trust.Sign(obj, "app", k, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := teamcache.PublishSigned(ctx, e.b, "app", signed, res, teamcache.Options{}); err != nil {
			t.Fatal(err)
		}
		return res, e.b.Stats().Requests() - before
	}
	if res, _ := push(ci); res.Trees != 1 || res.BlobsSent != int64(len(keys)) {
		t.Fatalf("first push: %+v", res)
	}
	first := getObject(t, e.b, teamcache.TreeKey("app"))
	if tr, err := teamcache.DecodeTree(first); err != nil || len(tr.Header.Packs) != 1 {
		t.Fatalf("the published tree does not say where its blobs are: %v", err)
	}
	if res, n := push(ci); n != 1 || res.Trees != 0 || res.BlobsSent != 0 {
		t.Fatalf("same signer again: %d requests, %+v", n, res)
	}
	if !bytes.Equal(getObject(t, e.b, teamcache.TreeKey("app")), first) {
		t.Fatal("the tree was rewritten")
	}
	if res, n := push(ci2); res.Trees != 1 || res.BlobsSent != 0 {
		t.Fatalf("second signer: %d requests, %+v", n, res)
	}
	raw := getObject(t, e.b, teamcache.TreeKey("app"))
	for _, k := range []trust.SecretKey{ci, ci2} {
		if _, err := trust.Verify(trusting(t, k), "app", raw); err != nil {
			t.Fatalf("%s after merging: %v", k.Name, err)
		}
	}
	// A signed tree naming a blob the remote lacks is not published.
	d2, root2 := project(t, map[string]string{"node_modules/z/only-here.js": "not pushed\n"})
	t2, _ := teamcache.ReadManifest(mpathOf(root2))
	obj, err := t2.Encode()
	if err != nil {
		t.Fatal(err)
	}
	signed, _ := trust.Sign(obj, "app", ci, time.Now())
	if err := teamcache.PublishSigned(ctx, e.b, "app", signed, &teamcache.Result{}, teamcache.Options{}); err == nil || !strings.Contains(err.Error(), "is not in") {
		t.Fatalf("publishing a tree whose blobs are missing: %v", err)
	}
	_ = d2
}
