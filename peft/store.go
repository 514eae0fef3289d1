package peft

import (
	"fmt"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/varnames"
	"github.com/singlora/singlora/optim"
)

// Attach prepares store for training or inference with inj: it creates each target's adapter
// variables (initialised per the config, unless they already exist, e.g. loaded from an adapter
// file), creates the optimizer-step counter, and sets every variable's trainability for the
// method (see SetTrainable). The base weights must already be in the store (DoRA's magnitude is
// initialised from them). A nil inj only freezes nothing and returns nil.
func (inj *Injection) Attach(store *model.Store) error {
	if inj == nil {
		return nil
	}
	optim.StepVar(store)
	for _, spec := range inj.Targets() {
		scope := spec.ScopePath()
		wVar := store.GetVariable(scope + "/weight")
		if wVar == nil {
			return fmt.Errorf("attach %s adapter: model has no weight %s/weight", inj.Config.Method, scope)
		}
		wantShape := []int{spec.Out, spec.In}
		if spec.Layout == InOut {
			wantShape = []int{spec.In, spec.Out}
		}
		if got := wVar.Shape().Dimensions; !equalInts(got, wantShape) {
			return fmt.Errorf("attach adapter to %s: weight shape %v, model lists [%d,%d] (layout %s)", spec.Path, got, wantShape[0], wantShape[1], spec.Layout)
		}
		var norms []float32
		if inj.Config.Method == DoRA {
			w, err := Float32Values(wVar)
			if err != nil {
				return fmt.Errorf("attach dora to %s: %w", spec.Path, err)
			}
			norms = RowNorms(w, spec)
		}
		missing := false
		for _, t := range AdapterTensors(inj.Config.Method, spec, inj.Config.Rank) {
			if v := store.GetVariable(scope + "/" + t.Name); v != nil {
				if !equalInts(v.Shape().Dimensions, t.Shape) {
					return fmt.Errorf("adapter tensor %s.%s has shape %v, want %v", spec.Path, t.Name, v.Shape().Dimensions, t.Shape)
				}
				continue
			}
			missing = true
		}
		if !missing {
			continue
		}
		vals, err := InitialValues(inj.Config, spec, norms)
		if err != nil {
			return err
		}
		for _, t := range AdapterTensors(inj.Config.Method, spec, inj.Config.Rank) {
			if store.GetVariable(scope+"/"+t.Name) != nil {
				continue
			}
			var tensor *tensors.Tensor
			if wVar.DType() == dtypes.Float64 { // float64 models (reference tests) get float64 adapters
				f64 := make([]float64, len(vals[t.Name]))
				for i, x := range vals[t.Name] {
					f64[i] = float64(x)
				}
				tensor = tensors.FromFlatDataAndDimensions(f64, t.Shape...)
			} else {
				tensor = tensors.FromFlatDataAndDimensions(vals[t.Name], t.Shape...)
			}
			if _, err := store.CreateVariable(scope+"/"+t.Name, tensor); err != nil {
				return fmt.Errorf("creating %s.%s: %w", spec.Path, t.Name, err)
			}
		}
	}
	inj.SetTrainable(store)
	return nil
}

// IsAdapterVariable reports whether a store variable path is an adapter tensor.
func IsAdapterVariable(path string) bool {
	_, name := model.SplitPath(path)
	switch name {
	case NameSingLoRAA, NameLoRAA, NameLoRAB, NameMagnitude:
		return true
	}
	return false
}

