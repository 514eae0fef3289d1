package peft

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/peft/peftdef"
	"github.com/singlora/singlora/peft/tuner"
)

// Layout says how a linear layer's weight is stored (defined in peftdef).
type Layout = tuner.Layout

// The layouts: OutIn is PyTorch nn.Linear's [out, in]; InOut is GPT-2 Conv1D's [in, out].
const (
	OutIn = tuner.OutIn
	InOut = tuner.InOut
)

// LinearSpec describes one adaptable linear layer of a model (see tuner.LinearSpec).
type LinearSpec = tuner.LinearSpec

// ModuleScope converts a module path ("a.b.0.c") to its scope path ("/a/b/0/c").
func ModuleScope(path string) string { return tuner.ModuleScope(path) }

// ScopeModule converts a scope path ("/a/b/0/c") to its module path ("a.b.0.c").
func ScopeModule(scope string) string { return tuner.ScopeModule(scope) }

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
	perMod  map[string]Config // the targets' configs with rank/alpha patterns resolved
}

// AllLinear is the target pattern that selects every linear layer the model lists.
const AllLinear = tuner.AllLinear

// MatchModule reports whether module path p matches pattern: AllLinear, the exact path, a dotted
// suffix, or "re:<regexp>" matching the whole path.
func MatchModule(pattern, p string) (bool, error) { return tuner.MatchModule(pattern, p) }

// Inject resolves cfg's target patterns against the model's linear layers, after filling in the
// method's defaults (its default init; tuner.Tuner.Defaults) and validating cfg. Every pattern
// must match at least one layer; an unmatched pattern is an error that lists the available
// modules. A method without adapter tensors adapts no layer.
func Inject(cfg Config, modules []LinearSpec) (*Injection, error) {
	t, err := tuner.Lookup(cfg.Method)
	if err != nil {
		return nil, fmt.Errorf("peft config: %w", err)
	}
	if cfg.Init == "" {
		cfg.Init = cfg.DefaultInit()
	}
	t.Defaults(&cfg)
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
	if !tuner.HasAdapter(cfg.Method) {
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
	if err := inj.narrowTargets(); err != nil {
		return nil, err
	}
	for _, m := range modules {
		if _, ok := inj.targets[m.Path]; ok {
			inj.order = append(inj.order, m.Path)
		}
	}
	if err := inj.resolvePatterns(); err != nil {
		return nil, err
	}
	return inj, nil
}

// resolvePatterns gives each target its rank and α (Config.ForModule): every rank_pattern and
// alpha_pattern key must match some target (a typo must not go unnoticed), and each target's
// scaling must be usable in float32.
func (inj *Injection) resolvePatterns() error {
	c := inj.Config
	inj.perMod = make(map[string]Config, len(inj.order))
	for _, p := range inj.order {
		mc := c.ForModule(p)
		if err := peftdef.CheckScale(mc.Alpha, mc.Rank, mc.UseRSLoRA); err != nil {
			return fmt.Errorf("module %s (rank %d, alpha %g): %w", p, mc.Rank, mc.Alpha, err)
		}
		inj.perMod[p] = mc
	}
	check := func(what string, keys []string) error {
		for _, k := range keys {
			found := false
			for _, p := range inj.order {
				if peftdef.PatternMatches(k, p) {
					found = true
					break
				}
			}
			if !found {
				return fmt.Errorf("%s key %q matches none of the adapted layers (a key matches the end of a module path on a dot boundary, e.g. \"q_proj\" or \"layers\\.0\\.self_attn\\.q_proj\"); adapted: %s",
					what, k, strings.Join(first(inj.order, 4), ", ")+map[bool]string{true: ", …", false: ""}[len(inj.order) > 4])
			}
		}
		return nil
	}
	var rk, ak []string
	for _, e := range c.RankPattern {
		rk = append(rk, e.Key)
	}
	for _, e := range c.AlphaPattern {
		ak = append(ak, e.Key)
	}
	if err := check("rank_pattern", rk); err != nil {
		return err
	}
	return check("alpha_pattern", ak)
}

// ModuleConfig returns the config of the adapted module p, with its rank_pattern / alpha_pattern
// values (Config.ForModule); for a module that is not adapted, inj's config.
func (inj *Injection) ModuleConfig(p string) Config {
	if c, ok := inj.perMod[p]; ok {
		return c
	}
	return inj.Config
}

// SavesVariable reports whether the store variable at path trains and is saved with the adapter
// besides the adapter tensors: it lies in a modules_to_save scope, or it is a bias that the
// config's bias setting trains ("all": every bias; "lora_only": the adapted layers' biases).
func (inj *Injection) SavesVariable(path string) bool {
	if inj == nil {
		return false
	}
	if inj.Config.IsModuleToSave(path) {
		return true
	}
	if inj.Config.Bias == "" || !inj.Config.Method.HasAdapter() {
		return false
	}
	scope, _ := model.SplitPath(path)
	_, adapted := inj.targets[ScopeModule(scope)]
	return inj.Config.TrainsBias(path, adapted)
}

// narrowTargets applies ExcludeModules and LayersToTransform to the matched targets: every
// exclude pattern and every listed layer must concern some matched target (an error otherwise,
// as a typo must not go unnoticed), and some target must remain.
func (inj *Injection) narrowTargets() error {
	c := inj.Config
	for _, pat := range c.ExcludeModules {
		n := 0
		for p := range inj.targets {
			if ok, _ := MatchModule(pat, p); ok {
				delete(inj.targets, p)
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("exclude_modules %q matches none of the targeted layers (%s)", pat, strings.Join(sortedKeys(inj.targets), ", "))
		}
	}
	if len(c.LayersToTransform) > 0 {
		before := sortedKeys(inj.targets)
		layers := map[int]bool{}
		for p := range inj.targets {
			l, ok := tuner.LayerOf(p, c.LayersPattern)
			if ok {
				layers[l] = true
			}
			if !ok || !slices.Contains(c.LayersToTransform, l) {
				delete(inj.targets, p)
			}
		}
		if len(layers) == 0 {
			return fmt.Errorf("layers_to_transform: no targeted layer's path has a layer number (a \"<name>.<number>.\" part%s), e.g. %s",
				map[bool]string{true: fmt.Sprintf(" with name %q", c.LayersPattern), false: ""}[len(c.LayersPattern) > 0], strings.Join(first(before, 3), ", "))
		}
		for _, l := range c.LayersToTransform {
			if !layers[l] {
				have := slices.Sorted(maps.Keys(layers))
				return fmt.Errorf("layers_to_transform %d: no targeted layer has that number (layers_pattern %q; the targets' layers: %v)", l, c.LayersPattern, have)
			}
		}
	}
	if len(inj.targets) == 0 {
		return fmt.Errorf("exclude_modules / layers_to_transform leave no layer to adapt")
	}
	return nil
}

func sortedKeys(m map[string]LinearSpec) []string { return slices.Sorted(maps.Keys(m)) }

func first(s []string, n int) []string { return s[:min(n, len(s))] }

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

// method returns the registered method of inj's config.
func (inj *Injection) method() (tuner.Tuner, error) { return tuner.Lookup(inj.Config.Method) }
