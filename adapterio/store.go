package adapterio

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/varnames"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/peft/tuner"
)

// FromStore builds an Adapter from the adapter variables of inj's targets in store, the
// modules_to_save variables and the optimizer-step counter (saved as trained_steps); the method
// writes its own keys into the config (tuner.Tuner.ToFile).
func FromStore(inj *peft.Injection, store *model.Store, baseModel string) (*Adapter, error) {
	if inj == nil || !inj.Config.Method.HasAdapter() {
		return nil, fmt.Errorf("save adapter: no adapter method (nil injection or method without adapter)")
	}
	method, err := tuner.Lookup(inj.Config.Method)
	if err != nil {
		return nil, fmt.Errorf("save adapter: %w", err)
	}
	pc := inj.Config
	cfg := &Config{
		R:             pc.Rank,
		LoraAlpha:     pc.Alpha,
		TargetModules: slices.Clone(pc.Targets),
		UseRSLoRA:     pc.UseRSLoRA,
		LoraDropout:   pc.Dropout,
		ModulesToSave: slices.Clone(pc.ModulesToSave),
		BaseModel:     baseModel,
		Seed:          pc.Seed,
		Extra:         map[string]json.RawMessage{},
	}
	if sv := store.GetVariable(optim.StepPath); sv != nil {
		t, err := sv.Value()
		if err != nil {
			return nil, fmt.Errorf("save adapter: reading the step counter: %w", err)
		}
		cfg.TrainedSteps = tensors.ToScalar[int64](t)
	}
	cfg.ExcludeModules, cfg.LayersToTransform, cfg.LayersPattern = slices.Clone(pc.ExcludeModules), slices.Clone(pc.LayersToTransform), slices.Clone(pc.LayersPattern)
	cfg.RankPattern, cfg.AlphaPattern, cfg.Bias = pc.RankPattern.Clone(), pc.AlphaPattern.Clone(), pc.Bias
	method.ToFile(pc, cfg)
	a := &Adapter{Config: cfg}
	targets := inj.Targets()
	nInOut := 0
	for _, spec := range targets {
		if spec.Layout == peft.InOut {
			nInOut++
		}
	}
	cfg.FanInFanOut = nInOut > 0 && nInOut == len(targets)
	for _, spec := range targets {
		if spec.Layout == peft.InOut && !cfg.FanInFanOut {
			cfg.InOutModules = append(cfg.InOutModules, spec.Path)
		}
		m := &Module{Path: spec.Path, In: spec.In, Out: spec.Out, Layout: spec.Layout, Tensors: map[string]*Matrix{}}
		for _, t := range method.Tensors(spec, inj.ModuleConfig(spec.Path).Rank) {
			v := store.GetVariable(spec.ScopePath() + "/" + t.Name)
			if v == nil {
				return nil, fmt.Errorf("save adapter: module %s has no variable %s (was Attach called?)", spec.Path, t.Name)
			}
			if !slices.Equal(v.Shape().Dimensions, t.Shape) {
				return nil, fmt.Errorf("save adapter: %s.%s has shape %v, want %v", spec.Path, t.Name, v.Shape().Dimensions, t.Shape)
			}
			vals, err := peft.Float32Values(v)
			if err != nil {
				return nil, fmt.Errorf("save adapter: %w", err)
			}
			m.Tensors[t.Name] = &Matrix{Shape: slices.Clone(t.Shape), Data: vals}
		}
		a.Modules = append(a.Modules, m)
	}
	if len(pc.ModulesToSave) > 0 || pc.Bias != "" {
		for v := range store.IterVariables() {
			p := v.Path()
			if varnames.IsBookkeeping(p) || !v.DType().IsFloat() || peft.IsAdapterVariable(p) {
				continue
			}
			if !inj.SavesVariable(p) {
				continue
			}
			vals, err := peft.Float32Values(v)
			if err != nil {
				return nil, fmt.Errorf("save adapter: module to save: %w", err)
			}
			a.Saved = append(a.Saved, SavedTensor{Name: peft.ScopeModule(p),
				Matrix: Matrix{Shape: slices.Clone(v.Shape().Dimensions), Data: vals}})
		}
		slices.SortFunc(a.Saved, func(x, y SavedTensor) int { return strings.Compare(x.Name, y.Name) })
	}
	return a, nil
}

// SaveFromStore saves inj's adapter (and modules_to_save, and the optimizer step count) from store
// into the folder dir, atomically (see Save).
func SaveFromStore(dir string, inj *peft.Injection, store *model.Store, baseModel string) error {
	a, err := FromStore(inj, store, baseModel)
	if err != nil {
		return err
	}
	return Save(dir, a)
}

