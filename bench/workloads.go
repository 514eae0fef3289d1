package bench

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/models/bert"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// Presets lists the preset names, in the order "singlora bench --preset all" runs them (all but
// the Heavy ones). The "model" preset (a step of the checkpoint Model) is not among them: it needs
// --model.
var Presets = []string{"layer", "bert-base-4l", "llama-tiny", "demo", "llama-1b", "llama-7b"}

// Heavy marks the presets "--preset all" leaves out: each writes a multi-GB checkpoint and needs
// several GB of memory (llama-7b over 14 GB in bf16), so they run only when named.
var Heavy = map[string]bool{"llama-1b": true, "llama-7b": true}

// Streams is how many independent chains the bert-base-4l and demo steps split their batch into
// (fastops.Streams; the same math, overlapped better by the pure-Go backend). The bench command's
// --streams sets it; 1 is the plain single-chain step.
var Streams = 2

// DefaultMethods are the methods a preset runs when none is asked for: SingLoRA and LoRA (the
// SingLoRA/LoRA step ratio is a target), plus the naive ΔW SingLoRA for the layer preset; SingLoRA
// alone for the checkpoint presets, whose steps take minutes (--method singlora,lora adds LoRA).
var DefaultMethods = map[string][]string{
	"layer":        {"singlora", "lora", "naive"},
	"bert-base-4l": {"singlora", "lora"},
	"llama-tiny":   {"singlora", "lora"},
	"demo":         {"singlora", "lora"},
	"model":        {"singlora", "lora"},
	"llama-1b":     {"singlora"},
	"llama-7b":     {"singlora"},
}

// LayerSizes are the layer preset's (in, out, r) at N = LayerTokens rows.
var LayerSizes = [][3]int{{768, 768, 8}, {768, 3072, 8}, {4096, 4096, 8}, {4096, 11008, 16}}

// LayerTokens is the layer preset's batch×sequence.
const LayerTokens = 1024

// Workloads returns the workloads of a preset for the given methods (nil: DefaultMethods).
func Workloads(preset string, methods []string) ([]Workload, error) {
	if _, ok := DefaultMethods[preset]; !ok {
		return nil, fmt.Errorf("unknown preset %q (known: %s; model with --model)", preset, strings.Join(Presets, ", "))
	}
	if len(methods) == 0 {
		methods = DefaultMethods[preset]
	}
	var out []Workload
	for _, m := range methods {
		m = strings.ToLower(strings.TrimSpace(m))
		switch preset {
		case "layer":
			if m != "singlora" && m != "lora" && m != "naive" {
				return nil, fmt.Errorf("preset layer: method %q (singlora, lora, naive)", m)
			}
			for _, sz := range LayerSizes {
				out = append(out, LayerWorkload(sz[0], sz[1], sz[2], m))
			}
		case "bert-base-4l":
			w, err := BertWorkload(BertBase4L, m)
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		case "llama-tiny":
			w, err := LlamaWorkload(LlamaTiny, m)
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		case "demo":
			w, err := DemoWorkload(m)
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		case "llama-1b", "llama-7b":
			w, err := LlamaCheckpointWorkload(LlamaPresets[preset], m)
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		case "model":
			w, err := ModelWorkload(m)
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		default:
			return nil, fmt.Errorf("unknown preset %q (known: %s)", preset, strings.Join(Presets, ", "))
		}
	}
	return out, nil
}

// Find returns the workload called name ("<preset>/<variant>").
func Find(name string) (Workload, error) {
	preset, _, _ := strings.Cut(name, "/")
	var methods []string
	if preset == "layer" {
		methods = DefaultMethods["layer"]
	} else {
		_, m, _ := strings.Cut(name, "/")
		methods = []string{m}
	}
	ws, err := Workloads(preset, methods)
	if err != nil {
		return Workload{}, err
	}
	for _, w := range ws {
		if w.Name == name {
			return w, nil
		}
	}
	return Workload{}, fmt.Errorf("no workload %q", name)
}

func parseMethod(m string) (peft.Method, error) { return peft.ParseMethod(m) }

// normal returns n float32 values ~ N(0, std²) from a seeded stream.
func normal(rng *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	return v
}

func getBackend() (compute.Backend, error) { return backend.Get() }

