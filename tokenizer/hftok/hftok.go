// Package hftok loads a Hugging Face tokenizer.json (WordPiece for BERT, byte-level BPE for GPT-2
// and Llama 3, ...) from a local model folder, through go-huggingface's hftokenizer (no hub
// access).
package hftok

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/go-huggingface/tokenizers/api"
	"github.com/gomlx/go-huggingface/tokenizers/hftokenizer"
)

// Tokenizer encodes text to token ids and back.
type Tokenizer struct {
	tok *hftokenizer.Tokenizer
	// cleanup: the decoder is WordPiece with "cleanup": true (hftokenizer does not apply it).
	cleanup bool
	// Special tokens named in tokenizer_config.json (or found by their usual names); -1 if none.
	BOS, EOS, Pad, CLS, SEP, Unk int
}

// Load reads dir/tokenizer.json (and dir/tokenizer_config.json if present).
func Load(dir string) (*Tokenizer, error) {
	path := filepath.Join(dir, "tokenizer.json")
	content, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no tokenizer.json in the model folder", dir)
		}
		return nil, err
	}
	cfg := &api.Config{}
	if b, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json")); err == nil {
		if err := json.Unmarshal(b, cfg); err != nil {
			// Special-token fields may be objects ({"content": ...}) in some files: fall back to
			// the tokenizer.json alone rather than failing.
			cfg = &api.Config{}
		}
	}
	return FromJSON(content, cfg)
}

// FromJSON builds a tokenizer from tokenizer.json content; cfg may be nil.
func FromJSON(content []byte, cfg *api.Config) (*Tokenizer, error) {
	if cfg == nil {
		cfg = &api.Config{}
	}
	tok, err := hftokenizer.NewFromContent(cfg, content)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	t := &Tokenizer{tok: tok}
	var dec struct {
		Decoder *struct {
			Type    string `json:"type"`
			Cleanup *bool  `json:"cleanup"`
		} `json:"decoder"`
	}
	if json.Unmarshal(content, &dec) == nil && dec.Decoder != nil && dec.Decoder.Type == "WordPiece" {
		t.cleanup = dec.Decoder.Cleanup == nil || *dec.Decoder.Cleanup
	}
	id := func(configured string, names ...string) int {
		if configured != "" {
			names = append([]string{configured}, names...)
		}
		for _, n := range names {
			if i, ok := tok.TokenToID(n); ok {
				return i
			}
		}
		return -1
	}
	t.BOS = id(cfg.BosToken, "<s>", "<|begin_of_text|>", "<|endoftext|>")
	t.EOS = id(cfg.EosToken, "</s>", "<|end_of_text|>", "<|eot_id|>", "<|endoftext|>")
	t.Pad = id(cfg.PadToken, "[PAD]", "<pad>")
	t.CLS = id(cfg.ClsToken, "[CLS]", "<s>")
	t.SEP = id(cfg.SepToken, "[SEP]", "</s>")
	t.Unk = id(cfg.UnkToken, "[UNK]", "<unk>")
	return t, nil
}

// Encode returns the ids of text without special tokens.
func (t *Tokenizer) Encode(text string) []int {
	_ = t.tok.With(api.EncodeOptions{})
	return t.tok.Encode(text)
}

// EncodeWithSpecial returns the ids of text with the post-processor's special tokens (e.g. BERT's
// [CLS] … [SEP]).
func (t *Tokenizer) EncodeWithSpecial(text string) []int {
	_ = t.tok.With(api.EncodeOptions{AddSpecialTokens: true})
	defer func() { _ = t.tok.With(api.EncodeOptions{}) }()
	return t.tok.Encode(text)
}

// Decode returns the text of ids (unknown ids are skipped). A WordPiece decoder with cleanup
// applies HF's cleanup of tokenization spaces (" ." → ".", " n't" → "n't", ...).
func (t *Tokenizer) Decode(ids []int) string {
	s := t.tok.Decode(ids)
	if t.cleanup {
		s = cleanupReplacer.Replace(s)
	}
	return s
}

// cleanupReplacer is the tokenizers crate's wordpiece cleanup.
var cleanupReplacer = strings.NewReplacer(" .", ".", " ?", "?", " !", "!", " ,", ",", " ' ", "'",
	" n't", "n't", " 'm", "'m", " do not", " don't", " 's", "'s", " 've", "'ve", " 're", "'re")

// TokenID returns the id of token.
func (t *Tokenizer) TokenID(token string) (int, bool) { return t.tok.TokenToID(token) }

// Token returns the string of id.
func (t *Tokenizer) Token(id int) (string, bool) { return t.tok.IDToToken(id) }

// VocabSize is the number of tokens.
func (t *Tokenizer) VocabSize() int { return t.tok.VocabSize() }
