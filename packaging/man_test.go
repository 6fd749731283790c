package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManPages builds the man pages as make package does (make man) and
// renders each with man -l, warnings on: none may warn. There is one page
// per command vrift lists, plus vrift-daemon(8) and vrift.toml(5), whose
// every configuration key is on it.
func TestManPages(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binaries")
	}
	requireTool(t, "man", "man-db")
	repo, _ := filepath.Abs("..")
	run(t, "make", "-C", repo, "man")
	dir := filepath.Join(repo, "dist", "man")
	pages, _ := filepath.Glob(filepath.Join(dir, "*.gz"))
	want := map[string]bool{"vrift.1.gz": true, "vrift-daemon.8.gz": true, "vrift.toml.5.gz": true}
	// Every command and subcommand vrift's help lists.
	var walk func(args ...string)
	walk = func(args ...string) {
		out, _ := exec.Command(filepath.Join(repo, "bin", "vrift"), append(args, "--help")...).Output()
		_, cmds, ok := strings.Cut(string(out), "Available Commands:\n")
		if !ok {
			return
		}
		cmds, _, _ = strings.Cut(cmds, "\n\n")
		for _, l := range strings.Split(cmds, "\n") {
			f := strings.Fields(l)
			if len(f) == 0 || f[0] == "help" {
				continue
			}
			sub := append(append([]string{}, args...), f[0])
			want["vrift-"+strings.Join(sub, "-")+".1.gz"] = true
			walk(sub...)
		}
	}
	walk()
	if len(want) < 15 {
		t.Fatalf("found only %d commands in vrift --help: %v", len(want), want)
	}
	have := map[string]bool{}
	for _, p := range pages {
		have[filepath.Base(p)] = true
		cmd := exec.Command("man", "--warnings", "-l", p)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 || len(out) < 200 {
			t.Errorf("man -l %s: %v, %d bytes\n%s", filepath.Base(p), err, len(out), stderr.String())
		}
	}
	for p := range want {
		if !have[p] {
			t.Errorf("no man page %s", p)
		}
	}
	// The config page lists every key of the reference (which
	// internal/config's test keeps equal to the parser's keys).
	guide, err := os.ReadFile(filepath.Join(repo, "docs", "admin-guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("man", "-l", filepath.Join(dir, "vrift.toml.5.gz"))
	cmd.Env = append(os.Environ(), "MANWIDTH=200")
	text, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	_, ref, _ := strings.Cut(string(guide), "\n## Configuration reference\n")
	ref, _, _ = strings.Cut(ref, "\n## ")
	keys := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(ref, -1)
	if len(keys) < 20 {
		t.Fatalf("only %d keys in the admin guide's reference", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(string(text), k[1]) {
			t.Errorf("vrift.toml(5) lacks the key %s", k[1])
		}
	}
	// No builder's home in the flags' defaults.
	if home, _ := os.UserHomeDir(); home != "" && home != "/" {
		for _, p := range pages {
			if b, _ := exec.Command("zcat", p).Output(); strings.Contains(string(b), home+"/") {
				t.Errorf("%s names the builder's home %s", filepath.Base(p), home)
			}
		}
	}
}
