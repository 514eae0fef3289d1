// Package dora implements DoRA (Liu et al., 2024) as a peft method: LoRA's factors plus a
// learned magnitude per output feature,
//
//	W' = m ⊙ (W0 + s·B·A) / ‖W0 + s·B·A‖   (the norm per output row, a constant in backward)
//	y  = (m/‖W0 + s·B·A‖) ⊙ (x·W0ᵀ + s·(x·Aᵀ)·Bᵀ) + b
//
// with A [r, in], B [out, r] initialised as LoRA's (package lora) and m [out] initialised to
// ‖W0‖ per output, so that the adapted layer starts exactly at W0. Adapters are written as PEFT
// writes DoRA: "peft_type": "LORA" with "use_dora": true, the magnitude under
// "<module>.lora_magnitude_vector" (no ".weight"). DoRA has no additive ΔW: it merges into a base
// but cannot be unmerged exactly, nor exported as plain LoRA.
package dora

import (
	"errors"
	"fmt"
	"math"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft/lora"
	"github.com/singlora/singlora/peft/peftdef"
	"github.com/singlora/singlora/peft/tuner"
)

// NameMagnitude is the magnitude vector's name, as PEFT names it ([out]).
const NameMagnitude = "lora_magnitude_vector"

// Tuner is DoRA.
var Tuner tuner.Tuner = method{}

type method struct{}

func (method) Name() tuner.Method          { return peftdef.DoRA }
func (method) Aliases() []string           { return nil }
func (method) Inits() []tuner.Init         { return lora.Inits }
func (method) Defaults(*tuner.Config)      {}
func (method) Validate(tuner.Config) error { return nil }
func (method) UsesRamp() bool              { return false }

// Tensors returns lora_A [r, in], lora_B [out, r] and lora_magnitude_vector [out].
func (method) Tensors(s tuner.LinearSpec, r int) []tuner.TensorSpec {
	return append(lora.Tensors(s, r), tuner.TensorSpec{Name: NameMagnitude, Shape: []int{s.Out}, NoWeightSuffix: true})
}

// Init initialises A and B as LoRA does and the magnitude to ‖W0‖ per output (rowNorms of base).
func (method) Init(c tuner.Config, s tuner.LinearSpec, base func() ([]float32, error)) (map[string][]float32, error) {
	if base == nil {
		return nil, fmt.Errorf("dora init of %s: the magnitude starts at ‖W0‖ per output, but no base weight was given", s.Path)
	}
	w, err := base()
	if err != nil {
		return nil, fmt.Errorf("attach dora to %s: %w", s.Path, err)
	}
	if len(w) != s.In*s.Out {
		return nil, fmt.Errorf("dora init of %s: base weight has %d values, want %d×%d", s.Path, len(w), s.Out, s.In)
	}
	vals := lora.InitValues(c, s)
	vals[NameMagnitude] = rowNorms(w, s)
	return vals, nil
}

// rowNorms returns ‖W0[o,:]‖ for each output o of a weight stored in s's layout, computed in
// float64.
func rowNorms(w []float32, s tuner.LinearSpec) []float32 {
	acc := make([]float64, s.Out)
	for i := 0; i < s.In; i++ {
		for o := 0; o < s.Out; o++ {
			var v float64
			if s.Layout == tuner.InOut {
				v = float64(w[i*s.Out+o])
			} else {
				v = float64(w[o*s.In+i])
			}
			acc[o] += v * v
		}
	}
	out := make([]float32, s.Out)
	for o, a := range acc {
		out[o] = float32(math.Sqrt(a))
	}
	return out
}

func (method) Trainable(path string) bool {
	n := tuner.VarName(path)
	return n == lora.NameA || n == lora.NameB || n == NameMagnitude
}

// Group gives the magnitude no weight decay (a scale, not a weight to shrink).
func (method) Group(_ tuner.Config, v *model.Variable, g *optim.Group) {
	if v.Name() == NameMagnitude {
		g.WeightDecay = 0
	}
}

