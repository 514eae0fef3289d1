// Package lm holds what the causal language models share outside the graph: CausalBatch packs
// prompt/completion pairs into the inputs of the completion loss (nn.CausalLoss), and Sampler
// picks the next token from logits when generating (greedy, or temperature and top-k sampling).
package lm

import (
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"
)

// CausalBatch packs prompt/completion pairs into the inputs of a causal-LM loss: ids [B, length]
// (prompt then completion, right-padded with padID), targets [B, length] (ids shifted left by
// one: position i predicts token i+1) and a float32 loss mask [B, length] that is 1 exactly where
// the target is a completion token. A pair longer than length is an error.
func CausalBatch(prompts, completions [][]int, length, padID int) (ids, targets, mask *tensors.Tensor, err error) {
	if len(prompts) != len(completions) || len(prompts) == 0 {
		return nil, nil, nil, fmt.Errorf("causal batch: %d prompts, %d completions", len(prompts), len(completions))
	}
	b := len(prompts)
	idv := make([]int32, b*length)
	tgv := make([]int32, b*length)
	mv := make([]float32, b*length)
	for i := range prompts {
		seq := append(append([]int(nil), prompts[i]...), completions[i]...)
		if len(seq) > length {
			return nil, nil, nil, fmt.Errorf("causal batch: example %d has %d tokens, more than the length %d", i, len(seq), length)
		}
		if len(prompts[i]) == 0 {
			return nil, nil, nil, fmt.Errorf("causal batch: example %d has an empty prompt", i)
		}
		for j := 0; j < length; j++ {
			tok := padID
			if j < len(seq) {
				tok = seq[j]
			}
			idv[i*length+j] = int32(tok)
			if j+1 < len(seq) {
				tgv[i*length+j] = int32(seq[j+1])
				if j+1 >= len(prompts[i]) {
					mv[i*length+j] = 1
				}
			} else {
				tgv[i*length+j] = int32(padID)
			}
		}
	}
	return tensors.FromFlatDataAndDimensions(idv, b, length),
		tensors.FromFlatDataAndDimensions(tgv, b, length),
		tensors.FromFlatDataAndDimensions(mv, b, length), nil
}
