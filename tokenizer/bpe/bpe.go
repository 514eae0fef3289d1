// Package bpe trains a byte-level BPE tokenizer (GPT-2's scheme) on text and writes it as a
// standard Hugging Face tokenizer.json, which tokenizer/hftok (go-huggingface's hftokenizer) and
// Hugging Face's tokenizers library read with the same result.
//
// The pipeline the file describes, and Encode implements:
//
//  1. pre-tokenize with Pattern (Split, behaviour Isolated): contractions, a letter run, a digit
//     run or a run of other symbols, each with at most one leading space; runs of whitespace
//     other than the space; a lone space;
//  2. map each word's bytes to GPT-2's printable byte alphabet (ByteLevel, no prefix space, no
//     regex: Pattern already split the text);
//  3. BPE: start from single bytes and apply the merges, always the lowest-ranked adjacent pair
//     first (the leftmost on ties), until none applies.
//
// Every byte is a token, so any UTF-8 text encodes without an unknown token and decodes back to
// itself. Pattern avoids look-ahead (GPT-2's `\s+(?!\S)`): Go's regexp has none, and hftok falls
// back to no split at all on a pattern it cannot compile. Its words hold a space only at their
// start, which keeps hftok's ByteLevel step (it always splits before a space) identical to
// tokenizers' ByteLevel without regex.
package bpe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// whitespace is Unicode's White_Space set written out, so that the pattern means the same in
// Go's regexp (whose \s is ASCII only) and in Oniguruma (whose \s is Unicode).
const whitespace = `\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

// whitespaceNoSpace is whitespace without U+0020.
const whitespaceNoSpace = `\t\n\x{0B}\f\r\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

// Pattern is the pre-tokenizer's regular expression (tokenizer.json's Split pattern).
const Pattern = `'(?:s|t|re|ve|m|ll|d)| ?\p{L}+| ?\p{N}+| ?[^` + whitespace + `\p{L}\p{N}]+|[` + whitespaceNoSpace + `]+| `

var pattern = regexp.MustCompile(Pattern)

// The special tokens, ids 0, 1, 2: Llama's names, which hftok and the loaders find without
// configuration. Every text the post-processor encodes starts with BOS; EOS ends a document in
// packed pretraining data and a completion in fine-tuning; PAD pads batches.
const (
	BOS = "<s>"
	EOS = "</s>"
	PAD = "<pad>"
)

// Specials lists the special tokens in id order.
var Specials = []string{BOS, EOS, PAD}

// Tokenizer is a trained byte-level BPE: ids 0..2 are Specials, 3..258 the bytes 0..255, then
// the merged tokens in the order they were learned.
type Tokenizer struct {
	// Merges are the learned merges in rank order.
	Merges []Merge
	tokens [][]byte         // id → bytes (nil for the specials)
	ids    map[string]int   // bytes → id (not the specials)
	rank   map[[2]int]int   // (left, right) → rank
	cache  map[string][]int // word → ids
}

// Merge joins two adjacent tokens into Result. Two merges can make the same string ("ab"+"c",
// "a"+"bc"): they share one token, as in tokenizers' trainer.
type Merge struct{ Left, Right, Result int }

// ByteID returns the id of byte b.
func ByteID(b byte) int { return len(Specials) + int(b) }

func newTokenizer() *Tokenizer {
	t := &Tokenizer{rank: map[[2]int]int{}, ids: map[string]int{}, cache: map[string][]int{}}
	t.tokens = make([][]byte, len(Specials)+256)
	for b := 0; b < 256; b++ {
		t.tokens[ByteID(byte(b))] = []byte{byte(b)}
		t.ids[string([]byte{byte(b)})] = ByteID(byte(b))
	}
	return t
}

// addMerge appends the merge of tokens l and r (rank len(Merges)) and returns the id of the
// joined token: an existing token with the same bytes, else a new one.
func (t *Tokenizer) addMerge(l, r int) int {
	joined := append(append([]byte(nil), t.tokens[l]...), t.tokens[r]...)
	id, ok := t.ids[string(joined)]
	if !ok {
		id = len(t.tokens)
		t.tokens = append(t.tokens, joined)
		t.ids[string(joined)] = id
	}
	t.rank[[2]int{l, r}] = len(t.Merges)
	t.Merges = append(t.Merges, Merge{l, r, id})
	return id
}

// VocabSize is the number of tokens: specials, bytes and merges.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Token returns the bytes of token id (nil for a special token or an id out of range).
func (t *Tokenizer) Token(id int) []byte {
	if id < 0 || id >= len(t.tokens) {
		return nil
	}
	return t.tokens[id]
}

// Words splits text as the pre-tokenizer does (Pattern, every byte in exactly one word).
func Words(text string) []string {
	idx := pattern.FindAllStringIndex(text, -1)
	out := make([]string, 0, len(idx))
	at := 0
	for _, m := range idx {
		if m[0] > at { // not reached: Pattern matches every character
			out = append(out, text[at:m[0]])
		}
		out = append(out, text[m[0]:m[1]])
		at = m[1]
	}
	if at < len(text) {
		out = append(out, text[at:])
	}
	return out
}

