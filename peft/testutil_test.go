package peft

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/optim"
)

func testBackend(t testing.TB) compute.Backend {
	t.Helper()
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// layerCase is one linear layer shape to test.
type layerCase struct {
	name    string
	in, out int
	rank    int
	layout  Layout
}

// hostLayer holds one linear layer and its adapter in float64 on the host: the independent
// reference the graph code is checked against. Matrices are row-major.
type hostLayer struct {
	spec  LinearSpec
	cfg   Config
	w0    []float64 // [out, in] regardless of spec.Layout
	bias  []float64 // [out]
	t     map[string][]float64
	u     float64
	doraN []float64 // DoRA norms held fixed (gradient constant); nil = compute
}

func randSlice(rng *rand.Rand, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = (rng.Float64()*2 - 1) * scale
	}
	return out
}

// effectiveWeight returns W0 + ΔW as [out, in] in float64, and for DoRA the row scale m/‖W0+sBA‖.
func (h *hostLayer) effectiveWeight() (w []float64, rowScale []float64) {
	in, out, r := h.spec.In, h.spec.Out, h.cfg.Rank
	s := h.cfg.Scale()
	w = append([]float64(nil), h.w0...)
	switch h.cfg.Method {
	case SingLoRA:
		a := h.t[NameSingLoRAA] // [d, r]
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				var acc float64
				for k := 0; k < r; k++ {
					acc += a[o*r+k] * a[i*r+k]
				}
				w[o*in+i] += s * h.u * acc
			}
		}
	case LoRA, LoRAPlus, DoRA:
		a, b := h.t[NameLoRAA], h.t[NameLoRAB] // [r,in], [out,r]
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				var acc float64
				for k := 0; k < r; k++ {
					acc += b[o*r+k] * a[k*in+i]
				}
				w[o*in+i] += s * acc
			}
		}
		if h.cfg.Method == DoRA {
			rowScale = make([]float64, out)
			norms := h.doraN
			if norms == nil {
				norms = h.rowNorms(w)
			}
			for o := range rowScale {
				rowScale[o] = h.t[NameMagnitude][o] / norms[o]
			}
		}
	}
	return w, rowScale
}

func (h *hostLayer) rowNorms(w []float64) []float64 {
	in := h.spec.In
	n := make([]float64, h.spec.Out)
	for o := range n {
		var acc float64
		for i := 0; i < in; i++ {
			acc += w[o*in+i] * w[o*in+i]
		}
		n[o] = math.Sqrt(acc)
	}
	return n
}

// forward computes y = x·Wᵀ + b for x [n, in].
func (h *hostLayer) forward(x []float64, n int) []float64 {
	w, rowScale := h.effectiveWeight()
	in, out := h.spec.In, h.spec.Out
	y := make([]float64, n*out)
	for b := 0; b < n; b++ {
		for o := 0; o < out; o++ {
			var acc float64
			for i := 0; i < in; i++ {
				acc += x[b*in+i] * w[o*in+i]
			}
			if rowScale != nil {
				acc *= rowScale[o]
			}
			y[b*out+o] = acc + h.bias[o]
		}
	}
	return y
}

// lossOf is the test loss: Σ y⊙R + 0.05·Σ y².
func lossOf(y, r []float64) float64 {
	var l float64
	for i := range y {
		l += y[i]*r[i] + 0.05*y[i]*y[i]
	}
	return l
}

// storedWeight returns w0 in the layout the store keeps.
func (h *hostLayer) storedWeight() []float64 {
	if h.spec.Layout == OutIn {
		return h.w0
	}
	in, out := h.spec.In, h.spec.Out
	t := make([]float64, in*out)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			t[i*out+o] = h.w0[o*in+i]
		}
	}
	return t
}

// newTestModel builds a store with one float64 linear layer "blk.lin" and the adapter attached,
// adapter tensors set to random non-zero values (B too, so every gradient is non-trivial), the
// step counter at step.
func newTestModel(t testing.TB, cfg Config, lc layerCase, step int64, seed uint64) (*model.Store, *Injection, *hostLayer) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	spec := LinearSpec{Path: "blk.lin", In: lc.in, Out: lc.out, Bias: true, Layout: lc.layout}
	h := &hostLayer{spec: spec, cfg: cfg, w0: randSlice(rng, lc.in*lc.out, 0.5), bias: randSlice(rng, lc.out, 0.5), t: map[string][]float64{}}
	store := model.NewStore()
	wdims := []int{lc.out, lc.in}
	if lc.layout == InOut {
		wdims = []int{lc.in, lc.out}
	}
	if _, err := store.CreateVariable("/blk/lin/weight", tensors.FromFlatDataAndDimensions(h.storedWeight(), wdims...)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateVariable("/blk/lin/bias", tensors.FromFlatDataAndDimensions(h.bias, lc.out)); err != nil {
		t.Fatal(err)
	}
	inj, err := Inject(cfg, []LinearSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	h.cfg = inj.Config
	for _, at := range AdapterTensors(cfg.Method, spec, cfg.Rank) {
		n := 1
		for _, d := range at.Shape {
			n *= d
		}
		vals := randSlice(rng, n, 0.6)
		if at.Name == NameMagnitude {
			for i := range vals {
				vals[i] = 0.5 + math.Abs(vals[i])
			}
		}
		h.t[at.Name] = vals
		store.GetVariable("/blk/lin/" + at.Name).MustSetValue(tensors.FromFlatDataAndDimensions(vals, at.Shape...))
	}
	optim.StepVar(store).MustSetValue(tensors.FromScalar(step))
	h.u = h.cfg.Ramp(step)
	return store, inj, h
}
