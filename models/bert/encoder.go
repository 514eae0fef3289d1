package bert

import (
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/tokenizer/hftok"
)

// defaultMaxLength is the number of tokens per text an Encoder reads when none is asked for
// (special tokens included), lowered to what the model's positions allow.
const defaultMaxLength = 128

// Encoder is a BERT/RoBERTa checkpoint as a sentence encoder for classification (it implements
// classify.Encoder and classify.Clipper): the features of a text are the pooler output
// tanh(pooler.dense(h[:, 0])) when the checkpoint is a BERT with a pooler, else the first
// token's last hidden state h[:, 0], [batch, Hidden].
type Encoder struct {
	Config *Config
	tok    *hftok.Tokenizer
	maxLen int
}

// LoadEncoder loads the checkpoint in dir into store, with the tokenizer.json of the folder.
// maxLen is the tokens per text it reads (≤ 0: defaultMaxLength), at most the model's positions.
func LoadEncoder(dir string, store *model.Store, maxLen int) (*Encoder, error) {
	cfg, err := Load(dir, store)
	if err != nil {
		return nil, err
	}
	tok, err := hftok.Load(dir)
	if err != nil {
		return nil, err
	}
	return newEncoder(cfg, tok, maxLen), nil
}

// newEncoder clips maxLen (≤ 0: defaultMaxLength) to the positions the model has: RoBERTa's
// start after padding_idx.
func newEncoder(cfg *Config, tok *hftok.Tokenizer, maxLen int) *Encoder {
	if maxLen <= 0 {
		maxLen = defaultMaxLength
	}
	if cfg.MaxPositions > 0 {
		limit := cfg.MaxPositions
		if cfg.IsRoBERTa() {
			limit -= cfg.PadTokenID + 1
		}
		maxLen = min(maxLen, limit)
	}
	return &Encoder{Config: cfg, tok: tok, maxLen: maxLen}
}

// Linears implements classify.Encoder.
func (e *Encoder) Linears() []peft.LinearSpec { return Linears(e.Config) }

// EmbedDim implements classify.Encoder: the hidden size.
func (e *Encoder) EmbedDim() int { return e.Config.Hidden }

// Embed implements classify.Encoder: the sentence features [B, Hidden] of ids, mask [B, L].
func (e *Encoder) Embed(inj *peft.Injection, scope *model.Scope, ids, mask *Node) *Node {
	h := Encode(e.Config, inj, scope, ids, nil, mask)
	if e.Config.HasPooler && !e.Config.IsRoBERTa() {
		return Pooled(e.Config, inj, scope, h)
	}
	return Squeeze(Slice(h, AxisRange(), AxisRange(0, 1)), 1)
}

// Tokenize adds the model's special tokens ([CLS] … [SEP] or <s> … </s>) and clips to maxLen
// (keeping the final separator).
func (e *Encoder) Tokenize(texts []string) [][]int {
	out := make([][]int, len(texts))
	for i, t := range texts {
		ids := e.tok.EncodeWithSpecial(t)
		if len(ids) > e.maxLen {
			last := ids[len(ids)-1]
			ids = append(ids[:e.maxLen-1:e.maxLen-1], last)
		}
		out[i] = ids
	}
	return out
}

// MaxLength implements classify.Clipper: the tokens per text, special tokens included, that the
// encoder reads.
func (e *Encoder) MaxLength() int { return e.maxLen }

// TokenizeClipped implements classify.Clipper: Tokenize, also counting the texts that had more
// than maxLen tokens (only rows of exactly maxLen tokens can have been clipped; those texts are
// tokenised again to tell).
func (e *Encoder) TokenizeClipped(texts []string) ([][]int, int) {
	rows := e.Tokenize(texts)
	clipped := 0
	for i, r := range rows {
		if len(r) == e.maxLen && len(e.tok.EncodeWithSpecial(texts[i])) > e.maxLen {
			clipped++
		}
	}
	return rows, clipped
}

// PadBatch implements classify.Encoder: right-pads rows with the model's pad token to a length
// that is a multiple of multiple (at most max(maxLen, longest row)); mask is 1 at real tokens.
func (e *Encoder) PadBatch(rows [][]int, multiple int) (ids, mask *tensors.Tensor) {
	return lm.PadRows(rows, multiple, e.maxLen, e.Config.PadTokenID)
}
