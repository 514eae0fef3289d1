package hf

import (
	"fmt"

	"github.com/singlora/singlora/safetensors"
)

// Float32s reads checkpoint tensor name, which must have shape (and a float dtype), as float32
// values in the checkpoint's row-major order. It is for converters (gguf/llamacpp) that stream a
// checkpoint tensor by tensor without a model store.
func (w *Weights) Float32s(name string, shape ...int) ([]float32, error) {
	t, err := w.check(name, shape)
	if err != nil {
		return nil, err
	}
	raw, err := w.raw(t)
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", w.Dir, name, err)
	}
	out := make([]float32, t.NumElements())
	if err := safetensors.DecodeFloat32s(t.DType, raw, out); err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", w.Dir, name, err)
	}
	return out, nil
}
