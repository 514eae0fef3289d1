package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/gguf"
	"github.com/singlora/singlora/gguf/llamacpp"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
	"github.com/singlora/singlora/tokenizer/hftok"
)

// ollamaVersion is the ollama release the ollama parity test runs (tools/ollama/install.sh, run by
// .ci/run, builds exactly this one from the Go module proxy, with llama.cpp's llama-server and
// llama-quantize built from node-llama-cpp's llama.cpp source).
const ollamaVersion = "v0.33.0"

// ollamaInstall finds tools/ollama/install.sh's install ($SINGLORA_OLLAMA, else
// ~/.cache/singlora/ollama): bin/ollama at ollamaVersion and lib/ollama/llama-server and
// llama-quantize. Without them the test is skipped, except under CI (CI=true), where .ci/run
// installs them and their absence is a failure.
func ollamaInstall(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		msg := why + "; install ollama " + ollamaVersion + " and its llama-server with: tools/llamacpp/install.sh && tools/ollama/install.sh"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := os.Getenv("SINGLORA_OLLAMA")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			missing("no home folder to find ~/.cache/singlora/ollama in")
		}
		dir = filepath.Join(home, ".cache", "singlora", "ollama")
	}
	bin := filepath.Join(dir, "bin", "ollama")
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		missing("ollama is not installed in " + filepath.Dir(bin) + " (" + err.Error() + ")")
	}
	if info.Main.Path != "github.com/ollama/ollama" || info.Main.Version != ollamaVersion {
		missing(fmt.Sprintf("%s is %s %s, not github.com/ollama/ollama %s", bin, info.Main.Path, info.Main.Version, ollamaVersion))
	}
	for _, b := range []string{"llama-server", "llama-quantize"} {
		if _, err := os.Stat(filepath.Join(dir, "lib", "ollama", b)); err != nil {
			missing(b + " is not built in " + filepath.Join(dir, "lib", "ollama"))
		}
	}
	return bin
}

// ollamaServer is a running `ollama serve` on 127.0.0.1 with its own models and home folders.
type ollamaServer struct {
	bin, url, home, models, log string
	env                         []string
	cmd                         *exec.Cmd
}

// startOllama starts `ollama serve` on a free 127.0.0.1 port with cloud features off
// (OLLAMA_NO_CLOUD=1), its models in a temporary folder (OLLAMA_MODELS) and a temporary HOME (its
// key pair), no inherited OLLAMA_* settings, and the runner settings the comparison needs: an F32
// KV cache (as singlora's forward and the llama.cpp test keep it), flash attention off, one model,
// one sequence. It runs in its own process group; cleanup stops that group — ollama's PID and its
// llama-server children — with SIGTERM, then SIGKILL.
func startOllama(t *testing.T, bin string) *ollamaServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	s := &ollamaServer{bin: bin, url: "http://" + host, home: t.TempDir(), models: t.TempDir()}
	s.log = filepath.Join(t.TempDir(), "ollama.log")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "OLLAMA_") && k != "HOME" {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env, "HOME="+s.home, "OLLAMA_HOST="+host, "OLLAMA_MODELS="+s.models, "OLLAMA_NO_CLOUD=1",
		"OLLAMA_KV_CACHE_TYPE=f32", "OLLAMA_FLASH_ATTENTION=0", "OLLAMA_NUM_PARALLEL=1", "OLLAMA_MAX_LOADED_MODELS=1",
		"OLLAMA_CONTEXT_LENGTH=128", "OLLAMA_NOPRUNE=1")
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env, s.cmd.Dir = s.env, s.home
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := s.cmd.Process.Pid // Setpgid: the group is ollama's PID
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // llama-server children that outlived ollama
		<-exited
	})
	deadline := time.Now().Add(90 * time.Second)
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := client.Get(s.url + "/api/version")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("ollama serve (pid %d) exited before it answered: %s", pgid, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ollama serve (pid %d) did not answer on %s within 90 s: %s", pgid, s.url, s.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("ollama serve (pid %d) on %s", pgid, s.url)
	return s
}

