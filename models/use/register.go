package use

import (
	"math"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models"
)

func init() {
	models.Register(models.Arch{
		Name:      "use",
		Package:   "models/use",
		Builtin:   true,
		BaseModel: BaseModelName,
		Tokenizer: "its SentencePiece vocabulary (vocab.json of the fetched package; tokenizer/sentencepiece)",
		Encoder: func(dir string, store *model.Store, _ models.EncoderOptions) (models.Encoder, error) {
			return Load(dir, store)
		},
	})
}

// FeatureScale implements models.Encoder: √OutputDim. The embeddings have unit norm, so their
// entries are ~1/√512; scaled by √512 they give the classification head unit-scale inputs.
func (m *Model) FeatureScale() float64 { return math.Sqrt(float64(m.EmbedDim())) }
