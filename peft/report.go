package peft

import (
	"fmt"
	"strings"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/varnames"
)

// LayerReport is one adapted layer's parameter count.
type LayerReport struct {
	Path      string
	In, Out   int
	Base      int // weight (+ bias) parameters of the layer
	Trainable int // adapter parameters (or Base under Full)
}

// Report counts parameters: per adapted layer, and trainable vs total over the whole store.
type Report struct {
	Layers    []LayerReport
	Trainable int
	Total     int
}

// Report returns the parameter report for the store after Attach.
func (inj *Injection) Report(store *model.Store) Report {
	var r Report
	for v := range store.IterVariables() {
		p := v.Path()
		if varnames.IsBookkeeping(p) || !v.DType().IsFloat() {
			continue
		}
		n := v.Shape().Size()
		r.Total += n
		if v.Trainable {
			r.Trainable += n
		}
	}
	for _, spec := range inj.Targets() {
		base := spec.In * spec.Out
		if spec.Bias {
			base += spec.Out
		}
		r.Layers = append(r.Layers, LayerReport{Path: spec.Path, In: spec.In, Out: spec.Out, Base: base,
			Trainable: AdapterParams(inj.Config.Method, spec, inj.ModuleConfig(spec.Path).Rank)})
	}
	return r
}

// String formats the report as a table.
func (r Report) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-50s %7s %7s %10s %10s\n", "module", "in", "out", "base", "adapter")
	for _, l := range r.Layers {
		fmt.Fprintf(&sb, "%-50s %7d %7d %10d %10d\n", l.Path, l.In, l.Out, l.Base, l.Trainable)
	}
	pct := 0.0
	if r.Total > 0 {
		pct = 100 * float64(r.Trainable) / float64(r.Total)
	}
	fmt.Fprintf(&sb, "trainable params: %d of %d (%.3f%%)\n", r.Trainable, r.Total, pct)
	return sb.String()
}
