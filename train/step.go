// Package train runs training steps over a GoMLX model.Store: forward, backward, gradient
// accumulation over micro-batches and the optimizer update, with the optimizer-step counter (and
// so SingLoRA's ramp) advanced once per update, never per micro-batch.
//
// A GoMLX fact every caller must know: on backends that prefer constants (the pure-Go backend
// does), a graph built with the store NOT in training mode embeds every variable's current value
// as a constant. Such an executor never sees later updates. So every graph that reads variables
// another executor changes must either be built in training mode (all graphs here are), or be
// built after the updates (evaluation executors are created fresh for each evaluation; see
// NewInference).
package train

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/optim"
)

// LossFn builds the mean loss (a float scalar) of one micro-batch from its inputs. It runs with
// the scope in training mode (dropout active).
type LossFn func(scope *model.Scope, inputs []*Node) *Node

// StepResult is what one optimizer update reports.
type StepResult struct {
	Loss     float64 // mean over the micro-batches
	GradNorm float64 // global norm of the (accumulated) gradient, before clipping
	LR       float64 // learning rate used (before group multipliers)
	Step     int64   // optimizer steps taken after this update
	Finite   bool    // false: NaN/Inf in loss or gradient; the update was skipped
}

// ErrNonFinite is returned (wrapped) when a loss or gradient is NaN or Inf. The store holds the
// values from before the offending step.
var ErrNonFinite = fmt.Errorf("non-finite loss or gradient")

// Stepper compiles and runs training updates.
type Stepper struct {
	Backend compute.Backend
	Store   *model.Store
	Loss    LossFn
	Opt     optim.AdamW
	// AccumSteps is the number of micro-batches per optimizer update (≥ 1).
	AccumSteps int

	vars                       []*model.Variable
	fused, accumExec, applyExc *model.Exec
}

// NewStepper validates the configuration and fixes the set of trainable variables (call after
// the store's trainability is set, e.g. by peft.Injection.Attach).
func NewStepper(backend compute.Backend, store *model.Store, loss LossFn, opt optim.AdamW, accumSteps int) (*Stepper, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if accumSteps < 1 {
		return nil, fmt.Errorf("gradient accumulation steps must be ≥ 1, got %d", accumSteps)
	}
	vars := optim.TrainableVariables(store)
	if len(vars) == 0 {
		return nil, fmt.Errorf("no trainable variables: nothing to train")
	}
	optim.StepVar(store)
	return &Stepper{Backend: backend, Store: store, Loss: loss, Opt: opt, AccumSteps: accumSteps, vars: vars}, nil
}

// Vars returns the trainable variables in the order the optimizer sees them.
func (s *Stepper) Vars() []*model.Variable { return s.vars }

const accumPrefix = "/optim/accum"

func (s *Stepper) accumVar(v *model.Variable) *model.Variable {
	p := accumPrefix + v.Path()
	if a := s.Store.GetVariable(p); a != nil {
		return a
	}
	return s.Store.VariableWithValue(p, tensors.FromShape(v.Shape())).SetTrainable(false)
}

func (s *Stepper) lossAndGrads(scope *model.Scope, inputs []*Node) (*Node, []*Node) {
	g := inputs[0].Graph()
	scope.SetTraining(g, true)
	loss := s.Loss(scope, inputs)
	if !loss.Shape().IsScalar() || !loss.DType().IsFloat() {
		panic(fmt.Sprintf("loss must be a float scalar, got %s", loss.Shape()))
	}
	nodes := make([]*Node, len(s.vars))
	for i, v := range s.vars {
		nodes[i] = v.NodeValue(g)
	}
	return loss, Gradient(loss, nodes...)
}

