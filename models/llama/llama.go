// Package llama implements the Llama family of decoder-only causal language models
// (LlamaForCausalLM; also Mistral without sliding window and Qwen2, which differ only in
// configuration) from Hugging Face checkpoints, following transformers' modeling_llama:
//
//	h = embed_tokens[ids]
//	per layer:  h += o_proj(attn(RoPE(q_proj(n)), RoPE(k_proj(n)), v_proj(n))),  n = RMSNorm(h)
//	            h += down_proj(silu(gate_proj(n)) ⊙ up_proj(n)),                  n = RMSNorm(h)
//	logits = lm_head(RMSNorm(h))   (lm_head = embed_tokens when tied)
//
// RMSNorm is weight·x/√(mean(x²)+eps); RoPE uses inv_freq = θ^(-2i/head_dim) and HF's
// rotate_half convention (the two halves of each head, not interleaved pairs); attention is
// grouped-query (num_key_value_heads), causal, scaled by 1/√head_dim, padding keys masked.
// Every projection goes through peft.Linear under its checkpoint module name
// (model.layers.N.self_attn.q_proj, ..., model.layers.N.mlp.down_proj).
package llama

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/layers/activation"
	"github.com/gomlx/gomlx/ml/model"
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive

	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/nn"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// Config is the part of config.json the model uses.
type Config struct {
	ModelType, Architecture                                                        string
	VocabSize, Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, MaxPositions int
	RMSNormEps, RopeTheta                                                          float64
	// QKVBias: q/k/v projections have biases (Llama attention_bias, always in Qwen2); OBias: o_proj has one.
	QKVBias, OBias, MLPBias bool
	// TieEmbeddings: lm_head is embed_tokens (tie_word_embeddings, or no lm_head.weight in the checkpoint).
	TieEmbeddings bool
	BOS, EOS      int // -1 when not set
	// RecomputeBlocks makes training graphs recompute each decoder layer in the backward
	// (gradient checkpointing, models.LoadOptions.RecomputeBlocks); set after loading.
	RecomputeBlocks bool
}

// ModelTypes and Architectures are the config values this package loads.
var (
	ModelTypes    = []string{"llama", "mistral", "qwen2"}
	Architectures = []string{"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
		"LlamaForSequenceClassification", "MistralForSequenceClassification", "Qwen2ForSequenceClassification"}
)

// LoadConfig reads and checks dir/config.json.
func LoadConfig(dir string) (*Config, error) {
	rc, err := hf.ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	if c.ModelType, c.Architecture, err = rc.Architecture(ModelTypes, Architectures); err != nil {
		return nil, err
	}
	ints := []struct {
		p     *int
		field string
		def   int
	}{
		{&c.VocabSize, "vocab_size", -1}, {&c.Hidden, "hidden_size", -1}, {&c.Intermediate, "intermediate_size", -1},
		{&c.Layers, "num_hidden_layers", -1}, {&c.Heads, "num_attention_heads", -1}, {&c.MaxPositions, "max_position_embeddings", 2048},
	}
	for _, f := range ints {
		if *f.p, err = rc.Int(f.field, f.def); err != nil {
			return nil, err
		}
	}
	if c.KVHeads, err = rc.Int("num_key_value_heads", c.Heads); err != nil {
		return nil, err
	}
	if c.Heads == 0 || c.KVHeads == 0 || c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", dir, c.Heads, c.KVHeads)
	}
	if c.HeadDim, err = rc.Int("head_dim", c.Hidden/c.Heads); err != nil {
		return nil, err
	}
	if c.HeadDim%2 != 0 || c.HeadDim == 0 {
		return nil, fmt.Errorf("%s: head_dim %d must be even for RoPE", dir, c.HeadDim)
	}
	if c.RMSNormEps, err = rc.Float("rms_norm_eps", 1e-6); err != nil {
		return nil, err
	}
	if c.RopeTheta, err = rc.Float("rope_theta", 10000); err != nil {
		return nil, err
	}
	if _, err = rc.OneOf("hidden_act", "silu", "silu"); err != nil {
		return nil, err
	}
	for _, f := range []string{"rope_scaling", "sliding_window"} {
		if err := rc.Unsupported(f); err != nil {
			return nil, err
		}
	}
	if err := rc.Unsupported("use_sliding_window", "false"); err != nil {
		return nil, err
	}
	if c.ModelType == "qwen2" {
		c.QKVBias = true
	} else {
		ab, err := rc.Bool("attention_bias", false)
		if err != nil {
			return nil, err
		}
		c.QKVBias, c.OBias = ab, ab
	}
	if c.MLPBias, err = rc.Bool("mlp_bias", false); err != nil {
		return nil, err
	}
	def := c.ModelType == "qwen2"
	if c.TieEmbeddings, err = rc.Bool("tie_word_embeddings", def); err != nil {
		return nil, err
	}
	c.BOS, c.EOS = tokenID(rc, "bos_token_id"), tokenID(rc, "eos_token_id")
	return c, nil
}

