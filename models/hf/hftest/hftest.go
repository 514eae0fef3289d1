// Package hftest writes tiny Hugging Face checkpoints for tests and holds the float64 building
// blocks of the independent reference forward passes (plain Go, no GoMLX): they are written from
// the PyTorch definitions in transformers (modeling_bert, modeling_roberta, modeling_llama,
// modeling_gpt2), not from this project's graph code.
package hftest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"

	"github.com/singlora/singlora/safetensors"
)

// Checkpoint is a set of named float64 tensors in checkpoint layout.
type Checkpoint struct {
	Names  []string
	Shapes map[string][]int
	Values map[string][]float64
	rng    *rand.Rand
}

// New returns an empty checkpoint whose random tensors come from seed.
func New(seed uint64) *Checkpoint {
	return &Checkpoint{Shapes: map[string][]int{}, Values: map[string][]float64{}, rng: rand.New(rand.NewPCG(seed, 7))}
}

// Rand adds tensor name with entries ~ N(mean, std²).
func (c *Checkpoint) Rand(name string, mean, std float64, shape ...int) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = mean + std*c.rng.NormFloat64()
	}
	c.Set(name, v, shape...)
}

// Set adds tensor name with the given values.
func (c *Checkpoint) Set(name string, v []float64, shape ...int) {
	if _, ok := c.Shapes[name]; !ok {
		c.Names = append(c.Names, name)
	}
	c.Shapes[name] = shape
	c.Values[name] = v
}

// Delete removes tensor name.
func (c *Checkpoint) Delete(name string) {
	delete(c.Shapes, name)
	delete(c.Values, name)
	for i, n := range c.Names {
		if n == name {
			c.Names = append(c.Names[:i], c.Names[i+1:]...)
			return
		}
	}
}

// Get returns tensor name's values (as stored after Write: rounded to the written dtype).
func (c *Checkpoint) Get(name string) []float64 {
	v, ok := c.Values[name]
	if !ok {
		panic("hftest: no tensor " + name)
	}
	return v
}

// Write writes config (marshalled to config.json) and the tensors in dtype (F32, F16, BF16) to
// dir, as one model.safetensors or, with shards > 1, as that many shards and an index. The
// checkpoint's values are replaced by their rounded values, so a reference reads what the model
// reads.
func (c *Checkpoint) Write(dir string, config any, dtype string, shards int) error {
	cb, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cb, 0o644); err != nil {
		return err
	}
	names := append([]string(nil), c.Names...)
	sort.Strings(names)
	ts := make([]safetensors.Tensor, 0, len(names))
	for _, n := range names {
		t, err := safetensors.FromFloat64s(n, dtype, c.Shapes[n], c.Values[n])
		if err != nil {
			return err
		}
		back, err := t.Float64s()
		if err != nil {
			return err
		}
		c.Values[n] = back
		ts = append(ts, t)
	}
	if shards <= 1 {
		return safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"})
	}
	weightMap := map[string]string{}
	per := (len(ts) + shards - 1) / shards
	for s := 0; s < shards; s++ {
		lo, hi := s*per, min((s+1)*per, len(ts))
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		for _, t := range ts[lo:hi] {
			weightMap[t.Name] = file
		}
		if err := safetensors.Write(filepath.Join(dir, file), ts[lo:hi], map[string]string{"format": "pt"}); err != nil {
			return err
		}
	}
	ib, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), ib, 0o644)
}

// Linear returns x·Wᵀ + b for x [n, in], W [out, in] (row-major), b [out] or nil.
func Linear(x []float64, n, in int, w []float64, out int, b []float64) []float64 {
	y := make([]float64, n*out)
	for i := 0; i < n; i++ {
		for o := 0; o < out; o++ {
			s := 0.0
			if b != nil {
				s = b[o]
			}
			for k := 0; k < in; k++ {
				s += x[i*in+k] * w[o*in+k]
			}
			y[i*out+o] = s
		}
	}
	return y
}

// Conv1D returns x·W + b for x [n, in], W [in, out] (GPT-2's Conv1D layout).
func Conv1D(x []float64, n, in int, w []float64, out int, b []float64) []float64 {
	y := make([]float64, n*out)
	for i := 0; i < n; i++ {
		for o := 0; o < out; o++ {
			s := b[o]
			for k := 0; k < in; k++ {
				s += x[i*in+k] * w[k*out+o]
			}
			y[i*out+o] = s
		}
	}
	return y
}