// LoadIntoStore loads the adapter folder dir into store for a model whose linear layers are
// modules (they also give the [out, in] of SingLoRA modules that module_shapes does not list): it
// checks that every adapted module exists in the model with the adapter's shape, creates or
// overwrites the adapter variables and modules_to_save variables, sets the optimizer step counter
// to trained_steps (so SingLoRA's u is what it was when saved), and calls Injection.Attach to set
// trainability. The returned injection carries the adapter's config.
func LoadIntoStore(dir string, store *model.Store, modules []peft.LinearSpec) (*peft.Injection, error) {
	a, err := LoadWith(dir, ModelShapes(modules))
	if err != nil {
		return nil, err
	}
	return IntoStore(a, store, modules)
}

// IntoStore does LoadIntoStore's work for an adapter already loaded.
func IntoStore(a *Adapter, store *model.Store, modules []peft.LinearSpec) (*peft.Injection, error) {
	specs := map[string]peft.LinearSpec{}
	for _, s := range modules {
		specs[s.Path] = s
	}
	exact := make([]string, 0, len(a.Modules))
	for _, m := range a.Modules {
		s, ok := specs[m.Path]
		if !ok {
			names := make([]string, 0, len(modules))
			for _, s := range modules {
				names = append(names, s.Path)
			}
			return nil, fmt.Errorf("load adapter: module %s is not a linear layer of this model (model has: %s)", m.Path, strings.Join(names, ", "))
		}
		if s.In != m.In || s.Out != m.Out {
			return nil, fmt.Errorf("load adapter: module %s is in=%d out=%d in the adapter but in=%d out=%d in the model", m.Path, m.In, m.Out, s.In, s.Out)
		}
		exact = append(exact, "re:"+regexp.QuoteMeta(m.Path))
	}
	pc := PeftConfig(a.Config)
	// The file's tensors name the adapted layers exactly; the patterns that chose them (targets,
	// exclude_modules, layers_to_transform) are kept for writing the config back.
	pc.Targets = exact
	pc.ExcludeModules, pc.LayersToTransform = nil, nil
	inj, err := peft.Inject(pc, modules)
	if err != nil {
		return nil, fmt.Errorf("load adapter: %w", err)
	}
	inj.Config.Targets = slices.Clone(a.Config.TargetModules)
	inj.Config.ExcludeModules, inj.Config.LayersToTransform = slices.Clone(a.Config.ExcludeModules), slices.Clone(a.Config.LayersToTransform)
	// Check everything before changing the store.
	type assign struct {
		path  string
		shape []int
		data  []float32
	}
	var todo []assign
	for _, m := range a.Modules {
		for name, t := range m.Tensors {
			todo = append(todo, assign{specs[m.Path].ScopePath() + "/" + name, t.Shape, t.Data})
		}
	}
	for _, s := range a.Saved {
		todo = append(todo, assign{"/" + strings.ReplaceAll(s.Name, ".", "/"), s.Shape, s.Data})
	}
	for _, t := range todo {
		if v := store.GetVariable(t.path); v != nil {
			if !slices.Equal(v.Shape().Dimensions, t.shape) {
				return nil, fmt.Errorf("load adapter: variable %s has shape %v in the model, %v in the adapter", t.path, v.Shape().Dimensions, t.shape)
			}
			if v.DType() != dtypes.Float32 && v.DType() != dtypes.Float64 {
				return nil, fmt.Errorf("load adapter: variable %s has dtype %s, want a float", t.path, v.DType())
			}
		}
	}
	for _, t := range todo {
		var value *tensors.Tensor
		v := store.GetVariable(t.path)
		if v != nil && v.DType() == dtypes.Float64 {
			f64 := make([]float64, len(t.data))
			for i, x := range t.data {
				f64[i] = float64(x)
			}
			value = tensors.FromFlatDataAndDimensions(f64, t.shape...)
		} else {
			value = tensors.FromFlatDataAndDimensions(slices.Clone(t.data), t.shape...)
		}
		if v != nil {
			if err := v.SetValue(value); err != nil {
				return nil, fmt.Errorf("load adapter: setting %s: %w", t.path, err)
			}
		} else if _, err := store.CreateVariable(t.path, value); err != nil {
			return nil, fmt.Errorf("load adapter: creating %s: %w", t.path, err)
		}
	}
	if err := optim.StepVar(store).SetValue(tensors.FromScalar(a.Config.TrainedSteps)); err != nil {
		return nil, fmt.Errorf("load adapter: setting the step counter: %w", err)
	}
	if err := inj.Attach(store); err != nil {
		return nil, fmt.Errorf("load adapter: %w", err)
	}
	return inj, nil
}