// tokenID reads a token id field that may be a number or a list (the first is used), -1 if unset.
func tokenID(rc *hf.RawConfig, field string) int {
	var v any
	if ok, err := rc.Decode(field, &v); !ok || err != nil {
		return -1
	}
	switch x := v.(type) {
	case float64:
		return int(x)
	case []any:
		if len(x) > 0 {
			if f, ok := x[0].(float64); ok {
				return int(f)
			}
		}
	}
	return -1
}

// Linears lists the model's adaptable linear layers (lm_head is not one, as in PEFT's all-linear).
func Linears(c *Config) []peft.LinearSpec {
	var out []peft.LinearSpec
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		out = append(out,
			peft.LinearSpec{Path: p + "self_attn.q_proj", In: c.Hidden, Out: q, Bias: c.QKVBias},
			peft.LinearSpec{Path: p + "self_attn.k_proj", In: c.Hidden, Out: kv, Bias: c.QKVBias},
			peft.LinearSpec{Path: p + "self_attn.v_proj", In: c.Hidden, Out: kv, Bias: c.QKVBias},
			peft.LinearSpec{Path: p + "self_attn.o_proj", In: q, Out: c.Hidden, Bias: c.OBias},
			peft.LinearSpec{Path: p + "mlp.gate_proj", In: c.Hidden, Out: c.Intermediate, Bias: c.MLPBias},
			peft.LinearSpec{Path: p + "mlp.up_proj", In: c.Hidden, Out: c.Intermediate, Bias: c.MLPBias},
			peft.LinearSpec{Path: p + "mlp.down_proj", In: c.Intermediate, Out: c.Hidden, Bias: c.MLPBias},
		)
	}
	return out
}

// Load reads the checkpoint in dir into store (creating or overwriting its variables) and returns
// its configuration. TieEmbeddings is set when the checkpoint has no lm_head.weight, except for
// a *ForSequenceClassification checkpoint, which has score.weight instead (see Encoder): untied,
// it loads without an LM head and only Hidden runs on it.
func Load(dir string, store *model.Store) (*Config, error) { return LoadBase(dir, store, hf.BaseF32) }