// Forward computes y = (m/‖W0 + s·B·A‖) ⊙ (x·W0ᵀ + s·(x·Aᵀ)·Bᵀ) + b, the norm without building
// the out×in matrix (weightNorm).
func (method) Forward(l *tuner.Layer, x *Node) *Node {
	a := l.Var(lora.NameA)
	b := l.Var(lora.NameB)
	m := l.Var(NameMagnitude)
	s := l.Config.Scale()
	// A 16-bit base is widened for the norm only, after x exists (one layer's float32 copy live).
	norm := weightNorm(fastops.Widen(l.W, x), a, b, s, l.Spec.Layout)
	scale := Div(m, norm) // [out]
	base := l.Base(x, false)
	h := MulScalar(tuner.ContractLast(l.Input(x), a), s)
	y := Mul(Add(base, tuner.ContractLast(h, b)), ExpandLeftToRank(scale, base.Rank()))
	if l.B != nil {
		y = Add(y, ExpandLeftToRank(l.B, y.Rank()))
	}
	return y
}

// weightNorm returns ‖W0[o,:] + s·B[o,:]·A‖ for each output o without building the out×in
// matrix: ‖W0_o‖² + 2s·B_o·(A·W0_oᵀ) + s²·B_o·(A·Aᵀ)·B_oᵀ. The result is a gradient constant.
func weightNorm(w, a, b *Node, s float64, layout tuner.Layout) *Node {
	w, a, b = StopGradient(w), StopGradient(a), StopGradient(b)
	var n0, p *Node
	if layout == tuner.InOut { // w [in, out]
		n0 = ReduceSum(Square(w), 0)
		p = Dot(w, a).General([]int{0}, nil, []int{1}, nil) // [out, r]
	} else { // w [out, in]
		n0 = ReduceSum(Square(w), 1)
		p = Dot(w, a).General([]int{1}, nil, []int{1}, nil) // [out, r]
	}
	cross := ReduceSum(Mul(b, p), 1)                        // [out]
	gram := Dot(a, a).General([]int{1}, nil, []int{1}, nil) // [r, r]
	quad := ReduceSum(Mul(Dot(b, gram).Product(), b), 1)    // [out]
	sq := Add(n0, Add(MulScalar(cross, 2*s), MulScalar(quad, s*s)))
	sq = Max(sq, ScalarZero(w.Graph(), sq.DType()))
	return StopGradient(Sqrt(sq))
}

// DeltaWeight: DoRA's update is not additive.
func (method) DeltaWeight(*tuner.Layer) *Node { return nil }

func (method) PeftType() string { return adapterconfig.TypeLoRA }

// ToFile writes PEFT's DoRA keys: use_dora true, init_lora_weights.
func (method) ToFile(c tuner.Config, f *adapterconfig.Config) {
	f.PeftType, f.UseDora, f.InitLoraWeights = adapterconfig.TypeLoRA, true, lora.InitToFile(c.Init)
}

// FromFile claims LORA configs with use_dora.
func (method) FromFile(f *adapterconfig.Config, c *tuner.Config) bool {
	if !f.UseDora {
		return false
	}
	c.Init, c.LoRAPlusRatio = lora.InitFromFile(f.InitLoraWeights), f.LoraPlusRatio
	return true
}

// LayerShape reads [out, in] from lora_B and lora_A.
func (method) LayerShape(shapes map[string][]int) ([2]int, error) { return lora.LayerShape(shapes) }

// DeltaW: DoRA's update is not additive.
func (method) DeltaW(tuner.Host) ([]float64, error) {
	return nil, errors.New("dora has no additive ΔW (its magnitude rescales each output row of W0 + s·B·A)")
}

// Merge returns m ⊙ (W0 + s·B·A)/‖W0 + s·B·A‖ per output row; unmerging is an error, as the norm
// of W0 + s·B·A is not recoverable from the merged weight.
func (method) Merge(h tuner.Host, w0 []float64, unmerge bool) ([]float64, error) {
	if unmerge {
		return nil, errors.New("a DoRA merge cannot be undone exactly (the norm ‖W0+sBA‖ is lost); keep the original base")
	}
	v := make([]float64, len(w0))
	lora.HostDelta(h, v)
	for i := range v {
		v[i] += w0[i]
	}
	mag := h.Tensors[NameMagnitude]
	for o := 0; o < h.Spec.Out; o++ {
		var ss float64
		for i := 0; i < h.Spec.In; i++ {
			ss += v[h.Index(o, i)] * v[h.Index(o, i)]
		}
		n := math.Sqrt(ss)
		f := 0.0
		if n > 0 {
			f = float64(mag[o]) / n
		}
		for i := 0; i < h.Spec.In; i++ {
			v[h.Index(o, i)] *= f
		}
	}
	return v, nil
}

// AsLoRA: the magnitude has no LoRA form.
func (method) AsLoRA(tuner.Host) ([]float32, []float32, error) {
	return nil, nil, errors.New("a DoRA adapter is not a plain LoRA adapter")
}
