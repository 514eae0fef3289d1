package adapterio

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/singlora/singlora/peft"
)

// Combination modes (Combine's how), named as PEFT's add_weighted_adapter names them.
const (
	// CombineCat concatenates the inputs' factors: exact, at rank Σ rᵢ.
	CombineCat = "cat"
	// CombineLinear adds the inputs' factors: approximate (cross terms), at the inputs' rank.
	CombineLinear = "linear"
	// CombineSVD truncates the explicit Σ wᵢ ΔWᵢ to rank K: the best rank-K approximation.
	CombineSVD = "svd"
)

// CombineModes are the accepted values of Combine's how.
var CombineModes = []string{CombineCat, CombineLinear, CombineSVD}

// Weighted is one input of Combine: an adapter, the name that stands for it in reports and
// errors (unique among the inputs), and its weight w (finite, any sign).
type Weighted struct {
	Name    string
	Weight  float64
	Adapter *Adapter
}

// CombineModule reports one module of a combined adapter.
type CombineModule struct {
	Path string `json:"path"`
	Out  int    `json:"out"`
	In   int    `json:"in"`
	// Rank is the module's rank in the output.
	Rank int `json:"rank"`
	// Inputs names the inputs that have the module (in input order).
	Inputs []string `json:"inputs"`
	// RelError is the measured ‖ΔW_out − Σ wᵢΔWᵢ‖_F / ‖Σ wᵢΔWᵢ‖_F, in float64 from the written
	// (float32) tensors; relative to ‖ΔW_out‖_F where Σ wᵢΔWᵢ is 0 (then 0 or 1).
	RelError float64 `json:"rel_error"`
	// Dropped is svd's dropped energy Σ_{j>K} σⱼ² / Σ σⱼ² of Σ wᵢΔWᵢ (0 for cat and linear).
	Dropped float64 `json:"dropped_energy"`
}

// CombineReport says what Combine wrote and how close it is to Σ wᵢΔWᵢ.
type CombineReport struct {
	How string `json:"how"`
	// Names are the inputs' names, in input order.
	Names []string `json:"-"`
	// PeftType is the output's peft_type: SINGLORA or LORA.
	PeftType string `json:"peft_type"`
	// Why says why the output has that form.
	Why string `json:"why"`
	// R is the output config's r (the most common module rank; others are in rank_pattern).
	R       int             `json:"r"`
	Params  int             `json:"params"`
	Modules []CombineModule `json:"modules"`
	// RelError is the overall measured error: √(Σ ‖ΔW_out − Σ wᵢΔWᵢ‖²) / √(Σ ‖Σ wᵢΔWᵢ‖²) over
	// all modules (relative to the output's norm where the target is 0, as CombineModule's).
	RelError float64 `json:"rel_error"`
	// MaxRelError and MaxRelErrorIn are the largest module error and its module.
	MaxRelError   float64 `json:"max_rel_error"`
	MaxRelErrorIn string  `json:"max_rel_error_in"`
	// MaxDropped and MaxDroppedIn are svd's largest dropped energy and its module.
	MaxDropped   float64 `json:"max_dropped_energy"`
	MaxDroppedIn string  `json:"max_dropped_energy_in,omitempty"`

	dropped map[string]float64 // svd's dropped energy by module
}

// part is one input's module in a combined module.
type part struct {
	in int     // index into the inputs
	m  *Module // the input's module
	r  int     // its rank
	s  float64 // its scale s (rank/alpha patterns resolved)
	u  float64 // its ramp u (1 for LoRA)
	w  float64 // the input's weight
}

// combined is a module of the output with the input parts it gathers.
type combined struct {
	path    string
	in, out int
	layout  peft.Layout
	parts   []part
}