func (s *Stepper) build() error {
	var err error
	if s.AccumSteps == 1 {
		s.fused, err = model.NewExec(s.Backend, s.Store, func(scope *model.Scope, inputs []*Node) []*Node {
			loss, grads := s.lossAndGrads(scope, inputs)
			norm, lr, finite := s.Opt.Apply(s.Store, s.vars, grads, loss)
			return []*Node{ConvertDType(loss, dtypes.Float64), ConvertDType(norm, dtypes.Float64), lr, finite}
		})
		return err
	}
	inv := 1 / float64(s.AccumSteps)
	s.accumExec, err = model.NewExec(s.Backend, s.Store, func(scope *model.Scope, inputs []*Node) []*Node {
		loss, grads := s.lossAndGrads(scope, inputs)
		for i, v := range s.vars {
			a := s.accumVar(v)
			a.SetNodeValue(Add(a.NodeValue(loss.Graph()), MulScalar(grads[i], inv)))
		}
		return []*Node{ConvertDType(loss, dtypes.Float64)}
	})
	if err != nil {
		return err
	}
	s.applyExc, err = model.NewExec(s.Backend, s.Store, func(scope *model.Scope, lossMean *Node) []*Node {
		g := lossMean.Graph()
		scope.SetTraining(g, true) // see the package doc: graphs that update variables must be in training mode
		grads := make([]*Node, len(s.vars))
		for i, v := range s.vars {
			a := s.accumVar(v)
			grads[i] = a.NodeValue(g)
			a.SetNodeValue(ZerosLike(grads[i]))
		}
		norm, lr, finite := s.Opt.Apply(s.Store, s.vars, grads, lossMean)
		return []*Node{ConvertDType(norm, dtypes.Float64), lr, finite}
	})
	return err
}

// Step runs one optimizer update over len(micro) == AccumSteps micro-batches, each a list of
// input tensors for the LossFn. On a NaN/Inf loss or gradient the update is skipped (the store
// keeps its previous values) and the error wraps ErrNonFinite.
func (s *Stepper) Step(micro ...[]*tensors.Tensor) (StepResult, error) {
	if len(micro) != s.AccumSteps {
		return StepResult{}, fmt.Errorf("step needs %d micro-batches, got %d", s.AccumSteps, len(micro))
	}
	if s.fused == nil && s.accumExec == nil {
		if err := s.build(); err != nil {
			return StepResult{}, fmt.Errorf("building training step: %w", err)
		}
	}
	var res StepResult
	var outs []*tensors.Tensor
	var err error
	if s.fused != nil {
		outs, err = s.fused.Call(toAny(micro[0])...)
		if err != nil {
			return res, fmt.Errorf("training step: %w", err)
		}
		res.Loss = tensors.ToScalar[float64](outs[0])
		outs = outs[1:]
	} else {
		sum := 0.0
		for _, mb := range micro {
			o, err := s.accumExec.Call(toAny(mb)...)
			if err != nil {
				return res, fmt.Errorf("training micro-step: %w", err)
			}
			sum += tensors.ToScalar[float64](o[0])
		}
		res.Loss = sum / float64(len(micro))
		outs, err = s.applyExc.Call(res.Loss)
		if err != nil {
			return res, fmt.Errorf("optimizer update: %w", err)
		}
	}
	res.GradNorm = tensors.ToScalar[float64](outs[0])
	res.LR = tensors.ToScalar[float64](outs[1])
	res.Finite = tensors.ToScalar[bool](outs[2])
	res.Step = CurrentStep(s.Store)
	if !res.Finite || math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
		res.Finite = false
		return res, fmt.Errorf("step %d: loss %v, gradient norm %v: %w (update skipped; weights are those of step %d)",
			res.Step+1, res.Loss, res.GradNorm, ErrNonFinite, res.Step)
	}
	return res, nil
}

// Close releases the compiled training graphs (one per input shape). A later Step compiles them
// again.
func (s *Stepper) Close() {
	for _, e := range []**model.Exec{&s.fused, &s.accumExec, &s.applyExc} {
		if *e != nil {
			(*e).Finalize()
			*e = nil
		}
	}
}

// CurrentStep returns the optimizer steps taken so far.
func CurrentStep(store *model.Store) int64 {
	t, err := optim.StepVar(store).Value()
	if err != nil {
		return 0
	}
	return tensors.ToScalar[int64](t)
}

func toAny(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

// NewInference returns an executor of fn for inference with the store's current values (dropout
// off). Because the values may be baked into the compiled graph as constants, create a new one
// after the variables change (e.g. once per evaluation).
func NewInference(backend compute.Backend, store *model.Store, fn any) (*model.Exec, error) {
	switch f := fn.(type) {
	case func(*model.Scope, []*Node) []*Node:
		return model.NewExec(backend, store, f)
	case func(*model.Scope, *Node) *Node:
		return model.NewExec(backend, store, f)
	case func(*model.Scope, *Node, *Node) *Node:
		return model.NewExec(backend, store, f)
	}
	return nil, fmt.Errorf("train.NewInference: unsupported graph function type %T", fn)
}
