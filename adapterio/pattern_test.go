package adapterio

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
)

// patternConfig gives "down" rank 3 and α 12 and "up" α 1 (rank 2, α 4 elsewhere).
func patternConfig(m peft.Method) peft.Config {
	cfg := peft.DefaultConfig(m)
	cfg.Rank, cfg.Alpha, cfg.Seed = 2, 4, 9
	cfg.RankPattern = peft.Pattern[int]{{Key: "down", Value: 3}}
	cfg.AlphaPattern = peft.Pattern[float64]{{Key: `layer\.0\.down`, Value: 12}, {Key: "up", Value: 1}}
	if m == peft.SingLoRA {
		cfg.Init = peft.InitKaimingDR
	}
	return cfg
}

// fillAdapters sets every adapter tensor of store to random values (LoRA's B starts at zero).
func fillAdapters(t *testing.T, store *model.Store, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	for v := range store.IterVariables() {
		if !peft.IsAdapterVariable(v.Path()) {
			continue
		}
		if err := v.SetValue(tensors.FromFlatDataAndDimensions(randVals(rng, v.Shape().Size(), 0.5), v.Shape().Dimensions...)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRankAndAlphaPatterns: per-module ranks and α (PEFT's rank_pattern / alpha_pattern) give each
// module tensors of its own rank and its own scale in the graph forward, survive save and load
// (adapter_config.json records both patterns in order), give the same ΔW on the host as in the
// graph, and export as plain LoRA with B·A = ΔW module by module.
func TestRankAndAlphaPatterns(t *testing.T) {
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	wantRank := map[string]int{"enc.layer.0.query": 2, "enc.layer.0.down": 3, "enc.layer.0.up": 2}
	wantAlpha := map[string]float64{"enc.layer.0.query": 4, "enc.layer.0.down": 12, "enc.layer.0.up": 1}
	for _, m := range []peft.Method{peft.SingLoRA, peft.LoRA, peft.DoRA} {
		t.Run(string(m), func(t *testing.T) {
			cfg := patternConfig(m)
			inj, err := peft.Inject(cfg, storeSpecs)
			if err != nil {
				t.Fatal(err)
			}
			src := baseStore(t, 3)
			if err := inj.Attach(src); err != nil {
				t.Fatal(err)
			}
			fillAdapters(t, src, 1)
			if err := optim.StepVar(src).SetValue(tensors.FromScalar(int64(7))); err != nil {
				t.Fatal(err)
			}
			for _, sp := range storeSpecs {
				mc := inj.ModuleConfig(sp.Path)
				if mc.Rank != wantRank[sp.Path] || mc.Alpha != wantAlpha[sp.Path] {
					t.Fatalf("%s: rank %d alpha %g, want %d %g", sp.Path, mc.Rank, mc.Alpha, wantRank[sp.Path], wantAlpha[sp.Path])
				}
			}
			dir := filepath.Join(t.TempDir(), "a")
			if err := SaveFromStore(dir, inj, src, "base"); err != nil {
				t.Fatal(err)
			}
			a, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Config.RankPattern, cfg.RankPattern) || !slices.Equal(a.Config.AlphaPattern, cfg.AlphaPattern) {
				t.Fatalf("reloaded patterns %v / %v, want %v / %v (in order)", a.Config.RankPattern, a.Config.AlphaPattern, cfg.RankPattern, cfg.AlphaPattern)
			}
			dst := baseStore(t, 3)
			inj2, err := LoadIntoStore(dir, dst, storeSpecs)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(8, 8))
			for _, sp := range storeSpecs {
				am := a.Module(sp.Path)
				for name, mat := range am.Tensors {
					if name == peft.NameMagnitude {
						continue
					}
					if !slices.Contains(mat.Shape, wantRank[sp.Path]) {
						t.Fatalf("%s.%s has shape %v: no dimension of rank %d", sp.Path, name, mat.Shape, wantRank[sp.Path])
					}
				}
				if got := a.Config.ModuleScale(sp.Path); math.Abs(got-wantAlpha[sp.Path]/float64(wantRank[sp.Path])) > 1e-15 {
					t.Fatalf("%s: file scale %v", sp.Path, got)
				}
				// The reloaded graph forward equals the host-side merged weight, module by module.
				x := randVals(rng, 2*sp.In, 1)
				out, err := model.CallOnce(be, dst, func(scope *model.Scope, xn *Node) *Node {
					return peft.Linear(inj2, dst.Scope(sp.ScopePath()), xn)
				}, tensors.FromFlatDataAndDimensions(x, 2, sp.In))
				if err != nil {
					t.Fatal(err)
				}
				got := tensors.MustCopyFlatData[float32](out)
				w0f := varValues(t, dst, sp.ScopePath()+"/weight")
				w0 := make([]float64, len(w0f))
				for i, v := range w0f {
					w0[i] = float64(v)
				}
				w, err := MergeWeight(a, am, w0, false)
				if err != nil {
					t.Fatal(err)
				}
				var bias []float32
				if sp.Bias {
					bias = varValues(t, dst, sp.ScopePath()+"/bias")
				}
				for n := range 2 {
					for o := range sp.Out {
						var y float64
						for i := range sp.In {
							j := o*sp.In + i
							if sp.Layout == peft.InOut {
								j = i*sp.Out + o
							}
							y += float64(x[n*sp.In+i]) * w[j]
						}
						if bias != nil {
							y += float64(bias[o])
						}
						if g := float64(got[n*sp.Out+o]); math.Abs(g-y) > 2e-5*(1+math.Abs(y)) {
							t.Fatalf("%s: y[%d,%d] = %v, host merge gives %v", sp.Path, n, o, g, y)
						}
					}
				}
				if m != peft.SingLoRA || sp.Layout == peft.InOut {
					continue
				}
				// SingLoRA's ΔW against the independent float64 product at the module's rank and α.
				want := independentDelta(am.Tensors[peft.NameSingLoRAA].Data, max(sp.In, sp.Out), wantRank[sp.Path], sp.Out, sp.In, wantAlpha[sp.Path], false, 1)
				d, err := DeltaW(a, am)
				if err != nil {
					t.Fatal(err)
				}
				for o := range sp.Out {
					for i := range sp.In {
						if math.Abs(d[o*sp.In+i]-want[o][i]) > 1e-9*(1+math.Abs(want[o][i])) {
							t.Fatalf("%s: ΔW[%d,%d] = %v, independent %v", sp.Path, o, i, d[o*sp.In+i], want[o][i])
						}
					}
				}
			}
			if m == peft.DoRA {
				return
			}
			e, err := ExportLoRA(a)
			if err != nil {
				t.Fatal(err)
			}
			edir := filepath.Join(t.TempDir(), "e")
			if err := Save(edir, e); err != nil {
				t.Fatal(err)
			}
			e, err = Load(edir)
			if err != nil {
				t.Fatal(err)
			}
			for _, sp := range storeSpecs {
				if s := e.Config.ModuleScale(sp.Path); s != 1 && m == peft.SingLoRA {
					t.Fatalf("exported %s: scale %v, want 1", sp.Path, s)
				}
				want, _ := DeltaW(a, a.Module(sp.Path))
				got, err := DeltaW(e, e.Module(sp.Path))
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if math.Abs(got[i]-want[i]) > 1e-6*(1+math.Abs(want[i])) {
						t.Fatalf("exported %s: B·A[%d] = %v, ΔW %v", sp.Path, i, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestPatternErrors: a key that matches no adapted layer, an invalid expression, a rank of 0 and
// a rank wider than the file's tensors are refused, naming the key.
func TestPatternErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*peft.Config)
		want string
	}{
		{"unmatched rank key", func(c *peft.Config) { c.RankPattern = peft.Pattern[int]{{Key: "value", Value: 4}} }, `rank_pattern key "value" matches none`},
		{"unmatched alpha key", func(c *peft.Config) { c.AlphaPattern = peft.Pattern[float64]{{Key: "layer.1.*", Value: 4}} }, `alpha_pattern key "layer.1.*"`},
		{"bad regexp", func(c *peft.Config) { c.RankPattern = peft.Pattern[int]{{Key: "(", Value: 4}} }, "not a regular expression"},
		{"zero rank", func(c *peft.Config) { c.RankPattern = peft.Pattern[int]{{Key: "up", Value: 0}} }, "a rank must be ≥ 1"},
		{"twice", func(c *peft.Config) { c.RankPattern = peft.Pattern[int]{{Key: "up", Value: 1}, {Key: "up", Value: 2}} }, "given twice"},
		{"overflowing alpha", func(c *peft.Config) { c.AlphaPattern = peft.Pattern[float64]{{Key: "up", Value: 1e300}} }, "float32"},
		{"bad bias", func(c *peft.Config) { c.Bias = "some" }, `bias "some"`},
		{"bias without adapter", func(c *peft.Config) { c.Method, c.Bias = peft.Frozen, "all" }, "method frozen has none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := peft.DefaultConfig(peft.SingLoRA)
			c.edit(&cfg)
			_, err := peft.Inject(cfg, storeSpecs)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	// A file whose rank_pattern disagrees with its tensors.
	cfg := patternConfig(peft.LoRA)
	inj, err := peft.Inject(cfg, storeSpecs)
	if err != nil {
		t.Fatal(err)
	}
	store := baseStore(t, 1)
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "a")
	if err := SaveFromStore(dir, inj, store, ""); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, func(m map[string]any) { m["rank_pattern"] = map[string]any{"down": 2} })
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "enc.layer.0.down") || !strings.Contains(err.Error(), "r=2") {
		t.Fatalf("rank_pattern that disagrees with the tensors: %v", err)
	}
}

// TestBiasSetting: bias = lora_only trains and saves the adapted layers' biases only, all every
// bias; the saved biases load back into a fresh store, and merge writes them over the base's.
func TestBiasSetting(t *testing.T) {
	for _, c := range []struct {
		bias string
		want []string // the bias variables that train and are saved
	}{
		{"", nil},
		{"none", nil},
		{"lora_only", []string{"enc.layer.0.query.bias"}},
		{"all", []string{"enc.layer.0.down.bias", "enc.layer.0.query.bias"}},
	} {
		t.Run("bias="+c.bias, func(t *testing.T) {
			cfg := peft.DefaultConfig(peft.SingLoRA)
			cfg.Targets, cfg.Bias = []string{"query", "up"}, c.bias
			if c.bias == "none" {
				cfg.Bias = ""
			}
			inj, err := peft.Inject(cfg, storeSpecs)
			if err != nil {
				t.Fatal(err)
			}
			src := baseStore(t, 2)
			if err := inj.Attach(src); err != nil {
				t.Fatal(err)
			}
			var trains []string
			for v := range src.IterVariables() {
				if v.Trainable && v.Name() == "bias" {
					trains = append(trains, peft.ScopeModule(v.Path()[:len(v.Path())-len("/bias")])+".bias")
				}
			}
			slices.Sort(trains)
			if !slices.Equal(trains, c.want) {
				t.Fatalf("trainable biases %v, want %v", trains, c.want)
			}
			// Change the biases, as training would, then save.
			for _, name := range c.want {
				v := src.GetVariable("/" + strings.ReplaceAll(name, ".", "/"))
				vals := varValues(t, src, v.Path())
				for i := range vals {
					vals[i] += 0.25
				}
				if err := v.SetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...)); err != nil {
					t.Fatal(err)
				}
			}
			dir := filepath.Join(t.TempDir(), "a")
			if err := SaveFromStore(dir, inj, src, ""); err != nil {
				t.Fatal(err)
			}
			a, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			var saved []string
			for _, s := range a.Saved {
				saved = append(saved, s.Name)
			}
			if !slices.Equal(saved, c.want) {
				t.Fatalf("saved %v, want %v", saved, c.want)
			}
			var raw map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			if _, has := raw["bias"]; has != (c.want != nil) {
				t.Fatalf("bias key in the SingLoRA config: %v (want it only when biases are saved): %s", raw["bias"], b)
			}
			dst := baseStore(t, 2)
			if _, err := LoadIntoStore(dir, dst, storeSpecs); err != nil {
				t.Fatal(err)
			}
			for _, name := range c.want {
				p := "/" + strings.ReplaceAll(name, ".", "/")
				if !slices.Equal(varValues(t, dst, p), varValues(t, src, p)) {
					t.Fatalf("reloaded %s differs from the saved one", name)
				}
				if !dst.GetVariable(p).Trainable {
					t.Fatalf("reloaded %s is frozen", name)
				}
			}
		})
	}
}