// Combine builds a new adapter whose update approximates, or for cat equals, the weighted sum
// ΔW = Σ wᵢ ΔWᵢ of the inputs' updates, module by module (PEFT's add_weighted_adapter). A module
// present in only some inputs sums those. The output's scale is 1 on every module (lora_alpha = r
// per module, no rsLoRA) and a SingLoRA output has no ramp (ramp_up_steps 0). how is
//
//   - "cat" (exact, rank Σ rᵢ): with SingLoRA inputs whose coefficients wᵢ·sᵢ·uᵢ are all ≥ 0, a
//     SingLoRA adapter with A = [√(w₁s₁u₁)·A₁ | √(w₂s₂u₂)·A₂ | …] ([max(in,out), Σ rᵢ], columns
//     concatenated), so A[:out]·A[:in]ᵀ = Σ wᵢsᵢuᵢ·Aᵢ[:out]·Aᵢ[:in]ᵀ. Otherwise (a LoRA or LoRA+
//     input, or a negative coefficient, which A·Aᵀ cannot carry) every input goes through its
//     LoRA form (ExportLoRA: lora_A, lora_B, scale sᵢ) and the output is a PEFT LoRA adapter with
//     lora_A = [A₁; A₂; …] ([Σ rᵢ, in], rows) and lora_B = [w₁s₁B₁ | w₂s₂B₂ | …] ([out, Σ rᵢ]).
//   - "linear" (approximate: the cross terms remain): the inputs must share the method, the
//     modules and each module's rank. SingLoRA (every wᵢsᵢuᵢ ≥ 0): A = Σ √(wᵢsᵢuᵢ)·Aᵢ. LoRA:
//     A = Σ √|wᵢ|·Aᵢ, B = Σ sign(wᵢ)·√|wᵢ|·sᵢ·Bᵢ.
//   - "svd": ΔW = Σ wᵢΔWᵢ is built in float64 ([out, in]) and truncated to rank K = rank
//     (rank 0: the largest input rank; K ≤ min(in, out) of every module): a PEFT LoRA adapter
//     with lora_B = U_K·Σ_K, lora_A = V_Kᵀ, lora_alpha = K. The report gives each module's
//     dropped energy Σ_{j>K} σⱼ² / Σ σⱼ².
//
// Per-module ranks that differ are written as rank_pattern, with alpha_pattern giving each such
// module α = its rank; r is the most common rank. The report gives, per module and overall, the
// measured relative error of the output against Σ wᵢΔWᵢ (float32 rounding for cat).
//
// Inputs are refused before anything is built when a name is empty or repeated, a weight is not
// finite, an input is DoRA (its update depends on W0: there is no additive ΔW to sum) or of a
// method other than SingLoRA, LoRA and LoRA+, an input has modules_to_save or a bias setting
// other than none (replacement weights, not updates), or a module has different [out, in] or base
// layouts in two inputs.
//
// Cost: the error check builds every module's ΔW explicitly (O(out·in·Σ rᵢ) per module, one
// module at a time); svd adds a float64 SVD of each [out, in] ΔW (O(out·in·min(out, in))).
func Combine(inputs []Weighted, how string, rank int) (*Adapter, CombineReport, error) {
	rep := CombineReport{How: how}
	for _, x := range inputs {
		rep.Names = append(rep.Names, x.Name)
	}
	if !slices.Contains(CombineModes, how) {
		return nil, rep, fmt.Errorf("combine: unknown mode %q (want %s)", how, strings.Join(CombineModes, ", "))
	}
	if how != CombineSVD && rank != 0 {
		return nil, rep, fmt.Errorf("combine: a rank (%d) is for svd only; %s's rank follows from the inputs", rank, how)
	}
	if rank < 0 {
		return nil, rep, fmt.Errorf("combine: svd rank %d: want K ≥ 1 (or 0 for the largest input rank)", rank)
	}
	mods, err := gather(inputs)
	if err != nil {
		return nil, rep, err
	}
	var out *Adapter
	switch how {
	case CombineCat:
		out, rep.Why, err = combineCat(inputs, mods)
	case CombineLinear:
		out, rep.Why, err = combineLinear(inputs, mods)
	case CombineSVD:
		out, rep.Why, err = combineSVD(inputs, mods, rank, &rep)
	}
	if err != nil {
		return nil, rep, err
	}
	if err := measure(inputs, mods, out, &rep); err != nil {
		return nil, rep, err
	}
	rep.PeftType, rep.R, rep.Params = out.Config.PeftType, out.Config.R, out.Params()
	return out, rep, nil
}

