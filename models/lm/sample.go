package lm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// SampleOptions choose the next token from logits: Temperature ≤ 0 is greedy (argmax, lowest id
// on ties); otherwise softmax(logits/Temperature) restricted to the TopK most likely (0 = all).
type SampleOptions struct {
	Temperature float64
	TopK        int
	Seed        uint64
}

// Sampler draws tokens according to SampleOptions with a seeded generator.
type Sampler struct {
	Opts SampleOptions
	rng  *rand.Rand
}

// NewSampler returns a sampler seeded by opts.Seed.
func NewSampler(opts SampleOptions) *Sampler {
	return &Sampler{Opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x5eed))}
}

// Next picks a token id from logits.
func (s *Sampler) Next(logits []float32) int {
	if s.Opts.Temperature <= 0 {
		return Argmax(logits)
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if k := s.Opts.TopK; k > 0 && k < len(idx) {
		idx = idx[:k]
	}
	maxL := float64(logits[idx[0]])
	p := make([]float64, len(idx))
	sum := 0.0
	for i, id := range idx {
		p[i] = math.Exp((float64(logits[id]) - maxL) / s.Opts.Temperature)
		sum += p[i]
	}
	r := s.rng.Float64() * sum
	for i, id := range idx {
		r -= p[i]
		if r < 0 {
			return id
		}
	}
	return idx[len(idx)-1]
}

// Argmax returns the index of the largest value (the first on ties).
func Argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// CheckRange returns an error if a token id is outside [0, vocab).
func CheckRange(ids []int, vocab int) error {
	for _, id := range ids {
		if id < 0 || id >= vocab {
			return fmt.Errorf("token id %d outside the vocabulary [0, %d)", id, vocab)
		}
	}
	return nil
}
