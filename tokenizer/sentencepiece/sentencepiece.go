// Package sentencepiece segments text into SentencePiece unigram pieces by Viterbi search over
// scored pieces, replicating exactly the tokenizer of the Universal Sentence Encoder's TF.js
// runtimes (@tensorflow-models/universal-sentence-encoder and its fork @energetic-ai/embeddings),
// so that token ids match the ones USE-Lite was run with:
//
//   - the text is NFKC-normalised; a non-empty result gets "▁" prepended and every ASCII space
//     (U+0020, only that one) replaced by "▁". Nothing is lower-cased; other whitespace (tabs,
//     newlines) is kept as is.
//   - the text is split into Unicode code points; at each position the pieces that match are
//     found in a trie of the vocabulary (the first ReservedSymbols entries — "<unk>" as "�", <s>,
//     </s>, extra ids — are not matchable). A position where no piece starts yields the unknown
//     piece (id 0, score 0) covering one code point.
//   - Viterbi over piece scores (a null score counts as 0): for each end position the candidates
//     are visited by ascending start, and one replaces the best when the best is still exactly 0
//     or its total is ≥ the best (ties go to the later start, i.e. the shorter piece).
//   - backtracking steps back by the UTF-16 length of the chosen piece's text (as JavaScript's
//     String.length does); consecutive unknown ids are merged into one.
//   - when a piece text occurs twice in the vocabulary, the later entry wins.
package sentencepiece

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// Separator is SentencePiece's word-boundary mark "▁" (U+2581).
const Separator = "\u2581"

// ReservedSymbols is the number of leading vocabulary entries that are never matched.
const ReservedSymbols = 6

// UnknownID is the id emitted for text that no piece covers.
const UnknownID = 0

// Piece is one vocabulary entry.
type Piece struct {
	Text  string
	Score float64
}

type trieNode struct {
	children map[rune]*trieNode
	end      bool
	score    float64
	id       int
	depth    int
}

// Tokenizer is a SentencePiece unigram tokenizer over a fixed vocabulary. It is safe for
// concurrent use.
type Tokenizer struct {
	pieces   []Piece
	utf16Len []int
	root     *trieNode
}

// New builds a tokenizer over pieces; the first reserved entries are not matchable.
func New(pieces []Piece, reserved int) *Tokenizer {
	t := &Tokenizer{pieces: pieces, utf16Len: make([]int, len(pieces)), root: &trieNode{}}
	for i, p := range pieces {
		n := 0
		for _, r := range p.Text {
			if r > 0xFFFF {
				n += 2
			} else {
				n++
			}
		}
		t.utf16Len[i] = n
		if i < reserved {
			continue
		}
		node := t.root
		for _, r := range p.Text {
			child := node.children[r]
			if child == nil {
				if node.children == nil {
					node.children = map[rune]*trieNode{}
				}
				child = &trieNode{depth: node.depth + 1}
				node.children[r] = child
			}
			node = child
		}
		if node != t.root {
			node.end, node.score, node.id = true, p.Score, i
		}
	}
	return t
}

// Load reads a vocabulary in the TF.js USE layout — a JSON array of [piece, score] pairs, score
// possibly null — and builds a tokenizer with ReservedSymbols reserved entries.
func Load(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pieces, err := ParseVocab(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return New(pieces, ReservedSymbols), nil
}

// ParseVocab parses a JSON array of [piece, score] pairs (score may be null, read as 0).
func ParseVocab(data []byte) ([]Piece, error) {
	var raw [][]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parsing vocabulary: %w", err)
	}
	pieces := make([]Piece, len(raw))
	for i, e := range raw {
		if len(e) != 2 {
			return nil, fmt.Errorf("vocabulary entry %d has %d fields, want [piece, score]", i, len(e))
		}
		if err := json.Unmarshal(e[0], &pieces[i].Text); err != nil {
			return nil, fmt.Errorf("vocabulary entry %d: piece: %w", i, err)
		}
		var score *float64
		if err := json.Unmarshal(e[1], &score); err != nil {
			return nil, fmt.Errorf("vocabulary entry %d: score: %w", i, err)
		}
		if score != nil {
			pieces[i].Score = *score
		}
	}
	return pieces, nil
}

// VocabSize is the number of vocabulary entries.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// Piece returns the text of piece id.
func (t *Tokenizer) Piece(id int) string { return t.pieces[id].Text }

// Normalize applies the runtime's normalisation: NFKC, then "▁" prepended and ASCII spaces
// replaced by "▁" (the empty string stays empty).
func Normalize(s string) string {
	n := norm.NFKC.String(s)
	if n == "" {
		return n
	}
	return Separator + strings.ReplaceAll(n, " ", Separator)
}

type candidate struct {
	score float64
	id    int
	start int
}

// Encode returns the piece ids of s.
func (t *Tokenizer) Encode(s string) []int {
	symbols := []rune(Normalize(s))
	n := len(symbols)
	// ends[e] lists the pieces ending at e, by ascending start (they are appended as starts grow).
	ends := make([][]candidate, n+1)
	for i := 0; i < n; i++ {
		found := false
		node := t.root.children[symbols[i]]
		for j := i; node != nil; {
			if node.end {
				ends[i+node.depth] = append(ends[i+node.depth], candidate{node.score, node.id, i})
				found = true
			}
			j++
			if j >= n {
				break
			}
			node = node.children[symbols[j]]
		}
		if !found {
			ends[i+1] = append(ends[i+1], candidate{0, UnknownID, i})
		}
	}
	best := make([]float64, n+1)
	words := make([]int, n+1)
	for e := 0; e <= n; e++ {
		for _, c := range ends[e] {
			score := c.score + best[c.start]
			if best[e] == 0 || score >= best[e] {
				best[e] = score
				words[e] = c.id
			}
		}
	}
	var rev []int
	for it := n; it > 0; it -= t.utf16Len[words[it]] {
		rev = append(rev, words[it])
	}
	ids := make([]int, 0, len(rev))
	prevUnk := false
	for _, id := range rev {
		if !(prevUnk && id == UnknownID) {
			ids = append(ids, id)
		}
		prevUnk = id == UnknownID
	}
	for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
		ids[i], ids[j] = ids[j], ids[i]
	}
	return ids
}
