package tuner

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads better dot-imported
	"github.com/gomlx/gomlx/ml/model"
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft/peftdef"
)

// The methods without adapter tensors.
var (
	// Full is full fine-tuning: every float variable of the model trains, no adapter.
	Full Tuner = &NoAdapter{Method: peftdef.Full, TrainsAll: true}
	// Frozen is the frozen base without adapter: only Config.ModulesToSave (e.g. a head) train.
	Frozen Tuner = &NoAdapter{Method: peftdef.Frozen, Alias: []string{"none", "head"}}
)

// NoAdapter is a method that adds no adapter tensors and trains either every float variable
// (TrainsAll) or none but the modules to save. peft.Inject gives it no targets, so its graph,
// file and host parts are never asked for; they panic (graph) or return errors naming the method.
type NoAdapter struct {
	Method    Method
	Alias     []string
	TrainsAll bool
}

// Name implements Tuner.
func (n *NoAdapter) Name() Method { return n.Method }

// Aliases implements Tuner.
func (n *NoAdapter) Aliases() []string { return n.Alias }

// Inits implements Tuner: none.
func (n *NoAdapter) Inits() []Init { return nil }

// Defaults implements Tuner: nothing to fill.
func (n *NoAdapter) Defaults(*Config) {}

// Validate implements Tuner: nothing of its own to check.
func (n *NoAdapter) Validate(Config) error { return nil }

// UsesRamp implements Tuner: no adapter, no ramp.
func (n *NoAdapter) UsesRamp() bool { return false }

// Tensors implements Tuner: none.
func (n *NoAdapter) Tensors(LinearSpec, int) []TensorSpec { return nil }

// Init implements Tuner: nothing to initialise.
func (n *NoAdapter) Init(Config, LinearSpec, func() ([]float32, error)) (map[string][]float32, error) {
	return nil, nil
}

// Trainable implements Tuner: every variable with TrainsAll, none otherwise.
func (n *NoAdapter) Trainable(string) bool { return n.TrainsAll }

// Group implements Tuner: the default group.
func (n *NoAdapter) Group(Config, *model.Variable, *optim.Group) {}

// Forward implements Tuner; it is never called (the method adapts no layer).
func (n *NoAdapter) Forward(l *Layer, _ *Node) *Node {
	Panicf("peft.Linear: method %s has no adapter for module %q", n.Method, l.Spec.Path)
	return nil
}

// DeltaWeight implements Tuner: no update.
func (n *NoAdapter) DeltaWeight(*Layer) *Node { return nil }

// PeftType implements Tuner: no adapter files.
func (n *NoAdapter) PeftType() string { return "" }

// ToFile implements Tuner: nothing to record.
func (n *NoAdapter) ToFile(Config, *adapterconfig.Config) {}

// FromFile implements Tuner: no adapter file describes the method.
func (n *NoAdapter) FromFile(*adapterconfig.Config, *Config) bool { return false }

// LayerShape implements Tuner.
func (n *NoAdapter) LayerShape(map[string][]int) ([2]int, error) { return [2]int{}, n.none() }

// DeltaW implements Tuner.
func (n *NoAdapter) DeltaW(Host) ([]float64, error) { return nil, n.none() }

// Merge implements Tuner.
func (n *NoAdapter) Merge(Host, []float64, bool) ([]float64, error) { return nil, n.none() }

// AsLoRA implements Tuner.
func (n *NoAdapter) AsLoRA(Host) ([]float32, []float32, error) { return nil, nil, n.none() }

func (n *NoAdapter) none() error {
	return fmt.Errorf("method %s has no adapter tensors (adapter methods: %s)", n.Method, adapterMethodList())
}

func adapterMethodList() string {
	var out []string
	for _, t := range All() {
		if HasAdapter(t.Name()) {
			out = append(out, string(t.Name()))
		}
	}
	return orList(out)
}
