package peft

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/singlora/singlora/peft/peftdef"
)

// Layout says how a linear layer's weight is stored (defined in peftdef).
type Layout = peftdef.Layout

// The layouts: OutIn is PyTorch nn.Linear's [out, in]; InOut is GPT-2 Conv1D's [in, out].
const (
	OutIn = peftdef.OutIn
	InOut = peftdef.InOut
)

// LinearSpec describes one adaptable linear layer of a model.
type LinearSpec struct {
	// Path is the module path, e.g. "encoder.layer.0.attention.self.query". The layer's weight is
	// the variable "weight" in the scope "/"+strings.ReplaceAll(Path, ".", "/"), and in a
	// checkpoint the tensor Path+".weight".
	Path    string
	In, Out int
	Bias    bool
	Layout  Layout
}

// ScopePath returns the GoMLX scope path of the module's variables.
func (s LinearSpec) ScopePath() string { return ModuleScope(s.Path) }

// ModuleScope converts a module path ("a.b.0.c") to its scope path ("/a/b/0/c").
func ModuleScope(path string) string { return "/" + strings.ReplaceAll(path, ".", "/") }

// ScopeModule converts a scope path ("/a/b/0/c") to its module path ("a.b.0.c").
func ScopeModule(scope string) string {
	return strings.ReplaceAll(strings.TrimPrefix(scope, "/"), "/", ".")
}

// Injection is an adapter method resolved against a model's linear layers: which layers carry an
// adapter, with what configuration. A nil *Injection means "no adapters": [Linear] then computes
// the plain layer.
type Injection struct {
	Config Config
	// Modules are all the model's linear layers, in the model's order.
	Modules []LinearSpec
	modules map[string]LinearSpec // Modules by path
	targets map[string]LinearSpec
	order   []string
}

// AllLinear is the target pattern that selects every linear layer the model lists.
const AllLinear = peftdef.AllLinear

// MatchModule reports whether module path p matches pattern: AllLinear, the exact path, a dotted
// suffix, or "re:<regexp>" matching the whole path.
func MatchModule(pattern, p string) (bool, error) {
	switch {
	case pattern == AllLinear:
		return true, nil
	case strings.HasPrefix(pattern, "re:"):
		re, err := regexp.Compile("^(?:" + strings.TrimPrefix(pattern, "re:") + ")$")
		if err != nil {
			return false, fmt.Errorf("target pattern %q: %w", pattern, err)
		}
		return re.MatchString(p), nil
	default:
		return p == pattern || strings.HasSuffix(p, "."+pattern), nil
	}
}

// Inject resolves cfg's target patterns against the model's linear layers. Every pattern must
// match at least one layer; an unmatched pattern is an error that lists the available modules.
func Inject(cfg Config, modules []LinearSpec) (*Injection, error) {
	if cfg.Init == "" {
		cfg.Init = cfg.DefaultInit()
	}
	if cfg.Method == LoRAPlus && cfg.LoRAPlusRatio == 0 {
		cfg.LoRAPlusRatio = DefaultLoRAPlusRatio
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	inj := &Injection{Config: cfg, Modules: modules, modules: map[string]LinearSpec{}, targets: map[string]LinearSpec{}}
	for _, m := range modules {
		if _, dup := inj.modules[m.Path]; dup {
			return nil, fmt.Errorf("model lists linear module %q twice", m.Path)
		}
		inj.modules[m.Path] = m
		if m.In <= 0 || m.Out <= 0 {
			return nil, fmt.Errorf("linear module %q has invalid shape in=%d out=%d", m.Path, m.In, m.Out)
		}
	}
	if !cfg.Method.HasAdapter() {
		return inj, nil
	}
	for _, pat := range cfg.Targets {
		n := 0
		for _, m := range modules {
			ok, err := MatchModule(pat, m.Path)
			if err != nil {
				return nil, err
			}
			if ok {
				n++
				if _, dup := inj.targets[m.Path]; !dup {
					inj.targets[m.Path] = m
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("target module %q matches none of the model's linear layers; available: %s",
				pat, strings.Join(modulePaths(modules), ", "))
		}
	}
	for _, m := range modules {
		if _, ok := inj.targets[m.Path]; ok {
			inj.order = append(inj.order, m.Path)
		}
	}
	return inj, nil
}

func modulePaths(ms []LinearSpec) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Path
	}
	return out
}

// Targets returns the adapted layers in model order.
func (inj *Injection) Targets() []LinearSpec {
	if inj == nil {
		return nil
	}
	out := make([]LinearSpec, len(inj.order))
	for i, p := range inj.order {
		out[i] = inj.targets[p]
	}
	return out
}

// Target returns the adapted layer with module path p, if any.
func (inj *Injection) Target(p string) (LinearSpec, bool) {
	if inj == nil {
		return LinearSpec{}, false
	}
	s, ok := inj.targets[p]
	return s, ok
}

// Module returns the model's linear layer with module path p, adapted or not.
func (inj *Injection) Module(p string) (LinearSpec, bool) {
	if inj == nil {
		return LinearSpec{}, false
	}
	s, ok := inj.modules[p]
	return s, ok
}

// ModuleNames returns all the model's linear module paths, sorted.
func (inj *Injection) ModuleNames() []string {
	names := modulePaths(inj.Modules)
	sort.Strings(names)
	return names
}
