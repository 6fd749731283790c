package config

import (
	"encoding"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// referencePage is the admin guide, whose "Configuration reference" table
// must list exactly the keys Parse accepts.
const referencePage = "../../docs/admin-guide.md"

// acceptedKeys lists every key File accepts, from its TOML tags: a table's
// keys as "table.key", a map's as "table.<user>". Store is also the flat
// `store = "/path"` (Store.UnmarshalTOML).
func acceptedKeys(t *testing.T) []string {
	t.Helper()
	textType := reflect.TypeFor[encoding.TextUnmarshaler]()
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				t.Fatalf("field %s.%s has no toml tag: the reference could not name it", typ, f.Name)
			}
			key := prefix + name
			ft := f.Type
			switch {
			case reflect.PointerTo(ft).Implements(textType):
				keys = append(keys, key)
			case ft.Kind() == reflect.Struct:
				if ft == reflect.TypeFor[Store]() {
					keys = append(keys, key) // the flat form
				}
				walk(key+".", ft)
			case ft.Kind() == reflect.Map:
				keys = append(keys, key+".<user>")
			default:
				keys = append(keys, key)
			}
		}
	}
	walk("", reflect.TypeFor[File]())
	sort.Strings(keys)
	return keys
}

// documentedKeys reads the first column of the reference table.
func documentedKeys(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(referencePage)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(data), "\n## Configuration reference\n")
	if !ok {
		t.Fatalf("%s: no \"## Configuration reference\" section", referencePage)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
	var keys []string
	for _, m := range row.FindAllStringSubmatch(sec, -1) {
		keys = append(keys, m[1])
	}
	if len(keys) == 0 {
		t.Fatalf("%s: the reference table has no rows", referencePage)
	}
	sort.Strings(keys)
	return keys
}

// TestReferenceListsEveryKey: the admin guide's configuration reference
// lists every key the parser accepts, and nothing else.
func TestReferenceListsEveryKey(t *testing.T) {
	acc, doc := acceptedKeys(t), documentedKeys(t)
	for _, k := range acc {
		if !slices.Contains(doc, k) {
			t.Errorf("key %q is accepted by the config parser but missing from %s's configuration reference", k, referencePage)
		}
	}
	for _, k := range doc {
		if !slices.Contains(acc, k) {
			t.Errorf("key %q is in %s's configuration reference but not a field of config.File", k, referencePage)
		}
	}
}

// TestReferenceKeysParse: every documented key is accepted by Parse itself
// (not only present in the struct), with a value of some type.
func TestReferenceKeysParse(t *testing.T) {
	values := []string{`"1h"`, `1`, `true`, `"1GiB"`, `"/x"`, `[]`}
	for _, k := range documentedKeys(t) {
		path := strings.Split(strings.ReplaceAll(k, "<user>", "alice"), ".")
		var text string
		if len(path) == 1 {
			text = path[0] + " = %s\n"
		} else {
			text = "[" + strings.Join(path[:len(path)-1], ".") + "]\n" + path[len(path)-1] + " = %s\n"
		}
		var errs []string
		ok := false
		for _, v := range values {
			_, err := Parse([]byte(strings.Replace(text, "%s", v, 1)), DaemonDefaults())
			if err == nil {
				ok = true
				break
			}
			errs = append(errs, err.Error())
		}
		if !ok {
			t.Errorf("documented key %q: Parse accepts no value for it: %s", k, strings.Join(errs, "; "))
		}
	}
}