// LayerWorkload times one adapted linear layer, forward + backward (gradients w.r.t. the adapter
// and the layer input, as inside a network; the frozen weight gets none), at N = LayerTokens rows.
// variant is "singlora", "lora" or "naive" (SingLoRA building ΔW = s·A[:out]·A[:in]ᵀ every step,
// as the public Python implementations do).
func LayerWorkload(in, out, r int, variant string) Workload {
	n := LayerTokens
	flops := 4*float64(n)*float64(in)*float64(out) + 6*float64(n)*float64(r)*float64(in+out)
	name := fmt.Sprintf("layer/%dx%dr%d/%s", in, out, r, variant)
	method := variant
	if variant == "naive" {
		method = "singlora"
	}
	return Workload{Name: name, Method: method, Shape: fmt.Sprintf("x[%d,%d] W[%d,%d] r=%d", n, in, out, in, r), GFLOP: flops / 1e9,
		Setup: func() (func() error, error) {
			m := peft.SingLoRA
			if variant == "lora" {
				m = peft.LoRA
			}
			cfg := peft.DefaultConfig(m)
			cfg.Rank, cfg.Alpha, cfg.Targets = r, float64(r), []string{"lin"}
			rng := rand.New(rand.NewPCG(1, 2))
			store := model.NewStore()
			store.VariableWithValue("/lin/weight", tensors.FromFlatDataAndDimensions(normal(rng, in*out, 0.02), out, in))
			inj, err := peft.Inject(cfg, []peft.LinearSpec{{Path: "lin", In: in, Out: out}})
			if err != nil {
				return nil, err
			}
			if err := inj.Attach(store); err != nil {
				return nil, err
			}
			if m == peft.LoRA { // B = 0 would make the gradient of A trivially zero; give B values
				if err := store.GetVariable("/lin/" + peft.NameLoRAB).SetValue(tensors.FromFlatDataAndDimensions(normal(rng, out*r, 0.01), out, r)); err != nil {
					return nil, err
				}
			}
			b, err := getBackend()
			if err != nil {
				return nil, err
			}
			exec, err := model.NewExec(b, store, func(scope *model.Scope, x *Node) []*Node {
				g := x.Graph()
				scope.SetTraining(g, true)
				var y *Node
				if variant == "naive" {
					y = peft.NaiveSingLoRALinear(inj, scope.In("lin"), x)
				} else {
					y = peft.Linear(inj, scope.In("lin"), x)
				}
				loss := ReduceAllSum(y)
				wrt := []*Node{x}
				for v := range store.IterVariables() {
					if v.Trainable && peft.IsAdapterVariable(v.Path()) {
						wrt = append(wrt, v.NodeValue(g))
					}
				}
				// Return the loss too: with only the gradients as outputs, the backend drops the
				// base forward matmul (nothing uses y) and the timing would miss it.
				return append([]*Node{loss}, Gradient(loss, wrt...)...)
			})
			if err != nil {
				return nil, err
			}
			x := tensors.FromFlatDataAndDimensions(normal(rng, n*in, 1), n, in)
			return func() error {
				outs, err := exec.Call(x)
				if err != nil {
					return err
				}
				for _, o := range outs {
					o.FinalizeAll()
				}
				return nil
			}, nil
		}}
}

// BertShape is a BERT encoder benchmark shape.
type BertShape struct {
	Name                                      string
	Vocab, Hidden, Heads, FFN, Layers, MaxPos int
	Seq, Batch, Rank                          int
	Alpha                                     float64
	Targets                                   []string
}

// BertBase4L is the performance issue's workload: BERT-base widths, 4 layers, seq 128, batch 8,
// SingLoRA r = α = 8 on every attention and FFN linear, trainable 2-label head on the first token.
var BertBase4L = BertShape{Name: "bert-base-4l", Vocab: 30522, Hidden: 768, Heads: 12, FFN: 3072, Layers: 4, MaxPos: 512,
	Seq: 128, Batch: 8, Rank: 8, Alpha: 8,
	Targets: []string{"query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"}}

// nominalGFLOP is the matmul work of a step whose forward matmuls cost fwd FLOPs, of which
// trainableFwd belong to trainable weights: forward + input gradients (2·fwd) + weight gradients.
func nominalGFLOP(fwd, trainableFwd float64) float64 { return (2*fwd + trainableFwd) / 1e9 }

