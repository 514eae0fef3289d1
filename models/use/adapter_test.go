package use

import (
	"math"
	"testing"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/peft"
)

// TestAdaptersAttach checks that adapters attach to every USE-Lite linear layer through
// peft.Linear: LoRA (B = 0) and SingLoRA at u = 0 leave the embeddings unchanged, SingLoRA at
// u = 1 changes them, and the adapter parameter counts are as expected.
func TestAdaptersAttach(t *testing.T) {
	if !Available() {
		t.Skip("USE-Lite weights not fetched: run singlora fetch")
	}
	if testing.Short() {
		t.Skip("loads the model three times")
	}
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"The movie was great.", "Terrible, would not recommend."}
	plainModel := loadModel(t)
	plainEmb, err := plainModel.NewEmbedder(be, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := plainEmb.EmbedTexts(texts)
	if err != nil {
		t.Fatal(err)
	}
	maxDiff := func(a, b [][]float32) float64 {
		d := 0.0
		for i := range a {
			for j := range a[i] {
				d = math.Max(d, math.Abs(float64(a[i][j]-b[i][j])))
			}
		}
		return d
	}
	for _, tc := range []struct {
		name    string
		cfg     func() peft.Config
		changes bool
	}{
		{"lora", func() peft.Config { return peft.DefaultConfig(peft.LoRA) }, false},
		{"singlora-u0", func() peft.Config {
			c := peft.DefaultConfig(peft.SingLoRA)
			c.RampSteps = 100
			return c
		}, false},
		{"singlora-u1", func() peft.Config { return peft.DefaultConfig(peft.SingLoRA) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New("")
			if err != nil {
				t.Fatal(err)
			}
			inj, err := peft.Inject(tc.cfg(), m.Linears())
			if err != nil {
				t.Fatal(err)
			}
			if err := inj.Attach(m.Store); err != nil {
				t.Fatal(err)
			}
			if got := len(inj.Targets()); got != 14 {
				t.Fatalf("all-linear adapted %d layers, want 14", got)
			}
			emb, err := m.NewEmbedder(be, inj)
			if err != nil {
				t.Fatal(err)
			}
			got, err := emb.EmbedTexts(texts)
			if err != nil {
				t.Fatal(err)
			}
			d := maxDiff(got, plain)
			if tc.changes && d < 1e-4 {
				t.Errorf("adapter at u=1 changed the embeddings by only %.3g", d)
			}
			if !tc.changes && d > 1e-6 {
				t.Errorf("adapter at its identity init changed the embeddings by %.3g", d)
			}
		})
	}
}