// Encode returns the ids of text, without special tokens (no BOS; hftok's EncodeWithSpecial
// adds it). It equals hftok's Encode of the written tokenizer.json on any text without a special
// token's string in it.
func (t *Tokenizer) Encode(text string) []int {
	var ids []int
	for _, w := range Words(text) {
		ids = append(ids, t.encodeWord(w)...)
	}
	return ids
}

func (t *Tokenizer) encodeWord(w string) []int {
	if ids, ok := t.cache[w]; ok {
		return ids
	}
	sym := make([]int, len(w))
	for i := 0; i < len(w); i++ {
		sym[i] = ByteID(w[i])
	}
	for len(sym) > 1 {
		best, at := -1, -1
		for i := 0; i+1 < len(sym); i++ {
			if r, ok := t.rank[[2]int{sym[i], sym[i+1]}]; ok && (best < 0 || r < best) {
				best, at = r, i
			}
		}
		if at < 0 {
			break
		}
		sym[at] = t.Merges[best].Result
		sym = append(sym[:at+1], sym[at+2:]...)
	}
	if len(t.cache) < 1<<20 {
		t.cache[w] = sym
	}
	return sym
}

// Decode returns the text of ids; special tokens decode to their names (as hftok's decoder
// does), ids out of range are skipped.
func (t *Tokenizer) Decode(ids []int) string {
	var b []byte
	for _, id := range ids {
		switch {
		case id >= 0 && id < len(Specials):
			b = append(b, Specials[id]...)
		case id >= len(Specials) && id < len(t.tokens):
			b = append(b, t.tokens[id]...)
		}
	}
	return string(b)
}

// Train learns merges on texts until the vocabulary has vocabSize tokens (specials and the 256
// bytes included) or no pair occurs minCount times. Each step merges the most frequent adjacent
// pair of tokens within words (counted with the words' frequencies); ties go to the pair whose
// (left, right) ids are smallest, so training is deterministic. Pairs never cross words.
func Train(texts []string, vocabSize, minCount int) (*Tokenizer, error) {
	base := len(Specials) + 256
	if vocabSize < base {
		return nil, fmt.Errorf("vocabulary size %d: a byte-level BPE needs at least %d tokens (%d specials + 256 bytes)", vocabSize, base, len(Specials))
	}
	minCount = max(minCount, 1)
	counts := map[string]int{}
	for _, text := range texts {
		for _, w := range Words(text) {
			counts[w]++
		}
	}
	uniq := make([]string, 0, len(counts))
	for w := range counts {
		uniq = append(uniq, w)
	}
	sort.Strings(uniq) // a fixed word order: the same merges whatever the map's order
	words := make([][]int, len(uniq))
	freq := make([]int, len(uniq))
	pairs := map[[2]int]int{}
	where := map[[2]int][]int32{} // pair → words that held it (may repeat or be stale)
	for i, w := range uniq {
		freq[i] = counts[w]
		s := make([]int, len(w))
		for j := 0; j < len(w); j++ {
			s[j] = ByteID(w[j])
		}
		words[i] = s
		for j := 0; j+1 < len(s); j++ {
			p := [2]int{s[j], s[j+1]}
			pairs[p] += freq[i]
			where[p] = append(where[p], int32(i))
		}
	}
	t := newTokenizer()
	seen := make([]int, len(words)) // the merge number that last rewrote word i, +1
	for len(t.tokens) < vocabSize {
		var best [2]int
		bestN := 0
		for p, n := range pairs {
			if n > bestN || n == bestN && (p[0] < best[0] || p[0] == best[0] && p[1] < best[1]) {
				best, bestN = p, n
			}
		}
		if bestN < minCount {
			break
		}
		id := t.addMerge(best[0], best[1])
		stamp := len(t.Merges)
		for _, wi := range where[best] {
			if seen[wi] == stamp {
				continue
			}
			seen[wi] = stamp
			s := words[wi]
			if !hasPair(s, best) {
				continue
			}
			f := freq[wi]
			for j := 0; j+1 < len(s); j++ {
				p := [2]int{s[j], s[j+1]}
				if pairs[p] -= f; pairs[p] == 0 {
					delete(pairs, p)
				}
			}
			out := s[:0:0]
			for j := 0; j < len(s); j++ {
				if j+1 < len(s) && s[j] == best[0] && s[j+1] == best[1] {
					out = append(out, id)
					j++
				} else {
					out = append(out, s[j])
				}
			}
			words[wi] = out
			for j := 0; j+1 < len(out); j++ {
				p := [2]int{out[j], out[j+1]}
				pairs[p] += f
				if out[j] == id || out[j+1] == id {
					where[p] = append(where[p], wi)
				}
			}
		}
		delete(where, best)
		delete(pairs, best)
	}
	return t, nil
}

func hasPair(s []int, p [2]int) bool {
	for j := 0; j+1 < len(s); j++ {
		if s[j] == p[0] && s[j+1] == p[1] {
			return true
		}
	}
	return false
}

