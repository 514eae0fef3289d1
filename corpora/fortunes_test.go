package corpora

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseFortunes(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"final separator", "one\n%\ntwo\n  -- someone\n%\n", []string{"one", "two\n  -- someone"}},
		{"no final separator", "one\n%\ntwo", []string{"one", "two"}},
		{"empty entries", "%\n\n%\n  \t\n%\none\n%\n%\n", []string{"one"}},
		{"percent inside a line", "50% off\n%DCL-MEM-BAD\n%\n", []string{"50% off\n%DCL-MEM-BAD"}},
		{"trimmed", "\n\n\tindented\n\n%\r\nCRLF\r\n%\r\n", []string{"indented", "CRLF"}},
		{"overstrike and bells", "An _\bI here\n%\n*___\b\b\bone* ring\a\a\n%\n", []string{"An I here", "*one* ring"}},
		{"nothing", "", nil},
	} {
		if got := ParseFortunes(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s: ParseFortunes(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

// writeFortunes writes files (category → entries) in fortune format into a temp folder.
func writeFortunes(t *testing.T, files map[string][]string) string {
	t.Helper()
	dir := t.TempDir()
	for cat, entries := range files {
		if err := os.WriteFile(filepath.Join(dir, cat), []byte(strings.Join(entries, "\n%\n")+"\n%\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// numbered returns n entries "<prefix> <i>".
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	return out
}

func TestReadFortunesDuplicates(t *testing.T) {
	dir := writeFortunes(t, map[string][]string{
		"a": {"shared  text", "a only", "a only", "a\ttwice\n"},
		"b": {"b only", "shared text", "a twice"},
		"c": {"c only"},
	})
	got, err := ReadFortunes(dir, []string{"a", "b", "c"}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Fortune{{"a", "a only"}, {"b", "b only"}, {"c", "c only"}}
	if !slices.Equal(got, want) {
		t.Errorf("ReadFortunes = %q, want %q (duplicates within a category kept once, texts of two categories dropped)", got, want)
	}
}

func TestReadFortunesErrors(t *testing.T) {
	dir := writeFortunes(t, map[string][]string{"computers": {"x"}, "a": {"y"}})
	for _, tc := range []struct {
		name   string
		dir    string
		cats   []string
		verify bool
		want   []string
	}{
		{"unknown category", dir, []string{"computers", "nonsense"}, true,
			[]string{`"nonsense"`, "art, ascii-art, computers", "zippy"}},
		{"changed file", dir, []string{"computers", "work"}, true,
			[]string{filepath.Join(dir, "computers"), FortuneSHA256["computers"], "apt-get install fortunes", FortunesVersion}},
		{"missing file", t.TempDir(), []string{"computers", "work"}, true,
			[]string{"computers is missing", "apt-get install fortunes"}},
		{"missing test file", dir, []string{"a", "b"}, false, []string{`"b"`, "no such file"}},
		{"a path", dir, []string{"a", "../a"}, false, []string{`"../a"`, "name of a file"}},
		{"one category", dir, []string{"a"}, false, []string{"at least 2"}},
		{"twice", dir, []string{"a", "a"}, false, []string{`"a" is listed twice`}},
	} {
		_, err := ReadFortunes(tc.dir, tc.cats, tc.verify)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want an error containing %q", tc.name, err, w)
			}
		}
	}
}

func TestSplitFortunes(t *testing.T) {
	var all []Fortune
	for _, c := range []struct {
		cat string
		n   int
	}{{"big", 55}, {"small", 40}, {"mid", 47}} {
		for _, text := range numbered(c.cat, c.n) {
			all = append(all, Fortune{c.cat, text})
		}
	}
	for _, tc := range []struct {
		perClass, train, val, test int // per class
	}{{0, 28, 4, 8}, {20, 14, 2, 4}, {100, 28, 4, 8}} {
		train, val, test, err := SplitFortunes(all, tc.perClass, 7)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[Fortune]string{}
		for _, part := range []struct {
			name string
			fs   []Fortune
			n    int
		}{{"train", train, tc.train}, {"val", val, tc.val}, {"test", test, tc.test}} {
			count := map[string]int{}
			for i, f := range part.fs {
				count[f.Category]++
				if s, dup := seen[f]; dup {
					t.Errorf("perClass %d: %q is in %s and %s", tc.perClass, f.Text, s, part.name)
				}
				seen[f] = part.name
				if want := []string{"big", "small", "mid"}[i%3]; f.Category != want {
					t.Errorf("perClass %d: %s[%d] is %s, want %s (classes interleaved)", tc.perClass, part.name, i, f.Category, want)
				}
			}
			for _, c := range []string{"big", "small", "mid"} {
				if count[c] != part.n {
					t.Errorf("perClass %d: %s has %d of %s, want %d", tc.perClass, part.name, count[c], c, part.n)
				}
			}
		}
		again, _, _, _ := SplitFortunes(all, tc.perClass, 7)
		if !slices.Equal(train, again) {
			t.Errorf("perClass %d: the same seed gave another training set", tc.perClass)
		}
		other, _, _, _ := SplitFortunes(all, tc.perClass, 8)
		if slices.Equal(train, other) {
			t.Errorf("perClass %d: seeds 7 and 8 gave the same training set", tc.perClass)
		}
	}
	// A category's sample does not depend on the other categories.
	a, _, _, _ := SplitFortunes(all, 20, 7)
	b, _, _, _ := SplitFortunes(append(slices.Clone(all[55:]), all[:55]...), 20, 7)
	pick := func(fs []Fortune, cat string) (out []string) {
		for _, f := range fs {
			if f.Category == cat {
				out = append(out, f.Text)
			}
		}
		return out
	}
	if !slices.Equal(pick(a, "mid"), pick(b, "mid")) {
		t.Errorf("reordering the categories changed mid's training sample")
	}
}

func TestSplitFortunesErrors(t *testing.T) {
	var all []Fortune
	for _, text := range numbered("a", 30) {
		all = append(all, Fortune{"a", text})
	}
	if _, _, _, err := SplitFortunes(all, 0, 1); err == nil || !strings.Contains(err.Error(), "at least 2") {
		t.Errorf("one category: %v", err)
	}
	all = append(all, Fortune{"b", "lonely"})
	if _, _, _, err := SplitFortunes(all, 0, 1); err == nil || !strings.Contains(err.Error(), `category "b" has 1 distinct entries`) {
		t.Errorf("a tiny category: %v", err)
	}
	for _, text := range numbered("b", 30) {
		all = append(all, Fortune{"b", text})
	}
	if _, _, _, err := SplitFortunes(all, 5, 1); err == nil || !strings.Contains(err.Error(), "5 per class, want at least 10") {
		t.Errorf("perClass 5: %v", err)
	}
}

// TestFortunesReal: the installed Debian fortunes pass the checksums; the six default
// categories give their known counts (entries, then after de-duplication) and a balanced split
// of 624 per class (science's count).
func TestFortunesReal(t *testing.T) {
	if _, err := os.Stat(FortunesDir); err != nil {
		t.Skipf("%s: %v (apt-get install fortunes)", FortunesDir, err)
	}
	entries := map[string]int{"computers": 1051, "definitions": 1203, "politics": 703, "science": 625, "songs-poems": 720, "work": 630}
	distinct := map[string]int{"computers": 1050, "definitions": 1202, "politics": 702, "science": 624, "songs-poems": 717, "work": 629}
	for cat, n := range entries {
		b, err := readFortuneFile(FortunesDir, cat, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(ParseFortunes(string(b))); got != n {
			t.Errorf("%s: %d entries, want %d", cat, got, n)
		}
	}
	all, err := ReadFortunes(FortunesDir, FortuneCategories, true)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range all {
		got[f.Category]++
		if strings.ContainsAny(f.Text, "\b\a") {
			t.Errorf("%s: control characters left in %.60q", f.Category, f.Text)
		}
	}
	for cat, n := range distinct {
		if got[cat] != n {
			t.Errorf("%s: %d distinct entries, want %d", cat, got[cat], n)
		}
	}
	train, val, test, err := SplitFortunes(all, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(train) != 6*437 || len(val) != 6*62 || len(test) != 6*125 {
		t.Errorf("split %d / %d / %d, want 6 × 437 / 62 / 125", len(train), len(val), len(test))
	}
}
