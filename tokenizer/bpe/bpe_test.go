package bpe

import (
	"bytes"
	"strings"
	"testing"

	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/tokenizer/hftok"
)

// odd holds what a pre-tokenizer can get wrong: runs of spaces, tabs and newlines, no-break and
// ideographic spaces, contractions, digits, punctuation runs, accents, emoji and CJK.
var odd = []string{
	"", " ", "  ", "a  b", "\n\n", " \n x", "\t\tindented", "it's we'll they're I'd",
	"1790–2021: $4,500,000.00!!", "naïve café — “quoted” ’tis", "no\u00a0break\u3000wide",
	"emoji 🐋 and 漢字", "trailing space ", "Call me Ishmael. Some years ago—never mind how long precisely",
}

func TestWordsCoverText(t *testing.T) {
	for _, s := range odd {
		ws := Words(s)
		if strings.Join(ws, "") != s {
			t.Errorf("Words(%q) = %q: does not join back", s, ws)
		}
		for _, w := range ws {
			if strings.Contains(w[1:], " ") {
				t.Errorf("Words(%q): word %q holds a space after its start (hftok would split it)", s, w)
			}
		}
	}
}

// TestTrainKnownMerges, by hand: the words are "aaabdaaabac" and " aaab". (a, a) occurs 6 times
// (4 + 2) and is merged first, left to right (aaab → aa·a·b); then (aa, a) and (a, b) both occur
// 3 times, and the tie goes to the smaller ids: a (100) < aa (259), so (a, b); then (aa, ab)
// occurs 3 times.
func TestTrainKnownMerges(t *testing.T) {
	tok, err := Train([]string{"aaabdaaabac aaab"}, len(Specials)+256+3, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range tok.Merges {
		got = append(got, string(tok.Token(m.Left))+"+"+string(tok.Token(m.Right)))
	}
	want := []string{"a+a", "a+b", "aa+ab"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("merges %v, want %v", got, want)
	}
	if ids := tok.Encode("aaab"); len(ids) != 1 || string(tok.Token(ids[0])) != "aaab" {
		t.Errorf("Encode(aaab) = %v", ids)
	}
	if _, err := Train(nil, 100, 1); err == nil {
		t.Error("vocabulary smaller than the byte alphabet accepted")
	}
}

// TestDuplicateMergeSharesToken: "ab"+"c" and "a"+"bc" both make "abc", one token.
func TestDuplicateMergeSharesToken(t *testing.T) {
	tok := newTokenizer()
	a, b, c := ByteID('a'), ByteID('b'), ByteID('c')
	ab := tok.addMerge(a, b)
	bc := tok.addMerge(b, c)
	x := tok.addMerge(ab, c)
	y := tok.addMerge(a, bc)
	if x != y || tok.VocabSize() != len(Specials)+256+3 {
		t.Fatalf("abc ids %d, %d; vocabulary %d", x, y, tok.VocabSize())
	}
	js, _ := tok.JSON()
	back, err := FromJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Merges) != 4 || back.VocabSize() != tok.VocabSize() {
		t.Errorf("reloaded %d merges, %d tokens", len(back.Merges), back.VocabSize())
	}
}

func realTexts(t *testing.T) (train, test []string) {
	t.Helper()
	dir, err := corpora.Fetch(fetch.CacheDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	all, err := corpora.SOTU(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr, held := corpora.SOTUSplit(all)
	moby, err := corpora.MobyDick(dir)
	if err != nil {
		t.Fatal(err)
	}
	train = corpora.Texts(tr[:30])
	test = append(corpora.Texts(held[:3]), corpora.ChapterTexts(moby[:6])...)
	return train, append(test, odd...)
}

// TestRealTextThroughHFTok trains on 30 real addresses, writes tokenizer.json, and checks on
// held-out addresses, Moby-Dick chapters (paragraph breaks, em dashes) and odd strings that
// hftok reads it, encodes exactly as Encode, and that both decode back to the text.
func TestRealTextThroughHFTok(t *testing.T) {
	train, test := realTexts(t)
	tok, err := Train(train, 1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 1024 {
		t.Fatalf("vocabulary %d, want 1024", tok.VocabSize())
	}
	js, err := tok.JSON()
	if err != nil {
		t.Fatal(err)
	}
	hf, err := hftok.FromJSON(js, nil)
	if err != nil {
		t.Fatal(err)
	}
	// hftok's VocabSize counts the specials twice (model vocabulary + added tokens, where GPT-2
	// and Llama-2 list them too); the last token is what tells the size.
	last, ok := hf.Token(1023)
	if _, beyond := hf.Token(1024); !ok || beyond || last != tok.Piece(1023) || hf.BOS != 0 || hf.EOS != 1 || hf.Pad != 2 {
		t.Errorf("hftok: token 1023 %q (%v, want %q), a token 1024 %v, BOS %d EOS %d PAD %d (want 0, 1, 2)", last, ok, tok.Piece(1023), beyond, hf.BOS, hf.EOS, hf.Pad)
	}
	tokens, bytesIn := 0, 0
	for _, text := range test {
		for _, line := range strings.SplitAfter(text, "\n") {
			ids := tok.Encode(line)
			tokens += len(ids)
			bytesIn += len(line)
			if got := tok.Decode(ids); got != line {
				t.Fatalf("Decode(Encode(%.60q)) = %.60q", line, got)
			}
			hids := hf.Encode(line)
			if !equalInts(hids, ids) {
				t.Fatalf("hftok encodes %.60q as %v…, bpe as %v…", line, head(hids), head(ids))
			}
			if got := hf.Decode(hids); got != line {
				t.Fatalf("hftok Decode(Encode(%.60q)) = %.60q", line, got)
			}
			if w := hf.EncodeWithSpecial(line); len(w) != len(ids)+1 || w[0] != 0 {
				t.Fatalf("EncodeWithSpecial(%.40q) = %v…: want BOS then the ids", line, head(w))
			}
		}
	}
	if ratio := float64(bytesIn) / float64(tokens); ratio < 2.5 {
		t.Errorf("%.2f bytes per token on held-out text: the merges do not compress", ratio)
	}
	back, err := FromJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	js2, _ := back.JSON()
	if !bytes.Equal(js, js2) {
		t.Error("FromJSON(JSON()) writes a different tokenizer.json")
	}
	again, _ := Train(train, 1024, 2)
	js3, _ := again.JSON()
	if !bytes.Equal(js, js3) {
		t.Error("training twice on the same text gives different tokenizers")
	}
}

func TestFromJSONRefuses(t *testing.T) {
	tok, _ := Train([]string{"the theory of the thing"}, len(Specials)+256+4, 1)
	js, _ := tok.JSON()
	for name, edit := range map[string]func(string) string{
		"not BPE":       func(s string) string { return strings.Replace(s, `"type": "BPE"`, `"type": "Unigram"`, 1) },
		"moved special": func(s string) string { return strings.Replace(s, `"\u003cs\u003e": 0`, `"\u003cs\u003e": 7`, 1) },
		"not JSON":      func(s string) string { return s[:len(s)/2] },
	} {
		if _, err := FromJSON([]byte(edit(string(js)))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func equalInts(a, b []int) bool {
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

func head(ids []int) []int { return ids[:min(len(ids), 12)] }
