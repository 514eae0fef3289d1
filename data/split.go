package data

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
)

// StratifiedSplit splits examples into len(fractions) sets (e.g. 0.7, 0.1, 0.2 for train,
// validation and test), keeping each label's share about the same in every set.
//
// Fractions must be finite and ≥ 0 with a positive sum; they are divided by their sum. For each
// label, its examples (in input order) are shuffled with math/rand/v2's PCG seeded by (seed,
// FNV-1a 64 hash of the label) and cut into consecutive runs whose sizes are:
//
//  1. largest remainder: split i first gets ⌊n·fᵢ⌋; the examples left over go one each to the
//     splits with the largest fractional parts n·fᵢ − ⌊n·fᵢ⌋ (ties: the lower index);
//  2. at least one each: then every split with fᵢ > 0 that got none takes one from the split
//     holding the most (ties: the lower index) as long as that split keeps at least one; the
//     empty splits are served in order of decreasing fraction (ties: the lower index). So every
//     split with a positive fraction gets each label when the label has at least as many
//     examples as there are such splits; otherwise the larger splits are served first.
//
// A split with fraction 0 gets nothing. Each returned split keeps the input order of its
// examples. The result depends only on the examples (and their order), the fractions and seed.
func StratifiedSplit(examples []Example, fractions []float64, seed uint64) ([][]Example, error) {
	if len(fractions) == 0 {
		return nil, errors.New("stratified split: no fractions")
	}
	sum := 0.0
	for i, f := range fractions {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return nil, fmt.Errorf("stratified split: fraction %d is %g, want a finite number ≥ 0", i, f)
		}
		sum += f
	}
	if sum <= 0 {
		return nil, errors.New("stratified split: the fractions sum to 0")
	}
	norm := make([]float64, len(fractions))
	for i, f := range fractions {
		norm[i] = f / sum
	}
	// Group example indices by label, in input order.
	byLabel := map[string][]int{}
	for i, ex := range examples {
		byLabel[ex.Label] = append(byLabel[ex.Label], i)
	}
	parts := make([][]int, len(fractions))
	for _, label := range LabelSet(examples) {
		idx := byLabel[label]
		h := fnv.New64a()
		h.Write([]byte(label))
		rng := rand.New(rand.NewPCG(seed, h.Sum64()))
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		start := 0
		for s, c := range splitCounts(len(idx), norm) {
			parts[s] = append(parts[s], idx[start:start+c]...)
			start += c
		}
	}
	out := make([][]Example, len(fractions))
	for s, p := range parts {
		sort.Ints(p)
		out[s] = make([]Example, len(p))
		for j, i := range p {
			out[s][j] = examples[i]
		}
	}
	return out, nil
}

// splitCounts returns how many of n examples each split gets (see StratifiedSplit). f sums to 1.
func splitCounts(n int, f []float64) []int {
	k := len(f)
	counts := make([]int, k)
	rem := make([]float64, k)
	total := 0
	for i, fi := range f {
		x := float64(n) * fi
		c := int(math.Floor(x + 1e-9)) // 0.7·10 may be 6.999…
		counts[i] = c
		rem[i] = x - float64(c)
		total += c
	}
	order := make([]int, k)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
	for j := 0; total < n; j = (j + 1) % k {
		if f[order[j]] > 0 {
			counts[order[j]]++
			total++
		}
	}
	for total > n { // only from rounding error: take from the largest
		counts[argmax(counts)]--
		total--
	}
	// At least one per split with a positive fraction.
	byFrac := make([]int, k)
	for i := range byFrac {
		byFrac[i] = i
	}
	sort.SliceStable(byFrac, func(a, b int) bool { return f[byFrac[a]] > f[byFrac[b]] })
	for _, s := range byFrac {
		if f[s] == 0 || counts[s] > 0 {
			continue
		}
		d := argmax(counts)
		if counts[d] < 2 {
			break
		}
		counts[d]--
		counts[s]++
	}
	return counts
}

func argmax(c []int) int {
	best := 0
	for i, v := range c {
		if v > c[best] {
			best = i
		}
	}
	return best
}
