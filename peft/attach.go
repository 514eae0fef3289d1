package peft

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/varnames"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft/tuner"
	"github.com/singlora/singlora/safetensors"
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
	method, err := inj.method()
	if err != nil {
		return fmt.Errorf("attach adapter: %w", err)
	}
	optim.StepVar(store)
	for _, spec := range inj.Targets() {
		mc := inj.ModuleConfig(spec.Path)
		specs := method.Tensors(spec, mc.Rank)
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
		missing := false
		for _, t := range specs {
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
		vals, err := InitialValues(mc, spec, func() ([]float32, error) { return Float32Values(wVar) })
		if err != nil {
			return err
		}
		for _, t := range specs {
			if store.GetVariable(scope+"/"+t.Name) != nil {
				continue
			}
			if n := shapeSize(t.Shape); len(vals[t.Name]) != n {
				return fmt.Errorf("attach %s adapter to %s: the method initialised %s with %d values, its shape %v holds %d", inj.Config.Method, spec.Path, t.Name, len(vals[t.Name]), t.Shape, n)
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
	return inj.checkModulesToSave(store)
}

// checkModulesToSave returns an error naming each modules_to_save pattern that matches no
// variable of store (it would silently stay frozen and unsaved), with the model's modules.
func (inj *Injection) checkModulesToSave(store *model.Store) error {
	var none []string
	for _, pat := range inj.Config.ModulesToSave {
		found := false
		for v := range store.IterVariables() {
			if !varnames.IsBookkeeping(v.Path()) && tuner.SavesModule(pat, v.Path()) {
				found = true
				break
			}
		}
		if !found {
			none = append(none, fmt.Sprintf("%q", pat))
		}
	}
	if len(none) == 0 {
		return nil
	}
	mods := map[string]bool{}
	for v := range store.IterVariables() {
		if p := v.Path(); !varnames.IsBookkeeping(p) {
			scope, _ := model.SplitPath(p)
			mod := ScopeModule(scope)
			if i := strings.Index(mod, "."); i >= 0 {
				mod = mod[:i]
			}
			mods[mod] = true
		}
	}
	return fmt.Errorf("modules_to_save %s match no module of the model (its top-level modules: %s)",
		strings.Join(none, ", "), strings.Join(slices.Sorted(maps.Keys(mods)), ", "))
}

// IsAdapterVariable reports whether a store variable path is an adapter tensor: its name is one
// of a registered method's adapter tensors (tuner.IsAdapterTensor).
func IsAdapterVariable(path string) bool { return tuner.IsAdapterTensor(tuner.VarName(path)) }

// SetTrainable sets every float variable's trainability for the method: ModulesToSave and the
// biases the bias setting names train (SavesVariable), and
// otherwise the method decides (tuner.Tuner.Trainable): an adapter method trains its tensors and
// freezes the base, Full trains every float variable, Frozen none. Internal variables (optimizer
// state, counters, RNG; see varnames.IsBookkeeping) and non-float ones never train. An
// unregistered method trains only ModulesToSave.
func (inj *Injection) SetTrainable(store *model.Store) {
	method, err := inj.method()
	for v := range store.IterVariables() {
		p := v.Path()
		if varnames.IsBookkeeping(p) || !v.DType().IsFloat() {
			v.SetTrainable(false)
			continue
		}
		v.SetTrainable(inj.SavesVariable(p) || err == nil && method.Trainable(p))
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
	if dt := t.DType(); dt == dtypes.BFloat16 || dt == dtypes.Float16 {
		out := make([]float32, t.Size())
		var derr error
		t.ConstBytes(func(b []byte) {
			code := safetensors.BF16
			if dt == dtypes.Float16 {
				code = safetensors.F16
			}
			derr = safetensors.DecodeFloat32s(code, b, out) // native order is little-endian here
		})
		return out, derr
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

func shapeSize(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
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
