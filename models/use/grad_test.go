package use

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/peft"
)

// TestGradientsFlow checks that a loss on the embeddings has finite, non-zero gradients with
// respect to a SingLoRA adapter (first and last adapted layers) and to the embedding table (as
// full fine-tuning needs), i.e. that the model can be trained.
func TestGradientsFlow(t *testing.T) {
	if !Available() {
		t.Skip("USE-Lite weights not fetched: run singlora fetch")
	}
	if testing.Short() {
		t.Skip("builds a gradient graph of the whole model")
	}
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	m, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	inj, err := peft.Inject(peft.DefaultConfig(peft.SingLoRA), m.Linears())
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(m.Store); err != nil {
		t.Fatal(err)
	}
	wrt := []string{
		"/encoder/layer_0/attention/query/" + peft.NameSingLoRAA,
		"/pooler/" + peft.NameSingLoRAA,
		"/embeddings/weight",
	}
	exec, err := model.NewExec(be, m.Store, func(scope *model.Scope, ids, mask *Node) []*Node {
		e := m.Embed(inj, scope, ids, mask)
		g := e.Graph()
		target := IotaFull(g, e.Shape())
		loss := ReduceAllSum(Mul(e, Sin(target)))
		var vars []*Node
		for _, p := range wrt {
			vars = append(vars, m.Store.GetVariable(p).NodeValue(g))
		}
		return append([]*Node{loss}, Gradient(loss, vars...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	ids, mask := m.PadBatch(m.Tokenize([]string{"A fine day.", "Not so fine, really."}), 8)
	outs, err := exec.Call(ids, mask)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range wrt {
		g := tensors.MustCopyFlatData[float32](outs[i+1])
		norm := 0.0
		for _, v := range g {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: non-finite gradient", p)
			}
			norm += float64(v) * float64(v)
		}
		if norm == 0 {
			t.Errorf("%s: zero gradient", p)
		}
		t.Logf("‖∇%s‖ = %.3g", p, math.Sqrt(norm))
	}
}
