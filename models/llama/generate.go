package llama

import (
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/peft"
)

// Generator generates tokens with a KV cache of fixed length MaxLen (prompt + new tokens): one
// prefill call over the prompt, then one call per generated token.
//
// The executor is compiled when the generator is created and, on backends that embed variables as
// constants, sees the store's values of that moment: create a new Generator after the weights or
// adapters change (e.g. after training).
type Generator struct {
	Config *Config
	MaxLen int
	exec   *model.Exec
}

// NewGenerator prepares generation for the model in store (inj may be nil).
func NewGenerator(backend compute.Backend, store *model.Store, c *Config, inj *peft.Injection, maxLen int) (*Generator, error) {
	if maxLen <= 0 {
		return nil, fmt.Errorf("generation length %d must be positive", maxLen)
	}
	exec, err := model.NewExec(backend, store, func(scope *model.Scope, in []*Node) []*Node {
		return CachedLogits(c, inj, scope, in[0], in[1], in[2:])
	})
	if err != nil {
		return nil, err
	}
	return &Generator{Config: c, MaxLen: maxLen, exec: exec}, nil
}

// Generate continues prompt with up to maxNew tokens (stopping after stop, if ≥ 0), returning the
// new tokens. The prompt plus the new tokens must fit in MaxLen.
func (g *Generator) Generate(prompt []int, maxNew int, opts lm.SampleOptions, stop int) ([]int, error) {
	c := g.Config
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	if err := lm.CheckRange(prompt, c.VocabSize); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	if len(prompt)+maxNew > g.MaxLen {
		return nil, fmt.Errorf("generate: prompt (%d tokens) + %d new tokens exceed the cache length %d", len(prompt), maxNew, g.MaxLen)
	}
	args := make([]any, 2+2*c.Layers)
	for i := 2; i < len(args); i++ {
		args[i] = tensors.FromShape(shapesCache(c, g.MaxLen))
	}
	ids := make([]int32, len(prompt))
	for i, t := range prompt {
		ids[i] = int32(t)
	}
	sampler := lm.NewSampler(opts)
	var out []int
	pos := 0
	for len(out) < maxNew {
		args[0] = tensors.FromFlatDataAndDimensions(ids, 1, len(ids))
		args[1] = int32(pos)
		res, err := g.exec.Call(args...)
		if err != nil {
			return out, fmt.Errorf("generate: %w", err)
		}
		logits := tensors.MustCopyFlatData[float32](res[0])
		last := logits[(len(ids)-1)*c.VocabSize:]
		next := sampler.Next(last)
		for i := range res[1:] {
			args[2+i] = res[1+i]
		}
		pos += len(ids)
		out = append(out, next)
		if next == stop {
			break
		}
		ids = []int32{int32(next)}
	}
	return out, nil
}

func shapesCache(c *Config, maxLen int) shapes.Shape {
	return shapes.Make(dtypes.Float32, 1, c.KVHeads, maxLen, c.HeadDim)
}
