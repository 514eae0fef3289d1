package adapterio

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/peft"
)

// TestNarrowedAdapterRoundTrip: an adapter trained with exclude_modules and layers_to_transform
// records them in adapter_config.json, and loading it adapts exactly the same layers.
func TestNarrowedAdapterRoundTrip(t *testing.T) {
	var modules []peft.LinearSpec
	for l := 0; l < 3; l++ {
		for _, n := range []string{"q_proj", "up_proj"} {
			modules = append(modules, peft.LinearSpec{Path: fmt.Sprintf("model.layers.%d.%s", l, n), In: 4, Out: 6})
		}
	}
	newStore := func() *model.Store {
		store := model.NewStore()
		for _, m := range modules {
			if _, err := store.CreateVariable(peft.ModuleScope(m.Path)+"/weight", tensors.FromFlatDataAndDimensions(make([]float32, 24), 6, 4)); err != nil {
				t.Fatal(err)
			}
		}
		return store
	}
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.Targets, cfg.ExcludeModules, cfg.LayersToTransform, cfg.LayersPattern = []string{"all-linear"}, []string{"up_proj"}, []int{0, 2}, []string{"layers"}
	inj, err := peft.Inject(cfg, modules)
	if err != nil {
		t.Fatal(err)
	}
	store := newStore()
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := SaveFromStore(dir, inj, store, "base"); err != nil {
		t.Fatal(err)
	}
	inj2, err := LoadIntoStore(dir, newStore(), modules)
	if err != nil {
		t.Fatal(err)
	}
	paths := func(inj *peft.Injection) []string {
		var out []string
		for _, s := range inj.Targets() {
			out = append(out, s.Path)
		}
		return out
	}
	want := []string{"model.layers.0.q_proj", "model.layers.2.q_proj"}
	if got := paths(inj); !slices.Equal(got, want) {
		t.Fatalf("trained targets %v, want %v", got, want)
	}
	if got := paths(inj2); !slices.Equal(got, want) {
		t.Fatalf("reloaded adapter targets %v, want %v", got, want)
	}
	if c := inj2.Config; !slices.Equal(c.ExcludeModules, cfg.ExcludeModules) || !slices.Equal(c.LayersToTransform, cfg.LayersToTransform) || !slices.Equal(c.LayersPattern, cfg.LayersPattern) {
		t.Fatalf("reloaded config exclude %v layers %v pattern %v", c.ExcludeModules, c.LayersToTransform, c.LayersPattern)
	}
}