// combinable are the methods Combine takes.
var combinable = []peft.Method{peft.SingLoRA, peft.LoRA, peft.LoRAPlus}

// gather validates the inputs and groups their modules by path, in order of first appearance.
func gather(inputs []Weighted) ([]*combined, error) {
	if err := checkNames(inputs); err != nil {
		return nil, err
	}
	var mods []*combined
	byPath := map[string]*combined{}
	for i, x := range inputs {
		a := x.Adapter
		if a == nil || a.Config == nil {
			return nil, fmt.Errorf("combine: input %s has no adapter", x.Name)
		}
		method := a.Method()
		if method == peft.DoRA {
			return nil, fmt.Errorf("combine: input %s is a DoRA adapter, which has no additive ΔW (its update m⊙(W0+s·B·A)/‖W0+s·B·A‖ − W0 depends on the base weight), so weighted sums of it are not defined: merge it into the base instead (singlora merge), or combine SingLoRA, LoRA or LoRA+ adapters", x.Name)
		}
		if !slices.Contains(combinable, method) {
			return nil, fmt.Errorf("combine: input %s is a %q adapter: combine takes SingLoRA, LoRA and LoRA+ adapters", x.Name, method)
		}
		if len(a.Saved) > 0 || len(a.Config.ModulesToSave) > 0 {
			return nil, fmt.Errorf("combine: input %s has modules_to_save %v (%d saved tensors): those are replacement weights, not additive updates, so they have no weighted sum (PEFT refuses them too); remove them from the input first", x.Name, a.Config.ModulesToSave, len(a.Saved))
		}
		if b := a.Config.Bias; b != "" && b != BiasNone {
			return nil, fmt.Errorf("combine: input %s has bias %q: trained biases are replacement weights, not additive updates, so they have no weighted sum; combine adapters with bias none", x.Name, b)
		}
		for _, m := range a.Modules {
			_, h, err := a.host(m)
			if err != nil {
				return nil, fmt.Errorf("combine: input %s: %w", x.Name, err)
			}
			c := byPath[m.Path]
			if c == nil {
				c = &combined{path: m.Path, in: m.In, out: m.Out, layout: m.Layout}
				byPath[m.Path] = c
				mods = append(mods, c)
			} else {
				first := inputs[c.parts[0].in].Name
				if c.in != m.In || c.out != m.Out {
					return nil, fmt.Errorf("combine: module %s is [out,in]=[%d,%d] in input %s but [%d,%d] in input %s: the inputs must adapt the same base model", m.Path, c.out, c.in, first, m.Out, m.In, x.Name)
				}
				if c.layout != m.Layout {
					return nil, fmt.Errorf("combine: module %s's base weight is stored %s in input %s but %s in input %s (fan_in_fan_out / in_out_modules differ): the inputs must adapt the same base model", m.Path, c.layout, first, m.Layout, x.Name)
				}
			}
			c.parts = append(c.parts, part{in: i, m: m, r: h.Rank, s: h.Scale, u: h.U, w: x.Weight})
		}
	}
	return mods, nil
}

// checkNames checks that there are inputs, each with a name no other has and a finite weight.
func checkNames(inputs []Weighted) error {
	if len(inputs) == 0 {
		return errors.New("combine: no inputs (give at least one adapter)")
	}
	names := map[string]bool{}
	for i, x := range inputs {
		if x.Name == "" {
			return fmt.Errorf("combine: input %d has no name", i+1)
		}
		if names[x.Name] {
			return fmt.Errorf("combine: the name %q is given to two inputs: names must be unique", x.Name)
		}
		names[x.Name] = true
		if math.IsNaN(x.Weight) || math.IsInf(x.Weight, 0) {
			return fmt.Errorf("combine: input %s: weight %v is not a finite number", x.Name, x.Weight)
		}
	}
	return nil
}

