package adapterio

import (
	"errors"
	"fmt"
	"slices"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/peft/tuner"
)

// host returns the adapter's method and module m as the method's host-side math sees it: the
// layer, the module's rank and scale s (rank_pattern / alpha_pattern resolved), u frozen at min(trained_steps/ramp_up_steps, 1) (1 without a ramp) and
// the tensors' data.
func (a *Adapter) host(m *Module) (tuner.Tuner, tuner.Host, error) {
	method, pc, err := tuner.ForFile(a.Config)
	if err != nil {
		return nil, tuner.Host{}, err
	}
	h := tuner.Host{Spec: m.Spec(), Rank: a.Config.ModuleRank(m.Path), Scale: a.Config.ModuleScale(m.Path), U: pc.Ramp(a.Config.TrainedSteps),
		Tensors: make(map[string][]float32, len(m.Tensors))}
	for name, t := range m.Tensors {
		h.Tensors[name] = t.Data
	}
	return method, h, nil
}

// DeltaW returns the module's additive weight update in float64, in the base weight's own layout
// ([out, in] row-major for OutIn, [in, out] for InOut), as the method computes it
// (tuner.Tuner.DeltaW), with SingLoRA's u frozen at min(trained_steps/ramp_up_steps, 1):
//
//	SingLoRA: ΔW = s·u·A[:out]·A[:in]ᵀ      LoRA/LoRA+: ΔW = s·B·A
//
// DoRA has no additive update; it is an error.
func DeltaW(a *Adapter, m *Module) ([]float64, error) {
	method, h, err := a.host(m)
	if err != nil {
		return nil, err
	}
	delta, err := method.DeltaW(h)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", m.Path, err)
	}
	return delta, nil
}

// MergeWeight returns the merged base weight for module m (w0 in the base weight's layout), as
// the method merges (tuner.Tuner.Merge): W0 + ΔW, or for DoRA m ⊙ (W0 + s·B·A)/‖W0 + s·B·A‖ with
// the norm per output feature. With unmerge it returns W − ΔW instead; DoRA cannot be unmerged
// exactly (the norm of W0 + s·B·A is not recoverable from the merged weight), so unmerging a
// DoRA adapter is an error.
func MergeWeight(a *Adapter, m *Module, w0 []float64, unmerge bool) ([]float64, error) {
	if len(w0) != m.In*m.Out {
		return nil, fmt.Errorf("module %s: base weight has %d values, want %d×%d", m.Path, len(w0), m.Out, m.In)
	}
	method, h, err := a.host(m)
	if err != nil {
		return nil, err
	}
	w, err := method.Merge(h, w0, unmerge)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", m.Path, err)
	}
	return w, nil
}

// ExportLoRA converts the adapter into the equivalent plain PEFT LoRA adapter, with the factors
// the method gives (tuner.Tuner.AsLoRA; SingLoRA: lora_A = A[:in]ᵀ (r×in), lora_B = s·u·A[:out]
// (out×r)) and lora_alpha = r, use_rslora false, so that B·A reproduces ΔW (to float32 rounding
// of B). With per-module ranks the export keeps rank_pattern and sets alpha_pattern to the same
// keys with α = that rank, so every module's scale is 1 again. The bias setting and the saved
// biases and modules_to_save tensors are kept. A LoRA or LoRA+ adapter is returned as it is (a copy of its config); a DoRA adapter is
// an error (its magnitude has no LoRA form).
func ExportLoRA(a *Adapter) (*Adapter, error) {
	c := *a.Config
	c.Extra = nil
	r := a.Config.R
	var alphas peft.Pattern[float64]
	for _, e := range a.Config.RankPattern {
		alphas = append(alphas, peft.PatternEntry[float64]{Key: e.Key, Value: float64(e.Value)})
	}
	bias := c.Bias
	if bias == "" {
		bias = BiasNone
	}
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
		InitLoraWeights: []byte("true"),
		TrainedSteps:    c.TrainedSteps,
		Seed:            c.Seed,
	}, Saved: a.Saved}
	out.Config.Bias, out.Config.RankPattern, out.Config.AlphaPattern = bias, a.Config.RankPattern.Clone(), alphas
	for _, m := range a.Modules {
		method, h, err := a.host(m)
		if err != nil {
			return nil, err
		}
		la, lb, err := method.AsLoRA(h)
		if errors.Is(err, tuner.ErrPlainLoRA) {
			return &Adapter{Config: &c, Modules: a.Modules, Saved: a.Saved}, nil
		}
		if err != nil {
			return nil, err
		}
		mr := h.Rank
		out.Modules = append(out.Modules, &Module{Path: m.Path, In: m.In, Out: m.Out, Layout: m.Layout, Tensors: map[string]*Matrix{
			peft.NameLoRAA: {Shape: []int{mr, m.In}, Data: la},
			peft.NameLoRAB: {Shape: []int{m.Out, mr}, Data: lb},
		}})
	}
	return out, nil
}