func (s *ollamaServer) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 200000 {
		b = b[len(b)-200000:]
	}
	return string(b)
}

// create runs `ollama create name -f Modelfile` with FROM model and, if adapter is not empty,
// ADAPTER adapter (GGUF files), and returns the model layer's blob path from the manifest.
func (s *ollamaServer) create(t *testing.T, name, model, adapter string) (modelBlob, adapterBlob string) {
	t.Helper()
	mf := "FROM " + model + "\n"
	if adapter != "" {
		mf += "ADAPTER " + adapter + "\n"
	}
	path := filepath.Join(t.TempDir(), "Modelfile")
	if err := os.WriteFile(path, []byte(mf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, "create", name, "-f", path)
	cmd.Env, cmd.Dir = s.env, s.home
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ollama create %s (%q): %v\n%s\nserver log: %s", name, mf, err, out, s.logTail())
	}
	b, err := os.ReadFile(filepath.Join(s.models, "manifests", "registry.ollama.ai", "library", name, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ MediaType, Digest string }
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		blob := filepath.Join(s.models, "blobs", strings.Replace(l.Digest, ":", "-", 1))
		switch l.MediaType {
		case "application/vnd.ollama.image.model":
			modelBlob = blob
		case "application/vnd.ollama.image.adapter":
			adapterBlob = blob
		}
	}
	if modelBlob == "" || (adapter != "") != (adapterBlob != "") {
		t.Fatalf("ollama create %s: manifest layers %+v", name, m.Layers)
	}
	return modelBlob, adapterBlob
}

// ollamaStep is one generated token as /api/generate reports it with logprobs.
type ollamaStep struct {
	Token       string  `json:"token"`
	Logprob     float64 `json:"logprob"`
	TopLogprobs []struct {
		Token   string  `json:"token"`
		Logprob float64 `json:"logprob"`
	} `json:"top_logprobs"`
}

type ollamaGenerated struct {
	Response   string       `json:"response"`
	DoneReason string       `json:"done_reason"`
	EvalCount  int          `json:"eval_count"`
	Logprobs   []ollamaStep `json:"logprobs"`
}

