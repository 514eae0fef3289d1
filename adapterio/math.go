package adapterio

import (
	"fmt"
	"math"
	"slices"

	"github.com/singlora/singlora/peft"
)

// DeltaW returns the module's additive weight update in float64, in the base weight's own layout
// ([out, in] row-major for OutIn, [in, out] for InOut), with SingLoRA's u frozen at
// min(trained_steps/ramp_up_steps, 1):
//
//	SingLoRA: ΔW = s·u·A[:out]·A[:in]ᵀ      LoRA/LoRA+: ΔW = s·B·A
//
// DoRA has no additive update; it is an error.
func DeltaW(a *Adapter, m *Module) ([]float64, error) {
	method := a.Config.Method()
	s := a.Config.Scale()
	r := a.Config.R
	delta := make([]float64, m.Out*m.In)
	idx := func(o, i int) int {
		if m.Layout == peft.InOut {
			return i*m.Out + o
		}
		return o*m.In + i
	}
	switch method {
	case peft.SingLoRA:
		A := m.Tensors[peft.NameSingLoRAA].Data // [d, r]
		su := s * a.Config.Ramp()
		for o := 0; o < m.Out; o++ {
			ao := A[o*r : (o+1)*r]
			for i := 0; i < m.In; i++ {
				ai := A[i*r : (i+1)*r]
				var acc float64
				for k := range r {
					acc += float64(ao[k]) * float64(ai[k])
				}
				delta[idx(o, i)] = su * acc
			}
		}
	case peft.LoRA, peft.LoRAPlus:
		loraDelta(m, s, r, delta, idx)
	default:
		return nil, fmt.Errorf("module %s: %s has no additive ΔW", m.Path, method)
	}
	return delta, nil
}

func loraDelta(m *Module, s float64, r int, delta []float64, idx func(o, i int) int) {
	A := m.Tensors[peft.NameLoRAA].Data // [r, in]
	B := m.Tensors[peft.NameLoRAB].Data // [out, r]
	for o := 0; o < m.Out; o++ {
		for i := 0; i < m.In; i++ {
			var acc float64
			for k := range r {
				acc += float64(B[o*r+k]) * float64(A[k*m.In+i])
			}
			delta[idx(o, i)] = s * acc
		}
	}
}

// MergeWeight returns the merged base weight for module m (w0 in the base weight's layout):
// W0 + ΔW, or for DoRA m ⊙ (W0 + s·B·A)/‖W0 + s·B·A‖ with the norm per output feature. With
// unmerge it returns W − ΔW instead; DoRA cannot be unmerged exactly (the norm of W0 + s·B·A is
// not recoverable from the merged weight), so unmerging a DoRA adapter is an error.
func MergeWeight(a *Adapter, m *Module, w0 []float64, unmerge bool) ([]float64, error) {
	if len(w0) != m.In*m.Out {
		return nil, fmt.Errorf("module %s: base weight has %d values, want %d×%d", m.Path, len(w0), m.Out, m.In)
	}
	method := a.Config.Method()
	if method == peft.DoRA {
		if unmerge {
			return nil, fmt.Errorf("module %s: a DoRA merge cannot be undone exactly (the norm ‖W0+sBA‖ is lost); keep the original base", m.Path)
		}
		return doraMerge(a, m, w0), nil
	}
	delta, err := DeltaW(a, m)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(w0))
	for i := range w0 {
		if unmerge {
			out[i] = w0[i] - delta[i]
		} else {
			out[i] = w0[i] + delta[i]
		}
	}
	return out, nil
}

func doraMerge(a *Adapter, m *Module, w0 []float64) []float64 {
	idx := func(o, i int) int {
		if m.Layout == peft.InOut {
			return i*m.Out + o
		}
		return o*m.In + i
	}
	v := make([]float64, len(w0))
	loraDelta(m, a.Config.Scale(), a.Config.R, v, idx)
	for i := range v {
		v[i] += w0[i]
	}
	mag := m.Tensors[peft.NameMagnitude].Data
	for o := 0; o < m.Out; o++ {
		var ss float64
		for i := 0; i < m.In; i++ {
			ss += v[idx(o, i)] * v[idx(o, i)]
		}
		n := math.Sqrt(ss)
		f := 0.0
		if n > 0 {
			f = float64(mag[o]) / n
		}
		for i := 0; i < m.In; i++ {
			v[idx(o, i)] *= f
		}
	}
	return v
}

// ExportLoRA converts a SingLoRA adapter into the equivalent plain PEFT LoRA adapter:
// lora_A = A[:in]ᵀ (r×in), lora_B = s·u·A[:out] (out×r), lora_alpha = r, use_rslora false, so
// that B·A reproduces ΔW = s·u·A[:out]·A[:in]ᵀ (to float32 rounding of B). A LoRA-family adapter
// is returned as it is (a copy of its config).
func ExportLoRA(a *Adapter) (*Adapter, error) {
	c := *a.Config
	c.Extra = nil
	if c.PeftType != TypeSingLoRA {
		return &Adapter{Config: &c, Modules: a.Modules, Saved: a.Saved}, nil
	}
	su := a.Config.Scale() * a.Config.Ramp()
	r := a.Config.R
	out := &Adapter{Config: &Config{
		PeftType:        TypeLoRA,
		R:               r,
		LoraAlpha:       float64(r),
		TargetModules:   slices.Clone(c.TargetModules),
		UseRSLoRA:       false,
		LoraDropout:     c.LoraDropout,
		FanInFanOut:     c.FanInFanOut,
		InOutModules:    slices.Clone(c.InOutModules),
		ModulesToSave:   slices.Clone(c.ModulesToSave),
		BaseModel:       c.BaseModel,
		TaskType:        c.TaskType,
		Bias:            "none",
		InitLoraWeights: []byte("true"),
		TrainedSteps:    c.TrainedSteps,
		Seed:            c.Seed,
	}, Saved: a.Saved}
	for _, m := range a.Modules {
		A := m.Tensors[peft.NameSingLoRAA].Data
		la := make([]float32, r*m.In)
		lb := make([]float32, m.Out*r)
		for i := 0; i < m.In; i++ {
			for k := range r {
				la[k*m.In+i] = A[i*r+k]
			}
		}
		for o := 0; o < m.Out; o++ {
			for k := range r {
				lb[o*r+k] = float32(su * float64(A[o*r+k]))
			}
		}
		out.Modules = append(out.Modules, &Module{Path: m.Path, In: m.In, Out: m.Out, Layout: m.Layout, Tensors: map[string]*Matrix{
			peft.NameLoRAA: {Shape: []int{r, m.In}, Data: la},
			peft.NameLoRAB: {Shape: []int{m.Out, r}, Data: lb},
		}})
	}
	return out, nil
}
