package tuner

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/peft/peftdef"
)

// Config configures an adapter method and where it applies, in memory. Its file forms use PEFT's
// key names, defined once in adapterconfig.Settings (a run's config.json and
// adapter_config.json); finetune and adapterio convert them to this type.
type Config struct {
	Method Method
	// Rank r of the adapter.
	Rank int
	// Alpha is the scaling numerator: the adapter is scaled by Alpha/Rank (or Alpha/√Rank with UseRSLoRA).
	Alpha float64
	// UseRSLoRA scales by Alpha/√Rank (rank-stabilised LoRA) instead of Alpha/Rank.
	UseRSLoRA bool
	// RampSteps is T in u(t) = min(t/T, 1), t the optimizer steps taken, for methods whose update
	// ramps up (Tuner.UsesRamp: SingLoRA). 0 = no ramp (u ≡ 1).
	RampSteps int64
	// Init selects the adapter initialisation ("" picks the method's default, Tuner.Inits()[0]).
	Init Init
	// Dropout is the dropout rate applied to the adapter's input while training (0 = none).
	Dropout float64
	// Targets selects the linear layers to adapt: "all-linear", an exact module path, a dotted
	// suffix ("query" matches "encoder.layer.0.attention.self.query"), or a regular expression
	// prefixed with "re:" that must match the whole path.
	Targets []string
	// ExcludeModules are patterns (Targets' syntax) of layers not to adapt even when Targets
	// match them (PEFT's exclude_modules).
	ExcludeModules []string
	// LayersToTransform, when set, keeps only targets in these layers: a module's layer is the
	// number after its LayersPattern component ("model.layers.3.mlp.up_proj" is in layer 3 for
	// pattern "layers"; with no pattern, the first "<name>.<number>." in the path), as PEFT's
	// layers_to_transform and layers_pattern. A target with no layer number is left out.
	LayersToTransform []int
	LayersPattern     []string
	// ModulesToSave are scope patterns (same syntax as Targets, matched against variable scopes)
	// whose variables stay trainable and are saved with the adapter, e.g. a classification head.
	ModulesToSave []string
	// RankPattern and AlphaPattern override Rank and Alpha per module (PEFT's rank_pattern and
	// alpha_pattern): the first key matching the end of a module path on a dot boundary decides
	// (peftdef.Pattern). ForModule resolves them; every key must match some target (Inject).
	RankPattern  peftdef.Pattern[int]
	AlphaPattern peftdef.Pattern[float64]
	// Bias says which biases train and are saved with the adapter (PEFT's bias): "" or "none",
	// "lora_only" (biases of the adapted layers) or "all" (every variable named "bias").
	Bias string
	// LoRAPlusRatio is λ in LoRA+ (η_B = λ·η_A); 0 means the method's default (16).
	LoRAPlusRatio float64
	// Seed seeds the adapter initialisation; each module derives its own stream from it and its path.
	Seed uint64
}

// DefaultConfig returns the paper's defaults for method m: r = α = 8, all linear layers, T = 0
// (set RampSteps for a ramp; the trainer sets it from a fraction of the total steps), the
// method's default init and its own defaults (Tuner.Defaults). An unknown m gets the common
// defaults only (Validate then names it).
func DefaultConfig(m Method) Config {
	c := Config{Method: m, Rank: 8, Alpha: 8, Targets: []string{AllLinear}}
	c.Init = c.DefaultInit()
	if t, err := Lookup(m); err == nil {
		t.Defaults(&c)
	}
	return c
}

// DefaultInit is the method's default initialisation (the first of Tuner.Inits; "" for methods
// without adapter tensors and for unknown methods).
func (c Config) DefaultInit() Init {
	t, err := Lookup(c.Method)
	if err != nil || len(t.Inits()) == 0 {
		return ""
	}
	return t.Inits()[0]
}

// ForModule returns c as it applies to the module at path p: Rank and Alpha replaced by the
// values of the first RankPattern / AlphaPattern keys that match p (unchanged where none does).
func (c Config) ForModule(p string) Config {
	if r, _, ok := c.RankPattern.Lookup(p); ok {
		c.Rank = r
	}
	if a, _, ok := c.AlphaPattern.Lookup(p); ok {
		c.Alpha = a
	}
	return c
}

// TrainsBias reports whether the bias variable at path trains and is saved under c.Bias; adapted
// says whether the variable's module carries an adapter.
func (c Config) TrainsBias(path string, adapted bool) bool {
	if VarName(path) != "bias" {
		return false
	}
	switch c.Bias {
	case adapterconfig.BiasAll:
		return true
	case adapterconfig.BiasLoRAOnly:
		return adapted
	}
	return false
}

// Scale returns the adapter scaling s: Alpha/Rank, or Alpha/√Rank with UseRSLoRA.
func (c Config) Scale() float64 { return peftdef.Scale(c.Alpha, c.Rank, c.UseRSLoRA) }

// Ramp returns u(t) = min(t/T, 1) for t optimizer steps taken (1 when RampSteps is 0).
func (c Config) Ramp(t int64) float64 { return peftdef.Ramp(c.RampSteps, t) }

