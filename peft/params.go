package peft

import (
	"github.com/singlora/singlora/peft/dora"
	"github.com/singlora/singlora/peft/lora"
	"github.com/singlora/singlora/peft/singlora"
	"github.com/singlora/singlora/peft/tuner"
)

// Adapter tensor names of the built-in methods, as PEFT names them (the checkpoint key is
// "base_model.model.<module>.<name>.weight"; DoRA's magnitude has no ".weight").
const (
	NameSingLoRAA = singlora.NameA
	NameLoRAA     = lora.NameA
	NameLoRAB     = lora.NameB
	NameMagnitude = dora.NameMagnitude
)

// AdapterTensor describes one adapter tensor of one module (see tuner.TensorSpec).
type AdapterTensor = tuner.TensorSpec

// AdapterTensors returns the adapter tensors method m adds to layer s with rank r, as the method
// lists them (tuner.Tuner.Tensors): SingLoRA: singlora_A [max(in,out), r]; LoRA/LoRA+: lora_A
// [r, in], lora_B [out, r]; DoRA: those two plus lora_magnitude_vector [out]. None for methods
// without adapter and unknown names.
func AdapterTensors(m Method, s LinearSpec, r int) []AdapterTensor {
	t, err := tuner.Lookup(m)
	if err != nil {
		return nil
	}
	return t.Tensors(s, r)
}

// AdapterParams is the number of adapter parameters method m adds to layer s at rank r:
// SingLoRA r·max(in,out), LoRA r·(in+out), DoRA r·(in+out)+out.
func AdapterParams(m Method, s LinearSpec, r int) int {
	n := 0
	for _, t := range AdapterTensors(m, s, r) {
		n += shapeSize(t.Shape)
	}
	return n
}

// InitialValues returns the initial values (row-major float32) of the adapter tensors of layer s
// under cfg, as the method draws them (tuner.Tuner.Init). base returns the layer's base weight
// in its stored layout; only methods that start from it call it (DoRA's magnitude is ‖W0‖ per
// output feature, so that the adapted layer starts exactly at W0), so it may be nil for others.
func InitialValues(cfg Config, s LinearSpec, base func() ([]float32, error)) (map[string][]float32, error) {
	t, err := tuner.Lookup(cfg.Method)
	if err != nil {
		return nil, err
	}
	if cfg.Init == "" {
		cfg.Init = cfg.DefaultInit()
	}
	return t.Init(cfg, s, base)
}
