package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/gguf"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/tokenizer/hftok"
)

// nodeLlamaCppVersion is the node-llama-cpp release the llama.cpp parity test runs (.ci/run
// installs exactly this one, with its prebuilt linux-x64 CPU binary package).
const nodeLlamaCppVersion = "3.22.1"

// byteAlphabet is GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others map
// to U+0100 onwards.
func byteAlphabet() []string {
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	out := make([]string, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if printable(b) {
			out[b] = string(rune(b))
		} else {
			out[b] = string(rune(256 + n))
			n++
		}
	}
	return out
}

// writeByteBPE writes a GPT-2-style byte-level BPE tokenizer.json into dir: <|endoftext|> (id 0),
// the 256 byte symbols, and the tokens of a few merges; it returns the number of tokens.
func writeByteBPE(t *testing.T, dir string) int {
	t.Helper()
	vocab := map[string]int{"<|endoftext|>": 0}
	for _, s := range byteAlphabet() {
		vocab[s] = len(vocab)
	}
	merges := []string{"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "Ġwo r", "Ġwor l", "Ġworl d", "Ġ t", "Ġt he"}
	for _, m := range merges {
		a, b, _ := strings.Cut(m, " ")
		vocab[a+b] = len(vocab)
	}
	tj := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens":   []any{map[string]any{"id": 0, "content": "<|endoftext|>", "special": true}},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "vocab": vocab, "merges": merges},
	}
	b, err := json.Marshal(tj)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return len(vocab)
}

