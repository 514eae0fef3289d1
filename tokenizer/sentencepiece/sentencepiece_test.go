package sentencepiece

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/singlora/singlora/internal/fetch"
)

func toy() *Tokenizer {
	return New([]Piece{
		{"�", 0}, {"<s>", 0}, {"</s>", 0}, {"x1", 0}, {"x2", 0}, {"x3", 0},
		{"▁", -2}, {"a", -3}, {"b", -3}, {"▁ab", -4}, {"ab", -5}, {"▁a", -1.5}, {"c", -3}, {"c", -9},
	}, ReservedSymbols)
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"":         "",
		"a b":      "▁a▁b",
		" a":       "▁▁a",
		"a\tb":     "▁a\tb",
		"ﬁ":        "▁fi",
		"Ａ\u00a0Ｂ": "▁A▁B",
		"A\u030a":  "▁\u00c5",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEncodeToy(t *testing.T) {
	tk := toy()
	for in, want := range map[string][]int{
		"":     nil,
		"ab":   {9},        // "▁ab" (-4) beats "▁a"+"b" (-4.5)
		"ba":   {6, 8, 7},  // "▁","b","a"
		"c":    {6, 13},    // duplicate piece: the later entry (id 13) wins
		"zzz":  {6, 0},     // consecutive unknowns merge into one
		"azzb": {11, 0, 8}, // unknown in the middle
		"ÿa":   {6, 0, 7},  // non-ASCII unknown
		"a😀":   {11, 0},    // astral code point: one unknown
	} {
		got := tk.Encode(in)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", in, got, want)
		}
	}
}

func loadUSEVocab(t *testing.T) (*Tokenizer, string) {
	t.Helper()
	cache := fetch.CacheDir()
	if !fetch.USELite.Present(cache) {
		t.Skip("USE-Lite weights not fetched: run singlora fetch")
	}
	tk, err := Load(filepath.Join(fetch.USELite.Dir(cache), "package/dist/vocab.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tk, cache
}

// TestSentimentIDsMatchReference compares the ids of the 3,000 sentiment sentences with the
// reference tokenizer's (testdata/sentiment_ids.json, written by testdata/ids.mjs).
func TestSentimentIDsMatchReference(t *testing.T) {
	tk, cache := loadUSEVocab(t)
	if !fetch.Sentiment.Present(cache) {
		t.Skip("sentiment data not fetched: run singlora fetch")
	}
	b, err := os.ReadFile("testdata/sentiment_ids.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string][]string
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	n, bad := 0, 0
	for name, hashes := range want {
		b, err := os.ReadFile(filepath.Join(fetch.Sentiment.Dir(cache), "package/test/fixtures", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var rows []struct{ Text string }
		if err := json.Unmarshal(b, &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(hashes) {
			t.Fatalf("%s: %d sentences, fixture has %d", name, len(rows), len(hashes))
		}
		for i, r := range rows {
			ids := tk.Encode(r.Text)
			s := make([]string, len(ids))
			for j, id := range ids {
				s[j] = strconv.Itoa(id)
			}
			h := sha256.Sum256([]byte(strings.Join(s, ",")))
			n++
			if hex.EncodeToString(h[:])[:16] != hashes[i] {
				bad++
				if bad <= 5 {
					t.Errorf("%s[%d] %q: ids %v differ from the reference tokenizer's", name, i, r.Text, ids)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d sentences tokenised differently", bad, n)
	}
	t.Logf("%d sentences tokenised identically to the reference", n)
}
