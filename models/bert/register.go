package bert

import (
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models"
)

func init() {
	models.Register(models.Arch{
		Name:          "bert",
		Package:       "models/bert",
		ModelTypes:    ModelTypes,
		Architectures: Architectures,
		Tokenizer:     models.TokenizerJSON,
		Encoder: func(dir string, store *model.Store, opts models.EncoderOptions) (models.Encoder, error) {
			return LoadEncoder(dir, store, opts.MaxLength)
		},
	})
}

// FeatureScale implements models.Encoder: BERT's features are used as they are.
func (e *Encoder) FeatureScale() float64 { return 1 }