// ggufLlama writes a random 2-layer Llama-family model of modelType (llama, or qwen2 with its q/k/v
// biases) with grouped-query attention (4 heads, 2 key-value heads, head_dim 16) and a byte-level
// BPE tokenizer (vocab padded past the tokenizer's tokens), untied LM head unless tied; it returns
// the folder and its config.
func ggufLlama(t *testing.T, modelType string, tied bool) (string, *llama.Config) {
	t.Helper()
	const d, inter, layers, heads, kvh, v = 64, 96, 2, 4, 2, 280
	hd := d / heads
	std := 4.0 // per 1/in: a tied head's logits favour the last token unless the layers are loud
	if tied {
		std = 12
	}
	ck := hftest.New(21)
	ck.Rand("model.embed_tokens.weight", 0, 1, v, d)
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		for _, l := range []struct {
			n       string
			in, out int
		}{{"self_attn.q_proj", d, heads * hd}, {"self_attn.k_proj", d, kvh * hd}, {"self_attn.v_proj", d, kvh * hd},
			{"self_attn.o_proj", heads * hd, d}, {"mlp.gate_proj", d, inter}, {"mlp.up_proj", d, inter}, {"mlp.down_proj", inter, d}} {
			ck.Rand(p+l.n+".weight", 0, std/float64(l.in), l.out, l.in)
			if modelType == "qwen2" && slices.Contains([]string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, l.n) {
				ck.Rand(p+l.n+".bias", 0, 0.5, l.out)
			}
		}
		ck.Rand(p+"input_layernorm.weight", 1, 0.1, d)
		ck.Rand(p+"post_attention_layernorm.weight", 1, 0.1, d)
	}
	ck.Rand("model.norm.weight", 1, 0.1, d)
	if !tied {
		ck.Rand("lm_head.weight", 0, 0.5, v, d)
	}
	archs := map[string]string{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
	cfg := map[string]any{"model_type": modelType, "architectures": []string{archs[modelType]}, "vocab_size": v,
		"hidden_size": d, "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
		"num_key_value_heads": kvh, "tie_word_embeddings": tied, "bos_token_id": 0, "eos_token_id": 0,
		"hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128}
	dir := t.TempDir()
	if err := ck.Write(dir, cfg, "F32", 1); err != nil {
		t.Fatal(err)
	}
	if n := writeByteBPE(t, dir); n > v {
		t.Fatalf("tokenizer has %d tokens, more than vocab_size %d", n, v)
	}
	c, err := llama.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, c
}

// writeAdapter saves a random adapter of method m (SingLoRA or LoRA) on all seven projections of
// every layer of c, with rank r and alpha; a SingLoRA adapter is mid-ramp (u = 0.5).
func writeAdapter(t *testing.T, c *llama.Config, m peft.Method, r int, alpha float64, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	cfg := &adapterio.Config{BaseModel: "test/llama", Extra: map[string]json.RawMessage{}}
	cfg.R, cfg.LoraAlpha = r, alpha
	cfg.TargetModules = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	if m == peft.SingLoRA {
		cfg.PeftType, cfg.RampUpSteps, cfg.TrainedSteps, cfg.Init = adapterio.TypeSingLoRA, 10, 5, string(peft.InitTheory)
	} else {
		cfg.PeftType, cfg.Bias = adapterio.TypeLoRA, "none"
	}
	a := &adapterio.Adapter{Config: cfg}
	for _, s := range llama.Linears(c) {
		mod := &adapterio.Module{Path: s.Path, In: s.In, Out: s.Out, Layout: s.Layout, Tensors: map[string]*adapterio.Matrix{}}
		for _, at := range peft.AdapterTensors(m, s, r) {
			n := 1
			for _, d := range at.Shape {
				n *= d
			}
			vals := make([]float32, n)
			for i := range vals {
				vals[i] = float32(rng.NormFloat64() * 0.25)
			}
			mod.Tensors[at.Name] = &adapterio.Matrix{Shape: at.Shape, Data: vals}
		}
		a.Modules = append(a.Modules, mod)
	}
	dir := filepath.Join(t.TempDir(), string(m))
	if err := adapterio.Save(dir, a); err != nil {
		t.Fatal(err)
	}
	return dir
}

// singloraGenerate runs `singlora generate --prompt-ids` and returns the token ids it printed.
func singloraGenerate(t *testing.T, dir, adapter string, prompt []int, n int) []int {
	t.Helper()
	args := []string{"--model", dir, "--prompt-ids", joinInts(prompt), "--max-new-tokens", strconv.Itoa(n)}
	if adapter != "" {
		args = append(args, "--adapter", adapter)
	}
	out, err := captureStdout(t, func() error { return runGenerate(args) })
	if err != nil {
		t.Fatalf("generate %v: %v", args, err)
	}
	var ids []int
	for _, s := range strings.Split(out, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("generate printed %q", out)
		}
		ids = append(ids, id)
	}
	return ids
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// llamaCpp finds node and the node-llama-cpp install ($SINGLORA_NODE_LLAMA_CPP, else
// ~/.cache/singlora/node-llama-cpp). Without them the test is skipped, except under CI (CI=true),
// where .ci/run installs them and their absence is a failure.
func llamaCpp(t *testing.T) (node, pkg string) {
	t.Helper()
	missing := func(why string) {
		msg := why + fmt.Sprintf("; install llama.cpp's runtime with: mkdir -p ~/.cache/singlora/node-llama-cpp && cd ~/.cache/singlora/node-llama-cpp && npm install --ignore-scripts --omit=optional node-llama-cpp@%[1]s @node-llama-cpp/linux-x64@%[1]s", nodeLlamaCppVersion)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	pkg = os.Getenv("SINGLORA_NODE_LLAMA_CPP")
	if pkg == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			missing("no home folder to find ~/.cache/singlora/node-llama-cpp in")
		}
		pkg = filepath.Join(home, ".cache", "singlora", "node-llama-cpp")
	}
	b, err := os.ReadFile(filepath.Join(pkg, "node_modules", "node-llama-cpp", "package.json"))
	if err != nil {
		missing("node-llama-cpp is not installed in " + pkg)
	}
	var p struct{ Version string }
	if json.Unmarshal(b, &p) != nil || p.Version != nodeLlamaCppVersion {
		missing(fmt.Sprintf("%s holds node-llama-cpp %q, not %s", pkg, p.Version, nodeLlamaCppVersion))
	}
	return node, pkg
}

