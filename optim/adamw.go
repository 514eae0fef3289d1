package optim

import (
	"fmt"
	"math"
	"sort"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/varnames"
)

// ScheduleKind names a learning-rate decay after warm-up.
type ScheduleKind string

// Learning-rate schedules.
const (
	Constant ScheduleKind = "constant"
	Linear   ScheduleKind = "linear"
	Cosine   ScheduleKind = "cosine"
)

// Schedule is warm-up (linear from 0) followed by constant, linear or cosine decay to 0 at
// TotalSteps. Step t (0-based: the t-th update) uses lr·f(t+1), so the first update is not zero.
type Schedule struct {
	Kind        ScheduleKind `json:"kind"`
	WarmupSteps int64        `json:"warmup_steps"`
	TotalSteps  int64        `json:"total_steps"`
}

// Factor returns the multiplier applied to the base learning rate at update number t (0-based),
// computed in float64 on the host (the graph computes the same formula).
func (s Schedule) Factor(t int64) float64 {
	k := float64(t + 1)
	if s.WarmupSteps > 0 && k <= float64(s.WarmupSteps) {
		return k / float64(s.WarmupSteps)
	}
	if s.Kind == Constant || s.Kind == "" || s.TotalSteps <= s.WarmupSteps {
		return 1
	}
	p := (k - float64(s.WarmupSteps)) / float64(s.TotalSteps-s.WarmupSteps)
	p = math.Min(math.Max(p, 0), 1)
	if s.Kind == Linear {
		return 1 - p
	}
	return 0.5 * (1 + math.Cos(math.Pi*p))
}

// factorGraph is Factor in the graph, from the step counter t (float64 scalar, before increment).
func (s Schedule) factorGraph(t *Node) *Node {
	g := t.Graph()
	k := AddScalar(t, 1)
	one := ScalarOne(g, dtypes.Float64)
	decay := one
	if s.Kind == Linear || s.Kind == Cosine {
		if s.TotalSteps > s.WarmupSteps {
			p := DivScalar(AddScalar(k, -float64(s.WarmupSteps)), float64(s.TotalSteps-s.WarmupSteps))
			p = Clip(p, ScalarZero(g, dtypes.Float64), one)
			if s.Kind == Linear {
				decay = OneMinus(p)
			} else {
				decay = MulScalar(AddScalar(Cos(MulScalar(p, math.Pi)), 1), 0.5)
			}
		}
	}
	if s.WarmupSteps > 0 {
		warm := DivScalar(k, float64(s.WarmupSteps))
		return Where(LessOrEqual(k, Scalar(g, dtypes.Float64, float64(s.WarmupSteps))), warm, decay)
	}
	return decay
}

// Group is the optimizer setting of one variable: its learning-rate multiplier and weight decay.
type Group struct {
	Name         string
	LRMultiplier float64
	WeightDecay  float64
}

// AdamW configures decoupled-weight-decay Adam (Loshchilov & Hutter), as PyTorch's AdamW:
//
//	m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²
//	θ ← θ - lr_i·( m̂/(√v̂ + ε) + wd_i·θ )
//
// with per-variable groups (lr_i = lr·multiplier, e.g. LoRA+'s λ for B), a schedule, and
// optional global-norm gradient clipping.
type AdamW struct {
	LR          float64  `json:"lr"`
	Beta1       float64  `json:"beta1"`
	Beta2       float64  `json:"beta2"`
	Epsilon     float64  `json:"eps"`
	WeightDecay float64  `json:"weight_decay"`
	ClipNorm    float64  `json:"clip_grad_norm"` // 0: no clipping
	Schedule    Schedule `json:"schedule"`
	// GroupOf assigns a variable its group; nil gives every variable LRMultiplier 1 and WeightDecay.
	GroupOf func(v *model.Variable) Group `json:"-"`
}

// DefaultAdamW returns AdamW with PyTorch's defaults (β=(0.9, 0.999), ε=1e-8, wd=0.01) at lr.
func DefaultAdamW(lr float64) AdamW {
	return AdamW{LR: lr, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, WeightDecay: 0.01, Schedule: Schedule{Kind: Constant}}
}

// Validate checks the hyperparameters.
func (o AdamW) Validate() error {
	switch {
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return fmt.Errorf("adamw: learning rate must be > 0, got %v", o.LR)
	case o.Beta1 < 0 || o.Beta1 >= 1 || o.Beta2 < 0 || o.Beta2 >= 1:
		return fmt.Errorf("adamw: betas must be in [0,1), got %v, %v", o.Beta1, o.Beta2)
	case !(o.Epsilon > 0):
		return fmt.Errorf("adamw: epsilon must be > 0, got %v", o.Epsilon)
	case o.WeightDecay < 0 || o.ClipNorm < 0:
		return fmt.Errorf("adamw: weight decay and clip norm must be ≥ 0")
	}
	switch o.Schedule.Kind {
	case "", Constant, Linear, Cosine:
	default:
		return fmt.Errorf("adamw: unknown schedule %q (constant, linear, cosine)", o.Schedule.Kind)
	}
	return nil
}

