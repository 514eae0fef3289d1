package models

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// Causal is a CausalModel built from a model package's pieces, so that each package's
// registration lists what it has instead of writing the interface's methods again.
type Causal[G Generator] struct {
	// LinearSpecs are the adaptable linear layers (Linears).
	LinearSpecs []peft.LinearSpec
	// Vocab is the number of logits per position (VocabSize).
	Vocab int
	// Positions and PositionsKey are the longest sequence the model reads and its config.json key
	// (MaxPositions).
	Positions    int
	PositionsKey string
	// EOSToken is config.json's end-of-sequence id, -1 for none (EOS).
	EOSToken int
	// LossFn builds the streamed completion loss (Loss).
	LossFn func(inj *peft.Injection, streams int) train.LossFn
	// Generator compiles generation (NewGenerator).
	Generator func(be compute.Backend, store *model.Store, inj *peft.Injection, maxLen int) (G, error)
}

// Linears implements CausalModel.
func (c Causal[G]) Linears() []peft.LinearSpec { return c.LinearSpecs }

// VocabSize implements CausalModel.
func (c Causal[G]) VocabSize() int { return c.Vocab }

// MaxPositions implements CausalModel.
func (c Causal[G]) MaxPositions() (int, string) { return c.Positions, c.PositionsKey }

// EOS implements CausalModel.
func (c Causal[G]) EOS() int { return c.EOSToken }

// Loss implements CausalModel.
func (c Causal[G]) Loss(inj *peft.Injection, streams int) train.LossFn { return c.LossFn(inj, streams) }

// NewGenerator implements CausalModel.
func (c Causal[G]) NewGenerator(be compute.Backend, store *model.Store, inj *peft.Injection, maxLen int) (Generator, error) {
	g, err := c.Generator(be, store, inj, maxLen)
	if err != nil {
		return nil, err
	}
	return g, nil
}