// combineCat builds the cat output (see Combine) and says which form it has and why.
func combineCat(inputs []Weighted, mods []*combined) (*Adapter, string, error) {
	why := ""
	for _, x := range inputs {
		if x.Adapter.Method() != peft.SingLoRA {
			why = fmt.Sprintf("input %s is %s: SingLoRA's A·Aᵀ cannot hold B·A, so every input went through its LoRA form (exact for any sign)", x.Name, x.Adapter.Method())
			break
		}
	}
	if why == "" {
	neg:
		for _, c := range mods {
			for _, p := range c.parts {
				if p.w*p.s*p.u < 0 {
					why = fmt.Sprintf("input %s has w·s·u = %.4g < 0 on module %s: a negative multiple of A·Aᵀ has no SingLoRA form, so every input went through its LoRA form (exact for any sign)", inputs[p.in].Name, p.w*p.s*p.u, c.path)
					break neg
				}
			}
		}
	}
	ranks := map[string]int{}
	if why == "" {
		var out []*Module
		for _, c := range mods {
			R := 0
			for _, p := range c.parts {
				R += p.r
			}
			d := max(c.in, c.out)
			A := make([]float32, d*R)
			off := 0
			for _, p := range c.parts {
				k := math.Sqrt(p.w * p.s * p.u)
				src := p.m.Tensors[peft.NameSingLoRAA].Data
				for x := range d {
					for j := range p.r {
						A[x*R+off+j] = float32(k * float64(src[x*p.r+j]))
					}
				}
				off += p.r
			}
			ranks[c.path] = R
			out = append(out, &Module{Path: c.path, In: c.in, Out: c.out, Layout: c.layout,
				Tensors: map[string]*Matrix{peft.NameSingLoRAA: {Shape: []int{d, R}, Data: A}}})
		}
		a, err := newCombined(inputs, TypeSingLoRA, out, ranks)
		return a, "every input is SingLoRA with w·s·u ≥ 0: A = [√(w·s·u)·A …] (columns), exact", err
	}
	// The LoRA form of every input.
	lora := make([]*Adapter, len(inputs))
	for i, x := range inputs {
		e, err := ExportLoRA(x.Adapter)
		if err != nil {
			return nil, "", fmt.Errorf("combine: input %s: %w", x.Name, err)
		}
		lora[i] = e
	}
	var out []*Module
	for _, c := range mods {
		R := 0
		for _, p := range c.parts {
			R += p.r
		}
		A := make([]float32, 0, R*c.in)
		B := make([]float32, c.out*R)
		off := 0
		for _, p := range c.parts {
			e := lora[p.in]
			lm := e.Module(c.path)
			if lm == nil {
				return nil, "", fmt.Errorf("combine: input %s: its LoRA form lacks module %s", inputs[p.in].Name, c.path)
			}
			k := p.w * e.Config.ModuleScale(c.path)
			A = append(A, lm.Tensors[peft.NameLoRAA].Data...)
			src := lm.Tensors[peft.NameLoRAB].Data
			for o := range c.out {
				for j := range p.r {
					B[o*R+off+j] = float32(k * float64(src[o*p.r+j]))
				}
			}
			off += p.r
		}
		ranks[c.path] = R
		out = append(out, loraModule(c, R, A, B))
	}
	a, err := newCombined(inputs, TypeLoRA, out, ranks)
	return a, why, err
}

