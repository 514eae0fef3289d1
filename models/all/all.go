// Package all registers every model package with the models registry: import it (for its side
// effect) wherever a model is resolved by name or model_type. Adding a model is its package,
// which calls models.Register from init, and one import line here.
package all

import (
	_ "github.com/singlora/singlora/models/bert"  // bert, roberta: classify
	_ "github.com/singlora/singlora/models/gpt2"  // gpt2: causal-lm
	_ "github.com/singlora/singlora/models/llama" // llama, mistral, qwen2: causal-lm
	_ "github.com/singlora/singlora/models/use"   // use (built in): classify
)
