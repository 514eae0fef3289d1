// Package gpt2 implements GPT-2 (GPT2LMHeadModel / GPT2Model) from Hugging Face checkpoints,
// following transformers' modeling_gpt2:
//
//	h = wte[ids] + wpe[0..L-1]
//	per block (pre-LN):  h += attn.c_proj(MHA(split(attn.c_attn(ln_1(h)))))
//	                     h += mlp.c_proj(gelu_new(mlp.c_fc(ln_2(h))))
//	logits = ln_f(h)·wteᵀ   (the LM head is tied to wte)
//
// c_attn, c_proj and c_fc are Conv1D layers whose weights are stored [in, out]; they go through
// peft.Linear with layout peft.InOut under their checkpoint module names (transformer.h.N.attn.c_attn
// for GPT2LMHeadModel checkpoints, h.N.attn.c_attn for bare GPT2Model ones). Attention is causal,
// scaled by 1/√head_dim, with padding keys masked.
package gpt2

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/layers"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/models/nn"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// Config is the part of config.json the model uses, plus the checkpoint's tensor prefix.
type Config struct {
	Architecture                                       string
	VocabSize, Hidden, Layers, Heads, Positions, Inner int
	LayerNormEps                                       float64
	Activation                                         string
	ScaleAttn                                          bool
	ResidDropout, EmbdDropout, AttnDropout             float64
	BOS, EOS                                           int
	// Prefix is "transformer." (GPT2LMHeadModel) or "" (GPT2Model), as found by Load.
	Prefix string
	// RecomputeBlocks makes training graphs recompute each block in the backward (gradient
	// checkpointing, models.LoadOptions.RecomputeBlocks); set after loading.
	RecomputeBlocks bool
}

// ModelTypes and Architectures are the config values this package loads.
var (
	ModelTypes    = []string{"gpt2"}
	Architectures = []string{"GPT2LMHeadModel", "GPT2Model"}
)

// LoadConfig reads and checks dir/config.json.
func LoadConfig(dir string) (*Config, error) {
	rc, err := hf.ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	if _, c.Architecture, err = rc.Architecture(ModelTypes, Architectures); err != nil {
		return nil, err
	}
	ints := []struct {
		p     *int
		field string
		def   int
	}{
		{&c.VocabSize, "vocab_size", -1}, {&c.Hidden, "n_embd", -1}, {&c.Layers, "n_layer", -1},
		{&c.Heads, "n_head", -1}, {&c.Positions, "n_positions", 1024}, {&c.BOS, "bos_token_id", 50256}, {&c.EOS, "eos_token_id", 50256},
	}
	for _, f := range ints {
		if *f.p, err = rc.Int(f.field, f.def); err != nil {
			return nil, err
		}
	}
	if c.Heads == 0 || c.Hidden%c.Heads != 0 {
		return nil, fmt.Errorf("%s: n_embd %d is not a multiple of n_head %d", dir, c.Hidden, c.Heads)
	}
	if c.Inner, err = rc.Int("n_inner", 4*c.Hidden); err != nil {
		return nil, err
	}
	if c.LayerNormEps, err = rc.Float("layer_norm_epsilon", 1e-5); err != nil {
		return nil, err
	}
	if c.Activation, err = rc.OneOf("activation_function", "gelu_new", nn.Activations...); err != nil {
		return nil, err
	}
	if c.ScaleAttn, err = rc.Bool("scale_attn_weights", true); err != nil {
		return nil, err
	}
	for _, f := range []string{"scale_attn_by_inverse_layer_idx", "add_cross_attention"} {
		if err := rc.Unsupported(f, "false"); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		p     *float64
		field string
	}{{&c.ResidDropout, "resid_pdrop"}, {&c.EmbdDropout, "embd_pdrop"}, {&c.AttnDropout, "attn_pdrop"}} {
		if *f.p, err = rc.Float(f.field, 0.1); err != nil {
			return nil, err
		}
	}
	c.Prefix = "transformer."
	if c.Architecture == "GPT2Model" {
		c.Prefix = ""
	}
	return c, nil
}

// Linears lists the Conv1D layers (layout [in, out]).
func Linears(c *Config) []peft.LinearSpec {
	var out []peft.LinearSpec
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("%sh.%d.", c.Prefix, i)
		out = append(out,
			peft.LinearSpec{Path: p + "attn.c_attn", In: c.Hidden, Out: 3 * c.Hidden, Bias: true, Layout: peft.InOut},
			peft.LinearSpec{Path: p + "attn.c_proj", In: c.Hidden, Out: c.Hidden, Bias: true, Layout: peft.InOut},
			peft.LinearSpec{Path: p + "mlp.c_fc", In: c.Hidden, Out: c.Inner, Bias: true, Layout: peft.InOut},
			peft.LinearSpec{Path: p + "mlp.c_proj", In: c.Inner, Out: c.Hidden, Bias: true, Layout: peft.InOut},
		)
	}
	return out
}

