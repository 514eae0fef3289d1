package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/backend"
)

// TestMaskedCrossEntropy checks the gathered/hand-differentiated cross-entropy against the
// LogSoftmax·one-hot form and its automatic gradient, in float64 (1e-12) and float32 (1e-5),
// for rank-2 and rank-3 logits, partial and empty masks, and the first and last class ids.
func TestMaskedCrossEntropy(t *testing.T) {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		dims  []int // logits dims
		empty bool
	}{
		{"rank2", []int{6, 5}, false},
		{"rank3", []int{2, 4, 7}, false},
		{"empty-mask", []int{3, 4}, true},
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range cases {
		for _, f64 := range []bool{true, false} {
			v := tc.dims[len(tc.dims)-1]
			n := 1
			for _, d := range tc.dims[:len(tc.dims)-1] {
				n *= d
			}
			logits := make([]float64, n*v)
			for i := range logits {
				logits[i] = 3 * rng.NormFloat64()
			}
			targets := make([]int32, n)
			mask := make([]float32, n)
			for i := range targets {
				targets[i] = int32(rng.IntN(v))
				if i%2 == 0 && !tc.empty {
					mask[i] = 1
				}
			}
			targets[0], targets[n-1] = 0, int32(v-1)
			mask[n-1] = 0
			if !tc.empty {
				mask[n-1] = 1
			}
			lead := tc.dims[:len(tc.dims)-1]
			var lt *tensors.Tensor
			if f64 {
				lt = tensors.FromFlatDataAndDimensions(logits, tc.dims...)
			} else {
				l32 := make([]float32, len(logits))
				for i, x := range logits {
					l32[i] = float32(x)
				}
				lt = tensors.FromFlatDataAndDimensions(l32, tc.dims...)
			}
			exec, err := NewExec(b, func(l, tg, m *Node) []*Node {
				a := MaskedCrossEntropy(l, tg, m)
				r := maskedCrossEntropyDecomposed(l, tg, m)
				ga := Gradient(a, l)[0]
				gr := Gradient(r, l)[0]
				return []*Node{ConvertDType(a, dtypes.Float64), ConvertDType(r, dtypes.Float64), ConvertDType(ga, dtypes.Float64), ConvertDType(gr, dtypes.Float64)}
			})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := exec.Exec(lt, tensors.FromFlatDataAndDimensions(targets, lead...), tensors.FromFlatDataAndDimensions(mask, lead...))
			if err != nil {
				t.Fatal(err)
			}
			tol := 1e-12
			if !f64 {
				tol = 1e-5
			}
			a, r := tensors.ToScalar[float64](outs[0]), tensors.ToScalar[float64](outs[1])
			if math.Abs(a-r) > tol*math.Max(1, math.Abs(r)) {
				t.Errorf("%s f64=%v: loss %.12g, reference %.12g", tc.name, f64, a, r)
			}
			if tc.empty && a != 0 {
				t.Errorf("%s: loss %g with an empty mask, want 0", tc.name, a)
			}
			ga, gr := tensors.MustCopyFlatData[float64](outs[2]), tensors.MustCopyFlatData[float64](outs[3])
			nonzero := 0
			for i := range gr {
				if math.Abs(ga[i]-gr[i]) > tol*math.Max(1, math.Abs(gr[i])) {
					t.Fatalf("%s f64=%v: gradient[%d] = %.12g, reference %.12g", tc.name, f64, i, ga[i], gr[i])
				}
				if gr[i] != 0 {
					nonzero++
				}
			}
			if nonzero == 0 && !tc.empty {
				t.Errorf("%s: reference gradient is all zero: the test checks nothing", tc.name)
			}
		}
	}
}