// IsModuleToSave reports whether a variable path lies in a scope matched by cfg.ModulesToSave.
func (c Config) IsModuleToSave(path string) bool {
	scope, _ := model.SplitPath(path)
	mod := ScopeModule(scope)
	for _, pat := range c.ModulesToSave {
		// Match the scope or any of its parents.
		for p := mod; p != ""; {
			if ok, _ := MatchModule(pat, p); ok && pat != AllLinear {
				return true
			}
			i := strings.LastIndex(p, ".")
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return false
}

// SetTrainable sets every float variable's trainability for the method: adapter tensors (and
// ModulesToSave) trainable, the base frozen; Full trains every float variable; Frozen only
// ModulesToSave. Internal variables (optimizer state, counters, RNG) are never trainable.
func (inj *Injection) SetTrainable(store *model.Store) {
	for v := range store.IterVariables() {
		p := v.Path()
		if varnames.IsBookkeeping(p) || !v.DType().IsFloat() {
			v.SetTrainable(false)
			continue
		}
		var train bool
		switch {
		case inj.Config.IsModuleToSave(p):
			train = true
		case inj.Config.Method == Full:
			train = true
		case inj.Config.Method.HasAdapter():
			train = IsAdapterVariable(p)
		}
		v.SetTrainable(train)
	}
}

// Float32Values returns a variable's value as a flat float32 slice (converting from other float
// dtypes).
func Float32Values(v *model.Variable) ([]float32, error) {
	t, err := v.Value()
	if err != nil {
		return nil, err
	}
	if t.DType() == dtypes.Float32 {
		return tensors.MustCopyFlatData[float32](t), nil
	}
	if t.DType() == dtypes.Float64 {
		f64 := tensors.MustCopyFlatData[float64](t)
		out := make([]float32, len(f64))
		for i, x := range f64 {
			out[i] = float32(x)
		}
		return out, nil
	}
	return nil, fmt.Errorf("variable %s: dtype %s not supported here", v.Path(), t.DType())
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// LayerReport is one adapted layer's parameter count.
type LayerReport struct {
	Path      string
	In, Out   int
	Base      int // weight (+ bias) parameters of the layer
	Trainable int // adapter parameters (or Base under Full)
}

// Report counts parameters: per adapted layer, and trainable vs total over the whole store.
type Report struct {
	Layers    []LayerReport
	Trainable int
	Total     int
}

// Report returns the parameter report for the store after Attach.
func (inj *Injection) Report(store *model.Store) Report {
	var r Report
	for v := range store.IterVariables() {
		p := v.Path()
		if varnames.IsBookkeeping(p) || !v.DType().IsFloat() {
			continue
		}
		n := v.Shape().Size()
		r.Total += n
		if v.Trainable {
			r.Trainable += n
		}
	}
	for _, spec := range inj.Targets() {
		base := spec.In * spec.Out
		if spec.Bias {
			base += spec.Out
		}
		r.Layers = append(r.Layers, LayerReport{Path: spec.Path, In: spec.In, Out: spec.Out, Base: base,
			Trainable: AdapterParams(inj.Config.Method, spec, inj.Config.Rank)})
	}
	return r
}

// String formats the report as a table.
func (r Report) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-50s %7s %7s %10s %10s\n", "module", "in", "out", "base", "adapter")
	for _, l := range r.Layers {
		fmt.Fprintf(&sb, "%-50s %7d %7d %10d %10d\n", l.Path, l.In, l.Out, l.Base, l.Trainable)
	}
	pct := 0.0
	if r.Total > 0 {
		pct = 100 * float64(r.Trainable) / float64(r.Total)
	}
	fmt.Fprintf(&sb, "trainable params: %d of %d (%.3f%%)\n", r.Trainable, r.Total, pct)
	return sb.String()
}

// OptimizerGroups returns the optimizer's per-variable groups for this method: LoRA+ gives
// lora_B the learning rate λ·lr; biases, norms and DoRA's magnitude get no weight decay; every
// other trainable variable gets weightDecay.
func (inj *Injection) OptimizerGroups(weightDecay float64) func(v *model.Variable) optim.Group {
	return func(v *model.Variable) optim.Group {
		g := optim.Group{Name: "default", LRMultiplier: 1, WeightDecay: weightDecay}
		name := v.Name()
		if inj != nil && inj.Config.Method == LoRAPlus && name == NameLoRAB {
			g.Name, g.LRMultiplier = "lora_B (LoRA+)", inj.Config.LoRAPlusLambda()
		}
		if name == NameMagnitude || name == "bias" || varnames.IsNormalization(v.Path()) || v.Shape().Rank() < 2 {
			g.WeightDecay = 0
		}
		return g
	}
}
