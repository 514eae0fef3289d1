package adapterio

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
)

// TestReloadedForwardMatchesMerged checks, through the graph code, that a SingLoRA adapter saved
// mid-ramp and reloaded into a fresh store computes y = x·(W0+ΔW)ᵀ + b with ΔW (and u) as the
// host-side merge computes it, for square, in>out and out>in (InOut) layers.
func TestReloadedForwardMatchesMerged(t *testing.T) {
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.Rank, cfg.Alpha, cfg.RampSteps = 2, 3, 100
	cfg.Init = peft.InitKaimingDR // large A so that ΔW is visible
	src := baseStore(t, 2)
	inj, err := peft.Inject(cfg, storeSpecs)
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(src); err != nil {
		t.Fatal(err)
	}
	if err := optim.StepVar(src).SetValue(tensors.FromScalar(int64(30))); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "a")
	if err := SaveFromStore(dir, inj, src, ""); err != nil {
		t.Fatal(err)
	}
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Config.Ramp() != 0.3 {
		t.Fatalf("u = %v, want 0.3", a.Config.Ramp())
	}
	dst := baseStore(t, 2)
	inj2, err := LoadIntoStore(dir, dst, storeSpecs)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sp := range storeSpecs {
		x := randVals(rng, 3*sp.In, 1)
		out, err := model.CallOnce(be, dst, func(scope *model.Scope, xn *Node) *Node {
			return peft.Linear(inj2, dst.Scope(sp.ScopePath()), xn)
		}, tensors.FromFlatDataAndDimensions(x, 3, sp.In))
		if err != nil {
			t.Fatal(err)
		}
		got := tensors.MustCopyFlatData[float32](out)
		w0f := varValues(t, dst, sp.ScopePath()+"/weight")
		w0 := make([]float64, len(w0f))
		for i, v := range w0f {
			w0[i] = float64(v)
		}
		w, err := MergeWeight(a, a.Module(sp.Path), w0, false)
		if err != nil {
			t.Fatal(err)
		}
		var bias []float32
		if sp.Bias {
			bias = varValues(t, dst, sp.ScopePath()+"/bias")
		}
		diffFromBase := 0.0
		for n := range 3 {
			for o := range sp.Out {
				var y, y0 float64
				for i := range sp.In {
					j := o*sp.In + i
					if sp.Layout == peft.InOut {
						j = i*sp.Out + o
					}
					y += float64(x[n*sp.In+i]) * w[j]
					y0 += float64(x[n*sp.In+i]) * w0[j]
				}
				if bias != nil {
					y += float64(bias[o])
					y0 += float64(bias[o])
				}
				g := float64(got[n*sp.Out+o])
				if math.Abs(g-y) > 1e-4*(1+math.Abs(y)) {
					t.Fatalf("%s: y[%d,%d] = %v, host merge gives %v", sp.Path, n, o, g, y)
				}
				diffFromBase = math.Max(diffFromBase, math.Abs(y-y0))
			}
		}
		if diffFromBase < 1e-3 {
			t.Errorf("%s: adapter has no visible effect (%g)", sp.Path, diffFromBase)
		}
	}
}