// llamaCppResult is tools/llamacpp/generate.mjs's output.
type llamaCppResult struct {
	Outputs [][]int `json:"outputs"`
	Tokens  [][]int `json:"tokens"`
}

// runLlamaCpp runs greedy decoding in llama.cpp through tools/llamacpp/generate.mjs; the node
// process is killed by its PID if it outlives the call (timeout or test end).
func runLlamaCpp(t *testing.T, node, pkg, model, lora string, prompts [][]int, n int, texts []string) llamaCppResult {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"model": model, "lora": lora, "prompts": prompts, "n": n, "texts": texts})
	reqPath := filepath.Join(t.TempDir(), "request.json")
	if err := os.WriteFile(reqPath, req, 0o644); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "tools", "llamacpp", "generate.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, reqPath)
	cmd.Env = append(os.Environ(), "SINGLORA_NODE_LLAMA_CPP="+pkg, "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true",
		"NODE_LLAMA_CPP_GPU=false", "NODE_LLAMA_CPP_LOG_LEVEL=error")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil && cmd.ProcessState == nil {
			_ = p.Kill()
		}
	})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("llama.cpp (node %s, pid %d): %v\nstderr: %s\nstdout: %s", script, pid, err, stderr.String(), stdout.String())
	}
	var res llamaCppResult
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("llama.cpp printed %q: %v (stderr %s)", stdout.String(), err, stderr.String())
	}
	if len(res.Outputs) != len(prompts) {
		t.Fatalf("llama.cpp answered %d prompts of %d", len(res.Outputs), len(prompts))
	}
	return res
}

// TestGGUFServedByLlamaCpp is the runtime proof of the GGUF export: a tiny GQA Llama with a
// byte-level BPE tokenizer and a SingLoRA (and a LoRA) adapter on all seven projections, exported
// as a base GGUF, adapter GGUFs and a merged whole-model GGUF, generate in llama.cpp exactly the
// greedy tokens `singlora generate` generates — base, with each adapter, and merged — and
// llama.cpp tokenizes text as the tokenizer.json does.
func TestGGUFServedByLlamaCpp(t *testing.T) {
	node, pkg := llamaCpp(t)
	for _, tc := range []struct {
		modelType string
		tied      bool
	}{{"llama", false}, {"llama", true}, {"qwen2", true}} {
		t.Run(fmt.Sprintf("%s tied=%v", tc.modelType, tc.tied), func(t *testing.T) {
			dir, c := ggufLlama(t, tc.modelType, tc.tied)
			out := t.TempDir()
			const n = 12
			prompts := [][]int{{72, 101, 108}, {5, 200, 33, 90, 17}, {270}}
			export := func(args ...string) string {
				t.Helper()
				path := args[len(args)-1]
				msg, err := captureStdout(t, func() error { return runExport(append([]string{"--format", "gguf"}, args...), os.Stdout) })
				if err != nil {
					t.Fatalf("export %v: %v", args, err)
				}
				t.Log(msg)
				return path
			}
			baseGGUF := export("--model", dir, "--dtype", "f32", "--out", filepath.Join(out, "base.gguf"))
			texts := []string{"hello world", "the world hello", "Hi, there!"}
			base := runLlamaCpp(t, node, pkg, baseGGUF, "", prompts, n, texts)
			tok, err := hftok.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			for i, text := range texts {
				if want := tok.Encode(text); !slices.Equal(base.Tokens[i], want) {
					t.Errorf("llama.cpp tokenizes %q as %v, tokenizer.json as %v", text, base.Tokens[i], want)
				}
			}
			want := make([][]int, len(prompts))
			for i, p := range prompts {
				want[i] = singloraGenerate(t, dir, "", p, n)
				if !slices.Equal(base.Outputs[i], want[i]) {
					t.Errorf("base, prompt %v: llama.cpp %v, singlora %v", p, base.Outputs[i], want[i])
				} else {
					t.Logf("base, prompt %v: llama.cpp = singlora = %v", p, want[i])
				}
			}
			for _, m := range []peft.Method{peft.SingLoRA, peft.LoRA} {
				ad := writeAdapter(t, c, m, 4, 8, 5)
				adGGUF := export("--adapter", ad, "--base", dir, "--out", filepath.Join(out, string(m)+".gguf"))
				merged := export("--model", dir, "--adapter", ad, "--merge", "--dtype", "f32", "--out", filepath.Join(out, string(m)+"-merged.gguf"))
				withLoRA := runLlamaCpp(t, node, pkg, baseGGUF, adGGUF, prompts, n, nil)
				withMerged := runLlamaCpp(t, node, pkg, merged, "", prompts, n, nil)
				changed := false
				for i, p := range prompts {
					w := singloraGenerate(t, dir, ad, p, n)
					changed = changed || !slices.Equal(w, want[i])
					if !slices.Equal(withLoRA.Outputs[i], w) {
						t.Errorf("%s adapter, prompt %v: llama.cpp %v, singlora %v", m, p, withLoRA.Outputs[i], w)
					}
					if !slices.Equal(withMerged.Outputs[i], w) {
						t.Errorf("%s merged, prompt %v: llama.cpp %v, singlora %v", m, p, withMerged.Outputs[i], w)
					}
					if slices.Equal(withLoRA.Outputs[i], w) && slices.Equal(withMerged.Outputs[i], w) {
						t.Logf("%s adapter and merged, prompt %v: llama.cpp = singlora = %v", m, p, w)
					}
				}
				if !changed {
					t.Errorf("the %s adapter changes none of the generations: the comparison would not see an adapter llama.cpp ignored", m)
				}
			}
		})
	}
}

