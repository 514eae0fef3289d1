package tuner

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/peft/peftdef"
)

// registry holds the registered methods in registration order, and what the file format needs
// of their tensors.
var registry struct {
	sync.RWMutex
	order   []Tuner
	byName  map[string]Tuner // names and aliases, lower-case
	tensors map[string]bool  // adapter tensor name → NoWeightSuffix
	adapter map[Method]bool  // methods with adapter tensors
}

// Register adds method t. Its name and aliases must be new (case-insensitive); its tensor names
// may be shared with other methods only with the same NoWeightSuffix (LoRA, LoRA+ and DoRA share
// lora_A and lora_B). It records t's peft_type with adapterconfig (so that adapter files of that
// type parse) and t's HasAdapter with peftdef (so that Method.HasAdapter answers without GoMLX).
func Register(t Tuner) error {
	registry.Lock()
	defer registry.Unlock()
	if registry.byName == nil {
		registry.byName, registry.tensors, registry.adapter = map[string]Tuner{}, map[string]bool{}, map[Method]bool{}
	}
	names := append([]string{string(t.Name())}, t.Aliases()...)
	for _, n := range names {
		key := strings.ToLower(strings.TrimSpace(n))
		if key == "" {
			return fmt.Errorf("register method %q: empty name or alias", t.Name())
		}
		if o, dup := registry.byName[key]; dup {
			return fmt.Errorf("register method %q: the name %q is taken by %s", t.Name(), n, o.Name())
		}
	}
	specs := t.Tensors(LinearSpec{Path: "probe", In: 2, Out: 3}, 1)
	for _, s := range specs {
		if suffix, seen := registry.tensors[s.Name]; seen && suffix != s.NoWeightSuffix {
			return fmt.Errorf("register method %q: tensor %s is already registered with NoWeightSuffix %v", t.Name(), s.Name, suffix)
		}
	}
	if len(specs) > 0 && len(t.Inits()) == 0 {
		return fmt.Errorf("register method %q: a method with adapter tensors must list at least one init", t.Name())
	}
	if len(specs) > 0 && t.PeftType() == "" {
		return fmt.Errorf("register method %q: a method with adapter tensors needs a peft_type for its adapter files", t.Name())
	}
	for _, n := range names {
		registry.byName[strings.ToLower(strings.TrimSpace(n))] = t
	}
	for _, s := range specs {
		registry.tensors[s.Name] = s.NoWeightSuffix
	}
	registry.order = append(registry.order, t)
	registry.adapter[t.Name()] = len(specs) > 0
	if t.PeftType() != "" {
		adapterconfig.RegisterType(t.PeftType())
	}
	peftdef.Declare(t.Name(), len(specs) > 0)
	return nil
}

// All returns the registered methods in registration order.
func All() []Tuner {
	registry.RLock()
	defer registry.RUnlock()
	return slices.Clone(registry.order)
}

// Lookup returns the registered method named m (its name exactly, as Config.Method holds it).
// The error lists the registered methods.
func Lookup(m Method) (Tuner, error) {
	registry.RLock()
	t, ok := registry.byName[string(m)]
	registry.RUnlock()
	if !ok || t.Name() != m {
		return nil, fmt.Errorf("unknown method %q (known: %s)", m, strings.Join(names(), ", "))
	}
	return t, nil
}

// Parse returns the method named s: a registered name or alias, case-insensitive, surrounding
// spaces ignored.
func Parse(s string) (Method, error) {
	registry.RLock()
	t, ok := registry.byName[strings.ToLower(strings.TrimSpace(s))]
	registry.RUnlock()
	if !ok {
		return "", fmt.Errorf("unknown method %q (known: %s)", s, strings.Join(names(), ", "))
	}
	return t.Name(), nil
}

// HasAdapter reports whether method m is registered and adds adapter tensors.
func HasAdapter(m Method) bool {
	registry.RLock()
	defer registry.RUnlock()
	return registry.adapter[m]
}

// UsesRamp reports whether method m is registered and ramps its update up (Tuner.UsesRamp).
func UsesRamp(m Method) bool {
	t, err := Lookup(m)
	return err == nil && t.UsesRamp()
}

// MethodList returns the registered names for help texts: "singlora, lora, …, full or frozen".
func MethodList() string { return orList(names()) }

func names() []string {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]string, len(registry.order))
	for i, t := range registry.order {
		out[i] = string(t.Name())
	}
	return out
}

// orList joins items as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// AdapterTensorNames returns every registered method's adapter tensor names, sorted, each with
// its NoWeightSuffix (see TensorSpec): the names adapter files may hold.
func AdapterTensorNames() map[string]bool {
	registry.RLock()
	defer registry.RUnlock()
	out := make(map[string]bool, len(registry.tensors))
	for k, v := range registry.tensors {
		out[k] = v
	}
	return out
}

// IsAdapterTensor reports whether name (a variable name, without scope) is an adapter tensor of
// a registered method.
func IsAdapterTensor(name string) bool {
	registry.RLock()
	defer registry.RUnlock()
	_, ok := registry.tensors[name]
	return ok
}

// ForFile returns the method that adapter config f describes, with the peft settings f records
// (the common fields and the method's own, through Tuner.FromFile). The error names the
// peft_type and the registered ones when no method claims f.
func ForFile(f *adapterconfig.Config) (Tuner, Config, error) {
	c := Config{
		Rank:          f.R,
		Alpha:         f.LoraAlpha,
		UseRSLoRA:     f.UseRSLoRA,
		Dropout:       f.LoraDropout,
		Targets:       append([]string(nil), f.TargetModules...), // nil for none, as Inject expects
		ModulesToSave: append([]string(nil), f.ModulesToSave...),
		Seed:          f.Seed,

		ExcludeModules:    append([]string(nil), f.ExcludeModules...),
		LayersToTransform: append([]int(nil), f.LayersToTransform...),
		LayersPattern:     append([]string(nil), f.LayersPattern...),
		RankPattern:       f.RankPattern.Clone(),
		AlphaPattern:      f.AlphaPattern.Clone(),
		Bias:              f.Bias,
	}
	if c.Bias == adapterconfig.BiasNone {
		c.Bias = ""
	}
	var found []Tuner
	var cfgs []Config
	typeKnown := false
	for _, t := range All() {
		if t.PeftType() != f.PeftType || f.PeftType == "" {
			continue
		}
		typeKnown = true
		ct := c
		if t.FromFile(f, &ct) {
			ct.Method = t.Name()
			found, cfgs = append(found, t), append(cfgs, ct)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], cfgs[0], nil
	case !typeKnown:
		return nil, c, fmt.Errorf("adapter config: unsupported peft_type %q (want %s)", f.PeftType, quotedOrList(peftTypes()))
	case len(found) == 0:
		return nil, c, fmt.Errorf("adapter config: no registered method claims this %s adapter (methods of that type: %s)", f.PeftType, strings.Join(methodsOfType(f.PeftType), ", "))
	}
	var claim []string
	for _, t := range found {
		claim = append(claim, string(t.Name()))
	}
	return nil, c, fmt.Errorf("adapter config: methods %s all claim this %s adapter (their FromFile must tell them apart)", strings.Join(claim, ", "), f.PeftType)
}

func peftTypes() []string {
	var out []string
	for _, t := range All() {
		if p := t.PeftType(); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func methodsOfType(pt string) []string {
	var out []string
	for _, t := range All() {
		if t.PeftType() == pt {
			out = append(out, string(t.Name()))
		}
	}
	return out
}

func quotedOrList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return orList(q)
}