// combineLinear builds the linear output (see Combine).
func combineLinear(inputs []Weighted, mods []*combined) (*Adapter, string, error) {
	first := inputs[0]
	family := func(m peft.Method) string {
		if m == peft.SingLoRA {
			return "SingLoRA"
		}
		return "LoRA"
	}
	for _, x := range inputs[1:] {
		if family(x.Adapter.Method()) != family(first.Adapter.Method()) {
			return nil, "", fmt.Errorf("combine linear: input %s is %s but input %s is %s: linear adds the factors, so the inputs must share the method (use cat, exact, or svd)", first.Name, first.Adapter.Method(), x.Name, x.Adapter.Method())
		}
	}
	for _, c := range mods {
		if len(c.parts) != len(inputs) {
			has := map[int]bool{}
			for _, p := range c.parts {
				has[p.in] = true
			}
			for i, x := range inputs {
				if !has[i] {
					return nil, "", fmt.Errorf("combine linear: module %s is in input %s but not in input %s: linear needs the same modules in every input (use cat or svd, which take a module from the inputs that have it)", c.path, inputs[c.parts[0].in].Name, x.Name)
				}
			}
		}
		for _, p := range c.parts[1:] {
			if p.r != c.parts[0].r {
				return nil, "", fmt.Errorf("combine linear: module %s has rank %d in input %s but %d in input %s: linear needs the same rank per module (use cat or svd)", c.path, c.parts[0].r, inputs[c.parts[0].in].Name, p.r, inputs[p.in].Name)
			}
		}
	}
	ranks := map[string]int{}
	var out []*Module
	if first.Adapter.Method() == peft.SingLoRA {
		for _, c := range mods {
			for _, p := range c.parts {
				if p.w*p.s*p.u < 0 {
					return nil, "", fmt.Errorf("combine linear: input %s has w·s·u = %.4g < 0 on module %s: SingLoRA's A·Aᵀ cannot carry a negative multiple (use cat, which then writes an exact LoRA adapter, or svd)", inputs[p.in].Name, p.w*p.s*p.u, c.path)
				}
			}
			r, d := c.parts[0].r, max(c.in, c.out)
			acc := make([]float64, d*r)
			for _, p := range c.parts {
				k := math.Sqrt(p.w * p.s * p.u)
				for j, v := range p.m.Tensors[peft.NameSingLoRAA].Data {
					acc[j] += k * float64(v)
				}
			}
			ranks[c.path] = r
			out = append(out, &Module{Path: c.path, In: c.in, Out: c.out, Layout: c.layout,
				Tensors: map[string]*Matrix{peft.NameSingLoRAA: {Shape: []int{d, r}, Data: to32(acc)}}})
		}
		a, err := newCombined(inputs, TypeSingLoRA, out, ranks)
		return a, "SingLoRA inputs: A = Σ √(w·s·u)·A (approximate: the cross terms of A·Aᵀ remain)", err
	}
	for _, c := range mods {
		r := c.parts[0].r
		accA := make([]float64, r*c.in)
		accB := make([]float64, c.out*r)
		for _, p := range c.parts {
			ka := math.Sqrt(math.Abs(p.w))
			kb := math.Copysign(ka, p.w) * p.s
			for j, v := range p.m.Tensors[peft.NameLoRAA].Data {
				accA[j] += ka * float64(v)
			}
			for j, v := range p.m.Tensors[peft.NameLoRAB].Data {
				accB[j] += kb * float64(v)
			}
		}
		ranks[c.path] = r
		out = append(out, loraModule(c, r, to32(accA), to32(accB)))
	}
	a, err := newCombined(inputs, TypeLoRA, out, ranks)
	return a, "LoRA inputs: A = Σ √|w|·A, B = Σ sign(w)·√|w|·s·B (approximate: the cross terms of B·A remain)", err
}

