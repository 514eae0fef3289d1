package fastops

import (
	"fmt"
	"os"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"         //nolint:revive
	. "github.com/gomlx/gomlx/support/exceptions" //nolint:revive
)

// HalfMode says how Product multiplies float32 activations by a 16-bit (bf16/f16) frozen weight.
type HalfMode int

const (
	// HalfCast rounds the activations to the weight's dtype and runs the backend's half×half
	// product, which accumulates and outputs in float32 (what PyTorch's bf16 autocast does). The
	// input gradient is the same kind of product of the output gradient rounded to 16 bits. No
	// float32 copy of the weight exists at any time.
	HalfCast HalfMode = iota
	// HalfWiden converts the weight to float32 just before its product (and again, separately,
	// just before the input-gradient product of the backward), so the product is the float32
	// kernel's, exact in the activations; one layer's float32 copy is live at a time.
	HalfWiden
	// HalfAuto chooses per product by its row count N (the activations' leading axes) and the
	// weight's size: widen when N ≥ WidenRows, where the conversion's cost (∝ in·out) is small
	// beside the product's (∝ N·in·out) and the float32 kernel is about twice the half one, and
	// the weight has at most WidenMaxElements entries; cast otherwise (generation's one token at
	// a time, a large vocabulary's LM head).
	HalfAuto
)

// WidenRows is HalfAuto's threshold: on the 2048×8192 projection (BenchmarkHalfProduct) cast
// wins at 32 rows (40 vs 73 ms for the product and its input gradient), widen at 128 (111 vs
// 122 ms) and at 512 (208 vs 477 ms; float32 227 ms).
const WidenRows = 128

// WidenMaxElements bounds the weights HalfAuto widens: a larger one (an LM head or a tied
// embedding of a large vocabulary: Llama-3.2-1B's 128256×2048 would be a 1.05 GB float32 copy,
// made twice a step) is cast instead, so the float32 copies live at any time stay small beside
// the base (at most 256 MiB each: LLaMA-7B's 11008×4096 MLP projections are 180 MB).
const WidenMaxElements = 64 << 20

// For returns the mode a product of rows rows with a weight of elements entries runs in: m
// itself, or for HalfAuto widen (rows ≥ WidenRows and elements ≤ WidenMaxElements) or cast.
func (m HalfMode) For(rows, elements int) HalfMode {
	if m != HalfAuto {
		return m
	}
	if rows >= WidenRows && elements <= WidenMaxElements {
		return HalfWiden
	}
	return HalfCast
}

func (m HalfMode) String() string {
	switch m {
	case HalfWiden:
		return "widen"
	case HalfAuto:
		return "auto"
	}
	return "cast"
}

// DefaultHalfMode is the mode Product uses: HalfAuto, or what the environment variable
// SINGLORA_HALF_PRODUCT says (cast, widen or auto; for measurements, see PERFORMANCE.md).
var DefaultHalfMode = func() HalfMode {
	switch os.Getenv("SINGLORA_HALF_PRODUCT") {
	case "widen":
		return HalfWiden
	case "cast":
		return HalfCast
	}
	return HalfAuto
}()

// Product contracts the last axis of x [..., k] (float32) with axis wAxis of the 2-D weight w:
// x·wᵀ → [..., n] for w [n, k] (wAxis 1), x·w for w [k, n] (wAxis 0). The result is float32.
//
// For a float32 w it is the plain DotGeneral, with GoMLX's gradients. For a bf16/f16 w, which must
// be frozen (no gradient is built for it), the product runs as DefaultHalfMode says, and the
// gradient with respect to x is built here rather than by GoMLX (whose gradient of a mixed product
// would convert w to float32 with nothing ordering that conversion: the pure-Go backend's parallel
// executor runs such parameter-only nodes as soon as the step starts, so every layer's float32
// copy would be live at once):
//
//	cast:   y = f32(bf16(x)·w),          dx = f32(bf16(dy)·wᵀ)
//	widen:  y = x·f32(w),                dx = dy·f32(w)ᵀ,  each f32(w) made after x (resp. dy)
//	        exists (SchedulingBarrier), and freed after its one product.
func Product(x, w *Node, wAxis int) *Node {
	return ProductMode(x, w, wAxis, DefaultHalfMode)
}

// ProductMode is Product with the half-precision mode given.
func ProductMode(x, w *Node, wAxis int, mode HalfMode) *Node {
	if w.Rank() != 2 || (wAxis != 0 && wAxis != 1) {
		Panicf("fastops.Product: weight must be 2-D with wAxis 0 or 1, got %s and %d", w.Shape(), wAxis)
	}
	xAxis := x.Rank() - 1
	if !w.DType().IsHalfPrecision() || x.DType() == w.DType() {
		return Dot(x, w).General([]int{xAxis}, nil, []int{wAxis}, nil)
	}
	if x.DType() != dtypes.Float32 {
		Panicf("fastops.Product: activations must be float32 with a %s weight, got %s", w.DType(), x.DType())
	}
	outAxis := 1 - wAxis // w's axis that is the output's last
	half := w.DType()
	mode = mode.For(x.Shape().Size()/x.Shape().Dim(-1), w.Shape().Size())
	switch mode {
	case HalfCast:
		return withInputGradient(x,
			func(x *Node) *Node {
				return Dot(ConvertDType(x, half), w).WithOutputDType(dtypes.Float32).General([]int{xAxis}, nil, []int{wAxis}, nil)
			},
			func(dy *Node) *Node {
				return Dot(ConvertDType(dy, half), w).WithOutputDType(dtypes.Float32).General([]int{dy.Rank() - 1}, nil, []int{outAxis}, nil)
			})
	case HalfWiden:
		return withInputGradient(x,
			func(x *Node) *Node {
				return Dot(x, Widen(w, x)).General([]int{xAxis}, nil, []int{wAxis}, nil)
			},
			func(dy *Node) *Node {
				return Dot(dy, Widen(w, dy)).General([]int{dy.Rank() - 1}, nil, []int{outAxis}, nil)
			})
	}
	panic(fmt.Sprintf("fastops.Product: unknown half mode %d", mode))
}

// Widen returns w converted to float32, computed only once after exists (SchedulingBarrier: the
// pure-Go backend would otherwise convert a parameter at the start of the step and keep the copy
// until its use). w itself is returned when it is not bf16/f16.
func Widen(w, after *Node) *Node {
	if !w.DType().IsHalfPrecision() {
		return w
	}
	return ConvertDType(SchedulingBarrier(w, after), dtypes.Float32)
}

// withInputGradient returns fwd(x), whose gradient with respect to x is bwd(dy), dy being the
// gradient with respect to the result. GoMLX's own gradient of fwd is still built, but nothing
// uses it, so the backends never compute it.
func withInputGradient(x *Node, fwd, bwd func(*Node) *Node) *Node {
	var dy *Node
	xi := IdentityWithCustomGradient(x, func(_, v *Node) *Node {
		if dy == nil { // not reached through the result: keep GoMLX's gradient
			return v
		}
		return bwd(dy)
	})
	return IdentityWithCustomGradient(fwd(xi), func(_, v *Node) *Node {
		dy = v
		return v
	})
}
