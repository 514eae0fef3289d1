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
			return causalLM{c}, nil
		},
	})
}

// causalLM is a loaded model as a models.CausalModel.
type causalLM struct{ c *Config }

func (m causalLM) Linears() []peft.LinearSpec { return Linears(m.c) }
func (m causalLM) VocabSize() int             { return m.c.VocabSize }
func (m causalLM) MaxPositions() (int, string) {
	return m.c.MaxPositions, "max_position_embeddings"
}
func (m causalLM) EOS() int { return m.c.EOS }
func (m causalLM) Loss(inj *peft.Injection, streams int) train.LossFn {
	return StreamedLossFn(m.c, inj, streams)
}
func (m causalLM) NewGenerator(be compute.Backend, store *model.Store, inj *peft.Injection, maxLen int) (models.Generator, error) {
	g, err := NewGenerator(be, store, m.c, inj, maxLen)
	if err != nil {
		return nil, err
	}
	return g, nil
}