// combineSVD builds the svd output (see Combine) and records the dropped energies in rep.
func combineSVD(inputs []Weighted, mods []*combined, k int, rep *CombineReport) (*Adapter, string, error) {
	if k == 0 {
		for _, c := range mods {
			for _, p := range c.parts {
				k = max(k, p.r)
			}
		}
	}
	for _, c := range mods {
		if k > min(c.in, c.out) {
			return nil, "", fmt.Errorf("combine svd: rank %d exceeds module %s's min(in, out) = min(%d, %d) = %d: give a rank ≤ %d", k, c.path, c.in, c.out, min(c.in, c.out), minDim(mods))
		}
	}
	ranks := map[string]int{}
	var out []*Module
	dropped := map[string]float64{}
	for _, c := range mods {
		target, err := targetDelta(inputs, c)
		if err != nil {
			return nil, "", err
		}
		dense := mat.NewDense(c.out, c.in, outIn(target, c))
		var svd mat.SVD
		if !svd.Factorize(dense, mat.SVDThin) {
			return nil, "", fmt.Errorf("combine svd: module %s: the SVD of Σ wᵢΔWᵢ did not converge", c.path)
		}
		sv := svd.Values(nil)
		var u, v mat.Dense
		svd.UTo(&u)
		svd.VTo(&v)
		A := make([]float32, k*c.in)
		B := make([]float32, c.out*k)
		for j := range k {
			for o := range c.out {
				B[o*k+j] = float32(u.At(o, j) * sv[j])
			}
			for i := range c.in {
				A[j*c.in+i] = float32(v.At(i, j))
			}
		}
		var kept, all float64
		for j, s := range sv {
			all += s * s
			if j < k {
				kept += s * s
			}
		}
		if all > 0 {
			dropped[c.path] = math.Max(0, (all-kept)/all)
		}
		ranks[c.path] = k
		out = append(out, loraModule(c, k, A, B))
	}
	a, err := newCombined(inputs, TypeLoRA, out, ranks)
	for _, c := range mods {
		if d := dropped[c.path]; d > rep.MaxDropped || rep.MaxDroppedIn == "" {
			rep.MaxDropped, rep.MaxDroppedIn = d, c.path
		}
	}
	rep.dropped = dropped
	return a, fmt.Sprintf("svd: Σ wᵢΔWᵢ truncated to rank %d per module (lora_B = U·Σ, lora_A = Vᵀ)", k), err
}

// minDim is the smallest min(in, out) over mods.
func minDim(mods []*combined) int {
	m := math.MaxInt
	for _, c := range mods {
		m = min(m, c.in, c.out)
	}
	return m
}

// loraModule is a LoRA module of c at rank r with lora_A [r, in] and lora_B [out, r].
func loraModule(c *combined, r int, A, B []float32) *Module {
	return &Module{Path: c.path, In: c.in, Out: c.out, Layout: c.layout, Tensors: map[string]*Matrix{
		peft.NameLoRAA: {Shape: []int{r, c.in}, Data: A},
		peft.NameLoRAB: {Shape: []int{c.out, r}, Data: B},
	}}
}

func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// targetDelta is Σ wᵢΔWᵢ of module c in float64, in the base weight's layout (DeltaW's).
func targetDelta(inputs []Weighted, c *combined) ([]float64, error) {
	sum := make([]float64, c.in*c.out)
	for _, p := range c.parts {
		d, err := DeltaW(inputs[p.in].Adapter, p.m)
		if err != nil {
			return nil, fmt.Errorf("combine: input %s: %w", inputs[p.in].Name, err)
		}
		for j, v := range d {
			sum[j] += p.w * v
		}
	}
	return sum, nil
}

// outIn returns delta (in c's base layout) as [out, in] row-major.
func outIn(delta []float64, c *combined) []float64 {
	if c.layout != peft.InOut {
		return delta
	}
	res := make([]float64, len(delta))
	for o := range c.out {
		for i := range c.in {
			res[o*c.in+i] = delta[i*c.out+o]
		}
	}
	return res
}

