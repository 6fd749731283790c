package units

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "123": 123, "20GiB": 20 << 30, "5 MiB": 5 << 20, "1.5KiB": 1536,
		"2GB": 2e9, "1TiB": 1 << 40, "7B": 7, "3kb": 3000} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1GiB", "5XB", "GiB", "", "1e400", "abc"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}
