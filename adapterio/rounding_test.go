package adapterio

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// TestRoundingReport: merging into a 16-bit base reports what rounding the merged weights took
// away — all of an update below the 16-bit spacing of the base's values, none of one that is
// representable — and a float32 base reports nothing.
func TestRoundingReport(t *testing.T) {
	w0 := []float64{1, 1, -2, 0.5}
	for _, tc := range []struct {
		name  string
		delta float64
		lost  float64 // expected Lost, ±1e-6
	}{
		{"below the spacing", 1e-4, 1}, // bf16 spacing at 1 is 2⁻⁷: 1 + 1e-4 rounds back to 1
		{"representable", 0.25, 0},
	} {
		w := make([]float64, len(w0))
		for i := range w {
			w[i] = w0[i] + tc.delta
		}
		nt, err := safetensors.FromFloat64s("m.weight", safetensors.BF16, []int{2, 2}, w)
		if err != nil {
			t.Fatal(err)
		}
		var r Rounding
		if err := r.add("m.weight", w0, w, &nt); err != nil {
			t.Fatal(err)
		}
		if r.Tensors != 1 || math.Abs(r.Lost-tc.lost) > 1e-6 || r.LostIn != "m.weight" && tc.lost > 0 {
			t.Errorf("%s: %+v, want Lost %v", tc.name, r, tc.lost)
		}
		f32, _ := safetensors.FromFloat64s("m.weight", safetensors.F32, []int{2, 2}, w)
		var r32 Rounding
		if err := r32.add("m.weight", w0, w, &f32); err != nil || r32.Tensors != 0 {
			t.Errorf("%s: a float32 tensor reported %+v, %v", tc.name, r32, err)
		}
	}

	// Through MergeTensors: a BF16 base is reported, an F32 one is not.
	spec := peft.LinearSpec{Path: "m", In: 6, Out: 4}
	a := newAdapter(t, peft.SingLoRA, []peft.LinearSpec{spec}, 2, 2, false, 0, 0, 4)
	rng := rand.New(rand.NewPCG(5, 6))
	vals := randVals(rng, 24, 1)
	for _, dt := range []string{safetensors.BF16, safetensors.F32} {
		base, err := safetensors.FromFloat32s("m.weight", dt, []int{4, 6}, vals)
		if err != nil {
			t.Fatal(err)
		}
		_, rep, err := MergeTensors(a, &safetensors.File{Tensors: []safetensors.Tensor{base}}, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{safetensors.BF16: 1, safetensors.F32: 0}[dt]; rep.Rounding.Tensors != want || (want == 1) != (rep.Rounding.MaxAbs > 0) {
			t.Errorf("%s base: rounding report %+v, want %d tensors", dt, rep.Rounding, want)
		}
	}
}
