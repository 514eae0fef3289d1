package adapterio

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
)

// Set holds several named adapters for one loaded model, as PEFT's load_adapter / set_adapter /
// delete_adapter do: every adapter is validated against the model when added and kept on the
// host; only the active one has variables in the store. Activate swaps adapters without touching
// the base weights, so memory grows by the adapters only, and with no adapter active the store
// holds exactly the base model again (any base variable an adapter's modules_to_save or biases
// overwrote is restored bit for bit).
//
// A graph built for one injection reads the store's variables when it runs; after Activate,
// build the model's graphs again with the injection it returns (a nil injection is the plain
// model).
type Set struct {
	store    *model.Store
	modules  []peft.LinearSpec
	names    []string
	adapters map[string]*Adapter
	active   string
	// restore holds, while an adapter is active, what Activate must undo: the variables it
	// created (deleted again) and the base values it overwrote (set back).
	created   []string
	saved     map[string]*tensors.Tensor
	step      *tensors.Tensor // the step counter before activation (nil: there was none)
	trainable map[string]bool // every variable's trainability before activation
	dirs      map[string]string
}

// NewSet returns an empty Set for the model whose variables are in store and whose linear
// layers are modules.
func NewSet(store *model.Store, modules []peft.LinearSpec) *Set {
	return &Set{store: store, modules: modules, adapters: map[string]*Adapter{}, dirs: map[string]string{}}
}

// Add loads the adapter folder dir under name (shapes of SingLoRA modules not in module_shapes
// come from the model) and checks that it fits the model: every module is one of the model's
// linear layers with the adapter's [out, in], and every saved tensor has its variable's shape.
// Nothing in the store changes.
func (s *Set) Add(name, dir string) error {
	if err := checkSetName(name); err != nil {
		return err
	}
	if _, dup := s.adapters[name]; dup {
		return fmt.Errorf("adapter %q is loaded already (from %s); give each --adapter its own name", name, s.dirs[name])
	}
	a, err := LoadWith(dir, ModelShapes(s.modules))
	if err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	if err := s.check(a); err != nil {
		return fmt.Errorf("adapter %q (%s): %w", name, dir, err)
	}
	s.adapters[name], s.dirs[name] = a, dir
	s.names = append(s.names, name)
	return nil
}

// checkSetName accepts names PEFT would: non-empty, no '=', ':' or ','.
func checkSetName(name string) error {
	if name == "" || strings.ContainsAny(name, "=:,") {
		return fmt.Errorf("adapter name %q: want a non-empty name without '=', ':' or ','", name)
	}
	return nil
}

// check validates a against the model without changing the store.
func (s *Set) check(a *Adapter) error {
	specs := map[string]peft.LinearSpec{}
	for _, m := range s.modules {
		specs[m.Path] = m
	}
	for _, m := range a.Modules {
		sp, ok := specs[m.Path]
		if !ok {
			return fmt.Errorf("module %s is not a linear layer of this model", m.Path)
		}
		if sp.In != m.In || sp.Out != m.Out {
			return fmt.Errorf("module %s is in=%d out=%d in the adapter but in=%d out=%d in the model", m.Path, m.In, m.Out, sp.In, sp.Out)
		}
	}
	for _, t := range a.Saved {
		if v := s.store.GetVariable(savedPath(t.Name)); v != nil && !slices.Equal(v.Shape().Dimensions, t.Shape) {
			return fmt.Errorf("saved tensor %s has shape %v, the model's %v", t.Name, t.Shape, v.Shape().Dimensions)
		}
	}
	return nil
}

// savedPath is the store path of a saved (modules_to_save or bias) tensor's module name.
func savedPath(name string) string { return "/" + strings.ReplaceAll(name, ".", "/") }

// Names returns the loaded adapters' names in the order they were added.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Active returns the active adapter's name ("" for none).
func (s *Set) Active() string { return s.active }

// Adapter returns the loaded adapter called name, or nil.
func (s *Set) Adapter(name string) *Adapter { return s.adapters[name] }

