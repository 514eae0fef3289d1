package backend

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/layers/activation"
)

// gptShape is the shape of the tiny GPT used by the backend tests: the workload on which
// compute v0.1.2's default config deadlocked (4 layers, dim 256).
type gptShape struct {
	Vocab, Dim, Heads, Layers, Seq, Batch int
	LR                                    float32
	// Dropout > 0 adds dropout (drawn with GoMLX's graph RNG, seeded by RNGStateFromSeed) after
	// the attention and MLP blocks; the step then takes and returns the RNG state.
	Dropout float64
}

var tinyGPT = gptShape{Vocab: 512, Dim: 256, Heads: 4, Layers: 4, Seq: 64, Batch: 8, LR: 0.05}

// bert4l is a BERT-base-sized step (4 of its 12 layers; small vocabulary so the tied head
// does not dominate), fully trained, for speed comparisons only.
var bert4l = gptShape{Vocab: 1024, Dim: 768, Heads: 12, Layers: 4, Seq: 128, Batch: 8, LR: 0.01}

// paramShapes lists the shapes of the model's trainable parameters, in input order.
func (s gptShape) paramShapes() [][]int {
	D, F := s.Dim, 4*s.Dim
	ps := [][]int{{s.Vocab, D}, {s.Seq, D}} // token embedding (tied to the head), positions
	for range s.Layers {
		ps = append(ps,
			[]int{D}, []int{D}, // ln1 gain, bias
			[]int{D, D}, []int{D, D}, []int{D, D}, []int{D, D}, // wq, wk, wv, wo
			[]int{D}, []int{D}, // ln2 gain, bias
			[]int{D, F}, []int{F}, []int{F, D}, []int{D}, // mlp
		)
	}
	ps = append(ps, []int{D}, []int{D}) // final ln
	return ps
}

// initParams returns seeded initial parameters (host-side, so bit-identical for a seed).
func (s gptShape) initParams(seed uint64) []*tensors.Tensor {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var out []*tensors.Tensor
	for i, dims := range s.paramShapes() {
		n := 1
		for _, d := range dims {
			n *= d
		}
		data := make([]float32, n)
		isGain := len(dims) == 1 && dims[0] == s.Dim && isLayerNormGain(i, s)
		for j := range data {
			switch {
			case isGain:
				data[j] = 1
			case len(dims) == 1:
				data[j] = 0
			default:
				data[j] = float32(rng.NormFloat64() * 0.02)
			}
		}
		out = append(out, tensors.FromFlatDataAndDimensions(data, dims...))
	}
	return out
}

func isLayerNormGain(i int, s gptShape) bool {
	const perLayer = 12
	n := len(s.paramShapes())
	if i == n-2 {
		return true
	}
	if i < 2 || i >= n-2 {
		return false
	}
	k := (i - 2) % perLayer
	return k == 0 || k == 6
}

// batch returns a seeded batch of tokens and next-token labels with some structure to learn
// (each sequence counts up by a per-sequence stride).
func (s gptShape) batch(seed uint64, step int) (tokens, labels *tensors.Tensor) {
	rng := rand.New(rand.NewPCG(seed, uint64(step)))
	tok := make([]int32, s.Batch*s.Seq)
	lab := make([]int32, s.Batch*s.Seq)
	for b := range s.Batch {
		start, stride := rng.IntN(s.Vocab), 1+rng.IntN(7)
		for t := range s.Seq {
			tok[b*s.Seq+t] = int32((start + t*stride) % s.Vocab)
			lab[b*s.Seq+t] = int32((start + (t+1)*stride) % s.Vocab)
		}
	}
	return tensors.FromFlatDataAndDimensions(tok, s.Batch, s.Seq),
		tensors.FromFlatDataAndDimensions(lab, s.Batch, s.Seq)
}

func layerNorm(x, gain, bias *Node) *Node {
	mean := ReduceAndKeep(x, ReduceMean, -1)
	xc := Sub(x, mean)
	variance := ReduceAndKeep(Square(xc), ReduceMean, -1)
	y := Div(xc, Sqrt(AddScalar(variance, 1e-5)))
	return Add(Mul(y, ExpandLeftToRank(gain, y.Rank())), ExpandLeftToRank(bias, y.Rank()))
}