// TestExportGGUFRefuses: the export's flag and input errors name the culprit.
func TestExportGGUFRefuses(t *testing.T) {
	dir, c := ggufLlama(t, "llama", true)
	out := t.TempDir()
	sing := writeAdapter(t, c, peft.SingLoRA, 4, 8, 1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--adapter", sing, "--out", filepath.Join(out, "a.gguf")}, "--base HF_DIR is required"},
		{[]string{"--adapter", sing, "--base", dir, "--out", filepath.Join(out, "a.bin")}, "ending in .gguf"},
		{[]string{"--adapter", sing, "--base", dir}, "--out is required"},
		{[]string{"--model", dir, "--adapter", sing, "--out", filepath.Join(out, "m.gguf")}, "add --merge"},
		{[]string{"--model", dir, "--merge", "--out", filepath.Join(out, "m.gguf")}, "--merge needs --adapter"},
		{[]string{"--model", dir, "--base", dir, "--out", filepath.Join(out, "m.gguf")}, "--model and --base together"},
		{[]string{"--model", dir, "--dtype", "q4_0", "--out", filepath.Join(out, "m.gguf")}, `--dtype "q4_0": want f32, f16 or bf16`},
		{[]string{"--out", filepath.Join(out, "m.gguf")}, "needs --adapter DIR --base HF_DIR"},
		{[]string{"--model", withConfig(t, dir, "model_type", "qwen3"), "--out", filepath.Join(out, "m.gguf")}, "qwen3"},
		{[]string{"--adapter", sing, "--base", dir, "--out", filepath.Join(out, "no", "a.gguf")}, "does not exist"},
	} {
		_, err := captureStdout(t, func() error { return runExport(append([]string{"--format", "gguf"}, tc.args...), os.Stdout) })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("refused exports left %d files in the output folder", len(ents))
	}
	// A written adapter GGUF reads back with the adapter keys.
	path := filepath.Join(out, "ok.gguf")
	if _, err := captureStdout(t, func() error {
		return runExport([]string{"--format", "gguf", "--adapter", sing, "--base", dir, "--out", path}, os.Stdout)
	}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Get("general.type") != "adapter" || f.Get("adapter.type") != "lora" || f.Get("general.architecture") != "llama" {
		t.Errorf("adapter keys: %v", f.KVs)
	}
	if len(f.Tensors) != 2*len(llama.Linears(c)) {
		t.Errorf("%d tensors, want lora_a and lora_b for %d modules", len(f.Tensors), len(llama.Linears(c)))
	}
}