func (o AdamW) group(v *model.Variable) Group {
	if o.GroupOf != nil {
		return o.GroupOf(v)
	}
	return Group{Name: "default", LRMultiplier: 1, WeightDecay: o.WeightDecay}
}

// StatePrefix is the store scope of the optimizer's moment variables.
const StatePrefix = "/optim/adamw"

func momentVar(store *model.Store, v *model.Variable, which string) *model.Variable {
	p := StatePrefix + "/" + which + v.Path()
	if mv := store.GetVariable(p); mv != nil {
		return mv
	}
	return store.VariableWithValue(p, zerosLike(v)).SetTrainable(false)
}

// TrainableVariables returns the store's trainable variables in a fixed (path) order.
func TrainableVariables(store *model.Store) []*model.Variable {
	var vs []*model.Variable
	for v := range store.IterVariables() {
		if v.Trainable && !varnames.IsOptimizerState(v.Path()) {
			vs = append(vs, v)
		}
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Path() < vs[j].Path() })
	return vs
}

// GlobalNorm returns √Σ‖g‖² over grads, in float32.
func GlobalNorm(grads []*Node) *Node {
	var sum *Node
	for _, gr := range grads {
		sq := ReduceAllSum(Square(ConvertDType(gr, dtypes.Float32)))
		if sum == nil {
			sum = sq
		} else {
			sum = Add(sum, sq)
		}
	}
	return Sqrt(sum)
}

// Apply builds the update of vars with grads (same order), increments the step counter, and
// returns the global gradient norm before clipping (float32 scalar) and the learning rate used.
//
// If loss (may be nil) or the gradient norm is NaN or ±Inf, the update is skipped inside the graph:
// variables, moments and the step counter keep their values, so the last good state survives and
// the caller can stop the run (finite reports whether the update was applied).
func (o AdamW) Apply(store *model.Store, vars []*model.Variable, grads []*Node, loss *Node) (gradNorm, lr, finite *Node) {
	if len(vars) != len(grads) || len(vars) == 0 {
		panic(fmt.Sprintf("optim.AdamW.Apply: %d variables, %d gradients", len(vars), len(grads)))
	}
	g := grads[0].Graph()
	stepVar := StepVar(store)
	t := ConvertDType(stepVar.NodeValue(g), dtypes.Float64) // updates taken so far
	lr = MulScalar(o.Schedule.factorGraph(t), o.LR)         // float64
	k := AddScalar(t, 1)                                    // this update's number, 1-based
	bc1 := OneMinus(Pow(Scalar(g, dtypes.Float64, o.Beta1), k))
	bc2 := OneMinus(Pow(Scalar(g, dtypes.Float64, o.Beta2), k))
	gradNorm = GlobalNorm(grads)
	finite = IsFinite(gradNorm)
	if loss != nil {
		finite = LogicalAnd(finite, IsFinite(ConvertDType(loss, dtypes.Float32)))
	}
	keep := func(newV, old *Node) *Node { return Where(finite, newV, old) }
	var clip *Node
	if o.ClipNorm > 0 {
		// coef = min(1, max_norm/(norm+1e-6)), as torch.nn.utils.clip_grad_norm_.
		clip = Min(ScalarOne(g, dtypes.Float32), Div(Scalar(g, dtypes.Float32, o.ClipNorm), AddScalar(gradNorm, 1e-6)))
	}
	for i, v := range vars {
		grp := o.group(v)
		dt := v.DType()
		gr := grads[i]
		if clip != nil {
			gr = Mul(gr, ConvertDType(clip, gr.DType()))
		}
		m1 := momentVar(store, v, "m")
		m2 := momentVar(store, v, "v")
		m := Add(MulScalar(m1.NodeValue(g), o.Beta1), MulScalar(gr, 1-o.Beta1))
		s := Add(MulScalar(m2.NodeValue(g), o.Beta2), MulScalar(Square(gr), 1-o.Beta2))
		m1.SetNodeValue(keep(m, m1.NodeValue(g)))
		m2.SetNodeValue(keep(s, m2.NodeValue(g)))
		lrI := ConvertDType(MulScalar(lr, grp.LRMultiplier), dt)
		mHat := Div(m, ConvertDType(bc1, dt))
		vHat := Div(s, ConvertDType(bc2, dt))
		upd := Div(mHat, AddScalar(Sqrt(vHat), o.Epsilon))
		val := v.NodeValue(g)
		if grp.WeightDecay > 0 {
			upd = Add(upd, MulScalar(val, grp.WeightDecay))
		}
		v.SetNodeValue(keep(Sub(val, Mul(lrI, upd)), val))
	}
	old := stepVar.NodeValue(g)
	stepVar.SetNodeValue(keep(AddScalar(old, 1), old))
	return gradNorm, lr, finite
}
