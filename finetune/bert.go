package finetune

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models/bert"
	"github.com/singlora/singlora/models/hf/hftok"
	"github.com/singlora/singlora/peft"
)

// bertEncoder adapts a Hugging Face BERT/RoBERTa folder to classify.Encoder: sentence features
// are the pooler output (BERT with a pooler) or the first token's hidden state.
type bertEncoder struct {
	cfg    *bert.Config
	tok    *hftok.Tokenizer
	maxLen int
}

func loadBERT(dir string, store *model.Store, maxLen int) (*bertEncoder, error) {
	cfg, err := bert.Load(dir, store)
	if err != nil {
		return nil, err
	}
	tok, err := hftok.Load(dir)
	if err != nil {
		return nil, err
	}
	if maxLen <= 0 {
		maxLen = 128
	}
	if cfg.MaxPositions > 0 {
		limit := cfg.MaxPositions
		if cfg.IsRoBERTa() {
			limit -= cfg.PadTokenID + 1 // RoBERTa's positions start after padding_idx
		}
		maxLen = min(maxLen, limit)
	}
	return &bertEncoder{cfg: cfg, tok: tok, maxLen: maxLen}, nil
}

func (e *bertEncoder) Linears() []peft.LinearSpec { return bert.Linears(e.cfg) }

func (e *bertEncoder) EmbedDim() int { return e.cfg.Hidden }

func (e *bertEncoder) Embed(inj *peft.Injection, scope *model.Scope, ids, mask *Node) *Node {
	h := bert.Encode(e.cfg, inj, scope, ids, nil, mask)
	if e.cfg.HasPooler && !e.cfg.IsRoBERTa() {
		return bert.Pooled(e.cfg, inj, scope, h)
	}
	return Squeeze(Slice(h, AxisRange(), AxisRange(0, 1)), 1)
}

// Tokenize adds the model's special tokens ([CLS] … [SEP] or <s> … </s>) and clips to maxLen
// (keeping the final separator).
func (e *bertEncoder) Tokenize(texts []string) [][]int {
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

// PadBatch right-pads with the model's pad token.
func (e *bertEncoder) PadBatch(rows [][]int, multiple int) (ids, mask *tensors.Tensor) {
	multiple = max(multiple, 1)
	longest := 1
	for _, r := range rows {
		longest = max(longest, len(r))
	}
	l := min((longest+multiple-1)/multiple*multiple, max(e.maxLen, longest))
	idv := make([]int32, len(rows)*l)
	mv := make([]float32, len(rows)*l)
	for i, r := range rows {
		for j := 0; j < l; j++ {
			if j < len(r) {
				idv[i*l+j], mv[i*l+j] = int32(r[j]), 1
			} else {
				idv[i*l+j] = int32(e.cfg.PadTokenID)
			}
		}
	}
	return tensors.FromFlatDataAndDimensions(idv, len(rows), l), tensors.FromFlatDataAndDimensions(mv, len(rows), l)
}

var _ = fmt.Sprint
