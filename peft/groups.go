package peft

import (
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/varnames"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft/tuner"
)

// OptimizerGroups returns the optimizer's per-variable groups for this method. Every variable
// starts in the group "default" with the base learning rate and weightDecay, except that
// biases, normalisation weights (varnames.IsNormalization) and vectors get no weight decay; the
// method then adjusts it (tuner.Tuner.Group): LoRA+ gives lora_B the learning rate λ·lr, DoRA's
// magnitude gets no weight decay. A nil inj leaves the defaults.
func (inj *Injection) OptimizerGroups(weightDecay float64) func(v *model.Variable) optim.Group {
	var method tuner.Tuner
	if inj != nil {
		method, _ = inj.method()
	}
	return func(v *model.Variable) optim.Group {
		g := optim.Group{Name: "default", LRMultiplier: 1, WeightDecay: weightDecay}
		if v.Name() == "bias" || varnames.IsNormalization(v.Path()) || v.Shape().Rank() < 2 {
			g.WeightDecay = 0
		}
		if method != nil {
			method.Group(inj.Config, v, &g)
		}
		return g
	}
}
