package tuner

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/singlora/singlora/peft/peftdef"
)

// Method names an adaptation method (defined in peftdef, which file formats import without GoMLX).
type Method = peftdef.Method

// Init names how adapter weights are initialised (defined in peftdef).
type Init = peftdef.Init

// Layout says how a linear layer's weight is stored (defined in peftdef).
type Layout = peftdef.Layout

// The layouts: OutIn is PyTorch nn.Linear's [out, in]; InOut is GPT-2 Conv1D's [in, out].
const (
	OutIn = peftdef.OutIn
	InOut = peftdef.InOut
)

// AllLinear is the target pattern that selects every linear layer the model lists.
const AllLinear = peftdef.AllLinear

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
