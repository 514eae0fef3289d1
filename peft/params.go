package peft

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// Adapter tensor names, as PEFT names them (the checkpoint key is
// "base_model.model.<module>.<name>.weight").
const (
	NameSingLoRAA = "singlora_A"
	NameLoRAA     = "lora_A"
	NameLoRAB     = "lora_B"
	NameMagnitude = "lora_magnitude_vector"
)

// AdapterTensor describes one adapter tensor of one module.
type AdapterTensor struct {
	Name  string // one of the Name* constants
	Shape []int
}

// AdapterTensors returns the adapter tensors method m adds to layer s with rank r:
// SingLoRA: singlora_A [max(in,out), r]; LoRA/LoRA+: lora_A [r, in], lora_B [out, r];
// DoRA: those two plus lora_magnitude_vector [out].
func AdapterTensors(m Method, s LinearSpec, r int) []AdapterTensor {
	switch m {
	case SingLoRA:
		return []AdapterTensor{{NameSingLoRAA, []int{max(s.In, s.Out), r}}}
	case LoRA, LoRAPlus:
		return []AdapterTensor{{NameLoRAA, []int{r, s.In}}, {NameLoRAB, []int{s.Out, r}}}
	case DoRA:
		return []AdapterTensor{{NameLoRAA, []int{r, s.In}}, {NameLoRAB, []int{s.Out, r}}, {NameMagnitude, []int{s.Out}}}
	}
	return nil
}

// AdapterParams is the number of adapter parameters method m adds to layer s at rank r:
// SingLoRA r·max(in,out), LoRA r·(in+out), DoRA r·(in+out)+out.
func AdapterParams(m Method, s LinearSpec, r int) int {
	n := 0
	for _, t := range AdapterTensors(m, s, r) {
		k := 1
		for _, d := range t.Shape {
			k *= d
		}
		n += k
	}
	return n
}

// moduleRNG returns a deterministic random stream for (seed, module path, tensor name).
func moduleRNG(seed uint64, module, tensor string) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(module))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(tensor))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

func uniform(rng *rand.Rand, n int, bound float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((rng.Float64()*2 - 1) * bound)
	}
	return out
}

// InitialValues returns the initial values (row-major float32) of the adapter tensors of layer s
// under cfg. baseRowNorms is needed for DoRA only: ‖W0‖ per output feature, the magnitude's
// initial value (so that the adapted layer starts exactly at W0).
func InitialValues(cfg Config, s LinearSpec, baseRowNorms []float32) (map[string][]float32, error) {
	r := cfg.Rank
	init := cfg.Init
	if init == "" {
		init = cfg.DefaultInit()
	}
	vals := map[string][]float32{}
	switch cfg.Method {
	case SingLoRA:
		d := max(s.In, s.Out)
		var bound float64
		switch init {
		case InitTheory:
			bound = 1 / math.Sqrt(float64(d))
		case InitKaimingDR:
			bound = 1 / math.Sqrt(float64(r))
		default:
			return nil, fmt.Errorf("singlora init %q unknown", init)
		}
		vals[NameSingLoRAA] = uniform(moduleRNG(cfg.Seed, s.Path, NameSingLoRAA), d*r, bound)
	case LoRA, LoRAPlus, DoRA:
		// kaiming_uniform(a=√5) on [r, in]: gain = √(2/(1+5)), bound = gain·√(3/fan_in) = 1/√in.
		vals[NameLoRAA] = uniform(moduleRNG(cfg.Seed, s.Path, NameLoRAA), r*s.In, 1/math.Sqrt(float64(s.In)))
		vals[NameLoRAB] = make([]float32, s.Out*r)
		if cfg.Method == DoRA {
			if len(baseRowNorms) != s.Out {
				return nil, fmt.Errorf("dora init of %s: need %d base row norms, got %d", s.Path, s.Out, len(baseRowNorms))
			}
			vals[NameMagnitude] = append([]float32(nil), baseRowNorms...)
		}
	default:
		return nil, nil
	}
	return vals, nil
}

// RowNorms returns ‖W0[o,:]‖ for each output o of a weight stored in layout l, computed in float64.
func RowNorms(w []float32, s LinearSpec) []float32 {
	acc := make([]float64, s.Out)
	for i := 0; i < s.In; i++ {
		for o := 0; o < s.Out; o++ {
			var v float64
			if s.Layout == InOut {
				v = float64(w[i*s.Out+o])
			} else {
				v = float64(w[o*s.In+i])
			}
			acc[o] += v * v
		}
	}
	out := make([]float32, s.Out)
	for o, a := range acc {
		out[o] = float32(math.Sqrt(a))
	}
	return out
}
