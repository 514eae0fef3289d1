package llama

import (
	"fmt"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/tokenizer/hftok"
)

// defaultMaxLength is the number of tokens per text an Encoder reads when none is asked for
// (special tokens included), lowered to max_position_embeddings.
const defaultMaxLength = 128

// sequenceClassifier reports whether c is a *ForSequenceClassification checkpoint: "model.*"
// tensors plus score.weight [num_labels, hidden] and no lm_head.
func sequenceClassifier(c *Config) bool {
	return strings.HasSuffix(c.Architecture, "ForSequenceClassification")
}

// Encoder is a Llama-family checkpoint (Llama, Mistral, Qwen2; *ForCausalLM or
// *ForSequenceClassification) as a sentence encoder for classification. It implements
// classify.Encoder, classify.Clipper and models.Encoder. The features of a text are pooled as
// transformers' LlamaForSequenceClassification pools them: the final normalised hidden state
// (Hidden) of the sequence's last real token,
//
//	f[b] = RMSNorm(h)[b, t_b, :]  [B, hidden],   t_b = max{ t : mask[b, t] = 1 },
//
// which with right padding is the last position before the padding (HF finds it as the last id
// that is not pad_token_id; the two agree unless a text itself contains the pad token).
//
// HF's head is score = Linear(hidden, num_labels, bias=False) on f. Here the head is the one
// classify.Task trains for every encoder: Linear(hidden, num_labels) with a bias at scope
// "/head", freshly initialised (classify.Task.InitHead) and saved as PEFT modules_to_save. A
// checkpoint's score.weight is ignored: its label order (id2label) need not match the run's
// label set.
type Encoder struct {
	Config *Config
	tok    *hftok.Tokenizer
	maxLen int
	pad    int
}

// LoadEncoder loads the checkpoint in dir into store with its base matrices held as base says
// (see LoadBase), and the folder's tokenizer.json. maxLen is the tokens per text it reads
// (≤ 0: defaultMaxLength), at most max_position_embeddings.
func LoadEncoder(dir string, store *model.Store, base hf.BaseDType, maxLen int) (*Encoder, error) {
	c, err := LoadBase(dir, store, base)
	if err != nil {
		return nil, err
	}
	tok, err := hftok.Load(dir)
	if err != nil {
		return nil, err
	}
	return newEncoder(c, tok, maxLen), nil
}

// newEncoder clips maxLen (≤ 0: defaultMaxLength) to the model's positions and picks the pad
// id: the tokenizer's pad token, else its EOS, else 0 (padding is masked and never pooled, so
// any id in the vocabulary serves).
func newEncoder(c *Config, tok *hftok.Tokenizer, maxLen int) *Encoder {
	if maxLen <= 0 {
		maxLen = defaultMaxLength
	}
	if c.MaxPositions > 0 {
		maxLen = min(maxLen, c.MaxPositions)
	}
	pad := tok.Pad
	if pad < 0 {
		pad = tok.EOS
	}
	if pad < 0 || pad >= c.VocabSize {
		pad = 0
	}
	return &Encoder{Config: c, tok: tok, maxLen: maxLen, pad: pad}
}

// Linears implements classify.Encoder: every projection of every layer (Linears).
func (e *Encoder) Linears() []peft.LinearSpec { return Linears(e.Config) }

// EmbedDim implements classify.Encoder: the hidden size.
func (e *Encoder) EmbedDim() int { return e.Config.Hidden }

// FeatureScale implements models.Encoder: the hidden states are used as they are (1).
func (e *Encoder) FeatureScale() float64 { return 1 }

// Embed implements classify.Encoder: the features [B, hidden] of ids, mask [B, L] (see Encoder).
// A row with no real token pools position 0.
func (e *Encoder) Embed(inj *peft.Injection, scope *model.Scope, ids, mask *Node) *Node {
	h := Hidden(e.Config, inj, scope, ids, mask) // [B, L, D]
	return lastReal(h, mask)
}

// lastReal returns h[b, t_b, :] [B, D] for h [B, L, D], t_b the last position where mask [B, L]
// is not 0 (0 when there is none), as Σ_t h[b, t, :]·[t = t_b] (its gradient reaches only t_b).
func lastReal(h, mask *Node) *Node {
	g := h.Graph()
	b, l := mask.Shape().Dim(0), mask.Shape().Dim(1)
	pos := Iota(g, shapes.Make(dtypes.Int32, b, l), 1)
	real := NotEqual(ConvertDType(mask, dtypes.Float32), ScalarZero(g, dtypes.Float32))
	last := ReduceMax(Where(real, pos, ZerosLike(pos)), 1) // [B]
	pick := ConvertDType(Equal(pos, ExpandAxes(last, -1)), h.DType())
	return ReduceSum(Mul(h, ExpandAxes(pick, -1)), 1)
}

// Tokenize implements classify.Encoder: the tokenizer's ids with its post-processor's special
// tokens (HF's add_special_tokens=True: Llama's <s> first, none for Qwen2), clipped to the first
// MaxLength.
func (e *Encoder) Tokenize(texts []string) [][]int {
	out := make([][]int, len(texts))
	for i, t := range texts {
		ids := e.tok.EncodeWithSpecial(t)
		out[i] = ids[:min(len(ids), e.maxLen)]
	}
	return out
}

// MaxLength implements classify.Clipper: the tokens per text, special tokens included, that the
// encoder reads.
func (e *Encoder) MaxLength() int { return e.maxLen }

// TokenizeClipped implements classify.Clipper: Tokenize, also counting the texts that had more
// than MaxLength tokens.
func (e *Encoder) TokenizeClipped(texts []string) ([][]int, int) {
	out := make([][]int, len(texts))
	clipped := 0
	for i, t := range texts {
		ids := e.tok.EncodeWithSpecial(t)
		if len(ids) > e.maxLen {
			ids, clipped = ids[:e.maxLen], clipped+1
		}
		out[i] = ids
	}
	return out, clipped
}

// PadBatch implements classify.Encoder: right-pads rows to a length that is a multiple of
// multiple (at most max(MaxLength, longest row)); ids [B, L] int32, mask [B, L] float32, 1 at
// real tokens. An empty row gets one masked pad token.
func (e *Encoder) PadBatch(rows [][]int, multiple int) (ids, mask *tensors.Tensor) {
	return lm.PadRows(rows, multiple, e.maxLen, e.pad)
}

// checkCausal returns an error when c is a sequence-classification checkpoint without
// lm_head: it has no next-token head to train or generate with.
func checkCausal(dir string, c *Config) error {
	if sequenceClassifier(c) && !c.TieEmbeddings {
		return fmt.Errorf("%s: %s is a sequence classifier (score.weight, no lm_head.weight): it has no causal-LM head; train it with --task classify", dir, c.Architecture)
	}
	return nil
}
