// Package adapterio reads and writes adapter folders in PEFT's layout (adapter_config.json +
// adapter_model.safetensors), loads them into and saves them from a GoMLX store, and does the
// host-side math on them: ΔW, merge into / unmerge from base weights, and export of a SingLoRA
// adapter as a plain LoRA adapter.
//
// # Format
//
// adapter_config.json is parsed, validated and written by package adapterconfig, which links no
// graph engine; this package re-exports its Config and constants (see that package for the keys).
//
// Tensor names follow PEFT: "base_model.model.<module>.<tensor>.weight" for singlora_A, lora_A
// and lora_B, where "<module>.weight" is the base weight's name in the checkpoint. DoRA's
// magnitude is "base_model.model.<module>.lora_magnitude_vector" without ".weight", as PEFT ≥
// 0.12 writes it (its state-dict code strips the ".weight" of the DoraLinearLayer parameter to
// keep the older format); a ".lora_magnitude_vector.weight" key is accepted on load. Variables
// of modules_to_save (e.g. a classifier head) are saved as "base_model.model.<variable path with
// dots>" (e.g. "base_model.model.classifier.weight"), which is what PEFT's
// get_peft_model_state_dict produces after stripping "modules_to_save.<adapter>".
package adapterio

import (
	"sort"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/peft/tuner"
)

// File names inside an adapter folder.
const (
	ConfigFile  = adapterconfig.ConfigFile
	WeightsFile = adapterconfig.WeightsFile
)

// PEFT types.
const (
	TypeSingLoRA = adapterconfig.TypeSingLoRA
	TypeLoRA     = adapterconfig.TypeLoRA
	// BiasNone, BiasLoRAOnly and BiasAll are the bias settings (Settings.Bias).
	BiasNone     = adapterconfig.BiasNone
	BiasLoRAOnly = adapterconfig.BiasLoRAOnly
	BiasAll      = adapterconfig.BiasAll
)

// TensorPrefix prefixes every tensor name in the adapter file.
const TensorPrefix = "base_model.model."

// Config is adapter_config.json (see package adapterconfig).
type Config = adapterconfig.Config

// Settings are the adapter settings under PEFT's key names (see adapterconfig.Settings).
type Settings = adapterconfig.Settings

// ParseConfig parses and validates adapter_config.json (see adapterconfig.Parse).
func ParseConfig(b []byte) (*Config, error) { return adapterconfig.Parse(b) }

// PeftConfig converts the file config c to the training configuration: the common keys, and the
// method's own as the method that claims c reads them (tuner.Tuner.FromFile). A config no
// registered method claims gives Method "" (which Inject refuses; Load refuses it first).
func PeftConfig(c *Config) peft.Config {
	_, pc, _ := tuner.ForFile(c)
	return pc
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
