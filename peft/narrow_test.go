package peft

import (
	"fmt"
	"strings"
	"testing"

	"github.com/singlora/singlora/peft/tuner"
)

// TestExcludeAndLayersNarrowTargets: exclude_modules and layers_to_transform (+ layers_pattern)
// narrow the matched targets as PEFT's keys do; a pattern or layer that concerns no target, or
// a filter that leaves nothing, is an error naming what exists.
func TestExcludeAndLayersNarrowTargets(t *testing.T) {
	var modules []LinearSpec
	for l := 0; l < 3; l++ {
		for _, n := range []string{"self_attn.q_proj", "mlp.up_proj"} {
			modules = append(modules, LinearSpec{Path: fmt.Sprintf("model.layers.%d.%s", l, n), In: 4, Out: 4})
		}
	}
	modules = append(modules, LinearSpec{Path: "lm_head", In: 4, Out: 8})
	for _, tc := range []struct {
		name     string
		exclude  []string
		layers   []int
		patterns []string
		want     string // the targets, or the error's text
	}{
		{"exclude suffix", []string{"up_proj"}, nil, nil, "model.layers.0.self_attn.q_proj model.layers.1.self_attn.q_proj model.layers.2.self_attn.q_proj"},
		{"exclude regex", []string{"re:.*\\.[01]\\..*"}, nil, nil, "model.layers.2.self_attn.q_proj model.layers.2.mlp.up_proj"},
		{"layers", nil, []int{0, 2}, nil, "model.layers.0.self_attn.q_proj model.layers.0.mlp.up_proj model.layers.2.self_attn.q_proj model.layers.2.mlp.up_proj"},
		{"layers with pattern", []string{"q_proj"}, []int{1}, []string{"layers"}, "model.layers.1.mlp.up_proj"},
		{"layer missing", nil, []int{5}, nil, "layers_to_transform 5: no targeted layer has that number (layers_pattern []; the targets' layers: [0 1 2])"},
		{"pattern missing", nil, []int{0}, []string{"h"}, `layers_to_transform: no targeted layer's path has a layer number (a "<name>.<number>." part with name ["h"]), e.g. model.layers.0.mlp.up_proj, model.layers.0.self_attn.q_proj, model.layers.1.mlp.up_proj`},
		{"exclude matches nothing", []string{"v_proj"}, nil, nil, `exclude_modules "v_proj" matches none of the targeted layers`},
		{"nothing left", []string{"q_proj", "up_proj"}, nil, nil, "leave no layer to adapt"},
		{"bad regex", []string{"re:("}, nil, nil, `exclude_modules "re:("`},
		{"negative layer", nil, []int{-1}, nil, "layers_to_transform -1: layer numbers are ≥ 0"},
	} {
		cfg := DefaultConfig(SingLoRA)
		cfg.Targets = []string{"q_proj", "up_proj"}
		cfg.ExcludeModules, cfg.LayersToTransform, cfg.LayersPattern = tc.exclude, tc.layers, tc.patterns
		inj, err := Inject(cfg, modules)
		var got string
		if err != nil {
			got = err.Error()
		} else {
			var paths []string
			for _, s := range inj.Targets() {
				paths = append(paths, s.Path)
			}
			got = strings.Join(paths, " ")
		}
		wantTargets := strings.HasPrefix(tc.want, "model.")
		switch {
		case wantTargets && (err != nil || got != tc.want):
			t.Errorf("%s: got %q, want the targets %q", tc.name, got, tc.want)
		case !wantTargets && (err == nil || !strings.Contains(got, tc.want)):
			t.Errorf("%s: got %q, want an error containing %q", tc.name, got, tc.want)
		}
	}
}

func TestLayerOf(t *testing.T) {
	for _, tc := range []struct {
		path     string
		patterns []string
		layer    int
		ok       bool
	}{
		{"model.layers.3.mlp.up_proj", nil, 3, true},
		{"model.layers.3.mlp.up_proj", []string{"layers"}, 3, true},
		{"transformer.h.11.attn.c_attn", []string{"h"}, 11, true},
		{"transformer.h.11.attn.c_attn", []string{"layers"}, 0, false},
		{"encoder.layer.0.attention.self.query", []string{"layer", "layers"}, 0, true},
		{"lm_head", nil, 0, false},
		{"model.layers.3", nil, 0, false}, // the number must be followed by the layer's own modules
	} {
		l, ok := tuner.LayerOf(tc.path, tc.patterns)
		if l != tc.layer || ok != tc.ok {
			t.Errorf("LayerOf(%q, %q) = %d, %v; want %d, %v", tc.path, tc.patterns, l, ok, tc.layer, tc.ok)
		}
	}
}
