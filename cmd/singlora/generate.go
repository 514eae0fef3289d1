package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/internal/memtune"
	"github.com/singlora/singlora/models"
	_ "github.com/singlora/singlora/models/all" // the model packages register themselves
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/tokenizer/hftok"
)

func init() {
	register(&command{
		Name:    "generate",
		Summary: "generate text with a Llama-family or GPT-2 checkpoint folder, optionally with an adapter",
		Usage: `singlora generate --model ./tiny-llama --prompt "Once upon a time" --max-new-tokens 32
singlora generate --model ./tiny-llama --adapter ./adapter --prompt "Q: 2+2?" --temperature 0.8 --top-k 40 --seed 1
singlora generate --model ./tiny-llama --adapter math=runs/a/adapter --adapter chat=runs/b/adapter --active math,chat,none --prompt "Q: 2+2?"`,
		Run: runGenerate,
	})
}

func runGenerate(args []string) error {
	fs := newFlags("generate")
	dir := fs.String("model", "", "Hugging Face model folder (config.json, model.safetensors or sharded + index, tokenizer.json) of a causal LM: model_type "+
		strings.Join(models.ModelTypes(models.CausalLM), ", "))
	adapters := newListFlag()
	fs.Var(adapters, "adapter", "adapter `[NAME=]DIR` (adapter_config.json + adapter_model.safetensors) to apply; repeat it to load several\n"+
		"onto the one base (named NAME, or after the folder), and choose with --active")
	active := newListFlag()
	fs.Var(active, "active", "with several --adapter: the `NAME`s to generate with, in turn, from the one loaded base (\"none\": the\n"+
		"base alone; \"all\": every adapter); each output line starts with the name")
	prompt := fs.String("prompt", "", "prompt text (needs tokenizer.json in the model folder)")
	promptIDs := fs.String("prompt-ids", "", "prompt as comma-separated token ids, instead of --prompt")
	maxNew := fs.Int("max-new-tokens", 32, "maximum number of tokens to generate")
	temp := fs.Float64("temperature", 0, "sampling temperature; 0 = greedy")
	topK := fs.Int("top-k", 0, "sample among the k most likely tokens (0 = all)")
	seed := fs.Uint64("seed", 0, "the sampling `seed`")
	baseDType := fs.String("base-dtype", "auto", "how the base matrices are held: auto (the checkpoint's bf16/f16, else f32), bf16, f16 or f32")
	single(fs, "seed", "seed", "run generate once per seed to compare samples")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--model is required")
	}
	if (*prompt == "") == (*promptIDs == "") {
		return fmt.Errorf("give exactly one of --prompt and --prompt-ids")
	}
	if *maxNew < 1 {
		return fmt.Errorf("--max-new-tokens %d: must be ≥ 1", *maxNew)
	}
	if math.IsNaN(*temp) || math.IsInf(*temp, 0) || *temp < 0 {
		return fmt.Errorf("--temperature %v: must be a finite number ≥ 0 (0: greedy; 1: the model's distribution)", *temp)
	}
	if *topK < 0 {
		return fmt.Errorf("--top-k %d: must be ≥ 0 (0: sample among all tokens)", *topK)
	}
	set, actives, err := planAdapters(adapters.values, active.values)
	if err != nil {
		return err
	}
	base, err := hf.ParseBaseDType(*baseDType)
	if err != nil {
		return fmt.Errorf("--base-dtype: %w", err)
	}
	arch, err := models.Resolve(*dir)
	if err != nil {
		return err
	}
	if !arch.Supports(models.CausalLM) {
		return fmt.Errorf("%s: %s is not a causal LM: generate needs one of %s", *dir, arch, strings.Join(models.ModelTypes(models.CausalLM), ", "))
	}

	var tok *hftok.Tokenizer
	var ids []int
	if *promptIDs != "" {
		for _, f := range strings.Split(*promptIDs, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("--prompt-ids: %w", err)
			}
			ids = append(ids, id)
		}
	} else {
		if tok, err = arch.LoadTokenizer(*dir); err != nil {
			return err
		}
		ids = tok.EncodeWithSpecial(*prompt)
	}
	if len(ids) == 0 {
		return fmt.Errorf("the prompt has no tokens")
	}

	be, err := backend.Get()
	if err != nil {
		return err
	}
	store := model.NewStore()
	cm, err := arch.LoadCausalLM(*dir, store, models.LoadOptions{BaseDType: base})
	if err != nil {
		return err
	}
	memtune.AfterLoad()
	limit, key := cm.MaxPositions()
	if err := checkPositions(len(ids), *maxNew, limit, key); err != nil {
		return err
	}
	eos := cm.EOS()
	adapterSet := adapterio.NewSet(store, cm.Linears())
	for _, a := range set {
		if err := adapterSet.Add(a.name, a.dir); err != nil {
			return err
		}
	}
	for _, name := range actives {
		inj, err := adapterSet.Activate(name)
		if err != nil {
			return err
		}
		gen, err := cm.NewGenerator(be, store, inj, len(ids)+*maxNew)
		if err != nil {
			return err
		}
		out, err := gen.Generate(ids, *maxNew, lm.SampleOptions{Temperature: *temp, TopK: *topK, Seed: *seed}, eos)
		if err != nil {
			return err
		}
		prefix := ""
		if len(actives) > 1 {
			prefix = map[bool]string{true: "none", false: name}[name == ""] + "\t"
		}
		if tok == nil {
			strs := make([]string, len(out))
			for i, id := range out {
				strs[i] = strconv.Itoa(id)
			}
			fmt.Println(prefix + strings.Join(strs, ","))
			continue
		}
		if len(out) > 0 && out[len(out)-1] == eos {
			out = out[:len(out)-1]
		}
		fmt.Fprint(os.Stdout, prefix+tok.Decode(out), "\n")
	}
	return nil
}

