package finetune

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// writeWordPiece writes a WordPiece tokenizer.json over special + words into dir; with cls, it
// adds BERT's [CLS] … [SEP] post-processing (special must then hold them at ids 2 and 3).
func writeWordPiece(t *testing.T, dir string, special, words []string, cls bool) {
	t.Helper()
	vocab := map[string]int{}
	for _, w := range append(append([]string(nil), special...), words...) {
		if _, ok := vocab[w]; !ok {
			vocab[w] = len(vocab)
		}
	}
	var added []any
	for i, s := range special {
		added = append(added, map[string]any{"id": i, "content": s, "special": true})
	}
	tj := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added,
		"normalizer":    map[string]any{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": nil, "lowercase": true},
		"pre_tokenizer": map[string]any{"type": "BertPreTokenizer"},
		"decoder":       map[string]any{"type": "WordPiece", "prefix": "##", "cleanup": true},
		"model": map[string]any{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
			"max_input_chars_per_word": 100, "vocab": vocab},
	}
	if cls {
		tj["post_processor"] = map[string]any{"type": "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "[CLS]", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": "[SEP]", "type_id": 0}}},
			"special_tokens": map[string]any{
				"[CLS]": map[string]any{"id": "[CLS]", "ids": []int{vocab["[CLS]"]}, "tokens": []string{"[CLS]"}},
				"[SEP]": map[string]any{"id": "[SEP]", "ids": []int{vocab["[SEP]"]}, "tokens": []string{"[SEP]"}},
			}}
	}
	b, _ := json.Marshal(tj)
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(vocab) > 40 {
		t.Fatalf("test vocabulary of %d words is larger than the tiny models' 40", len(vocab))
	}
}
