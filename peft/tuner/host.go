package tuner

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
)

// Host is one adapted layer of a loaded adapter, for the host-side math (merge, unmerge, export),
// which accumulates in float64.
type Host struct {
	// Spec gives the layer's path, [out, in] and the base weight's layout.
	Spec LinearSpec
	Rank int
	// Scale is s: lora_alpha/r, or lora_alpha/√r with use_rslora.
	Scale float64
	// U is the ramp u = min(trained_steps/T, 1) the adapter was saved at (1 without a ramp).
	U float64
	// Tensors are the adapter tensors by name, row-major, with the shapes Tensors(Spec, Rank) lists.
	Tensors map[string][]float32
}

// Index returns the flat index of element (o, i) of a weight in the layer's layout: o·in + i for
// OutIn ([out, in]), i·out + o for InOut ([in, out]).
func (h Host) Index(o, i int) int {
	if h.Spec.Layout == InOut {
		return i*h.Spec.Out + o
	}
	return o*h.Spec.In + i
}

// AddDelta returns w0 + delta, or w0 − delta with unmerge: the merge of an additive method.
func AddDelta(w0, delta []float64, unmerge bool) ([]float64, error) {
	if len(w0) != len(delta) {
		return nil, fmt.Errorf("base weight has %d values, ΔW %d", len(w0), len(delta))
	}
	out := make([]float64, len(w0))
	for i := range w0 {
		if unmerge {
			out[i] = w0[i] - delta[i]
		} else {
			out[i] = w0[i] + delta[i]
		}
	}
	return out, nil
}

// RNG returns the deterministic random stream of one adapter tensor: PCG seeded with seed and
// the FNV-1a hash of (module path, 0, tensor name), so that every tensor of every module draws
// its own stream, whatever the order modules are initialised in.
func RNG(seed uint64, module, tensor string) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(module))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(tensor))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// Normal returns n values ~ N(0, std²) from rng (computed in float64, stored as float32).
func Normal(rng *rand.Rand, n int, std float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64() * std)
	}
	return out
}

// Uniform returns n values ~ U(-bound, bound) from rng (computed in float64, stored as float32).
func Uniform(rng *rand.Rand, n int, bound float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((rng.Float64()*2 - 1) * bound)
	}
	return out
}