// BenchmarkMaskedCrossEntropy times the loss and its gradient over [4, 256, 32000] logits (a
// Llama-2-sized vocabulary), the gathered form against the LogSoftmax·one-hot reference:
//
//	go test ./models/nn -run '^$' -bench MaskedCrossEntropy -benchtime 5x
func BenchmarkMaskedCrossEntropy(b *testing.B) {
	be, err := backend.Get()
	if err != nil {
		b.Fatal(err)
	}
	const bs, l, v = 4, 256, 32000
	rng := rand.New(rand.NewPCG(7, 8))
	logits := make([]float32, bs*l*v)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	targets := make([]int32, bs*l)
	mask := make([]float32, bs*l)
	for i := range targets {
		targets[i], mask[i] = int32(rng.IntN(v)), 1
	}
	lt := tensors.FromFlatDataAndDimensions(logits, bs, l, v)
	tt := tensors.FromFlatDataAndDimensions(targets, bs, l)
	mt := tensors.FromFlatDataAndDimensions(mask, bs, l)
	for _, bc := range []struct {
		name string
		loss func(l, t, m *Node) *Node
	}{{"gathered", MaskedCrossEntropy}, {"onehot-reference", maskedCrossEntropyDecomposed}} {
		b.Run(bc.name, func(b *testing.B) {
			exec, err := NewExec(be, func(l, t, m *Node) []*Node {
				loss := bc.loss(l, t, m)
				return []*Node{loss, ReduceAllSum(Gradient(loss, l)[0])}
			})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := exec.Exec(lt, tt, mt); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := exec.Exec(lt, tt, mt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCausalLossStreamsMatchWhole checks that CausalLoss over 2 and 3 streams (and with an
// attention-mask input) equals MaskedCrossEntropy of the whole batch, value and gradient w.r.t.
// a weight shared by all rows (float64, 1e-12), including a part whose loss mask is all zero.
func TestCausalLossStreamsMatchWhole(t *testing.T) {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	const bs, l, d, v = 6, 3, 4, 5
	rng := rand.New(rand.NewPCG(11, 12))
	feats := make([]float64, bs*l*d)
	for i := range feats {
		feats[i] = rng.NormFloat64()
	}
	w := make([]float64, d*v)
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	targets := make([]int32, bs*l)
	lossMask := make([]float32, bs*l)
	for i := range targets {
		targets[i] = int32(rng.IntN(v))
		if i >= 2*l && i%2 == 0 { // rows 0-1 (the first of 3 streams) have no loss positions
			lossMask[i] = 1
		}
	}
	attn := make([]float32, bs*l)
	for i := range attn {
		attn[i] = 1
	}
	for _, streams := range []int{2, 3} {
		for _, withMask := range []bool{false, true} {
			exec, err := NewExec(b, func(f, w, tg, lm, am *Node) []*Node {
				logitsFn := func(ids, mask *Node) *Node {
					out := Dot(ids, w).General([]int{2}, nil, []int{0}, nil) // "ids" carries features here
					if mask != nil {
						out = Mul(out, ExpandAxes(ConvertDType(mask, out.DType()), -1))
					}
					return out
				}
				in := []*Node{f, tg, lm}
				if withMask {
					in = append(in, am)
				}
				split := CausalLoss(streams, in, logitsFn)
				var whole *Node
				if withMask {
					whole = MaskedCrossEntropy(logitsFn(f, am), tg, lm)
				} else {
					whole = MaskedCrossEntropy(logitsFn(f, nil), tg, lm)
				}
				return []*Node{split, whole, Gradient(split, w)[0], Gradient(whole, w)[0]}
			})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(feats, bs, l, d), tensors.FromFlatDataAndDimensions(w, d, v),
				tensors.FromFlatDataAndDimensions(targets, bs, l), tensors.FromFlatDataAndDimensions(lossMask, bs, l),
				tensors.FromFlatDataAndDimensions(attn, bs, l))
			if err != nil {
				t.Fatal(err)
			}
			a, r := tensors.ToScalar[float64](outs[0]), tensors.ToScalar[float64](outs[1])
			if math.Abs(a-r) > 1e-12 || r == 0 {
				t.Fatalf("streams=%d mask=%v: loss %.15g, whole batch %.15g", streams, withMask, a, r)
			}
			ga, gr := tensors.MustCopyFlatData[float64](outs[2]), tensors.MustCopyFlatData[float64](outs[3])
			for i := range gr {
				if math.Abs(ga[i]-gr[i]) > 1e-12 {
					t.Fatalf("streams=%d mask=%v: gradient[%d] %.15g, whole batch %.15g", streams, withMask, i, ga[i], gr[i])
				}
			}
		}
	}
}
