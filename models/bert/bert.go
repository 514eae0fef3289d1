// Package bert implements BERT and RoBERTa encoders from Hugging Face checkpoints, following
// transformers' modeling_bert and modeling_roberta:
//
//	e = LayerNorm(word[ids] + position[pos] + token_type[types])     (dropout)
//	per layer (post-LN):
//	    a = LayerNorm(x + attention.output.dense(MHA(query(x), key(x), value(x))))
//	    x = LayerNorm(a + output.dense(act(intermediate.dense(a))))
//	pooled = tanh(pooler.dense(x[:, 0]))                               (when the checkpoint has a pooler)
//
// Classification trains its own head (classify.Task) on the sentence features: the pooled output
// for BERT with a pooler, else the first token's hidden state x[:, 0]. A classification head the
// checkpoint carries (classifier.*) is not loaded.
//
// Positions are 0..L-1 for BERT; RoBERTa numbers real tokens from padding_idx+1 and gives
// padding tokens position padding_idx. The attention mask masks keys only (HF's extended mask).
// hidden_act "gelu" is the exact erf GELU. Linear layers keep their checkpoint module names
// (bert.encoder.layer.N.attention.self.query, ...; "roberta." for RoBERTa, "" for a bare
// BertModel checkpoint) and go through peft.Linear.
package bert

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/layers"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/nn"
	"github.com/singlora/singlora/peft"
)

// Config is the part of config.json the model uses, plus what Load found in the checkpoint.
type Config struct {
	ModelType, Architecture                                             string
	VocabSize, Hidden, Intermediate, Layers, Heads, MaxPositions, Types int
	LayerNormEps                                                        float64
	HiddenAct                                                           string
	PadTokenID                                                          int
	HiddenDropout, AttentionDropout                                     float64
	// Prefix is the checkpoint's prefix of the encoder's tensors: "bert.", "roberta." or "".
	Prefix string
	// HasPooler: the checkpoint has the pooler.
	HasPooler bool
}

// IsRoBERTa reports whether the model uses RoBERTa's positions.
func (c *Config) IsRoBERTa() bool { return c.ModelType == "roberta" }

// ModelTypes and Architectures are the config values this package loads.
var (
	ModelTypes    = []string{"bert", "roberta"}
	Architectures = []string{"BertModel", "BertForSequenceClassification", "BertForMaskedLM", "BertForPreTraining",
		"RobertaModel", "RobertaForSequenceClassification", "RobertaForMaskedLM"}
)

// LoadConfig reads and checks dir/config.json. Prefix and HasPooler are guesses from the
// architecture until Load reads the checkpoint.
func LoadConfig(dir string) (*Config, error) {
	rc, err := hf.ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	if c.ModelType, c.Architecture, err = rc.Architecture(ModelTypes, Architectures); err != nil {
		return nil, err
	}
	if c.ModelType == "" {
		c.ModelType = "bert"
		if len(c.Architecture) >= 7 && c.Architecture[:7] == "Roberta" {
			c.ModelType = "roberta"
		}
	}
	ints := []struct {
		p     *int
		field string
		def   int
	}{
		{&c.VocabSize, "vocab_size", -1}, {&c.Hidden, "hidden_size", -1}, {&c.Intermediate, "intermediate_size", -1},
		{&c.Layers, "num_hidden_layers", -1}, {&c.Heads, "num_attention_heads", -1},
		{&c.MaxPositions, "max_position_embeddings", 512}, {&c.Types, "type_vocab_size", 2}, {&c.PadTokenID, "pad_token_id", 0},
	}
	for _, f := range ints {
		if *f.p, err = rc.Int(f.field, f.def); err != nil {
			return nil, err
		}
	}
	if c.Heads == 0 || c.Hidden%c.Heads != 0 {
		return nil, fmt.Errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d", dir, c.Hidden, c.Heads)
	}
	if c.LayerNormEps, err = rc.Float("layer_norm_eps", 1e-12); err != nil {
		return nil, err
	}
	if c.HiddenAct, err = rc.OneOf("hidden_act", "gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"); err != nil {
		return nil, err
	}
	if _, err := rc.OneOf("position_embedding_type", "absolute", "absolute"); err != nil {
		return nil, err
	}
	for _, f := range []string{"is_decoder", "add_cross_attention"} {
		if err := rc.Unsupported(f, "false"); err != nil {
			return nil, err
		}
	}
	if err := rc.Unsupported("problem_type", `"single_label_classification"`); err != nil {
		return nil, err
	}
	if c.HiddenDropout, err = rc.Float("hidden_dropout_prob", 0.1); err != nil {
		return nil, err
	}
	if c.AttentionDropout, err = rc.Float("attention_probs_dropout_prob", 0.1); err != nil {
		return nil, err
	}
	if c.IsRoBERTa() && c.MaxPositions < 3 {
		return nil, fmt.Errorf("%s: max_position_embeddings %d too small for RoBERTa's offset positions", dir, c.MaxPositions)
	}
	c.Prefix = c.ModelType + "."
	c.HasPooler = !c.IsRoBERTa()
	return c, nil
}