// BertWorkload is one training step (forward, backward, AdamW) of a random-weight BERT encoder
// (erf GELU, post-LN, learned positions, no dropout) with a trainable linear head on the first
// token and cross-entropy over 2 labels. Methods: singlora, lora, loraplus, dora, full, frozen.
func BertWorkload(s BertShape, method string) (Workload, error) {
	m, err := parseMethod(method)
	if err != nil {
		return Workload{}, err
	}
	n := float64(s.Batch * s.Seq)
	h, f := float64(s.Hidden), float64(s.FFN)
	linear := 2 * n * (4*h*h + 2*h*f) * float64(s.Layers)
	attn := 4 * float64(s.Batch) * float64(s.Seq*s.Seq) * h * float64(s.Layers)
	trainable := 0.0
	if peft.TrainsBase(m) {
		trainable = linear
	}
	w := Workload{Name: s.Name + "/" + string(m), Method: string(m), GFLOP: nominalGFLOP(linear+attn, trainable),
		Shape: fmt.Sprintf("B=%d L=%d hidden=%d heads=%d ffn=%d layers=%d vocab=%d r=%d streams=%d", s.Batch, s.Seq, s.Hidden, s.Heads, s.FFN, s.Layers, s.Vocab, s.Rank, Streams)}
	w.Setup = func() (func() error, error) {
		c := &bert.Config{ModelType: "bert", Architecture: "BertModel", VocabSize: s.Vocab, Hidden: s.Hidden, Intermediate: s.FFN,
			Layers: s.Layers, Heads: s.Heads, MaxPositions: s.MaxPos, Types: 2, LayerNormEps: 1e-12, HiddenAct: "gelu"}
		store := model.NewStore()
		rng := rand.New(rand.NewPCG(42, 7))
		set := func(name string, vals []float32, shape ...int) error {
			return hf.SetVariable(store, name, vals, shape...)
		}
		ones := func(k int) []float32 {
			v := make([]float32, k)
			for i := range v {
				v[i] = 1
			}
			return v
		}
		for _, t := range []struct {
			name string
			rows int
		}{{"word_embeddings", s.Vocab}, {"position_embeddings", s.MaxPos}, {"token_type_embeddings", 2}} {
			if err := set("embeddings."+t.name+".weight", normal(rng, t.rows*s.Hidden, 0.02), t.rows, s.Hidden); err != nil {
				return nil, err
			}
		}
		norms := []string{"embeddings.LayerNorm"}
		for i := 0; i < s.Layers; i++ {
			norms = append(norms, fmt.Sprintf("encoder.layer.%d.attention.output.LayerNorm", i), fmt.Sprintf("encoder.layer.%d.output.LayerNorm", i))
		}
		for _, nm := range norms {
			if err := set(nm+".weight", ones(s.Hidden), s.Hidden); err != nil {
				return nil, err
			}
			if err := set(nm+".bias", make([]float32, s.Hidden), s.Hidden); err != nil {
				return nil, err
			}
		}
		specs := bert.Linears(c)
		for _, sp := range append(specs, peft.LinearSpec{Path: "classifier", In: s.Hidden, Out: 2, Bias: true}) {
			if err := set(sp.Path+".weight", normal(rng, sp.In*sp.Out, 0.02), sp.Out, sp.In); err != nil {
				return nil, err
			}
			if err := set(sp.Path+".bias", make([]float32, sp.Out), sp.Out); err != nil {
				return nil, err
			}
		}
		cfg := peft.DefaultConfig(m)
		cfg.Rank, cfg.Alpha, cfg.Targets, cfg.ModulesToSave = s.Rank, s.Alpha, s.Targets, []string{"classifier"}
		inj, err := peft.Inject(cfg, specs)
		if err != nil {
			return nil, err
		}
		if err := inj.Attach(store); err != nil {
			return nil, err
		}
		loss := func(scope *model.Scope, in []*Node) *Node {
			logits := fastops.Streams(Streams, in[:2], func(in []*Node) *Node {
				hs := bert.Encode(c, inj, scope, in[0], nil, in[1])
				cls := Squeeze(Slice(hs, AxisRange(), AxisRange(0, 1)), 1)
				return peft.Linear(nil, scope.At("classifier"), cls)
			})
			return classify.CrossEntropy(logits, in[2])
		}
		ids := make([]int32, s.Batch*s.Seq)
		for i := range ids {
			ids[i] = int32(rng.IntN(s.Vocab))
		}
		mask := make([]float32, s.Batch*s.Seq)
		for i := range mask {
			mask[i] = 1
		}
		labels := make([]int32, s.Batch)
		for i := range labels {
			labels[i] = int32(i % 2)
		}
		inputs := []*tensors.Tensor{tensors.FromFlatDataAndDimensions(ids, s.Batch, s.Seq),
			tensors.FromFlatDataAndDimensions(mask, s.Batch, s.Seq), tensors.FromFlatDataAndDimensions(labels, s.Batch)}
		return stepper(store, loss, inputs)
	}
	return w, nil
}

