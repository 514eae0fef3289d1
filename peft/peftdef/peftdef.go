// Package peftdef holds the definitions of package peft that file formats need without linking
// the graph engine: the method, initialisation and layout names, the AllLinear target pattern,
// and the scaling and ramp formulas with their float32 range check, and the table behind
// Method.HasAdapter that method registration (peft/tuner) fills. Package peft re-exports the names
// (peft.SingLoRA is peftdef.SingLoRA); import peftdef directly only from code that must stay free
// of GoMLX, such as the adapter_config.json parser and its fuzz target.
package peftdef

import (
	"fmt"
	"math"
	"sync"
)

// Method names an adaptation method.
type Method string

// The methods singlora offers; each is implemented and registered by its own package under peft
// (see package peft/tuner).
const (
	// SingLoRA: W = W0 + s·u(t)·A[:out]·A[:in]ᵀ, one matrix A ∈ ℝ^{max(in,out)×r}.
	SingLoRA Method = "singlora"
	// LoRA: W = W0 + s·B·A, A ∈ ℝ^{r×in} (Kaiming-uniform), B ∈ ℝ^{out×r} (zeros).
	LoRA Method = "lora"
	// LoRAPlus is LoRA with B's learning rate λ times A's (LoRA+).
	LoRAPlus Method = "loraplus"
	// DoRA: W' = m ⊙ (W0 + s·B·A)/‖W0 + s·B·A‖ per output, the norm treated as a constant in backward.
	DoRA Method = "dora"
	// Full fine-tuning: every base weight is trainable, no adapter.
	Full Method = "full"
	// Frozen: the base is frozen and has no adapter; only ModulesToSave (e.g. a head) train.
	Frozen Method = "frozen"
)

// adapterMethods records, for each registered method, whether it adds adapter tensors. It is
// filled by tuner.Register, which sees the implementations; this package only keeps the answer,
// so that code without the graph engine can ask Method.HasAdapter.
var adapterMethods struct {
	sync.RWMutex
	m map[Method]bool
}

// Declare records whether method m adds adapter tensors (see HasAdapter). tuner.Register calls
// it for every method it registers; there is no need to call it otherwise.
func Declare(m Method, hasAdapter bool) {
	adapterMethods.Lock()
	defer adapterMethods.Unlock()
	if adapterMethods.m == nil {
		adapterMethods.m = map[Method]bool{}
	}
	adapterMethods.m[m] = hasAdapter
}

// HasAdapter reports whether the method adds adapter weights to the targeted layers: true for a
// registered method with adapter tensors (SingLoRA, LoRA, LoRA+, DoRA), false for Full, Frozen
// and names no method registered (in a program that links no method, every name).
func (m Method) HasAdapter() bool {
	adapterMethods.RLock()
	defer adapterMethods.RUnlock()
	return adapterMethods.m[m]
}

// Init names how adapter weights are initialised.
type Init string

const (
	// InitTheory (SingLoRA default): A's entries ~ U(-1/√d, 1/√d), d = max(in,out), the scale the
	// paper's width analysis assumes (entries ∝ 1/√d).
	InitTheory Init = "theory"
	// InitKaimingDR reproduces the public SingLoRA implementations: kaiming_uniform(a=√5) applied to
	// the (d×r) tensor, whose fan-in is r, so entries ~ U(-1/√r, 1/√r). At d=4096, r=8 that makes
	// ‖AAᵀ‖ about d/r = 512 times larger than InitTheory.
	InitKaimingDR Init = "kaiming-dr"
	// InitKaiming (LoRA and DoRA): A ~ kaiming_uniform(a=√5) on [r, in] (entries ~ U(-1/√in, 1/√in)),
	// B = 0, as PEFT does.
	InitKaiming Init = "kaiming"
	// InitGaussian (LoRA and DoRA): A ~ N(0, 1/r²) on [r, in], B = 0, as PEFT's
	// init_lora_weights="gaussian".
	InitGaussian Init = "gaussian"
)

// Layout says how a linear layer's weight is stored.
type Layout int

const (
	// OutIn is PyTorch nn.Linear's layout: weight [out, in], y = x·Wᵀ + b.
	OutIn Layout = iota
	// InOut is GPT-2 Conv1D's layout: weight [in, out], y = x·W + b.
	InOut
)

// String implements fmt.Stringer.
func (l Layout) String() string {
	if l == InOut {
		return "in,out"
	}
	return "out,in"
}

// AllLinear is the target pattern that selects every linear layer the model lists.
const AllLinear = "all-linear"

// Scale returns the adapter scaling s: alpha/rank, or alpha/√rank with rsLoRA (0 for rank ≤ 0).
func Scale(alpha float64, rank int, rsLoRA bool) float64 {
	if rank <= 0 {
		return 0
	}
	if rsLoRA {
		return alpha / math.Sqrt(float64(rank))
	}
	return alpha / float64(rank)
}

// Ramp returns SingLoRA's u(t) = min(t/T, 1) for t optimizer steps taken (1 when T ≤ 0).
func Ramp(rampSteps, t int64) float64 {
	if rampSteps <= 0 || t >= rampSteps {
		return 1
	}
	if t <= 0 {
		return 0
	}
	return float64(t) / float64(rampSteps)
}

// CheckScale reports whether lora_alpha and the scaling it gives for rank (see Scale) are usable
// in float32, the precision adapters are trained, applied and stored in: both must be finite and
// non-zero once rounded to float32. A value finite in float64 can still overflow float32 (1e308
// becomes +Inf) or underflow it (1e-50 becomes 0), and either turns every adapted weight into
// Inf, NaN or the bare base weight. rank must be ≥ 1.
func CheckScale(alpha float64, rank int, rsLoRA bool) error {
	if math.IsNaN(alpha) || math.IsInf(alpha, 0) || alpha == 0 {
		return fmt.Errorf("lora_alpha must be a finite non-zero number, got %v", alpha)
	}
	if f := float32(alpha); math.IsInf(float64(f), 0) || f == 0 {
		return fmt.Errorf("lora_alpha %v is %v in float32, the precision adapters run in (|lora_alpha| must lie in [%.2g, %.3g])",
			alpha, f, math.SmallestNonzeroFloat32, math.MaxFloat32)
	}
	formula := "lora_alpha/r"
	if rsLoRA {
		formula = "lora_alpha/sqrt(r)"
	}
	s := Scale(alpha, rank, rsLoRA)
	if f := float32(s); math.IsNaN(s) || math.IsInf(float64(f), 0) || f == 0 {
		return fmt.Errorf("the scaling %s = %v/%s = %.3g is %v in float32, the precision adapters run in; choose a lora_alpha of a usual size (e.g. r or 2r)",
			formula, alpha, rankText(rank, rsLoRA), s, f)
	}
	return nil
}

func rankText(rank int, rsLoRA bool) string {
	if rsLoRA {
		return fmt.Sprintf("sqrt(%d)", rank)
	}
	return fmt.Sprint(rank)
}
