package hftok

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func wordPieceJSON() []byte {
	vocab := map[string]int{}
	for i, w := range []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox",
		"jump", "##s", "##ed", "##ing", "over", "lazy", "dog", ",", ".", "!", "un", "##aff", "##able", "a", "b", "##c"} {
		vocab[w] = i
	}
	tj := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "[PAD]", "special": true},
			map[string]any{"id": 1, "content": "[UNK]", "special": true},
			map[string]any{"id": 2, "content": "[CLS]", "special": true},
			map[string]any{"id": 3, "content": "[SEP]", "special": true},
			map[string]any{"id": 4, "content": "[MASK]", "special": true},
		},
		"normalizer": map[string]any{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
			"strip_accents": nil, "lowercase": true},
		"pre_tokenizer": map[string]any{"type": "BertPreTokenizer"},
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "[CLS]", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": "[SEP]", "type_id": 0}}},
			"special_tokens": map[string]any{
				"[CLS]": map[string]any{"id": "[CLS]", "ids": []int{2}, "tokens": []string{"[CLS]"}},
				"[SEP]": map[string]any{"id": "[SEP]", "ids": []int{3}, "tokens": []string{"[SEP]"}},
			}},
		"decoder": map[string]any{"type": "WordPiece", "prefix": "##", "cleanup": true},
		"model": map[string]any{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
			"max_input_chars_per_word": 100, "vocab": vocab},
	}
	b, _ := json.Marshal(tj)
	return b
}

// byteLevelAlphabet is GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to
// U+0100 onwards.
func byteLevelAlphabet() []string {
	var bs []int
	for b := '!'; b <= '~'; b++ {
		bs = append(bs, int(b))
	}
	for b := 0xA1; b <= 0xAC; b++ {
		bs = append(bs, b)
	}
	for b := 0xAE; b <= 0xFF; b++ {
		bs = append(bs, b)
	}
	out := make([]string, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if slices.Contains(bs, b) {
			out[b] = string(rune(b))
		} else {
			out[b] = string(rune(256 + n))
			n++
		}
	}
	return out
}

func bpeJSON() []byte {
	vocab := map[string]int{"<|endoftext|>": 0}
	for _, s := range byteLevelAlphabet() {
		vocab[s] = len(vocab)
	}
	merges := []string{"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "Ġwo r", "Ġwor l", "Ġworl d", "Ġ t", "Ġt he"}
	for _, m := range merges {
		var a, b string
		fmt.Sscanf(m, "%s %s", &a, &b)
		vocab[a+b] = len(vocab)
	}
	tj := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens":   []any{map[string]any{"id": 0, "content": "<|endoftext|>", "special": true}},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": nil,
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": merges},
	}
	b, _ := json.Marshal(tj)
	return b
}

func tokens(t *testing.T, tok *Tokenizer, ids []int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		s, ok := tok.Token(id)
		if !ok {
			t.Fatalf("id %d has no token", id)
		}
		out[i] = s
	}
	return out
}

func TestWordPiece(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), wordPieceJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ text, want string }{
		{"The quick brown fox jumps over the lazy dog.", "[the quick brown fox jump ##s over the lazy dog .]"},
		{"Unaffable, JUMPED!", "[un ##aff ##able , jump ##ed !]"},
		// No "##b" in the vocabulary: the whole word is unknown, as in HF WordPiece.
		{"abc xyz", "[[UNK] [UNK]]"},
	} {
		got := fmt.Sprint(tokens(t, tok, tok.Encode(tc.text)))
		if got != tc.want {
			t.Errorf("%q → %s, want %s", tc.text, got, tc.want)
		}
	}
	ids := tok.EncodeWithSpecial("the fox")
	if fmt.Sprint(ids) != fmt.Sprint([]int{2, 5, 8, 3}) {
		t.Errorf("with special tokens: %v, want [CLS] the fox [SEP] = [2 5 8 3]", ids)
	}
	if tok.CLS != 2 || tok.SEP != 3 || tok.Pad != 0 || tok.Unk != 1 {
		t.Errorf("special ids CLS %d SEP %d PAD %d UNK %d", tok.CLS, tok.SEP, tok.Pad, tok.Unk)
	}
	for _, s := range []string{"the quick brown fox jumps over the lazy dog", "a dog, the fox."} {
		if got := tok.Decode(tok.Encode(s)); got != s {
			t.Errorf("round trip %q → %q", s, got)
		}
	}
	if got := tok.Decode(tok.Encode("unaffable jumped")); got != "unaffable jumped" {
		t.Errorf("round trip of sub-words: %q", got)
	}
}

func TestByteLevelBPE(t *testing.T) {
	tok, err := FromJSON(bpeJSON(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ text, want string }{
		{"hello world", "[hello Ġworld]"},
		{"hello the world", "[hello Ġthe Ġworld]"},
		{"hello there", "[hello Ġthe r e]"},
		{"hi!", "[h i !]"},
	} {
		if got := fmt.Sprint(tokens(t, tok, tok.Encode(tc.text))); got != tc.want {
			t.Errorf("%q → %s, want %s", tc.text, got, tc.want)
		}
	}
	for _, s := range []string{"hello world", "  spaces  and\ttabs\nnewline", "café ☕ naïve 日本語", "<|endoftext|>hello", "x=1; y = [2, 3]"} {
		ids := tok.Encode(s)
		if got := tok.Decode(ids); got != s {
			t.Errorf("round trip %q → %v → %q", s, ids, got)
		}
	}
	if ids := tok.Encode("<|endoftext|>"); fmt.Sprint(ids) != "[0]" {
		t.Errorf("special token encodes as %v, want [0]", ids)
	}
}
