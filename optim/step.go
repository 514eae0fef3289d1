// Package optim holds singlora's optimizer: AdamW with parameter groups (per-variable learning-rate
// multipliers and weight decay), learning-rate schedules, global-norm gradient clipping and
// gradient accumulation, all as GoMLX graph code, plus the optimizer-step counter that drives
// SingLoRA's ramp.
package optim

import (
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// StepPath is the store path of the optimizer-step counter: the number of optimizer updates
// applied (not forward calls, not micro-batches). SingLoRA's ramp u(t) reads it.
const StepPath = "/optim/step"

// StepVar returns the optimizer-step counter (an int64 scalar), creating it at 0 if needed.
func StepVar(store *model.Store) *model.Variable {
	if v := store.GetVariable(StepPath); v != nil {
		return v
	}
	return store.VariableWithValue(StepPath, int64(0)).SetTrainable(false)
}

// Step returns the current optimizer step as a graph node (int64 scalar).
func Step(store *model.Store, g *graph.Graph) *graph.Node {
	return StepVar(store).NodeValue(g)
}