// Load reads the checkpoint in dir into store and returns its configuration (Prefix set from the
// tensors present). The attention-mask buffers older checkpoints carry (attn.bias,
// attn.masked_bias) and a duplicate lm_head.weight are ignored: the head is tied to wte.
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
	if c.Prefix, err = w.Prefix("wte.weight", "transformer.", ""); err != nil {
		return nil, err
	}
	if err := w.Load(store, c.Prefix+"wte.weight", c.VocabSize, c.Hidden); err != nil {
		return nil, err
	}
	if err := w.Load(store, c.Prefix+"wpe.weight", c.Positions, c.Hidden); err != nil {
		return nil, err
	}
	norms := []string{c.Prefix + "ln_f"}
	for i := 0; i < c.Layers; i++ {
		norms = append(norms, fmt.Sprintf("%sh.%d.ln_1", c.Prefix, i), fmt.Sprintf("%sh.%d.ln_2", c.Prefix, i))
	}
	for _, n := range norms {
		for _, s := range []string{".weight", ".bias"} {
			if err := w.Load(store, n+s, c.Hidden); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range Linears(c) {
		if err := w.LoadLinear(store, s); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// withLayouts returns inj, or for a nil inj an adapter-free injection listing the Conv1D layers:
// peft.Linear learns a layer's [in, out] layout from the injection's module list, and a nil
// injection has none.
func withLayouts(c *Config, inj *peft.Injection) *peft.Injection {
	if inj != nil {
		return inj
	}
	plain, err := peft.Inject(peft.Config{Method: peft.Frozen}, Linears(c))
	if err != nil {
		panic(err)
	}
	return plain
}

func dropout(scope *model.Scope, x *Node, rate float64) *Node {
	if rate > 0 {
		return layers.DropoutStatic(scope, x, rate)
	}
	return x
}

// Hidden returns ln_f's output [B, L, hidden] for ids [B, L] (int) with mask [B, L] (1 at real
// tokens; nil: no padding). Positions are 0..L-1 (use right padding). inj may be nil.
func Hidden(c *Config, inj *peft.Injection, scope *model.Scope, ids, mask *Node) *Node {
	inj = withLayouts(c, inj)
	g := ids.Graph()
	b, l := ids.Shape().Dim(0), ids.Shape().Dim(1)
	if l > c.Positions {
		panic(fmt.Sprintf("gpt2: sequence length %d exceeds n_positions %d", l, c.Positions))
	}
	base := scope
	if c.Prefix != "" {
		base = scope.At("transformer")
	}
	wte := nn.Param(base.At("wte"), "weight", g)
	wpe := Slice(nn.Param(base.At("wpe"), "weight", g), AxisRange(0, l))
	tok := Gather(wte, ExpandAxes(ConvertDType(ids, dtypes.Int32), -1))                           // 16-bit tables' rows widened:
	h := Add(ConvertDType(tok, dtypes.Float32), ExpandAxes(ConvertDType(wpe, dtypes.Float32), 0)) // no-ops for float32
	h = dropout(base, h, c.EmbdDropout)
	qi := Iota(g, shapes.Make(dtypes.Int32, l, l), 0)
	kj := Iota(g, shapes.Make(dtypes.Int32, l, l), 1)
	allowed := ExpandLeftToRank(LessOrEqual(kj, qi), 4)
	if mask != nil {
		real := NotEqual(ConvertDType(mask, dtypes.Float32), ScalarZero(g, dtypes.Float32))
		allowed = LogicalAnd(allowed, Reshape(real, b, 1, 1, l))
	}
	bias := Where(allowed, ScalarZero(g, dtypes.Float32), Scalar(g, dtypes.Float32, nn.MaskValue))
	hd := c.Hidden / c.Heads
	recompute := c.RecomputeBlocks && scope.IsTraining(g)
	for i := 0; i < c.Layers; i++ {
		if recompute {
			h = h.Checkpoint() // the block's input is kept; its inside is recomputed in the backward
		}
		s := base.At("h").At("%d", i)
		a := nn.LayerNorm(s.At("ln_1"), h, c.LayerNormEps)
		attn := s.At("attn")
		qkv := peft.Linear(inj, attn.At("c_attn"), a) // [B, L, 3D]: q, k, v
		split := func(j int) *Node {
			t := Slice(qkv, AxisRange(), AxisRange(), AxisRange(j*c.Hidden, (j+1)*c.Hidden))
			return TransposeAllDims(Reshape(t, b, l, c.Heads, hd), 0, 2, 1, 3)
		}
		q, k, v := split(0), split(1), split(2)
		scores := Einsum("bhqd,bhkd->bhqk", q, k)
		if c.ScaleAttn {
			scores = MulScalar(scores, 1/math.Sqrt(float64(hd)))
		}
		p := dropout(attn, Softmax(Add(scores, bias), -1), c.AttnDropout)
		o := Reshape(TransposeAllDims(Einsum("bhqk,bhkd->bhqd", p, v), 0, 2, 1, 3), b, l, c.Hidden)
		h = Add(h, dropout(attn.At("c_proj"), peft.Linear(inj, attn.At("c_proj"), o), c.ResidDropout))
		m := nn.LayerNorm(s.At("ln_2"), h, c.LayerNormEps)
		mlp := s.At("mlp")
		f := nn.Activation(c.Activation, peft.Linear(inj, mlp.At("c_fc"), m))
		h = Add(h, dropout(mlp.At("c_proj"), peft.Linear(inj, mlp.At("c_proj"), f), c.ResidDropout))
	}
	if recompute {
		h = h.StopCheckpoint()
	}
	return nn.LayerNorm(base.At("ln_f"), h, c.LayerNormEps)
}

// Logits returns the LM logits [B, L, vocab] (head tied to wte).
func Logits(c *Config, inj *peft.Injection, scope *model.Scope, ids, mask *Node) *Node {
	h := Hidden(c, inj, scope, ids, mask)
	base := scope
	if c.Prefix != "" {
		base = scope.At("transformer")
	}
	wte := nn.Param(base.At("wte"), "weight", h.Graph())
	return fastops.Product(h, wte, 1) // h·wteᵀ, for a 16-bit wte too
}

// LossFn is the causal-LM loss over ids, targets and a loss mask (and optionally an attention
// mask), as llama.LossFn; see lm.CausalBatch.
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

// Generator generates without a KV cache: every step recomputes the logits of the sequence
// right-padded to MaxLen (one compiled graph; causal attention makes the padding irrelevant).
// Create it after the weights it should use are set (see train.NewInference).
type Generator struct {
	Config *Config
	MaxLen int
	exec   *model.Exec
}

// NewGenerator prepares generation of sequences up to maxLen tokens.
func NewGenerator(backend compute.Backend, store *model.Store, c *Config, inj *peft.Injection, maxLen int) (*Generator, error) {
	if maxLen <= 0 || maxLen > c.Positions {
		return nil, fmt.Errorf("generation length %d must be in [1, %d]", maxLen, c.Positions)
	}
	exec, err := model.NewExec(backend, store, func(scope *model.Scope, ids *Node) *Node {
		return Logits(c, inj, scope, ids, nil)
	})
	if err != nil {
		return nil, err
	}
	return &Generator{Config: c, MaxLen: maxLen, exec: exec}, nil
}

// Generate continues prompt with up to maxNew tokens, stopping after stop (if ≥ 0).
func (g *Generator) Generate(prompt []int, maxNew int, opts lm.SampleOptions, stop int) ([]int, error) {
	if len(prompt) == 0 || len(prompt)+maxNew > g.MaxLen {
		return nil, fmt.Errorf("generate: prompt of %d tokens + %d new must be in [1, %d]", len(prompt), maxNew, g.MaxLen)
	}
	if err := lm.CheckRange(prompt, g.Config.VocabSize); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	seq := append([]int(nil), prompt...)
	sampler := lm.NewSampler(opts)
	v := g.Config.VocabSize
	for len(seq) < len(prompt)+maxNew {
		ids := make([]int32, g.MaxLen)
		for i, t := range seq {
			ids[i] = int32(t)
		}
		res, err := g.exec.Call(tensors.FromFlatDataAndDimensions(ids, 1, g.MaxLen))
		if err != nil {
			return nil, err
		}
		logits := tensors.MustCopyFlatData[float32](res[0])
		next := sampler.Next(logits[(len(seq)-1)*v : len(seq)*v])
		seq = append(seq, next)
		if next == stop {
			break
		}
	}
	return seq[len(prompt):], nil
}
