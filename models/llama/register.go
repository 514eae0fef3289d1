package llama

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

func init() {
	models.Register(models.Arch{
		Name:          "llama",
		Package:       "models/llama",
		ModelTypes:    ModelTypes,
		Architectures: Architectures,
		Tokenizer:     models.TokenizerJSON,
		HalfBase:      true,
		DefaultTask: func(dir string) models.Task {
			if c, err := LoadConfig(dir); err == nil && sequenceClassifier(c) {
				return models.Classify
			}
			return models.CausalLM // an unreadable config is reported by the loader
		},
		Encoder: func(dir string, store *model.Store, opts models.EncoderOptions) (models.Encoder, error) {
			enc, err := LoadEncoder(dir, store, opts.BaseDType, opts.MaxLength)
			if err != nil {
				return nil, err
			}
			enc.Config.RecomputeBlocks = opts.RecomputeBlocks
			return enc, nil
		},
		CausalLM: func(dir string, store *model.Store, opts models.LoadOptions) (models.CausalModel, error) {
			c, err := LoadBase(dir, store, opts.BaseDType)
			if err != nil {
				return nil, err
			}
			if err := checkCausal(dir, c); err != nil {
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
		LinearSpecs: Linears(c), Vocab: c.VocabSize, Positions: c.MaxPositions, PositionsKey: "max_position_embeddings", EOSToken: c.EOS,
		LossFn: func(inj *peft.Injection, streams int) train.LossFn { return StreamedLossFn(c, inj, streams) },
		Generator: func(be compute.Backend, store *model.Store, inj *peft.Injection, maxLen int) (*Generator, error) {
			return NewGenerator(be, store, c, inj, maxLen)
		},
	}
}