// LayerNorm normalises each row of x [n, d] (biased variance) and applies w, b.
func LayerNorm(x []float64, n, d int, w, b []float64, eps float64) []float64 {
	y := make([]float64, n*d)
	for i := 0; i < n; i++ {
		row := x[i*d : (i+1)*d]
		mu := 0.0
		for _, v := range row {
			mu += v
		}
		mu /= float64(d)
		va := 0.0
		for _, v := range row {
			va += (v - mu) * (v - mu)
		}
		va /= float64(d)
		for j, v := range row {
			y[i*d+j] = (v-mu)/math.Sqrt(va+eps)*w[j] + b[j]
		}
	}
	return y
}

// RMSNorm is Llama's: w·x/√(mean(x²)+eps) per row.
func RMSNorm(x []float64, n, d int, w []float64, eps float64) []float64 {
	y := make([]float64, n*d)
	for i := 0; i < n; i++ {
		ms := 0.0
		for j := 0; j < d; j++ {
			ms += x[i*d+j] * x[i*d+j]
		}
		r := 1 / math.Sqrt(ms/float64(d)+eps)
		for j := 0; j < d; j++ {
			y[i*d+j] = w[j] * (x[i*d+j] * r)
		}
	}
	return y
}

// Act applies HF activation name elementwise.
func Act(name string, x []float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		switch name {
		case "gelu":
			y[i] = 0.5 * v * (1 + math.Erf(v/math.Sqrt2))
		case "gelu_new", "gelu_pytorch_tanh":
			y[i] = 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
		case "relu":
			y[i] = math.Max(v, 0)
		case "silu":
			y[i] = v / (1 + math.Exp(-v))
		case "tanh":
			y[i] = math.Tanh(v)
		default:
			panic("hftest: activation " + name)
		}
	}
	return y
}

// Add returns a + b elementwise.
func Add(a, b []float64) []float64 {
	y := make([]float64, len(a))
	for i := range a {
		y[i] = a[i] + b[i]
	}
	return y
}

// Mul returns a ⊙ b elementwise.
func Mul(a, b []float64) []float64 {
	y := make([]float64, len(a))
	for i := range a {
		y[i] = a[i] * b[i]
	}
	return y
}

// Softmax normalises s in place (max-subtracted); entries at -Inf become 0.
func Softmax(s []float64) {
	m := math.Inf(-1)
	for _, v := range s {
		m = math.Max(m, v)
	}
	sum := 0.0
	for i, v := range s {
		s[i] = math.Exp(v - m)
		sum += s[i]
	}
	for i := range s {
		s[i] /= sum
	}
}

// Attention computes softmax(q·kᵀ·scale + bias)·v for one head: q [lq, hd], k, v [lk, hd] given
// as accessors; allowed(i, j) says whether query i may attend key j (others get -Inf, as a
// finfo.min additive mask does once exponentiated).
func Attention(lq, lk, hd int, q, k, v func(i, d int) float64, scale float64, allowed func(i, j int) bool) []float64 {
	out := make([]float64, lq*hd)
	s := make([]float64, lk)
	for i := 0; i < lq; i++ {
		for j := 0; j < lk; j++ {
			if !allowed(i, j) {
				s[j] = math.Inf(-1)
				continue
			}
			dot := 0.0
			for d := 0; d < hd; d++ {
				dot += q(i, d) * k(j, d)
			}
			s[j] = dot * scale
		}
		Softmax(s)
		for d := 0; d < hd; d++ {
			acc := 0.0
			for j := 0; j < lk; j++ {
				acc += s[j] * v(j, d)
			}
			out[i*hd+d] = acc
		}
	}
	return out
}

// MaxRelErr returns max|got-want| / max(max|want|, tiny): the error relative to the output's scale.
func MaxRelErr(got []float32, want []float64) (float64, float64) {
	if len(got) != len(want) {
		return math.Inf(1), math.Inf(1)
	}
	maxAbs, scale := 0.0, 1e-30
	for i := range want {
		maxAbs = math.Max(maxAbs, math.Abs(float64(got[i])-want[i]))
		scale = math.Max(scale, math.Abs(want[i]))
	}
	return maxAbs / scale, maxAbs
}
