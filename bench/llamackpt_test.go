package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/safetensors"
)

// tinyPreset is a Llama preset with llama-1b's structure (GQA) at a size a test can train.
func tinyPreset(tied bool) LlamaPreset {
	return LlamaPreset{
		LlamaShape: LlamaShape{Name: "llama-test", Vocab: 40, Hidden: 16, Heads: 4, KVHeads: 2, FFN: 24, Layers: 2, Seq: 8, Batch: 2, Rank: 4, Alpha: 4},
		Tied:       tied, MaxPositions: 64, RMSNormEps: 1e-5, RopeTheta: 500000, BOS: 1, EOS: 2, Warmup: 1, Steps: 1,
	}
}

func quiet(string, ...any) {}

// TestLlamaCheckpoint: the checkpoint is a sharded Hugging Face folder (config.json, shards of at
// most ShardBytes tensor bytes named model-0000N-of-0000M, an index listing every tensor with the
// total size) that loads through the registry (models.Resolve, LoadCausalLM) with the dtypes
// --base-dtype auto gives (matrices in the written 16-bit dtype, norms float32) and the config's
// shapes; norms are 1 and matrices N(0, 0.02²); the bytes are the same on every write; a second
// call reuses the folder without rewriting it; a killed writer's stale temporary is removed and a
// live one kept; nothing temporary remains.
func TestLlamaCheckpoint(t *testing.T) {
	defer func(n int64) { ShardBytes = n }(ShardBytes)
	ShardBytes = 6000
	for _, tc := range []struct {
		dtype string
		tied  bool
		held  dtypes.DType
	}{{safetensors.BF16, true, dtypes.BFloat16}, {safetensors.F16, false, dtypes.Float16}, {safetensors.F32, true, dtypes.Float32}} {
		p := tinyPreset(tc.tied)
		c := p.Config()
		root := t.TempDir()
		dir, wrote, err := LlamaCheckpoint(root, p.Name, c, tc.dtype, quiet)
		if err != nil || !wrote || filepath.Dir(dir) != root || !strings.HasPrefix(filepath.Base(dir), "llama-test-"+strings.ToLower(tc.dtype)+"-") {
			t.Fatalf("%s: LlamaCheckpoint = %s, %v, %v", tc.dtype, dir, wrote, err)
		}

		b, err := os.ReadFile(filepath.Join(dir, hf.IndexFile))
		if err != nil {
			t.Fatal(err)
		}
		var idx struct {
			Metadata struct {
				TotalSize int64 `json:"total_size"`
			} `json:"metadata"`
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, x := range c.tensors() {
			names = append(names, x.name)
		}
		if got := slices.Sorted(func(yield func(string) bool) {
			for k := range idx.WeightMap {
				if !yield(k) {
					return
				}
			}
		}); !slices.Equal(got, slices.Sorted(slices.Values(names))) {
			t.Errorf("%s: index lists %v, want %v", tc.dtype, got, names)
		}
		if idx.Metadata.TotalSize != c.byteSize(tc.dtype) {
			t.Errorf("%s: total_size %d, want %d", tc.dtype, idx.Metadata.TotalSize, c.byteSize(tc.dtype))
		}
		shards := map[string]bool{}
		for _, f := range idx.WeightMap {
			shards[f] = true
		}
		if len(shards) < 2 {
			t.Errorf("%s: %d shard(s) at ShardBytes %d, want several", tc.dtype, len(shards), ShardBytes)
		}
		for f := range shards {
			if !strings.HasPrefix(f, "model-") || !strings.HasSuffix(f, fmt.Sprintf("-of-%05d.safetensors", len(shards))) {
				t.Errorf("%s: shard name %s does not say of %d", tc.dtype, f, len(shards))
			}
			r, err := safetensors.Open(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			var bytes int
			for _, x := range r.Tensors {
				n, _ := r.ByteSize(x.Name)
				bytes += n
				if x.DType != tc.dtype || idx.WeightMap[x.Name] != f {
					t.Errorf("%s: %s in %s as %s", tc.dtype, x.Name, f, x.DType)
				}
			}
			if len(r.Tensors) > 1 && int64(bytes) > ShardBytes {
				t.Errorf("%s: %s holds %d tensor bytes, over %d", tc.dtype, f, bytes, ShardBytes)
			}
			r.Close()
		}

		arch, err := models.Resolve(dir)
		if err != nil || arch.Name != "llama" {
			t.Fatalf("Resolve: %v, %v", arch, err)
		}
		store := model.NewStore()
		cm, err := arch.LoadCausalLM(dir, store, models.LoadOptions{BaseDType: hf.BaseAuto})
		if err != nil {
			t.Fatal(err)
		}
		if cm.VocabSize() != 40 || len(cm.Linears()) != 14 {
			t.Errorf("%s: vocab %d, %d linears", tc.dtype, cm.VocabSize(), len(cm.Linears()))
		}
		for _, x := range c.tensors() {
			v := store.GetVariable(hf.VariablePath(x.name))
			if v == nil {
				t.Fatalf("%s: no variable for %s", tc.dtype, x.name)
			}
			want := tc.held
			if len(x.shape) < 2 {
				want = dtypes.Float32
			}
			if !slices.Equal(v.Shape().Dimensions, x.shape) || v.Shape().DType != want {
				t.Errorf("%s: %s is %s, want %s%v", tc.dtype, x.name, v.Shape(), want, x.shape)
			}
			if x.name == "model.layers.1.mlp.down_proj.weight" || x.name == "model.norm.weight" {
				checkValues(t, tc.dtype+" "+x.name, v, x.std)
			}
		}
		if (store.GetVariable("/lm_head/weight") != nil) == tc.tied {
			t.Errorf("%s: tied %v but lm_head variable present = %v", tc.dtype, tc.tied, !tc.tied)
		}
		if got := heldDType(store); got != map[dtypes.DType]string{dtypes.BFloat16: "bf16", dtypes.Float16: "f16", dtypes.Float32: "f32"}[tc.held] {
			t.Errorf("%s: heldDType %s", tc.dtype, got)
		}

		stamp := modTimes(t, dir)
		again, wrote, err := LlamaCheckpoint(root, p.Name, c, tc.dtype, quiet)
		if err != nil || wrote || again != dir || !maps(stamp, modTimes(t, dir)) {
			t.Errorf("%s: second call = %s, wrote %v, %v (files rewritten: %v)", tc.dtype, again, wrote, err, !maps(stamp, modTimes(t, dir)))
		}
		other, _, err := LlamaCheckpoint(t.TempDir(), p.Name, c, tc.dtype, quiet)
		if err != nil || filepath.Base(other) != filepath.Base(dir) {
			t.Fatalf("%s: another root: %s, %v", tc.dtype, other, err)
		}
		for f := range shards {
			a, _ := os.ReadFile(filepath.Join(dir, f))
			b, _ := os.ReadFile(filepath.Join(other, f))
			if string(a) != string(b) {
				t.Errorf("%s: %s differs between two writes", tc.dtype, f)
			}
		}
		if ents, _ := os.ReadDir(root); len(ents) != 1 {
			t.Errorf("%s: cache holds %d entries, want the one checkpoint", tc.dtype, len(ents))
		}
	}

	// A killed writer's temporary (untouched for an hour) goes; one being written stays.
	root := t.TempDir()
	c := tinyPreset(true).Config()
	dir, _, err := LlamaCheckpoint(root, "llama-test", c, safetensors.BF16, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(root, atomicfile.TempPrefix(filepath.Base(dir))+"killed")
	live := filepath.Join(root, atomicfile.TempPrefix(filepath.Base(dir))+"live")
	for _, d := range []string{stale, live} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "model-00001-of-00002.safetensors"), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{filepath.Join(stale, "model-00001-of-00002.safetensors"), stale} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, wrote, err := LlamaCheckpoint(root, "llama-test", c, safetensors.BF16, quiet); err != nil || !wrote {
		t.Fatalf("rewrite: %v, %v", wrote, err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("stale temporary not removed")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("a live writer's temporary was removed")
	}

	// A folder at the checkpoint's path that is not a complete checkpoint is refused by name.
	if err := os.Remove(filepath.Join(dir, hf.IndexFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LlamaCheckpoint(root, "llama-test", c, safetensors.BF16, quiet); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("incomplete checkpoint folder: %v", err)
	}
}

// checkValues checks a loaded variable: all 1 for std 0, else mean ≈ 0 and standard deviation
// within 25% of std.
func checkValues(t *testing.T, what string, v *model.Variable, std float64) {
	t.Helper()
	dt := map[dtypes.DType]string{dtypes.Float32: safetensors.F32, dtypes.BFloat16: safetensors.BF16, dtypes.Float16: safetensors.F16}[v.Shape().DType]
	xs := make([]float32, v.Shape().Size())
	var derr error
	if err := v.MustValue().ConstBytes(func(b []byte) { derr = safetensors.DecodeFloat32s(dt, b, xs) }); err != nil || derr != nil {
		t.Fatalf("%s: %v, %v", what, err, derr)
	}
	var sum, sq float64
	for _, x := range xs {
		sum, sq = sum+float64(x), sq+float64(x)*float64(x)
	}
	mean := sum / float64(len(xs))
	sd := math.Sqrt(sq/float64(len(xs)) - mean*mean)
	if std == 0 {
		if mean != 1 || sd != 0 {
			t.Errorf("%s: mean %g sd %g, want all 1", what, mean, sd)
		}
		return
	}
	if math.Abs(mean) > std/4 || math.Abs(sd-std) > std/4 {
		t.Errorf("%s: mean %g sd %g, want ~N(0, %g²)", what, mean, sd, std)
	}
}

// modTimes maps each file of dir to its modification time.
func modTimes(t *testing.T, dir string) map[string]time.Time {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, e := range ents {
		info, _ := e.Info()
		out[e.Name()] = info.ModTime()
	}
	return out
}

func maps(a, b map[string]time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !b[k].Equal(v) {
			return false
		}
	}
	return true
}

// TestLlamaPresets: llama-1b and llama-7b have the shapes of Llama-3.2-1B and LLaMA-7B (config
// values as models/llama reads them back from the written config.json, and the published
// parameter counts), one workload per method with few default steps.
func TestLlamaPresets(t *testing.T) {
	for _, tc := range []struct {
		p      LlamaPreset
		want   llama.Config
		params int64
		seq    int
	}{
		{Llama1B, llama.Config{VocabSize: 128256, Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8, HeadDim: 64,
			MaxPositions: 131072, RMSNormEps: 1e-5, RopeTheta: 500000, TieEmbeddings: true}, 1_235_814_400, 256},
		{Llama7B, llama.Config{VocabSize: 32000, Hidden: 4096, Intermediate: 11008, Layers: 32, Heads: 32, KVHeads: 32, HeadDim: 128,
			MaxPositions: 2048, RMSNormEps: 1e-6, RopeTheta: 10000, TieEmbeddings: false}, 6_738_415_616, 128},
	} {
		dir := t.TempDir()
		b, err := tc.p.Config().configJSON(safetensors.BF16)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, hf.ConfigFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := llama.LoadConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		got.ModelType, got.Architecture, got.BOS, got.EOS = "", "", 0, 0
		if *got != tc.want {
			t.Errorf("%s: config reads back as %+v, want %+v", tc.p.Name, *got, tc.want)
		}
		if n := tc.p.Config().byteSize(safetensors.F32) / 4; n != tc.params {
			t.Errorf("%s: %d parameters, want %d", tc.p.Name, n, tc.params)
		}
		if tc.p.Batch != 1 || tc.p.Seq != tc.seq || tc.p.Rank != 8 || tc.p.Alpha != 8 {
			t.Errorf("%s: B=%d L=%d r=%d α=%g", tc.p.Name, tc.p.Batch, tc.p.Seq, tc.p.Rank, tc.p.Alpha)
		}
		ws, err := Workloads(tc.p.Name, []string{"singlora", "lora"})
		if err != nil || len(ws) != 2 || ws[0].Name != tc.p.Name+"/singlora" || ws[1].Name != tc.p.Name+"/lora" {
			t.Fatalf("%s: Workloads = %v, %v", tc.p.Name, ws, err)
		}
		if w := ws[0]; w.Warmup != 1 || w.Steps < 1 || w.Steps > 3 || w.Prepare == nil || !Heavy[tc.p.Name] {
			t.Errorf("%s: warm-up %d, steps %d, heavy %v", tc.p.Name, w.Warmup, w.Steps, Heavy[tc.p.Name])
		}
	}
	if Llama7B.Config().byteSize(safetensors.BF16) != 2*6_738_415_616 {
		t.Error("llama-7b bf16 checkpoint size")
	}
}

// TestLlamaCheckpointWorkloadTiny runs one step of the checkpoint workload at a tiny shape, end
// to end: Prepare writes the checkpoint into the cache's bench folder (the second Run reuses it),
// Setup loads it in bf16 through the registry, and the result carries tokens_per_s, base_dtype
// and load_s.
func TestLlamaCheckpointWorkloadTiny(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("SINGLORA_CACHE", cache)
	defer func(d hf.BaseDType, p func(string, ...any)) { BaseDType, Progress = d, p }(BaseDType, Progress)
	Progress = quiet
	for _, base := range []hf.BaseDType{hf.BaseAuto, hf.BaseF32} {
		BaseDType = base
		w, err := LlamaCheckpointWorkload(tinyPreset(true), "singlora")
		if err != nil {
			t.Fatal(err)
		}
		r, err := Run(w, 1, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		want := map[hf.BaseDType]string{hf.BaseAuto: "bf16", hf.BaseF32: "f32"}[base]
		if r.BaseDType != want || r.LoadSec <= 0 || r.TokensPerS <= 0 || r.MsMedian <= 0 || r.Workload != "llama-test/singlora" ||
			!strings.Contains(r.Shape, "base="+want+" "+filepath.Join(cache, "bench", "llama-test-")) {
			t.Errorf("%s: result %+v", base, r)
		}
		line := r.JSON()
		for _, k := range []string{`"tokens_per_s":`, `"base_dtype":"` + want + `"`, `"load_s":`} {
			if !strings.Contains(line, k) {
				t.Errorf("%s: JSON line lacks %s: %s", base, k, line)
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Join(cache, "bench"))
	if len(ents) != 2 {
		t.Errorf("cache holds %d checkpoints, want one bf16 and one f32", len(ents))
	}
}
