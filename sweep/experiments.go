package sweep

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/singlora/singlora/demo"
	"github.com/singlora/singlora/finetune"
)

// DemoData writes the demo's seeded 70/10/20 stratified split of the 3,000 sentiment sentences as
// train/val/test JSONL files in dir (demo.WriteSplit) and returns a base config that uses them.
func DemoData(cache, dir string, seed uint64) (finetune.Config, error) {
	c := finetune.Default()
	sp, err := demo.WriteSplit(cache, dir, seed, 0, 0)
	if err != nil {
		return c, err
	}
	c.Train, c.Val, c.Test = sp.Train, sp.Val, sp.Test
	return c, nil
}

// Experiment is a named sweep of EXPERIMENTS.md.
type Experiment struct {
	Name        string
	Description string
	// Data prepares the runs' data under env.Dir and returns their base config; nil: the demo
	// data (DemoData, seed 1) with the USE-Lite encoder.
	Data func(env Env) (finetune.Config, error)
	// Cells returns the runs; lrs, when not nil, replaces the learning-rate grid of experiments
	// that sweep learning rates (others ignore it).
	Cells func(base finetune.Config, seeds []uint64, lrs []float64) []Cell
}

// withLR sets the method at the paper's single learning rate, 1e-3 (also in LoRA's best range
// on this task, see lr-robustness), so these runs coincide with lr-robustness's cells at 1e-3.
func withLR(m string) func(*finetune.Config) {
	return func(c *finetune.Config) { c.Method, c.LR = m, 1e-3 }
}

// Experiments are the paper's claims put to the test: on the demo task with the USE-Lite
// encoder, and (decoder-*, decoder.go) on a Llama pretrained here.
var Experiments = map[string]Experiment{
	"lr-robustness": {
		Name:        "lr-robustness",
		Description: "SingLoRA, LoRA, LoRA+ and DoRA over learning rates 1e-4 … 3e-3 (30×)",
		Cells: func(base finetune.Config, seeds []uint64, lrs []float64) []Cell {
			if lrs == nil {
				lrs = []float64{1e-4, 3e-4, 1e-3, 3e-3}
			}
			return Grid(base, MethodVariants([]string{"singlora", "lora", "loraplus", "dora"}), lrs, seeds)
		},
	},
	"equal-budget": {
		Name:        "equal-budget",
		Description: "SingLoRA at rank 2r vs LoRA at rank r (the same adapter parameters on square layers)",
		Cells: func(base finetune.Config, seeds []uint64, _ []float64) []Cell {
			return Grid(base, []Variant{
				{Name: "lora-r8", Apply: func(c *finetune.Config) { withLR("lora")(c); c.R, c.LoraAlpha = 8, 8 }},
				{Name: "singlora-r8", Apply: func(c *finetune.Config) { withLR("singlora")(c); c.R, c.LoraAlpha = 8, 8 }},
				// On USE-Lite's non-square layers rank 12 is the SingLoRA rank closest to LoRA r=8's total.
				{Name: "singlora-r12", Apply: func(c *finetune.Config) { withLR("singlora")(c); c.R, c.LoraAlpha = 12, 12 }},
				{Name: "singlora-r16", Apply: func(c *finetune.Config) { withLR("singlora")(c); c.R, c.LoraAlpha = 16, 16 }},
			}, nil, seeds)
		},
	},
	"init-ramp": {
		Name:        "init-ramp",
		Description: "SingLoRA initialisation (theory scale vs Kaiming on (d×r)) and ramp T ∈ {0, 0.5%, 1%, 8%}",
		Cells: func(base finetune.Config, seeds []uint64, _ []float64) []Cell {
			var vs []Variant
			for _, init := range []string{"theory", "kaiming-dr"} {
				init := init
				vs = append(vs, Variant{Name: "init-" + init, Apply: func(c *finetune.Config) { withLR("singlora")(c); c.Init = init }})
			}
			for _, t := range []string{"0", "0.5%", "1%", "8%"} {
				t := t
				vs = append(vs, Variant{Name: "ramp-" + strings.TrimSuffix(t, "%") + "pct", Apply: func(c *finetune.Config) { withLR("singlora")(c); c.Ramp = t }})
			}
			return Grid(base, vs, nil, seeds)
		},
	},
}

func init() {
	for _, e := range decoderExperiments {
		Experiments[e.Name] = e
	}
}

// Prepare runs e's data step (DemoData with the USE-Lite encoder when e has none) and returns
// the base config of its cells.
func (e Experiment) Prepare(env Env) (finetune.Config, error) {
	if e.Data != nil {
		return e.Data(env)
	}
	c, err := DemoData(env.Cache, filepath.Join(env.Dir, "data"), 1)
	if err != nil {
		return c, err
	}
	c.Model = "use"
	return c, nil
}

// ExperimentNames lists the experiments.
func ExperimentNames() []string {
	var out []string
	for k := range Experiments {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the named experiment.
func Lookup(name string) (Experiment, error) {
	e, ok := Experiments[name]
	if !ok {
		return e, fmt.Errorf("unknown experiment %q (known: %s)", name, strings.Join(ExperimentNames(), ", "))
	}
	return e, nil
}