// stepper returns one AdamW training step (lr 1e-3, PyTorch's defaults) on fixed inputs.
func stepper(store *model.Store, loss train.LossFn, inputs []*tensors.Tensor) (func() error, error) {
	b, err := getBackend()
	if err != nil {
		return nil, err
	}
	st, err := train.NewStepper(b, store, loss, optim.DefaultAdamW(1e-3), 1)
	if err != nil {
		return nil, err
	}
	return func() error {
		_, err := st.Step(inputs)
		return err
	}, nil
}

// LlamaShape is a Llama decoder benchmark shape.
type LlamaShape struct {
	Name                                            string
	Vocab, Hidden, Heads, KVHeads, FFN, Layers, Seq int
	Batch, Rank                                     int
	Alpha                                           float64
}

// LlamaTiny is a small Llama-shaped decoder: hidden 512, 8 layers, 8 query heads sharing 2
// key/value heads (head dim 64), SwiGLU FFN 1536, untied LM head over 8192 tokens, seq 256,
// batch 4; adapters on every linear (q,k,v,o,gate,up,down), LM loss on every position.
var LlamaTiny = LlamaShape{Name: "llama-tiny", Vocab: 8192, Hidden: 512, Heads: 8, KVHeads: 2, FFN: 1536, Layers: 8, Seq: 256,
	Batch: 4, Rank: 8, Alpha: 8}

// LlamaWorkload is one training step of a random-weight Llama decoder with the LM loss.
func LlamaWorkload(s LlamaShape, method string) (Workload, error) {
	m, err := parseMethod(method)
	if err != nil {
		return Workload{}, err
	}
	hd := s.Hidden / s.Heads
	w := Workload{Name: s.Name + "/" + string(m), Method: string(m), GFLOP: s.gflop(m), Shape: s.shape()}
	w.Setup = func() (func() error, error) {
		c := &llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: s.Vocab, Hidden: s.Hidden, Intermediate: s.FFN,
			Layers: s.Layers, Heads: s.Heads, KVHeads: s.KVHeads, HeadDim: hd, MaxPositions: 2048, RMSNormEps: 1e-6, RopeTheta: 10000,
			BOS: -1, EOS: -1}
		store := model.NewStore()
		rng := rand.New(rand.NewPCG(42, 8))
		set := func(name string, vals []float32, shape ...int) error {
			return hf.SetVariable(store, name, vals, shape...)
		}
		ones := make([]float32, s.Hidden)
		for i := range ones {
			ones[i] = 1
		}
		if err := set("model.embed_tokens.weight", normal(rng, s.Vocab*s.Hidden, 0.02), s.Vocab, s.Hidden); err != nil {
			return nil, err
		}
		if err := set("lm_head.weight", normal(rng, s.Vocab*s.Hidden, 0.02), s.Vocab, s.Hidden); err != nil {
			return nil, err
		}
		if err := set("model.norm.weight", ones, s.Hidden); err != nil {
			return nil, err
		}
		for i := 0; i < s.Layers; i++ {
			for _, nm := range []string{"input_layernorm", "post_attention_layernorm"} {
				if err := set(fmt.Sprintf("model.layers.%d.%s.weight", i, nm), ones, s.Hidden); err != nil {
					return nil, err
				}
			}
		}
		specs := llama.Linears(c)
		for _, sp := range specs {
			if err := set(sp.Path+".weight", normal(rng, sp.In*sp.Out, 0.02), sp.Out, sp.In); err != nil {
				return nil, err
			}
		}
		cfg := peft.DefaultConfig(m)
		cfg.Rank, cfg.Alpha = s.Rank, s.Alpha
		inj, err := peft.Inject(cfg, specs)
		if err != nil {
			return nil, err
		}
		if err := inj.Attach(store); err != nil {
			return nil, err
		}
		ids := make([]int32, s.Batch*s.Seq)
		targets := make([]int32, s.Batch*s.Seq)
		lossMask := make([]float32, s.Batch*s.Seq)
		for i := range ids {
			ids[i], targets[i], lossMask[i] = int32(rng.IntN(s.Vocab)), int32(rng.IntN(s.Vocab)), 1
		}
		inputs := []*tensors.Tensor{tensors.FromFlatDataAndDimensions(ids, s.Batch, s.Seq),
			tensors.FromFlatDataAndDimensions(targets, s.Batch, s.Seq), tensors.FromFlatDataAndDimensions(lossMask, s.Batch, s.Seq)}
		return stepper(store, llama.StreamedLossFn(c, inj, Streams), inputs)
	}
	return w, nil
}