// Validate checks the configuration, filling in nothing: the method is registered; for methods
// with adapter tensors, the common fields are in range, the init is one the method accepts, the
// method's own checks (Tuner.Validate) pass, and targets are given.
func (c Config) Validate() error {
	t, err := Lookup(c.Method)
	if err != nil {
		return fmt.Errorf("peft config: %w", err)
	}
	for _, pat := range c.ExcludeModules {
		if _, err := MatchModule(pat, ""); err != nil || pat == "" || pat == AllLinear {
			return fmt.Errorf("peft config: exclude_modules %q: want a module name, dotted suffix or re: pattern (%v)", pat, err)
		}
	}
	for _, l := range c.LayersToTransform {
		if l < 0 {
			return fmt.Errorf("peft config: layers_to_transform %d: layer numbers are ≥ 0", l)
		}
	}
	for _, p := range c.LayersPattern {
		if p == "" || strings.Contains(p, ".") {
			return fmt.Errorf("peft config: layers_pattern %q: want the name of the layer list (e.g. \"layers\", \"h\")", p)
		}
	}
	if err := adapterconfig.CheckBias(c.Bias); err != nil {
		return fmt.Errorf("peft config: %w", err)
	}
	if err := c.RankPattern.Check("rank_pattern"); err != nil {
		return fmt.Errorf("peft config: %w", err)
	}
	if err := c.AlphaPattern.Check("alpha_pattern"); err != nil {
		return fmt.Errorf("peft config: %w", err)
	}
	for _, pat := range c.ModulesToSave {
		if pat == AllLinear || pat == "" {
			return fmt.Errorf("peft config: modules_to_save %q: name a module (e.g. a head), not %q", pat, AllLinear)
		}
		if _, err := MatchModule(pat, ""); err != nil {
			return fmt.Errorf("peft config: modules_to_save: %w", err)
		}
	}
	if !HasAdapter(c.Method) {
		if c.Bias != "" && c.Bias != adapterconfig.BiasNone {
			return fmt.Errorf("peft config: bias %q trains biases beside an adapter; method %s has none (full trains every bias already; frozen trains only modules_to_save)", c.Bias, c.Method)
		}
		return nil
	}
	if c.Rank <= 0 {
		return fmt.Errorf("peft config: rank must be ≥ 1, got %d", c.Rank)
	}
	if err := peftdef.CheckScale(c.Alpha, c.Rank, c.UseRSLoRA); err != nil {
		return fmt.Errorf("peft config: %w", err)
	}
	if c.RampSteps < 0 {
		return fmt.Errorf("peft config: ramp_up_steps must be ≥ 0, got %d", c.RampSteps)
	}
	if c.Dropout < 0 || c.Dropout >= 1 || math.IsNaN(c.Dropout) {
		return fmt.Errorf("peft config: dropout must be in [0, 1), got %v", c.Dropout)
	}
	if c.LoRAPlusRatio < 0 {
		return fmt.Errorf("peft config: loraplus_lr_ratio must be > 0, got %v", c.LoRAPlusRatio)
	}
	if err := checkInit(t, c.Init); err != nil {
		return fmt.Errorf("peft config: %w", err)
	}
	if err := t.Validate(c); err != nil {
		return fmt.Errorf("peft config: %w", err)
	}
	if len(c.Targets) == 0 {
		return fmt.Errorf("peft config: no target modules given (use \"all-linear\" for every linear layer)")
	}
	return nil
}

// checkInit accepts "" and the inits t lists; the error for another names the methods it belongs
// to, if any, and the ones t accepts.
func checkInit(t Tuner, init Init) error {
	if init == "" || slices.Contains(t.Inits(), init) {
		return nil
	}
	accepts := fmt.Sprintf("%s accepts %s", t.Name(), joinInits(t.Inits()))
	var owners []string
	for _, o := range All() {
		if slices.Contains(o.Inits(), init) {
			owners = append(owners, string(o.Name()))
		}
	}
	if len(owners) > 0 {
		return fmt.Errorf("init %q is for %s, not %s (%s)", init, strings.Join(owners, ", "), t.Name(), accepts)
	}
	return fmt.Errorf("unknown init %q (%s)", init, accepts)
}

func joinInits(inits []Init) string {
	s := make([]string, len(inits))
	for i, x := range inits {
		s[i] = string(x)
	}
	return orList(s)
}

// IsModuleToSave reports whether a variable path lies in a scope matched by c.ModulesToSave.
func (c Config) IsModuleToSave(path string) bool {
	for _, pat := range c.ModulesToSave {
		if SavesModule(pat, path) {
			return true
		}
	}
	return false
}

// SavesModule reports whether the modules_to_save pattern pat matches the scope of variable path
// or one of its parents (the module "a.b" covers "/a/b/c/weight").
func SavesModule(pat, path string) bool {
	if pat == AllLinear {
		return false
	}
	scope, _ := model.SplitPath(path)
	for p := ScopeModule(scope); p != ""; {
		if ok, _ := MatchModule(pat, p); ok {
			return true
		}
		i := strings.LastIndex(p, ".")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return false
}

// LayerOf returns the layer number of module path p under patterns (LayersToTransform's rule):
// the number after a component named one of patterns, or with no patterns after the first
// component followed by a number; ok is false when p has none.
func LayerOf(p string, patterns []string) (layer int, ok bool) {
	parts := strings.Split(p, ".")
	for i := 0; i+1 < len(parts); i++ {
		if len(patterns) > 0 && !slices.Contains(patterns, parts[i]) {
			continue
		}
		if n, err := strconv.Atoi(parts[i+1]); err == nil && n >= 0 && i+2 < len(parts) {
			return n, true
		}
	}
	return 0, false
}