// generate asks /api/generate for n greedy tokens after the raw prompt (no template): temperature
// 0 and top_k 1, every other sampler and penalty neutral, a fixed seed, one thread, and the top 2
// log-probabilities of every step (the generated tokens and their margins).
func (s *ollamaServer) generate(t *testing.T, model, prompt string, n int) ollamaGenerated {
	t.Helper()
	req, _ := json.Marshal(map[string]any{
		"model": model, "prompt": prompt, "raw": true, "stream": false, "logprobs": true, "top_logprobs": 2,
		"options": map[string]any{"temperature": 0, "top_k": 1, "top_p": 1, "min_p": 0, "typical_p": 1,
			"repeat_penalty": 1, "repeat_last_n": 0, "presence_penalty": 0, "frequency_penalty": 0,
			"seed": 0, "num_predict": n, "num_ctx": 128, "num_thread": 1},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/api/generate", bytes.NewReader(req))
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatalf("ollama generate %s: %v\nserver log: %s", model, err, s.logTail())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ollama generate %s: %s %s\nserver log: %s", model, resp.Status, body, s.logTail())
	}
	var g ollamaGenerated
	if err := json.Unmarshal(body, &g); err != nil {
		t.Fatalf("ollama generate %s answered %s: %v", model, body, err)
	}
	return g
}

// pieceIDs maps the text of each token the test model can generate (printable ASCII bytes and
// merges) to its id.
func pieceIDs(t *testing.T, tok *hftok.Tokenizer) map[string]int {
	t.Helper()
	byteOf := map[rune]byte{}
	for b, s := range byteAlphabet() {
		byteOf[[]rune(s)[0]] = byte(b)
	}
	out := map[string]int{}
	for _, id := range generatable(tok) {
		s, ok := tok.Token(id)
		if !ok {
			t.Fatalf("no token %d", id)
		}
		var piece []byte
		for _, r := range s {
			piece = append(piece, byteOf[r])
		}
		if _, dup := out[string(piece)]; dup {
			t.Fatalf("two tokens read %q", piece)
		}
		out[string(piece)] = id
	}
	return out
}

// generatable lists the ids of writeByteBPE's tokens whose text is printable ASCII: the bytes
// 0x20–0x7E (id = byte + 1) and the merges. The test model's LM head gives every other id (the
// special token, control and non-ASCII bytes, vocab padding) a zero row, so greedy decoding only
// picks tokens whose text ollama's API reports exactly (it carries token text, not ids, and
// replaces invalid UTF-8).
func generatable(tok *hftok.Tokenizer) []int {
	var ids []int
	for b := 0x20; b <= 0x7E; b++ {
		ids = append(ids, b+1)
	}
	for id := 257; ; id++ {
		if _, ok := tok.Token(id); !ok {
			return ids
		}
		ids = append(ids, id)
	}
}

// roundF16 rounds v to the nearest f16 values.
func roundF16(t *testing.T, v []float64) []float64 {
	t.Helper()
	st, err := safetensors.FromFloat64s("x", "F16", []int{len(v)}, v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ollamaLlama writes ggufLlama's kind of model (2 layers, 4 heads, 2 key-value heads, byte-level
// BPE) for the ollama test: every weight an exact f16 value (written as F32), and the LM head's
// rows zero for the tokens generatable leaves out.
func ollamaLlama(t *testing.T, modelType string, tied bool) (string, *llama.Config) {
	t.Helper()
	dir, _ := ggufLlama(t, modelType, tied)
	st, err := safetensors.Read(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := hftok.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[int]bool{}
	for _, id := range generatable(tok) {
		keep[id] = true
	}
	ck := hftest.New(1)
	for _, tn := range st.Tensors {
		v, err := tn.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		v = roundF16(t, v)
		if head := map[bool]string{false: "lm_head.weight", true: "model.embed_tokens.weight"}[tied]; tn.Name == head {
			d := tn.Shape[1]
			for id := 0; id < tn.Shape[0]; id++ {
				if !keep[id] {
					clear(v[id*d : (id+1)*d])
				}
			}
		}
		ck.Set(tn.Name, v, tn.Shape...)
	}
	var cfg map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := ck.Write(dir, cfg, "F32", 1); err != nil {
		t.Fatal(err)
	}
	c, err := llama.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, c
}

// writeF16Adapter is writeAdapter with every tensor rounded to f16.
func writeF16Adapter(t *testing.T, c *llama.Config, m peft.Method, r int, alpha float64, seed uint64) string {
	t.Helper()
	dir := writeAdapter(t, c, m, r, alpha, seed)
	a, err := adapterio.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range a.Modules {
		for _, mat := range mod.Tensors {
			v := make([]float64, len(mat.Data))
			for i, x := range mat.Data {
				v[i] = float64(x)
			}
			for i, x := range roundF16(t, v) {
				mat.Data[i] = float32(x)
			}
		}
	}
	if err := adapterio.Save(dir, a); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sameTensors checks that ollama's stored blob holds the exported GGUF's tensors unchanged
// (names, types, shapes, bytes): `ollama create` rewrote nothing, f16 included.
func sameTensors(t *testing.T, exported, blob string) {
	t.Helper()
	a, err := gguf.Read(exported)
	if err != nil {
		t.Fatal(err)
	}
	b, err := gguf.Read(blob)
	if err != nil {
		t.Fatalf("ollama's blob of %s: %v", filepath.Base(exported), err)
	}
	if len(a.Tensors) != len(b.Tensors) {
		t.Errorf("%s: ollama stores %d tensors, the export has %d", filepath.Base(exported), len(b.Tensors), len(a.Tensors))
		return
	}
	for _, x := range a.Tensors {
		y := b.Tensor(x.Name)
		if y == nil || y.Type != x.Type || !slices.Equal(y.Dims, x.Dims) || !bytes.Equal(y.Data, x.Data) {
			t.Errorf("%s: ollama stores tensor %s differently (%v)", filepath.Base(exported), x.Name, y != nil)
		}
	}
}

// misPermuted writes a copy of the adapter GGUF adGGUF whose attn_q and attn_k lora_b rows are
// permuted a second time (a q/k permutation done wrong), for the control that the comparison sees
// a wrongly ordered adapter.
func misPermuted(t *testing.T, adGGUF string, c *llama.Config) string {
	t.Helper()
	f, err := gguf.Read(adGGUF)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range f.Tensors {
		tn := &f.Tensors[i]
		heads := 0
		switch {
		case strings.HasSuffix(tn.Name, ".attn_q.weight.lora_b"):
			heads = c.Heads
		case strings.HasSuffix(tn.Name, ".attn_k.weight.lora_b"):
			heads = c.KVHeads
		default:
			continue
		}
		vals, err := gguf.Decode(tn.Type, tn.Data)
		if err != nil {
			t.Fatal(err)
		}
		if vals, err = llamacpp.PermuteRows(vals, int(tn.Dims[1]), int(tn.Dims[0]), heads); err != nil {
			t.Fatal(err)
		}
		if tn.Data, err = gguf.Encode(tn.Type, vals); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2*c.Layers {
		t.Fatalf("%s: %d attn_q/attn_k lora_b tensors, want %d", adGGUF, n, 2*c.Layers)
	}
	path := filepath.Join(t.TempDir(), "mispermuted.gguf")
	if err := gguf.WriteFile(path, f.KVs, f.Tensors); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestGGUFServedByOllama is the second runtime proof of the GGUF export: ollama (v0.33.0, which
// serves GGUF through llama.cpp's llama-server) generates the greedy tokens `singlora generate` and
// llama.cpp (node-llama-cpp) generate, for a tiny GQA Llama with a byte-level BPE tokenizer and
// f16-exact weights: the base (`FROM base.gguf`), the base with a SingLoRA and with a LoRA adapter
// GGUF on all seven projections (`ADAPTER adapter.gguf`), and each merged model GGUF.
func TestGGUFServedByOllama(t *testing.T) {
	node, pkg := llamaCpp(t)
	bin := ollamaInstall(t)
	srv := startOllama(t, bin)
	for _, tc := range []struct {
		modelType string
		tied      bool
	}{{"llama", false}, {"llama", true}, {"qwen2", true}} {
		t.Run(fmt.Sprintf("%s tied=%v", tc.modelType, tc.tied), func(t *testing.T) {
			dir, c := ollamaLlama(t, tc.modelType, tc.tied)
			tok, err := hftok.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			ids := pieceIDs(t, tok)
			out := t.TempDir()
			const n = 12
			texts := []string{"hello world", "the world hello", "Hi, there!"}
			prompts := make([][]int, len(texts))
			for i, s := range texts {
				prompts[i] = tok.Encode(s)
			}
			export := func(args ...string) string {
				t.Helper()
				if _, err := captureStdout(t, func() error { return runExport(append([]string{"--format", "gguf"}, args...), os.Stdout) }); err != nil {
					t.Fatalf("export %v: %v", args, err)
				}
				return args[len(args)-1]
			}
			// compare runs ollama on name for every prompt and checks its tokens (read back from the
			// token texts it reports) and text against singlora's and llama.cpp's.
			compare := func(what, name string, want [][]int, lc llamaCppResult) {
				t.Helper()
				for i, text := range texts {
					g := srv.generate(t, name, text, n)
					var got []int
					minMargin := 1e9
					for _, st := range g.Logprobs {
						id, ok := ids[st.Token]
						if !ok {
							id = -1
						}
						got = append(got, id)
						if len(st.TopLogprobs) >= 2 && st.TopLogprobs[0].Token == st.Token {
							minMargin = min(minMargin, st.TopLogprobs[0].Logprob-st.TopLogprobs[1].Logprob)
						} else {
							t.Errorf("%s, %q: step %q is not the top of %+v", what, text, st.Token, st.TopLogprobs)
						}
					}
					wantText := tok.Decode(want[i])
					switch {
					case !slices.Equal(got, want[i]) || g.Response != wantText:
						t.Errorf("%s, %q: ollama %v %q, singlora %v %q", what, text, got, g.Response, want[i], wantText)
					case !slices.Equal(lc.Outputs[i], want[i]):
						t.Errorf("%s, %q: llama.cpp %v, singlora = ollama = %v", what, text, lc.Outputs[i], want[i])
					case minMargin < 1e-3:
						t.Errorf("%s, %q: a greedy step's top-1/top-2 log-probability margin is %.2g: too close to compare runtimes", what, text, minMargin)
					default:
						t.Logf("%s, %q: ollama = llama.cpp = singlora = %v %q (eval_count %d, min top-1/top-2 margin %.3f nats)",
							what, text, got, g.Response, g.EvalCount, minMargin)
					}
				}
			}
			baseGGUF := export("--model", dir, "--dtype", "f32", "--out", filepath.Join(out, "base.gguf"))
			name := "singlora-" + tc.modelType
			if tc.tied {
				name += "-tied"
			}
			blob, _ := srv.create(t, name+"-base", baseGGUF, "")
			sameTensors(t, baseGGUF, blob)
			want := make([][]int, len(prompts))
			for i, p := range prompts {
				want[i] = singloraGenerate(t, dir, "", p, n)
			}
			compare("base", name+"-base", want, runLlamaCpp(t, node, pkg, baseGGUF, "", prompts, n, nil))
			for _, m := range []peft.Method{peft.SingLoRA, peft.LoRA} {
				ad := writeF16Adapter(t, c, m, 4, 8, 5)
				adGGUF := export("--adapter", ad, "--base", dir, "--out", filepath.Join(out, string(m)+".gguf"))
				merged := export("--model", dir, "--adapter", ad, "--merge", "--dtype", "f32", "--out", filepath.Join(out, string(m)+"-merged.gguf"))
				wantAd := make([][]int, len(prompts))
				changed := false
				for i, p := range prompts {
					wantAd[i] = singloraGenerate(t, dir, ad, p, n)
					changed = changed || !slices.Equal(wantAd[i], want[i])
				}
				if !changed {
					t.Errorf("the %s adapter changes none of the generations: the comparison would not see an adapter ollama ignored", m)
				}
				mb, ab := srv.create(t, name+"-"+strings.ToLower(string(m)), baseGGUF, adGGUF)
				sameTensors(t, baseGGUF, mb)
				sameTensors(t, adGGUF, ab)
				compare(string(m)+" adapter", name+"-"+strings.ToLower(string(m)), wantAd, runLlamaCpp(t, node, pkg, baseGGUF, adGGUF, prompts, n, nil))
				if tc.modelType == "llama" && m == peft.SingLoRA {
					// Control: the same adapter with its q/k rows in the wrong order generates
					// other tokens in ollama, so the agreement above depends on the permutation.
					srv.create(t, name+"-mispermuted", baseGGUF, misPermuted(t, adGGUF, c))
					differs := false
					for i, text := range texts {
						g := srv.generate(t, name+"-mispermuted", text, n)
						differs = differs || g.Response != tok.Decode(wantAd[i])
					}
					if !differs {
						t.Errorf("a mispermuted %s adapter generates the same tokens in ollama: the comparison does not see the q/k order", m)
					} else {
						t.Logf("control: the %s adapter with its q/k lora_b rows mispermuted generates other text in ollama", m)
					}
				}
				blob, _ := srv.create(t, name+"-"+strings.ToLower(string(m))+"-merged", merged, "")
				sameTensors(t, merged, blob)
				compare(string(m)+" merged", name+"-"+strings.ToLower(string(m))+"-merged", wantAd, runLlamaCpp(t, node, pkg, merged, "", prompts, n, nil))
			}
		})
	}
	// How ollama ran llama.cpp (the flags it chose: --lora, the F32 cache, one thread, …).
	for _, line := range strings.Split(srv.logTail(), "\n") {
		if strings.Contains(line, "starting llama-server") {
			t.Log(line)
		}
	}
}