// LoadBase is Load with the base matrices held as base says (hf.BaseDType; norms and biases stay
// float32).
func LoadBase(dir string, store *model.Store, base hf.BaseDType) (*Config, error) {
	c, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	w, err := hf.OpenWeights(dir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	w.Base = base
	if err := w.Load(store, "model.embed_tokens.weight", c.VocabSize, c.Hidden); err != nil {
		return nil, err
	}
	for _, s := range Linears(c) {
		if err := w.LoadLinear(store, s); err != nil {
			return nil, err
		}
	}
	for i := 0; i < c.Layers; i++ {
		for _, n := range []string{"input_layernorm", "post_attention_layernorm"} {
			if err := w.Load(store, fmt.Sprintf("model.layers.%d.%s.weight", i, n), c.Hidden); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Load(store, "model.norm.weight", c.Hidden); err != nil {
		return nil, err
	}
	switch {
	case w.Has("lm_head.weight") && !c.TieEmbeddings:
		if err := w.Load(store, "lm_head.weight", c.VocabSize, c.Hidden); err != nil {
			return nil, err
		}
	case sequenceClassifier(c): // no lm_head to load; TieEmbeddings stays as config.json says
	default:
		c.TieEmbeddings = true
	}
	return c, nil
}

// Logits computes the next-token logits [B, L, vocab] for ids [B, L] (int). mask [B, L] (1 at
// real tokens, 0 at padding) masks padding keys; nil means no padding. Positions are 0..L-1 (use
// right padding). scope must be the store's root scope; inj may be nil.
func Logits(c *Config, inj *peft.Injection, scope *model.Scope, ids, mask *Node) *Node {
	h := Hidden(c, inj, scope, ids, mask)
	return lmHead(c, scope, h)
}

// Hidden returns the final normalised hidden states [B, L, hidden].
func Hidden(c *Config, inj *peft.Injection, scope *model.Scope, ids, mask *Node) *Node {
	g := ids.Graph()
	l := ids.Shape().Dim(1)
	pos := Iota(g, shapes.Make(dtypes.Int32, l), 0)
	// Causal bias [1, 1, L, L]: 0 where key j ≤ query i, nn.MaskValue elsewhere. Padding keys get
	// keyBias [B, L] (nn.MaskValue at padding), added inside the score product (see layer).
	qi := Iota(g, shapes.Make(dtypes.Int32, l, l), 0)
	kj := Iota(g, shapes.Make(dtypes.Int32, l, l), 1)
	allowed := ExpandLeftToRank(LessOrEqual(kj, qi), 4) // [1,1,L,L]
	bias := Where(allowed, ScalarZero(g, dtypes.Float32), Scalar(g, dtypes.Float32, nn.MaskValue))
	var keyBias *Node
	if mask != nil {
		real := NotEqual(ConvertDType(mask, dtypes.Float32), ScalarZero(g, dtypes.Float32)) // [B, L]
		keyBias = Where(real, ZerosLike(ConvertDType(mask, dtypes.Float32)), Scalar(g, dtypes.Float32, nn.MaskValue))
	}
	h := embed(scope, ids)
	recompute := c.RecomputeBlocks && scope.IsTraining(g)
	for i := 0; i < c.Layers; i++ {
		if recompute {
			h = h.Checkpoint() // the layer's input is kept; its inside is recomputed in the backward
		}
		h, _, _ = layer(c, inj, scope.At("model").At("layers").At("%d", i), h, pos, bias, keyBias, nil, nil, nil)
	}
	if recompute {
		h = h.StopCheckpoint()
	}
	return nn.RMSNorm(scope.At("model").At("norm"), h, c.RMSNormEps)
}

func embed(scope *model.Scope, ids *Node) *Node {
	table := nn.Param(scope.At("model").At("embed_tokens"), "weight", ids.Graph())
	return ConvertDType(Gather(table, ExpandAxes(ConvertDType(ids, dtypes.Int32), -1)), dtypes.Float32) // a 16-bit table's rows widened
}

func lmHead(c *Config, scope *model.Scope, h *Node) *Node {
	var w *Node
	if c.TieEmbeddings {
		w = nn.Param(scope.At("model").At("embed_tokens"), "weight", h.Graph())
	} else {
		w = nn.Param(scope.At("lm_head"), "weight", h.Graph())
	}
	return fastops.Product(h, w, 1) // h·wᵀ, for a 16-bit w too
}

// rope applies rotary embeddings to x [B, heads, L, hd] at positions pos [L] (int32):
// x·cos + rotate_half(x)·sin, where rotate_half(x) = concat(−x[hd/2:], x[:hd/2]) is computed as
// x·R with a constant signed-permutation matrix R [hd, hd]. The product (2·hd² FLOPs per row, with
// R's packing cached by the backend as a constant) is cheaper on the pure-Go backend than two
// slices of the last axis (its generic slice), a negation and a concatenation, whose gradients add
// pads and more slices.
func rope(c *Config, x, pos *Node) *Node {
	g := x.Graph()
	half := c.HeadDim / 2
	inv := make([]float32, half)
	for i := range inv {
		inv[i] = float32(1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim)))
	}
	freqs := Mul(ExpandAxes(ConvertDType(pos, dtypes.Float32), -1), ExpandAxes(Const(g, inv), 0)) // [L, hd/2]
	emb := Concatenate([]*Node{freqs, freqs}, -1)                                                 // [L, hd]
	cos, sin := ExpandLeftToRank(Cos(emb), 4), ExpandLeftToRank(Sin(emb), 4)
	r := make([][]float32, c.HeadDim) // rotate_half as a matrix: (x·R)[j] = −x[j+half] (j < half), x[j−half]
	for i := range r {
		r[i] = make([]float32, c.HeadDim)
	}
	for j := 0; j < half; j++ {
		r[j+half][j] = -1
		r[j][j+half] = 1
	}
	rot := Dot(x, ConvertDType(Const(g, r), x.DType())).General([]int{3}, nil, []int{0}, nil)
	return Add(Mul(x, cos), Mul(rot, sin))
}

// layer runs decoder layer s on h [B, L, D]. Without a cache (kCache == nil) keys are the layer's
// own; with one, the new keys/values are written into kCache/vCache [B, kvHeads, max, hd] at
// start and attention runs over the whole cache under bias. It returns h and the updated caches.
//
// keyBias [B, Lk] (nil: none) is added to every query's score of key j, inside the score product
// (nn.WithKeyBias).
func layer(c *Config, inj *peft.Injection, s *model.Scope, h, pos, bias, keyBias, kCache, vCache, start *Node) (*Node, *Node, *Node) {
	b, l := h.Shape().Dim(0), h.Shape().Dim(1)
	n := nn.RMSNorm(s.At("input_layernorm"), h, c.RMSNormEps)
	att := s.At("self_attn")
	heads := func(t *Node, nh int) *Node { // [B, L, nh·hd] → [B, nh, L, hd]
		return TransposeAllDims(Reshape(t, b, l, nh, c.HeadDim), 0, 2, 1, 3)
	}
	q := rope(c, heads(peft.Linear(inj, att.At("q_proj"), n), c.Heads), pos)
	k := rope(c, heads(peft.Linear(inj, att.At("k_proj"), n), c.KVHeads), pos)
	v := heads(peft.Linear(inj, att.At("v_proj"), n), c.KVHeads)
	if kCache != nil {
		zero := ScalarZero(h.Graph(), dtypes.Int32)
		idx := []*Node{zero, zero, start, zero}
		kCache = DynamicUpdateSlice(kCache, k, idx)
		vCache = DynamicUpdateSlice(vCache, v, idx)
		k, v = kCache, vCache
	}
	// Grouped-query attention: query head i uses key/value head i / (heads/kvHeads) (HF repeat_kv).
	// The query heads of one group are consecutive, so q [B, heads, L, hd] reshapes to
	// [B, kvHeads, group·L, hd] and each group multiplies its key/value head directly: no
	// repeated copies of the keys and values (and no reduction of their gradients).
	grp := c.Heads / c.KVHeads
	lk := k.Shape().Dim(2)
	q = Reshape(MulScalar(q, 1/math.Sqrt(float64(c.HeadDim))), b, c.KVHeads, grp*l, c.HeadDim)
	if keyBias != nil {
		q, k = nn.WithKeyBias(q, k, keyBias)
	}
	scores := Reshape(nn.GroupedMatmulT(q, k, grp), b, c.Heads, l, lk)
	w := Reshape(Softmax(Add(scores, bias), -1), b, c.KVHeads, grp*l, lk)
	o := Reshape(nn.GroupedMatmul(w, v, grp), b, c.Heads, l, c.HeadDim)
	o = Reshape(TransposeAllDims(o, 0, 2, 1, 3), b, l, c.Heads*c.HeadDim)
	h = Add(h, peft.Linear(inj, att.At("o_proj"), o))
	n = nn.RMSNorm(s.At("post_attention_layernorm"), h, c.RMSNormEps)
	mlp := s.At("mlp")
	gate := peft.Linear(inj, mlp.At("gate_proj"), n)
	up := peft.Linear(inj, mlp.At("up_proj"), n)
	act := Mul(activation.Swish(gate), up) // SiLU: one fused op (and fused gradient) on the Go backend
	return Add(h, peft.Linear(inj, mlp.At("down_proj"), act)), kCache, vCache
}

// CachedLogits runs the L tokens ids [B, L] at positions start..start+L-1 against a KV cache:
// caches holds 2·Layers tensors [B, kvHeads, max, hd] (keys then values of each layer). Query i
// attends cache positions ≤ start+i. It returns the logits [B, L, vocab] followed by the updated
// caches. Prefill is a call with start 0 and zero caches; each generated token is a call with L=1.
func CachedLogits(c *Config, inj *peft.Injection, scope *model.Scope, ids, start *Node, caches []*Node) []*Node {
	if len(caches) != 2*c.Layers {
		Panicf("llama.CachedLogits: %d cache tensors, want %d", len(caches), 2*c.Layers)
	}
	g := ids.Graph()
	l := ids.Shape().Dim(1)
	maxLen := caches[0].Shape().Dim(2)
	start = ConvertDType(start, dtypes.Int32)
	pos := Add(Iota(g, shapes.Make(dtypes.Int32, l), 0), start)
	kj := Iota(g, shapes.Make(dtypes.Int32, l, maxLen), 1)
	allowed := LessOrEqual(kj, ExpandAxes(pos, -1)) // [L, max]
	bias := ExpandLeftToRank(Where(allowed, ScalarZero(g, dtypes.Float32), Scalar(g, dtypes.Float32, nn.MaskValue)), 4)
	h := embed(scope, ids)
	out := make([]*Node, 1, 1+len(caches))
	for i := 0; i < c.Layers; i++ {
		var kc, vc *Node
		h, kc, vc = layer(c, inj, scope.At("model").At("layers").At("%d", i), h, pos, bias, nil, caches[2*i], caches[2*i+1], start)
		out = append(out, kc, vc)
	}
	h = nn.RMSNorm(scope.At("model").At("norm"), h, c.RMSNormEps)
	out[0] = lmHead(c, scope, h)
	return out
}

// LossFn returns the causal-LM loss over inputs ids [B, L] (int32), targets [B, L] (int32: the
// token each position must predict) and lossMask [B, L] (float32: 1 where the loss counts, e.g.
// completion tokens; see lm.CausalBatch): the mean cross-entropy over masked positions. An
// optional fourth input is the attention mask [B, L].
func LossFn(c *Config, inj *peft.Injection) train.LossFn {
	return StreamedLossFn(c, inj, 1)
}

// StreamedLossFn is LossFn with the batch split into streams independent chains of ops
// (nn.CausalLoss): the same loss, overlapped better on the pure-Go backend's cores.
func StreamedLossFn(c *Config, inj *peft.Injection, streams int) train.LossFn {
	return func(scope *model.Scope, in []*Node) *Node {
		return nn.CausalLoss(streams, in, func(ids, mask *Node) *Node { return Logits(c, inj, scope, ids, mask) })
	}
}
