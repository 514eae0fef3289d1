package gpt2

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

func init() {
	models.Register(models.Arch{
		Name:          "gpt2",
		Package:       "models/gpt2",
		ModelTypes:    ModelTypes,
		Architectures: Architectures,
		Tokenizer:     models.TokenizerJSON,
		HalfBase:      true,
		CausalLM: func(dir string, store *model.Store, opts models.LoadOptions) (models.CausalModel, error) {
			c, err := LoadBase(dir, store, opts.BaseDType)
			if err != nil {
				return nil, err
			}
			c.RecomputeBlocks = opts.RecomputeBlocks
			return causalModel(c), nil
		},
	})
}

// causalModel is a loaded model as a models.CausalModel.
func causalModel(c *Config) models.CausalModel {
	return models.Causal[*Generator]{
		LinearSpecs: Linears(c), Vocab: c.VocabSize, Positions: c.Positions, PositionsKey: "n_positions", EOSToken: c.EOS,
		LossFn: func(inj *peft.Injection, streams int) train.LossFn { return StreamedLossFn(c, inj, streams) },
		Generator: func(be compute.Backend, store *model.Store, inj *peft.Injection, maxLen int) (*Generator, error) {
			return NewGenerator(be, store, c, inj, maxLen)
		},
	}
}