// trainStep builds one SGD training step: inputs are params..., tokens, labels; outputs are
// loss, new params....
func (s gptShape) trainStep(inputs []*Node) []*Node {
	nExtra := 2
	if s.Dropout > 0 {
		nExtra = 3
	}
	nP := len(inputs) - nExtra
	params, tokens, labels := inputs[:nP], inputs[nP], inputs[nP+1]
	g := tokens.Graph()
	var rng *Node
	if s.Dropout > 0 {
		rng = inputs[nP+2]
	}
	dropout := func(x *Node) *Node {
		if rng == nil {
			return x
		}
		var u *Node
		rng, u = RandomUniform(rng, x.Shape())
		keep := LessThan(u, Scalar(g, dtypes.Float32, 1-s.Dropout))
		return Where(keep, MulScalar(x, 1/(1-s.Dropout)), ZerosLike(x))
	}
	B, S, D, H := s.Batch, s.Seq, s.Dim, s.Heads
	hd := D / H

	emb, pos := params[0], params[1]
	x := Gather(emb, InsertAxes(tokens, -1)) // [B,S,D]
	x = Add(x, InsertAxes(pos, 0))
	causal := LowerTriangular(g, S)
	maskBias := Where(causal, ScalarZero(g, dtypes.Float32), Scalar(g, dtypes.Float32, -1e9))
	maskBias = InsertAxes(maskBias, 0, 0) // [1,1,S,S]
	for l := range s.Layers {
		p := params[2+12*l : 2+12*(l+1)]
		h := layerNorm(x, p[0], p[1])
		q := Reshape(Einsum("bsd,de->bse", h, p[2]), B, S, H, hd)
		k := Reshape(Einsum("bsd,de->bse", h, p[3]), B, S, H, hd)
		v := Reshape(Einsum("bsd,de->bse", h, p[4]), B, S, H, hd)
		scores := MulScalar(Einsum("bqhd,bkhd->bhqk", q, k), 1/math.Sqrt(float64(hd)))
		attn := Softmax(Add(scores, maskBias), -1)
		ctx := Reshape(Einsum("bhqk,bkhd->bqhd", attn, v), B, S, D)
		x = Add(x, dropout(Einsum("bsd,de->bse", ctx, p[5])))
		h = layerNorm(x, p[6], p[7])
		h = activation.GeluApproximate(Add(Einsum("bsd,df->bsf", h, p[8]), ExpandLeftToRank(p[9], 3)))
		x = Add(x, dropout(Add(Einsum("bsf,fd->bsd", h, p[10]), ExpandLeftToRank(p[11], 3))))
	}
	x = layerNorm(x, params[nP-2], params[nP-1])
	logits := Einsum("bsd,vd->bsv", x, emb) // tied head
	logp := LogSoftmax(logits, -1)
	loss := Neg(ReduceAllMean(ReduceSum(Mul(OneHot(labels, s.Vocab, dtypes.Float32), logp), -1)))

	grads := Gradient(loss, params...)
	out := []*Node{loss}
	for i, p := range params {
		out = append(out, Sub(p, MulScalar(grads[i], float64(s.LR))))
	}
	if rng != nil {
		out = append(out, rng)
	}
	return out
}

// trainer runs training steps of a gptShape on a backend.
type trainer struct {
	s      gptShape
	exec   *Exec
	params []*tensors.Tensor
	rng    *tensors.Tensor // graph RNG state, when s.Dropout > 0
	seed   uint64
	step   int
}

func newTrainer(b compute.Backend, s gptShape, seed uint64) (*trainer, error) {
	e, err := NewExec(b, s.trainStep)
	if err != nil {
		return nil, err
	}
	tr := &trainer{s: s, exec: e, params: s.initParams(seed), seed: seed}
	if s.Dropout > 0 {
		if tr.rng, err = RNGStateFromSeed(int64(seed)); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// Step runs one training step and returns the loss.
func (t *trainer) Step() (float32, error) {
	tok, lab := t.s.batch(t.seed, t.step)
	args := make([]any, 0, len(t.params)+2)
	for _, p := range t.params {
		args = append(args, p)
	}
	args = append(args, tok, lab)
	if t.rng != nil {
		args = append(args, t.rng)
	}
	outs, err := t.exec.Call(args...)
	if err != nil {
		return 0, err
	}
	for _, p := range t.params {
		p.FinalizeAll()
	}
	tok.FinalizeAll()
	lab.FinalizeAll()
	loss := tensors.ToScalar[float32](outs[0])
	outs[0].FinalizeAll()
	if t.rng != nil {
		t.rng.FinalizeAll()
		t.rng = outs[len(outs)-1]
		outs = outs[:len(outs)-1]
	}
	t.params = outs[1:]
	t.step++
	return loss, nil
}

func (t *trainer) Close() {
	for _, p := range t.params {
		p.FinalizeAll()
	}
	if t.rng != nil {
		t.rng.FinalizeAll()
	}
	t.exec.Finalize()
}

// runTraining builds a fresh executor, runs steps from the seeded init and returns the losses
// and the mean time per step, excluding the first (compiling) step.
func runTraining(b compute.Backend, s gptShape, seed uint64, steps int) ([]float32, time.Duration, error) {
	tr, err := newTrainer(b, s, seed)
	if err != nil {
		return nil, 0, err
	}
	defer tr.Close()
	losses := make([]float32, 0, steps)
	var start time.Time
	for i := range steps {
		if i == 1 {
			start = time.Now()
		}
		l, err := tr.Step()
		if err != nil {
			return losses, 0, fmt.Errorf("step %d: %w", i, err)
		}
		losses = append(losses, l)
	}
	var per time.Duration
	if steps > 1 {
		per = time.Since(start) / time.Duration(steps-1)
	}
	return losses, per, nil
}

func TestTinyGPTLearns(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	b := newTestBackend(t, DefaultConfig)
	losses, per, err := runTraining(b, tinyGPT, 1, 12)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("losses %v, %v/step", losses, per)
	first, last := losses[0], losses[len(losses)-1]
	if math.IsNaN(float64(last)) || !(last < first) {
		t.Fatalf("loss did not decrease: %v", losses)
	}
	if d := float64(first) - math.Log(float64(tinyGPT.Vocab)); math.Abs(d) > 0.5 {
		t.Errorf("initial loss %v, want ≈ ln(%d) = %.3f", first, tinyGPT.Vocab, math.Log(float64(tinyGPT.Vocab)))
	}
}

func newTestBackend(t testing.TB, config string) compute.Backend {
	t.Helper()
	b, err := New(config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Finalize)
	return b
}