// measure fills rep.Modules and the overall errors: the output's ΔW against Σ wᵢΔWᵢ.
func measure(inputs []Weighted, mods []*combined, out *Adapter, rep *CombineReport) error {
	var diffAll, targetAll, outAll float64
	rep.Modules = make([]CombineModule, 0, len(mods))
	for _, c := range mods {
		target, err := targetDelta(inputs, c)
		if err != nil {
			return err
		}
		om := out.Module(c.path)
		got, err := DeltaW(out, om)
		if err != nil {
			return fmt.Errorf("combine: the output: %w", err)
		}
		var diff, tn, on float64
		for j := range target {
			e := got[j] - target[j]
			diff += e * e
			tn += target[j] * target[j]
			on += got[j] * got[j]
		}
		diffAll, targetAll, outAll = diffAll+diff, targetAll+tn, outAll+on
		cm := CombineModule{Path: c.path, Out: c.out, In: c.in, Rank: out.Config.ModuleRank(c.path),
			RelError: relErr(diff, tn, on), Dropped: rep.dropped[c.path]}
		for _, p := range c.parts {
			cm.Inputs = append(cm.Inputs, inputs[p.in].Name)
		}
		if cm.RelError > rep.MaxRelError || rep.MaxRelErrorIn == "" {
			rep.MaxRelError, rep.MaxRelErrorIn = cm.RelError, c.path
		}
		rep.Modules = append(rep.Modules, cm)
	}
	rep.RelError = relErr(diffAll, targetAll, outAll)
	return nil
}

// relErr is √(diff/target), or √(diff/out) when target is 0 (0 when both are).
func relErr(diff, target, out float64) float64 {
	switch {
	case diff == 0:
		return 0
	case target > 0:
		return math.Sqrt(diff / target)
	default:
		return math.Sqrt(diff / out)
	}
}

// newCombined wraps modules (ranks by path) in an adapter of peftType with scale 1 on every
// module: the settings common to the inputs are taken from the first input; target_modules are
// the inputs' when they all target alike and adapt the same modules, else the module paths.
func newCombined(inputs []Weighted, peftType string, modules []*Module, ranks map[string]int) (*Adapter, error) {
	c0 := inputs[0].Adapter.Config
	c := &Config{PeftType: peftType, BaseModel: c0.BaseModel, TaskType: c0.TaskType, Seed: c0.Seed}
	c.LoraDropout = c0.LoraDropout
	paths := make([]string, len(modules))
	inOut := 0
	for i, m := range modules {
		paths[i] = m.Path
		if m.Layout == peft.InOut {
			inOut++
		}
	}
	c.FanInFanOut = inOut == len(modules)
	for _, m := range modules {
		if m.Layout == peft.InOut && !c.FanInFanOut {
			c.InOutModules = append(c.InOutModules, m.Path)
		}
	}
	if sameTargets(inputs, paths) {
		c.TargetModules = slices.Clone(c0.TargetModules)
		c.ExcludeModules = slices.Clone(c0.ExcludeModules)
		c.LayersToTransform = slices.Clone(c0.LayersToTransform)
		c.LayersPattern = slices.Clone(c0.LayersPattern)
	} else {
		c.TargetModules = slices.Clone(paths)
	}
	switch peftType {
	case TypeSingLoRA:
		c.Init = string(peft.InitTheory)
		if c0.PeftType == TypeSingLoRA && c0.Init != "" {
			c.Init = c0.Init
		}
	case TypeLoRA:
		c.Bias, c.InitLoraWeights = BiasNone, []byte("true")
	}
	if err := setRanks(c, paths, ranks); err != nil {
		return nil, err
	}
	return &Adapter{Config: c, Modules: modules}, nil
}

// sameTargets reports whether every input has the first's targeting settings and the modules paths.
func sameTargets(inputs []Weighted, paths []string) bool {
	c0 := inputs[0].Adapter.Config
	want := slices.Clone(paths)
	sort.Strings(want)
	for _, x := range inputs {
		c := x.Adapter.Config
		if !slices.Equal(c.TargetModules, c0.TargetModules) || !slices.Equal(c.ExcludeModules, c0.ExcludeModules) ||
			!slices.Equal(c.LayersToTransform, c0.LayersToTransform) || !slices.Equal(c.LayersPattern, c0.LayersPattern) {
			return false
		}
		var got []string
		for _, m := range x.Adapter.Modules {
			got = append(got, m.Path)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			return false
		}
	}
	return true
}

