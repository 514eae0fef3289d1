package llamacpp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/singlora/singlora/gguf"
)

// llama.cpp's token types (gguf-py's TokenType).
const (
	tokenNormal      int32 = 1
	tokenControl     int32 = 3
	tokenUserDefined int32 = 4
	tokenUnused      int32 = 5
)

// The Split regexes of the byte-level pre-tokenizers llama.cpp knows by name (tokenizer.ggml.pre).
const (
	llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Regex  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// tokenizerJSON is the part of tokenizer.json the export reads.
type tokenizerJSON struct {
	Model struct {
		Type   string            `json:"type"`
		Vocab  map[string]int    `json:"vocab"`
		Merges []json.RawMessage `json:"merges"`
	} `json:"model"`
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	PreTokenizer *preTokenizer `json:"pre_tokenizer"`
}

type preTokenizer struct {
	Type          string          `json:"type"`
	UseRegex      *bool           `json:"use_regex"`
	Pattern       json.RawMessage `json:"pattern"`
	PreTokenizers []preTokenizer  `json:"pretokenizers"`
}

// preName returns llama.cpp's name for a byte-level pre-tokenizer: "gpt-2" for a ByteLevel
// pre-tokenizer that splits with GPT-2's regex, "llama-bpe" / "qwen2" for a Split with Llama 3's /
// Qwen2's regex followed by a ByteLevel that does not split.
func preName(p *preTokenizer) (string, error) {
	if p == nil {
		return "", errors.New("no pre_tokenizer: not a byte-level BPE tokenizer")
	}
	if p.Type == "ByteLevel" {
		if p.UseRegex != nil && !*p.UseRegex {
			return "", errors.New("a ByteLevel pre_tokenizer with use_regex false and no Split before it has no llama.cpp pre-tokenizer")
		}
		return "gpt-2", nil
	}
	if p.Type == "Sequence" && len(p.PreTokenizers) == 2 && p.PreTokenizers[0].Type == "Split" && p.PreTokenizers[1].Type == "ByteLevel" {
		var pat struct{ Regex string }
		if err := json.Unmarshal(p.PreTokenizers[0].Pattern, &pat); err == nil {
			switch pat.Regex {
			case llama3Regex:
				return "llama-bpe", nil
			case qwen2Regex:
				return "qwen2", nil
			}
		}
	}
	return "", fmt.Errorf("pre_tokenizer %s is not one llama.cpp names here (supported: ByteLevel as GPT-2's, or Split with Llama 3's or Qwen2's regex + ByteLevel)", p.Type)
}

// VocabKVs reads dir/tokenizer.json, a byte-level BPE tokenizer, and returns the tokenizer.ggml.*
// key-values llama.cpp's "gpt2" tokenizer reads, as convert_hf_to_gguf.py's _set_vocab_gpt2
// writes them: the vocabSize tokens by id (ids the tokenizer lacks as "[PADi]", type unused),
// their types (normal; added special tokens control, other added tokens user-defined), the
// merges as "a b" strings, the pre-tokenizer's name, bos/eos ids (bos, eos < 0: not written) and
// add_bos_token (tokenizer_config.json's, else false).
func VocabKVs(dir string, vocabSize, bos, eos int) ([]gguf.KV, error) {
	path := filepath.Join(dir, "tokenizer.json")
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no tokenizer.json; a llama.cpp model GGUF needs the tokenizer (a byte-level BPE tokenizer.json)", dir)
		}
		return nil, err
	}
	var tj tokenizerJSON
	if err := json.Unmarshal(b, &tj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("%s: model type %q; only byte-level BPE tokenizers (tokenizer.ggml.model \"gpt2\") are exported", path, tj.Model.Type)
	}
	pre, err := preName(tj.PreTokenizer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tokens := make([]string, vocabSize)
	types := make([]int32, vocabSize)
	set := make([]bool, vocabSize)
	put := func(tok string, id int, typ int32) error {
		if id < 0 || id >= vocabSize {
			return fmt.Errorf("%s: token %q has id %d, outside the model's vocab_size %d", path, tok, id, vocabSize)
		}
		if set[id] && tokens[id] != tok {
			return fmt.Errorf("%s: id %d is both %q and %q", path, id, tokens[id], tok)
		}
		tokens[id], types[id], set[id] = tok, typ, true
		return nil
	}
	for tok, id := range tj.Model.Vocab {
		if err := put(tok, id, tokenNormal); err != nil {
			return nil, err
		}
	}
	for _, at := range tj.AddedTokens {
		typ := tokenUserDefined
		if at.Special {
			typ = tokenControl
		}
		if err := put(at.Content, at.ID, typ); err != nil {
			return nil, err
		}
	}
	for i := range tokens {
		if !set[i] {
			tokens[i], types[i] = fmt.Sprintf("[PAD%d]", i), tokenUnused
		}
	}
	merges := make([]string, len(tj.Model.Merges))
	for i, raw := range tj.Model.Merges {
		var s string
		var pair []string
		switch {
		case json.Unmarshal(raw, &s) == nil && strings.Count(s, " ") == 1:
			merges[i] = s
		case json.Unmarshal(raw, &pair) == nil && len(pair) == 2:
			merges[i] = pair[0] + " " + pair[1]
		default:
			return nil, fmt.Errorf("%s: merge %d is %s, want \"a b\" or [\"a\", \"b\"]", path, i, raw)
		}
	}
	if len(merges) == 0 {
		return nil, fmt.Errorf("%s: no merges; llama.cpp's BPE tokenizer needs them", path)
	}
	addBOS := false
	if tc, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json")); err == nil {
		var cfg struct {
			AddBOS *bool `json:"add_bos_token"`
		}
		if json.Unmarshal(tc, &cfg) == nil && cfg.AddBOS != nil {
			addBOS = *cfg.AddBOS
		}
	}
	kvs := []gguf.KV{
		kv("tokenizer.ggml.model", "gpt2"), kv("tokenizer.ggml.pre", pre),
		kv("tokenizer.ggml.tokens", tokens), kv("tokenizer.ggml.token_type", types), kv("tokenizer.ggml.merges", merges),
	}
	for _, id := range []struct {
		key string
		id  int
	}{{"tokenizer.ggml.bos_token_id", bos}, {"tokenizer.ggml.eos_token_id", eos}} {
		if id.id >= vocabSize {
			return nil, fmt.Errorf("%s %d is outside vocab_size %d", id.key, id.id, vocabSize)
		}
		if id.id >= 0 {
			kvs = append(kvs, gguf.KV{Key: id.key, Value: uint32(id.id)})
		}
	}
	return append(kvs, gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: addBOS}), nil
}