// Linears lists the encoder's linear layers (and the pooler's, when present).
func Linears(c *Config) []peft.LinearSpec {
	var out []peft.LinearSpec
	add := func(path string, in, o int) {
		out = append(out, peft.LinearSpec{Path: c.Prefix + path, In: in, Out: o, Bias: true})
	}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("encoder.layer.%d.", i)
		add(p+"attention.self.query", c.Hidden, c.Hidden)
		add(p+"attention.self.key", c.Hidden, c.Hidden)
		add(p+"attention.self.value", c.Hidden, c.Hidden)
		add(p+"attention.output.dense", c.Hidden, c.Hidden)
		add(p+"intermediate.dense", c.Hidden, c.Intermediate)
		add(p+"output.dense", c.Intermediate, c.Hidden)
	}
	if c.HasPooler {
		add("pooler.dense", c.Hidden, c.Hidden)
	}
	return out
}

// Load reads the encoder (and pooler) of the checkpoint in dir into store and returns its
// configuration, with Prefix and HasPooler set from the tensors present.
func Load(dir string, store *model.Store) (*Config, error) {
	c, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	w, err := hf.OpenWeights(dir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if c.Prefix, err = w.Prefix("embeddings.word_embeddings.weight", c.ModelType+".", ""); err != nil {
		return nil, err
	}
	c.HasPooler = w.Has(c.Prefix + "pooler.dense.weight")
	e := c.Prefix + "embeddings."
	for _, t := range []struct {
		name string
		rows int
	}{{"word_embeddings", c.VocabSize}, {"position_embeddings", c.MaxPositions}, {"token_type_embeddings", c.Types}} {
		if err := w.Load(store, e+t.name+".weight", t.rows, c.Hidden); err != nil {
			return nil, err
		}
	}
	norms := []string{e + "LayerNorm"}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("%sencoder.layer.%d.", c.Prefix, i)
		norms = append(norms, p+"attention.output.LayerNorm", p+"output.LayerNorm")
	}
	for _, n := range norms {
		if err := w.Load(store, n+".weight", c.Hidden); err != nil {
			return nil, err
		}
		if err := w.Load(store, n+".bias", c.Hidden); err != nil {
			return nil, err
		}
	}
	for _, s := range Linears(c) {
		if err := w.LoadLinear(store, s); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Encode returns the last hidden states [B, L, hidden] for ids [B, L] (int), typeIDs [B, L] (int;
// nil means all 0) and mask [B, L] (1 at real tokens; nil means none is padding). scope must be the
// store's root scope; inj may be nil.
func Encode(c *Config, inj *peft.Injection, scope *model.Scope, ids, typeIDs, mask *Node) *Node {
	g := ids.Graph()
	b, l := ids.Shape().Dim(0), ids.Shape().Dim(1)
	ids = ConvertDType(ids, dtypes.Int32)
	base := scopeOf(scope, c.Prefix)
	emb := base.At("embeddings")
	var pos *Node
	if c.IsRoBERTa() {
		// create_position_ids_from_input_ids: cumsum(ids≠pad)·(ids≠pad) + pad.
		notPad := ConvertDType(NotEqual(ids, Scalar(g, dtypes.Int32, c.PadTokenID)), dtypes.Int32)
		pos = AddScalar(Mul(CumSum(notPad, 1), notPad), c.PadTokenID)
	} else {
		pos = BroadcastToDims(Iota(g, shapes.Make(dtypes.Int32, 1, l), 1), b, l)
	}
	if typeIDs == nil {
		typeIDs = Zeros(g, shapes.Make(dtypes.Int32, b, l))
	}
	lookup := func(name string, idx *Node) *Node {
		return Gather(nn.Param(emb.At("%s", name), "weight", g), ExpandAxes(ConvertDType(idx, dtypes.Int32), -1))
	}
	x := Add(Add(lookup("word_embeddings", ids), lookup("position_embeddings", pos)), lookup("token_type_embeddings", typeIDs))
	x = dropout(emb, nn.LayerNorm(emb.At("LayerNorm"), x, c.LayerNormEps), c.HiddenDropout)
	// Extended attention mask: (1 - mask)·(large negative) on keys only, [B, 1, 1, L].
	var bias *Node
	if mask != nil {
		bias = Reshape(MulScalar(OneMinus(ConvertDType(mask, dtypes.Float32)), nn.MaskValue), b, 1, 1, l)
	}
	for i := 0; i < c.Layers; i++ {
		x = encoderLayer(c, inj, base.At("encoder").At("layer").At("%d", i), x, bias)
	}
	return x
}

// scopeOf returns the scope of a dotted prefix ("bert." → scope.At("bert")).
func scopeOf(scope *model.Scope, prefix string) *model.Scope {
	if prefix == "" {
		return scope
	}
	return scope.At("%s", prefix[:len(prefix)-1])
}

func dropout(scope *model.Scope, x *Node, rate float64) *Node {
	if rate > 0 {
		return layers.DropoutStatic(scope, x, rate)
	}
	return x
}

func encoderLayer(c *Config, inj *peft.Injection, s *model.Scope, x, bias *Node) *Node {
	b, l := x.Shape().Dim(0), x.Shape().Dim(1)
	hd := c.Hidden / c.Heads
	self := s.At("attention").At("self")
	heads := func(t *Node) *Node { return TransposeAllDims(Reshape(t, b, l, c.Heads, hd), 0, 2, 1, 3) }
	q := heads(peft.Linear(inj, self.At("query"), x))
	k := heads(peft.Linear(inj, self.At("key"), x))
	v := heads(peft.Linear(inj, self.At("value"), x))
	q = MulScalar(q, 1/math.Sqrt(float64(hd))) // scaling q: half the elements of the scores
	if bias != nil {
		// The key bias inside the score product (see nn.WithKeyBias).
		q, k = nn.WithKeyBias(q, k, Reshape(bias, b, l))
	}
	scores := nn.MatmulT(q, k)
	p := dropout(self, Softmax(scores, -1), c.AttentionDropout)
	o := Reshape(TransposeAllDims(nn.Matmul(p, v), 0, 2, 1, 3), b, l, c.Hidden)
	ao := s.At("attention").At("output")
	o = dropout(ao, peft.Linear(inj, ao.At("dense"), o), c.HiddenDropout)
	a := nn.LayerNorm(ao.At("LayerNorm"), Add(o, x), c.LayerNormEps)
	f := nn.Activation(c.HiddenAct, peft.Linear(inj, s.At("intermediate").At("dense"), a))
	out := s.At("output")
	f = dropout(out, peft.Linear(inj, out.At("dense"), f), c.HiddenDropout)
	return nn.LayerNorm(out.At("LayerNorm"), Add(f, a), c.LayerNormEps)
}

// Pooled is the pooler output tanh(pooler.dense(hidden[:, 0])) [B, hidden].
func Pooled(c *Config, inj *peft.Injection, scope *model.Scope, hidden *Node) *Node {
	cls := Squeeze(Slice(hidden, AxisRange(), AxisRange(0, 1)), 1)
	return Tanh(peft.Linear(inj, scopeOf(scope, c.Prefix).At("pooler").At("dense"), cls))
}