// setRanks sets c's r to the most common of ranks (the smaller on a tie) and lora_alpha = r, and
// lists every other module in rank_pattern with alpha_pattern = the same keys and α = its rank,
// so that every module's scale is 1. Keys are the exact paths, regexp-quoted; if a key would also
// match another module (a path that ends in ".<other path>"), every module is listed, longest
// path first, so that each matches its own key first.
func setRanks(c *Config, paths []string, ranks map[string]int) error {
	count := map[int]int{}
	for _, p := range paths {
		count[ranks[p]]++
	}
	r := 0
	for k, n := range count {
		if r == 0 || n > count[r] || (n == count[r] && k < r) {
			r = k
		}
	}
	c.R, c.LoraAlpha, c.UseRSLoRA = r, float64(r), false
	list := func(keep func(string) bool) {
		c.RankPattern, c.AlphaPattern = nil, nil
		for _, p := range paths {
			if keep(p) {
				c.RankPattern = append(c.RankPattern, peft.PatternEntry[int]{Key: regexp.QuoteMeta(p), Value: ranks[p]})
				c.AlphaPattern = append(c.AlphaPattern, peft.PatternEntry[float64]{Key: regexp.QuoteMeta(p), Value: float64(ranks[p])})
			}
		}
	}
	exact := func() bool {
		for _, p := range paths {
			if c.ModuleRank(p) != ranks[p] || c.ModuleScale(p) != 1 {
				return false
			}
		}
		return true
	}
	list(func(p string) bool { return ranks[p] != r })
	if exact() {
		return nil
	}
	byLen := slices.Clone(paths)
	sort.SliceStable(byLen, func(i, j int) bool { return len(byLen[i]) > len(byLen[j]) })
	paths = byLen
	list(func(string) bool { return true })
	if !exact() {
		return fmt.Errorf("combine: cannot express the per-module ranks %v as rank_pattern", ranks)
	}
	return nil
}

// CombineInput is an adapter folder to combine, with its name and weight (see Weighted).
type CombineInput struct {
	Name   string // "" takes the folder's base name
	Dir    string
	Weight float64
}

// CombineFolders loads the input folders, combines them (Combine) and saves the result to out
// (Save: validated, then written atomically). out must not be one of the inputs. Every input is
// loaded and checked before anything is written.
func CombineFolders(inputs []CombineInput, out, how string, rank int) (*Adapter, CombineReport, error) {
	ws := make([]Weighted, len(inputs))
	for i, x := range inputs {
		if same, err := SamePath(x.Dir, out); err != nil {
			return nil, CombineReport{How: how}, err
		} else if same {
			return nil, CombineReport{How: how}, fmt.Errorf("combine: the output folder %s is the input %s: writing there would replace that adapter; choose a new folder", out, x.Dir)
		}
		name := x.Name
		if name == "" {
			name = filepath.Base(filepath.Clean(x.Dir))
		}
		ws[i] = Weighted{Name: name, Weight: x.Weight}
	}
	// Names and weights first: they need no loading.
	if err := checkNames(ws); err != nil {
		return nil, CombineReport{How: how}, err
	}
	for i, x := range inputs {
		a, err := Load(x.Dir)
		if err != nil {
			return nil, CombineReport{How: how}, fmt.Errorf("combine: input %s: %w", ws[i].Name, err)
		}
		ws[i].Adapter = a
	}
	a, rep, err := Combine(ws, how, rank)
	if err != nil {
		return nil, rep, err
	}
	if err := Save(out, a); err != nil {
		return nil, rep, err
	}
	return a, rep, nil
}
