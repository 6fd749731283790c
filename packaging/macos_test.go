package packaging

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const (
	launchdLabel = "com.velorift.vrift-daemon"
	launchdPlist = "/Library/LaunchDaemons/" + launchdLabel + ".plist"
)

// fakeMac is a scratch root for packaging/macos/install.sh and
// uninstall.sh, with testdata/fakemac's dscl, launchctl, chown and id first
// on PATH recording every call.
type fakeMac struct {
	root, state, bin, fakes string
}

func newFakeMac(t *testing.T) *fakeMac {
	t.Helper()
	requireTool(t, "python3", "python3") // the fake dscl and launchctl
	d := t.TempDir()
	m := &fakeMac{root: filepath.Join(d, "root"), state: filepath.Join(d, "state"), bin: filepath.Join(d, "bin")}
	m.fakes, _ = filepath.Abs("testdata/fakemac")
	for _, dir := range []string{m.root, m.state, m.bin, filepath.Join(m.root, "Users")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m.writeBin(t, "vrift", "v1")
	m.writeBin(t, "vrift-daemon", "v1")
	// Accounts a Mac already has; 499 and 498 are taken (as a UID and as
	// a GID), so the first ID free as both is 497.
	seed := map[string]map[string]map[string]string{
		"Users": {
			"root": {"UniqueID": "0", "PrimaryGroupID": "0"}, "daemon": {"UniqueID": "1", "PrimaryGroupID": "1"},
			"_www": {"UniqueID": "70", "PrimaryGroupID": "70"}, "_other": {"UniqueID": "499", "PrimaryGroupID": "20"},
		},
		"Groups": {
			"wheel": {"PrimaryGroupID": "0"}, "daemon": {"PrimaryGroupID": "1"}, "staff": {"PrimaryGroupID": "20"},
			"_www": {"PrimaryGroupID": "70"}, "_othergroup": {"PrimaryGroupID": "498"},
		},
	}
	b, _ := json.Marshal(seed)
	if err := os.WriteFile(filepath.Join(m.state, "dscl.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *fakeMac) writeBin(t *testing.T, name, version string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(m.bin, name), []byte("#!/bin/sh\necho "+name+" "+version+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// run runs a packaging/macos script and returns its output and the calls
// the fakes recorded during it.
func (m *fakeMac) run(t *testing.T, script string, args ...string) (out string, calls []string) {
	t.Helper()
	log := filepath.Join(m.state, "calls.log")
	os.Remove(log)
	cmd := exec.Command(filepath.Join("macos", script), args...)
	cmd.Env = append(os.Environ(), "PATH="+m.fakes+":"+os.Getenv("PATH"),
		"VRIFT_ROOT="+m.root, "FAKE_STATE="+m.state, "BIN="+m.bin)
	o, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", script, args, err, o)
	}
	b, _ := os.ReadFile(log)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			calls = append(calls, l)
		}
	}
	return string(o), calls
}

// snapshot lists every path under the root with its type, mode and content.
func (m *fakeMac) snapshot(t *testing.T) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(m.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		info, _ := d.Info()
		line := fmt.Sprintf("%s %v", strings.TrimPrefix(p, m.root), info.Mode())
		if info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out = append(out, line)
		return nil
	})
	sort.Strings(out)
	return out
}

func mustHave(t *testing.T, calls []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, c := range calls {
			if c == w {
				found = true
			}
		}
		if !found {
			t.Errorf("no call %q among:\n%s", w, strings.Join(calls, "\n"))
		}
	}
}

func mustNotHave(t *testing.T, calls []string, substr ...string) {
	t.Helper()
	for _, c := range calls {
		for _, s := range substr {
			if strings.Contains(c, s) {
				t.Errorf("unexpected call %q", c)
			}
		}
	}
}

func (m *fakeMac) mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(filepath.Join(m.root, p))
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode()
}