// Activate makes name the active adapter ("" for none) and returns its injection (nil for
// none): the previous adapter's variables are removed and the base variables it overwrote
// restored, then name's tensors go into the store as LoadIntoStore would put them there.
func (s *Set) Activate(name string) (*peft.Injection, error) {
	if name != "" && s.adapters[name] == nil {
		return nil, fmt.Errorf("no adapter %q loaded (loaded: %s)", name, strings.Join(s.names, ", "))
	}
	if err := s.deactivate(); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, nil
	}
	a := s.adapters[name]
	// Remember what IntoStore will create or overwrite.
	s.saved = map[string]*tensors.Tensor{}
	remember := func(p string) error {
		v := s.store.GetVariable(p)
		if v == nil {
			s.created = append(s.created, p)
			return nil
		}
		t, err := v.Value()
		if err != nil {
			return fmt.Errorf("activate adapter %q: reading %s: %w", name, p, err)
		}
		c, err := t.LocalClone()
		if err != nil {
			return fmt.Errorf("activate adapter %q: copying %s: %w", name, p, err)
		}
		s.saved[p] = c
		return nil
	}
	specs := map[string]peft.LinearSpec{}
	for _, m := range s.modules {
		specs[m.Path] = m
	}
	for _, m := range a.Modules {
		for tn := range m.Tensors {
			if err := remember(specs[m.Path].ScopePath() + "/" + tn); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range a.Saved {
		if err := remember(savedPath(t.Name)); err != nil {
			return nil, err
		}
	}
	if v := s.store.GetVariable(optim.StepPath); v != nil {
		t, err := v.Value()
		if err != nil {
			return nil, err
		}
		if s.step, err = t.LocalClone(); err != nil {
			return nil, err
		}
	} else {
		s.created = append(s.created, optim.StepPath)
	}
	trainable := map[string]bool{}
	for v := range s.store.IterVariables() {
		trainable[v.Path()] = v.Trainable
	}
	inj, err := IntoStore(a, s.store, s.modules)
	if err != nil {
		_ = s.undo(trainable)
		return nil, fmt.Errorf("activate adapter %q: %w", name, err)
	}
	s.active = name
	s.trainable = trainable
	return inj, nil
}

// Delete removes the adapter called name from the set (deactivating it first if active).
func (s *Set) Delete(name string) error {
	if s.adapters[name] == nil {
		return fmt.Errorf("no adapter %q loaded (loaded: %s)", name, strings.Join(s.names, ", "))
	}
	if s.active == name {
		if err := s.deactivate(); err != nil {
			return err
		}
	}
	delete(s.adapters, name)
	delete(s.dirs, name)
	s.names = slices.DeleteFunc(s.names, func(n string) bool { return n == name })
	return nil
}

// deactivate undoes the active adapter's changes to the store.
func (s *Set) deactivate() error {
	if s.active == "" {
		return nil
	}
	if err := s.undo(s.trainable); err != nil {
		return fmt.Errorf("deactivate adapter %q: %w", s.active, err)
	}
	s.active = ""
	return nil
}

// undo deletes the created variables, restores the overwritten values and the step counter, and
// sets every variable's trainability back.
func (s *Set) undo(trainable map[string]bool) error {
	for _, p := range s.created {
		if s.store.GetVariable(p) != nil {
			if err := s.store.DeleteVariable(p); err != nil {
				return err
			}
		}
	}
	for p, t := range s.saved {
		if err := s.store.GetVariable(p).SetValue(t); err != nil {
			return fmt.Errorf("restoring %s: %w", p, err)
		}
	}
	if s.step != nil {
		if err := optim.StepVar(s.store).SetValue(s.step); err != nil {
			return err
		}
	}
	for v := range s.store.IterVariables() {
		if tr, ok := trainable[v.Path()]; ok {
			v.SetTrainable(tr)
		}
	}
	s.created, s.saved, s.step, s.trainable = nil, nil, nil, nil
	return nil
}

// ParseNamed parses an --adapter value: "NAME=DIR" or a bare "DIR", which is named after the
// folder's base name.
func ParseNamed(v string) (name, dir string) {
	if n, d, ok := strings.Cut(v, "="); ok && n != "" && !strings.ContainsAny(n, `/\`) {
		return n, d
	}
	return strings.TrimRight(baseName(v), "/"), v
}

func baseName(p string) string {
	p = strings.TrimRight(p, "/")
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