// byteRune is GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
// others (space, control characters, …) for U+0100 onwards, in byte order.
var byteRune = func() [256]rune {
	var m [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}()

// runeByte inverts byteRune.
var runeByte = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range byteRune {
		m[r] = byte(b)
	}
	return m
}()

// Piece returns token id's string in tokenizer.json: its bytes in GPT-2's byte alphabet, or the
// special token's name.
func (t *Tokenizer) Piece(id int) string {
	if id >= 0 && id < len(Specials) {
		return Specials[id]
	}
	var sb strings.Builder
	for _, b := range t.Token(id) {
		sb.WriteRune(byteRune[b])
	}
	return sb.String()
}

// JSON returns the tokenizer as a Hugging Face tokenizer.json (tokenizers' format version 1.0):
// added_tokens (the specials), the Split + ByteLevel pre-tokenizer, a TemplateProcessing
// post-processor that starts every sequence with BOS (as Llama's), a ByteLevel decoder and the
// BPE model with its vocabulary in id order and merges in rank order.
func (t *Tokenizer) JSON() ([]byte, error) {
	var b bytes.Buffer
	w := func(v any) {
		js, err := json.Marshal(v)
		if err != nil {
			panic(err) // only strings, numbers and fixed structures are marshalled
		}
		b.Write(js)
	}
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	for id, s := range Specials {
		if id > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n    ")
		w(map[string]any{"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
	}
	b.WriteString("\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": ")
	w(map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]string{"Regex": Pattern}, "behavior": "Isolated", "invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
	}})
	b.WriteString(",\n  \"post_processor\": ")
	bos := map[string]any{"SpecialToken": map[string]any{"id": BOS, "type_id": 0}}
	w(map[string]any{"type": "TemplateProcessing",
		"single": []any{bos, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
		"pair": []any{bos, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
			map[string]any{"SpecialToken": map[string]any{"id": BOS, "type_id": 1}}, map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}}},
		"special_tokens": map[string]any{BOS: map[string]any{"id": BOS, "ids": []int{0}, "tokens": []string{BOS}}},
	})
	b.WriteString(",\n  \"decoder\": ")
	w(map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})
	b.WriteString(",\n  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n" +
		"    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n" +
		"    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {")
	for id := range t.tokens {
		if id > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n      ")
		w(t.Piece(id))
		fmt.Fprintf(&b, ": %d", id)
	}
	b.WriteString("\n    },\n    \"merges\": [")
	for r, m := range t.Merges {
		if r > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n      ")
		w([]string{t.Piece(m.Left), t.Piece(m.Right)})
	}
	b.WriteString("\n    ]\n  }\n}\n")
	return b.Bytes(), nil
}

// FromJSON reads a tokenizer.json that JSON wrote (the same specials, byte tokens and merge
// structure); anything else is an error saying what differs.
func FromJSON(content []byte) (*Tokenizer, error) {
	var f struct {
		Model struct {
			Type   string         `json:"type"`
			Vocab  map[string]int `json:"vocab"`
			Merges [][2]string    `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(content, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json (written by singlora's bpe package, merges as pairs): %w", err)
	}
	if f.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer.json: model type %q, want the BPE singlora's bpe package writes", f.Model.Type)
	}
	for id, s := range Specials {
		if got, ok := f.Model.Vocab[s]; !ok || got != id {
			return nil, fmt.Errorf("tokenizer.json: special token %s has id %d (present %v), want %d", s, got, ok, id)
		}
	}
	t := newTokenizer()
	for b := 0; b < 256; b++ {
		if piece := string(byteRune[b]); f.Model.Vocab[piece] != ByteID(byte(b)) {
			return nil, fmt.Errorf("tokenizer.json: byte %#x (%q) has id %d, want %d", b, piece, f.Model.Vocab[piece], ByteID(byte(b)))
		}
	}
	idOf := func(piece string) (int, bool) {
		var raw []byte
		for _, r := range piece {
			b, ok := runeByte[r]
			if !ok {
				return 0, false
			}
			raw = append(raw, b)
		}
		id, ok := t.ids[string(raw)]
		return id, ok
	}
	for r, m := range f.Model.Merges {
		l, ok1 := idOf(m[0])
		rr, ok2 := idOf(m[1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("tokenizer.json: merge %d %q: a piece is not an earlier token", r, m)
		}
		if id := t.addMerge(l, rr); f.Model.Vocab[m[0]+m[1]] != id {
			return nil, fmt.Errorf("tokenizer.json: merge %d %q makes %q with id %d, want %d", r, m, m[0]+m[1], f.Model.Vocab[m[0]+m[1]], id)
		}
	}
	if len(f.Model.Vocab) != len(t.tokens) {
		return nil, fmt.Errorf("tokenizer.json: %d vocabulary entries, want %d (specials, 256 bytes and the merged tokens)", len(f.Model.Vocab), len(t.tokens))
	}
	return t, nil
}