// TestMacInstallScript runs install.sh against fake dscl and launchctl:
// the user and group get a free ID below 500, the directories the plist
// names exist with the right modes and owners, the job is bootstrapped;
// a second run creates nothing and reloads nothing, a changed binary is
// reinstalled and the job reloaded.
func TestMacInstallScript(t *testing.T) {
	m := newFakeMac(t)
	out, calls := m.run(t, "install.sh")
	mustHave(t, calls,
		"dscl . -create /Groups/_vrift",
		"dscl . -create /Groups/_vrift PrimaryGroupID 497",
		"dscl . -create /Users/_vrift",
		"dscl . -create /Users/_vrift UniqueID 497",
		"dscl . -create /Users/_vrift PrimaryGroupID 497",
		"dscl . -create /Users/_vrift NFSHomeDirectory /Users/_vrift",
		"dscl . -create /Users/_vrift UserShell /usr/bin/false",
		"dscl . -create /Users/_vrift Password *",
		"dscl . -create /Users/_vrift IsHidden 1",
		"chown _vrift:_vrift /usr/local/var/vrift/the_source",
		"chown _vrift:_vrift /usr/local/var/vrift/state",
		"chown _vrift:_vrift /Users/_vrift/Library/Application Support/vrift",
		"chown root:wheel "+launchdPlist+".new",
		"launchctl enable system/"+launchdLabel,
		"launchctl bootstrap system "+launchdPlist,
	)
	// The group exists before the user that names it, and the user before
	// anything is chowned to it or the job that runs as it is loaded.
	order := []string{"dscl . -create /Groups/_vrift PrimaryGroupID", "dscl . -create /Users/_vrift UniqueID", "chown _vrift", "launchctl bootstrap"}
	last := -1
	for _, o := range order {
		i := -1
		for j, c := range calls {
			if strings.HasPrefix(c, o) {
				i = j
				break
			}
		}
		if i < last {
			t.Errorf("%q comes before what it needs: %v", o, calls)
		}
		last = i
	}
	for p, want := range map[string]os.FileMode{
		"/usr/local/var/vrift/the_source": 0o755 | os.ModeDir, "/usr/local/var/vrift/state": 0o700 | os.ModeDir,
		"/Users/_vrift/Library/Application Support/vrift": 0o755 | os.ModeDir,
		"/usr/local/bin/vrift":                            0o755, "/usr/local/bin/vrift-daemon": 0o755, launchdPlist: 0o644,
	} {
		if got := m.mode(t, p); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	plist, _ := os.ReadFile("launchd/" + launchdLabel + ".plist")
	if got, _ := os.ReadFile(filepath.Join(m.root, launchdPlist)); string(got) != string(plist) {
		t.Errorf("installed plist differs from packaging/launchd's")
	}
	if !strings.Contains(out, "creating user _vrift (497)") {
		t.Errorf("install output:\n%s", out)
	}

	// Again: nothing new, nothing reloaded.
	before := m.snapshot(t)
	out, calls = m.run(t, "install.sh")
	mustNotHave(t, calls, "-create", "-delete", "bootstrap", "bootout")
	if after := m.snapshot(t); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("second run changed the tree:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	if strings.Contains(out, "creating") || strings.Contains(out, "installing") || strings.Contains(out, "loading") {
		t.Errorf("second run did something:\n%s", out)
	}

	// A new daemon binary is installed and the job reloaded with it.
	m.writeBin(t, "vrift-daemon", "v2")
	out, calls = m.run(t, "install.sh")
	mustHave(t, calls, "launchctl bootout system/"+launchdLabel, "launchctl bootstrap system "+launchdPlist)
	mustNotHave(t, calls, "-create")
	if b, _ := os.ReadFile(filepath.Join(m.root, "/usr/local/bin/vrift-daemon")); !strings.Contains(string(b), "v2") {
		t.Errorf("vrift-daemon not updated: %s\n%s", b, out)
	}

	// An existing _vrift keeps its IDs: a fresh state with the user made
	// by hand earlier (UID 300, group 301) creates only what is missing.
	m2 := newFakeMac(t)
	var db map[string]map[string]map[string]string
	b, _ := os.ReadFile(filepath.Join(m2.state, "dscl.json"))
	json.Unmarshal(b, &db)
	db["Groups"]["_vrift"] = map[string]string{"PrimaryGroupID": "301"}
	db["Users"]["_vrift"] = map[string]string{"UniqueID": "300", "PrimaryGroupID": "301"}
	b, _ = json.Marshal(db)
	os.WriteFile(filepath.Join(m2.state, "dscl.json"), b, 0o644)
	_, calls = m2.run(t, "install.sh")
	mustNotHave(t, calls, "dscl . -create")
	mustHave(t, calls, "launchctl bootstrap system "+launchdPlist)
}

// TestMacUninstallScript: uninstall.sh unloads the job, removes what
// install.sh put in place and the user and group, keeps the store unless
// --purge, and a second run does nothing.
func TestMacUninstallScript(t *testing.T) {
	m := newFakeMac(t)
	m.run(t, "install.sh")
	blob := filepath.Join(m.root, "usr/local/var/vrift/the_source/blob")
	os.WriteFile(blob, []byte("x"), 0o444)

	out, calls := m.run(t, "uninstall.sh")
	mustHave(t, calls, "launchctl bootout system/"+launchdLabel, "dscl . -delete /Users/_vrift", "dscl . -delete /Groups/_vrift")
	for _, p := range []string{launchdPlist, "/usr/local/bin/vrift", "/usr/local/bin/vrift-daemon"} {
		if _, err := os.Lstat(filepath.Join(m.root, p)); !os.IsNotExist(err) {
			t.Errorf("%s still there after uninstall: %v", p, err)
		}
	}
	if _, err := os.Stat(blob); err != nil || !strings.Contains(out, "kept the store") {
		t.Errorf("uninstall without --purge lost the store: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(filepath.Join(m.state, "dscl.json"))
	if strings.Contains(string(b), "_vrift") {
		t.Errorf("_vrift left in the directory: %s", b)
	}

	_, calls = m.run(t, "uninstall.sh")
	mustNotHave(t, calls, "-delete", "bootout")

	m.run(t, "uninstall.sh", "--purge")
	for _, p := range []string{"/usr/local/var/vrift", "/Users/_vrift"} {
		if _, err := os.Lstat(filepath.Join(m.root, p)); !os.IsNotExist(err) {
			t.Errorf("%s still there after --purge: %v", p, err)
		}
	}
	// And installing again after a purge works from scratch.
	_, calls = m.run(t, "install.sh")
	mustHave(t, calls, "dscl . -create /Users/_vrift UniqueID 497", "launchctl bootstrap system "+launchdPlist)
}

// TestMacScriptsShellcheck lints the macOS install scripts.
func TestMacScriptsShellcheck(t *testing.T) {
	requireTool(t, "shellcheck", "shellcheck")
	out, err := exec.Command("shellcheck", "macos/install.sh", "macos/uninstall.sh", "macos/watch-agent.sh", "../scripts/darwin-check.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}

// agent runs macos/watch-agent.sh as the user FAKE_UID with HOME home and
// the fakes first on PATH; it returns the output, the calls, and the error.
func (m *fakeMac) agent(t *testing.T, home, vrift, uid string, args ...string) (string, []string, error) {
	t.Helper()
	log := filepath.Join(m.state, "calls.log")
	os.Remove(log)
	cmd := exec.Command(filepath.Join("macos", "watch-agent.sh"), args...)
	cmd.Env = append(os.Environ(), "PATH="+m.fakes+":"+os.Getenv("PATH"), "HOME="+home,
		"FAKE_STATE="+m.state, "FAKE_UID="+uid, "VRIFT="+vrift)
	o, err := cmd.CombinedOutput()
	var calls []string
	b, _ := os.ReadFile(log)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" && !strings.HasPrefix(l, "id ") {
			calls = append(calls, l)
		}
	}
	return string(o), calls, err
}

// readPlist parses a plist with Python's plistlib (what launchd reads).
func readPlist(t *testing.T, path string) map[string]any {
	t.Helper()
	out, err := exec.Command("python3", "-c",
		"import json,plistlib,sys; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))", path).CombinedOutput()
	if err != nil {
		t.Fatalf("plist %s: %v\n%s", path, err, out)
	}
	var p map[string]any
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMacWatchAgent runs watch-agent.sh against the fake launchctl: the
// agent's plist names the project (XML-escaped) and the vrift binary, is
// loaded in the user's gui domain, not reloaded when nothing changed,
// reloaded when it did; two projects of one name get two labels; disable
// unloads and removes it; bad input is refused with nothing written.
func TestMacWatchAgent(t *testing.T) {
	m := newFakeMac(t)
	home := filepath.Join(t.TempDir(), "home")
	os.MkdirAll(home, 0o755)
	base := t.TempDir()
	proj := filepath.Join(base, "src", "my app & <co>")
	other := filepath.Join(base, "old", "my app & <co>")
	for _, d := range []string{proj, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	vrift := filepath.Join(m.bin, "vrift")

	label := func(dir string) string {
		out, _, err := m.agent(t, home, vrift, "501", "label", dir)
		if err != nil {
			t.Fatalf("label %s: %v\n%s", dir, err, out)
		}
		return strings.TrimSpace(out)
	}
	l1, l2 := label(proj), label(other)
	if l1 == l2 || !strings.HasPrefix(l1, "com.velorift.vrift-watch.my_app____co_-") {
		t.Fatalf("labels %q and %q", l1, l2)
	}
	plist := filepath.Join(home, "Library/LaunchAgents", l1+".plist")

	out, calls, err := m.agent(t, home, vrift, "501", "enable", proj)
	if err != nil {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	mustHave(t, calls, "launchctl enable gui/501/"+l1, "launchctl bootstrap gui/501 "+plist)
	p := readPlist(t, plist)
	args, _ := p["ProgramArguments"].([]any)
	if p["Label"] != l1 || len(args) != 3 || args[0] != vrift || args[1] != "watch" || args[2] != proj {
		t.Errorf("plist: %v", p)
	}
	if ka, _ := p["KeepAlive"].(map[string]any); ka["SuccessfulExit"] != false || p["RunAtLoad"] != true {
		t.Errorf("plist: restarted how? %v", p)
	}
	if log, _ := p["StandardErrorPath"].(string); !strings.HasPrefix(log, home+"/Library/Logs/vrift-watch-") {
		t.Errorf("log %q", log)
	}
	if b, _ := os.ReadFile(plist); regexp.MustCompile(`@[A-Z]+@`).Match(b) {
		t.Errorf("a field left unfilled:\n%s", b)
	}
	if st, err := os.Stat(plist); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("plist mode: %v %v", st, err)
	}

	// Again: nothing reloaded.
	out, calls, err = m.agent(t, home, vrift, "501", "enable", proj)
	if err != nil || !strings.Contains(out, "already enabled") {
		t.Errorf("second enable: %v\n%s", err, out)
	}
	mustNotHave(t, calls, "bootstrap", "bootout")

	// Another binary: the plist changes and the job is reloaded.
	vrift2 := filepath.Join(m.bin, "vrift-daemon")
	out, calls, err = m.agent(t, home, vrift2, "501", "enable", proj)
	if err != nil {
		t.Fatalf("re-enable: %v\n%s", err, out)
	}
	mustHave(t, calls, "launchctl bootout gui/501/"+l1, "launchctl bootstrap gui/501 "+plist)
	if args, _ := readPlist(t, plist)["ProgramArguments"].([]any); len(args) == 0 || args[0] != vrift2 {
		t.Errorf("plist not rewritten: %v", args)
	}

	// The other project of the same name is its own job.
	if out, _, err := m.agent(t, home, vrift, "501", "enable", other); err != nil {
		t.Fatalf("enable other: %v\n%s", err, out)
	}

	out, calls, err = m.agent(t, home, vrift, "501", "disable", proj)
	if err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	mustHave(t, calls, "launchctl bootout gui/501/"+l1)
	if _, err := os.Lstat(plist); !os.IsNotExist(err) {
		t.Errorf("plist left after disable: %v", err)
	}
	if _, calls, _ = m.agent(t, home, vrift, "501", "disable", proj); len(calls) != 1 || !strings.HasPrefix(calls[0], "launchctl print") {
		t.Errorf("second disable: %v", calls)
	}
	if _, err := os.Stat(filepath.Join(home, "Library/LaunchAgents", l2+".plist")); err != nil {
		t.Errorf("disabling one project touched the other: %v", err)
	}

	// Refused, with nothing written: no such directory, root, no binary.
	ents, _ := os.ReadDir(filepath.Join(home, "Library/LaunchAgents"))
	for _, c := range []struct {
		uid, vrift, dir, want string
	}{
		{"501", vrift, filepath.Join(base, "nope"), "not a directory"},
		{"0", vrift, proj, "not root"},
		{"501", filepath.Join(base, "no-vrift"), proj, "missing"},
	} {
		out, calls, err := m.agent(t, home, c.vrift, c.uid, "enable", c.dir)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("enable %s as %s: %v\n%s", c.dir, c.uid, err, out)
		}
		mustNotHave(t, calls, "bootstrap")
	}
	if after, _ := os.ReadDir(filepath.Join(home, "Library/LaunchAgents")); len(after) != len(ents) {
		t.Errorf("a refused enable left files: %v", after)
	}
}