// namedAdapter is one --adapter of generate.
type namedAdapter struct{ name, dir string }

// planAdapters resolves generate's --adapter values ([NAME=]DIR) and --active names into the
// adapters to load and the adapter names to generate with in turn ("" = the base alone). With
// no --active: the one adapter, or none; several adapters need --active.
func planAdapters(values, active []string) ([]namedAdapter, []string, error) {
	var set []namedAdapter
	seen := map[string]string{}
	for _, v := range values {
		name, dir := adapterio.ParseNamed(v)
		if name == "none" || name == "all" {
			return nil, nil, fmt.Errorf("--adapter %s: %q is reserved for --active; name it another way (NAME=DIR)", v, name)
		}
		if d, dup := seen[name]; dup {
			return nil, nil, fmt.Errorf("--adapter: two adapters named %q (%s and %s); name them NAME=DIR", name, d, dir)
		}
		seen[name] = dir
		set = append(set, namedAdapter{name, dir})
	}
	names := make([]string, len(set))
	for i, a := range set {
		names[i] = a.name
	}
	switch {
	case len(active) == 0 && len(set) <= 1:
		if len(set) == 1 {
			return set, []string{set[0].name}, nil
		}
		return nil, []string{""}, nil
	case len(active) == 0:
		return nil, nil, fmt.Errorf("%d adapters loaded (%s): choose with --active NAME (several: --active a,b; \"none\": the base; \"all\")", len(set), strings.Join(names, ", "))
	}
	var out []string
	for _, a := range active {
		switch {
		case a == "none":
			out = append(out, "")
		case a == "all":
			out = append(out, names...)
		case seen[a] != "":
			out = append(out, a)
		default:
			return nil, nil, fmt.Errorf("--active %s: no --adapter of that name (loaded: %s; or none, all)", a, strings.Join(names, ", "))
		}
	}
	return set, out, nil
}

// checkPositions checks that a prompt of promptLen tokens plus maxNew new ones fits in the
// model's limit positions (its config.json key, for the message).
func checkPositions(promptLen, maxNew, limit int, key string) error {
	switch {
	case limit < 1:
		return fmt.Errorf("the model's %s is %d: want ≥ 1", key, limit)
	case promptLen >= limit:
		return fmt.Errorf("the prompt has %d tokens, but the model reads at most %d (%s), and at least one must be left for --max-new-tokens: shorten the prompt",
			promptLen, limit, key)
	case promptLen+maxNew > limit:
		return fmt.Errorf("the prompt has %d tokens and --max-new-tokens is %d: %d positions, more than the model's %d (%s); lower --max-new-tokens to at most %d or shorten the prompt",
			promptLen, maxNew, promptLen+maxNew, limit, key, limit-promptLen)
	}
	return nil
}
