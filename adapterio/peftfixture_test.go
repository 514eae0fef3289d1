package adapterio

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// peftLoraConfig is adapter_config.json as PEFT 0.20's LoraConfig.save_pretrained writes it
// (written by hand from LoraConfig's documented field names and defaults; every key PEFT writes
// is present, most at its default), with per-module ranks and alphas, lora_only biases and
// gaussian init.
const peftLoraConfig = `{
  "alpha_pattern": {"v_proj": 32},
  "auto_mapping": null,
  "base_model_name_or_path": "tiny-llama",
  "bias": "lora_only",
  "corda_config": null,
  "eva_config": null,
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": "gaussian",
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 16,
  "lora_bias": false,
  "lora_dropout": 0.05,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "peft_type": "LORA",
  "peft_version": "0.20.0",
  "qalora_group_size": 16,
  "r": 8,
  "rank_pattern": {"model.layers.1.self_attn.q_proj": 4, "v_proj": 2},
  "revision": null,
  "target_modules": ["v_proj", "q_proj"],
  "target_parameters": null,
  "task_type": "CAUSAL_LM",
  "trainable_token_indices": null,
  "use_dora": false,
  "use_qalora": false,
  "use_rslora": false
}`

// TestPEFTWrittenConfigRoundTrip: a LoRA adapter folder as PEFT writes it (config above, tensors
// named base_model.model.<module>.lora_A.weight, the lora_only biases beside them) loads with the
// same meaning — each module's rank and α from the patterns, the init, bias, dropout and task —
// keeps the keys singlora does not interpret, and written back and reloaded means the same again.
func TestPEFTWrittenConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(peftLoraConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	const in, out = 16, 16
	wantRank := map[string]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	var ts []safetensors.Tensor
	add := func(name string, shape []int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		st, err := safetensors.FromFloat32s(name, safetensors.F32, shape, randVals(rng, n, 0.1))
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, st)
	}
	for l := range 2 {
		for _, m := range []string{"q_proj", "v_proj"} {
			p := fmt.Sprintf("model.layers.%d.self_attn.%s", l, m)
			r := 8
			switch {
			case m == "v_proj":
				r = 2
			case l == 1:
				r = 4
			}
			wantRank[p] = r
			add(TensorPrefix+p+".lora_A.weight", []int{r, in})
			add(TensorPrefix+p+".lora_B.weight", []int{out, r})
			add(TensorPrefix+p+".bias", []int{out})
		}
	}
	b, err := safetensors.Marshal(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, WeightsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}

	check := func(what string, a *Adapter) {
		t.Helper()
		if a.Method() != peft.LoRA {
			t.Fatalf("%s: method %s", what, a.Method())
		}
		c := a.Config
		if c.Bias != BiasLoRAOnly || c.LoraDropout != 0.05 || c.TaskType != "CAUSAL_LM" || c.BaseModel != "tiny-llama" {
			t.Fatalf("%s: bias %q dropout %v task %q base %q", what, c.Bias, c.LoraDropout, c.TaskType, c.BaseModel)
		}
		if pc := PeftConfig(a.Config); pc.Init != peft.InitGaussian || pc.Bias != BiasLoRAOnly {
			t.Fatalf("%s: peft config init %q bias %q", what, pc.Init, pc.Bias)
		}
		for p, r := range wantRank {
			if got := c.ModuleRank(p); got != r {
				t.Fatalf("%s: %s rank %d, want %d", what, p, got, r)
			}
			alpha := 16.0
			if strings.HasSuffix(p, "v_proj") {
				alpha = 32
			}
			if got := c.ModuleScale(p); got != alpha/float64(r) {
				t.Fatalf("%s: %s scale %v, want %v/%d", what, p, got, alpha, r)
			}
			if a.Module(p) == nil {
				t.Fatalf("%s: module %s missing", what, p)
			}
		}
		var biases []string
		for _, s := range a.Saved {
			biases = append(biases, s.Name)
		}
		if len(biases) != 4 || !strings.HasSuffix(biases[0], ".bias") {
			t.Fatalf("%s: saved tensors %v, want the four biases", what, biases)
		}
		for _, k := range []string{"peft_version", "megatron_core", "qalora_group_size", "loftq_config", "inference_mode", "lora_bias"} {
			if _, ok := c.Extra[k]; !ok {
				t.Fatalf("%s: key %q not kept (extra: %v)", what, k, slices.Sorted(maps.Keys(c.Extra)))
			}
		}
	}
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	check("PEFT's folder", a)

	out2 := filepath.Join(t.TempDir(), "again")
	if err := Save(out2, a); err != nil {
		t.Fatal(err)
	}
	a2, err := Load(out2)
	if err != nil {
		t.Fatal(err)
	}
	check("written back", a2)
	var raw map[string]json.RawMessage
	wb, _ := os.ReadFile(filepath.Join(out2, ConfigFile))
	if err := json.Unmarshal(wb, &raw); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"init_lora_weights": `"gaussian"`, "bias": `"lora_only"`, "peft_version": `"0.20.0"`,
	} {
		if string(raw[k]) != want {
			t.Errorf("written back %s = %s, want %s", k, raw[k], want)
		}
	}
	var rp peft.Pattern[int]
	if err := json.Unmarshal(raw["rank_pattern"], &rp); err != nil || !slices.Equal(rp, peft.Pattern[int]{{Key: "model.layers.1.self_attn.q_proj", Value: 4}, {Key: "v_proj", Value: 2}}) {
		t.Errorf("written back rank_pattern %s (%v)", raw["rank_pattern"], err)
	}

	// PEFT inits that change the base or start B away from zero are refused by name.
	for _, init := range []string{`false`, `"pissa"`, `"olora"`} {
		b := strings.Replace(peftLoraConfig, `"init_lora_weights": "gaussian"`, `"init_lora_weights": `+init, 1)
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		a, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peft.Inject(PeftConfig(a.Config), nil); err == nil || !strings.Contains(err.Error(), "init_lora_weights=") || !strings.Contains(err.Error(), strings.Trim(init, `"`)) {
			t.Errorf("init_lora_weights %s: %v", init, err)
		}
	}
}
