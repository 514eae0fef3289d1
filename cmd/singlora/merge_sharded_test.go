package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/safetensors"
)

const (
	shard1 = "model-00001-of-00002.safetensors"
	shard2 = "model-00002-of-00002.safetensors"
)

// shardedFixture turns fixture's checkpoint into a two-shard Hugging Face folder: the first shard
// is fixture's base file itself (blk.norm.weight, blk.proj.weight), the second holds lm.weight;
// plus model.safetensors.index.json and config.json. The adapter gains a modules_to_save head the
// base lacks.
func shardedFixture(t *testing.T) (dir, folder, single, adapter string) {
	t.Helper()
	dir, single, adapter, _, _ = fixture(t)
	folder = filepath.Join(dir, "model")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, shard1), []byte(fileText(t, single)), 0o644); err != nil {
		t.Fatal(err)
	}
	lm, _ := safetensors.FromFloat32s("lm.weight", safetensors.F32, []int{2, 5}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	if err := safetensors.Write(filepath.Join(folder, shard2), []safetensors.Tensor{lm}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	idx := map[string]any{"metadata": map[string]any{"total_size": 5*4 + 15*2 + 10*4},
		"weight_map": map[string]string{"blk.norm.weight": shard1, "blk.proj.weight": shard1, "lm.weight": shard2}}
	b, _ := json.MarshalIndent(idx, "", "  ")
	for name, text := range map[string]string{adapterio.ModelIndexFile: string(b), "config.json": `{"model_type": "test"}`} {
		if err := os.WriteFile(filepath.Join(folder, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, err := adapterio.Load(adapter)
	if err != nil {
		t.Fatal(err)
	}
	a.Config.ModulesToSave = []string{"head"}
	a.Saved = []adapterio.SavedTensor{{Name: "head.weight", Matrix: adapterio.Matrix{Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}}}}
	if err := adapterio.Save(adapter, a); err != nil {
		t.Fatal(err)
	}
	return dir, folder, single, adapter
}

// dirFiles reads every file of dir: name → content.
func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		out[e.Name()] = fileText(t, filepath.Join(dir, e.Name()))
	}
	return out
}

// TestMergeCommandFolder: merge --safe of a sharded folder says what it did (shards, where the
// head went, the files copied); its first shard is byte for byte the single-file merge of the same
// tensors; --unmerge gives back the base's second shard and index exactly and the first shard as
// the single-file unmerge does.
func TestMergeCommandFolder(t *testing.T) {
	dir, folder, single, adapter := shardedFixture(t)
	out := filepath.Join(dir, "merged")
	var buf bytes.Buffer
	if err := runMerge([]string{"--base", folder, "--adapter", adapter, "--out", out, "--safe"}, &buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"merged 1 weights, replaced 0 and added 1 modules_to_save tensors, copied 2 tensors unchanged → " + out + " (2 shards)",
		"added (head.weight) to shard " + shard2,
		"copied 1 other files of the base folder (config.json)",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output %q lacks %q", buf.String(), want)
		}
	}
	ref := filepath.Join(dir, "ref.safetensors")
	if err := runMerge([]string{"--base", single, "--adapter", adapter, "--out", ref}, &buf); err != nil {
		t.Fatal(err)
	}
	rf, _ := safetensors.Read(ref)
	mf, err := safetensors.Read(filepath.Join(out, shard1))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"blk.norm.weight", "blk.proj.weight"} {
		if g, w := mf.Get(name), rf.Get(name); g == nil || string(g.Data) != string(w.Data) {
			t.Errorf("%s: the sharded merge differs from the single-file merge", name)
		}
	}
	if s2, _ := safetensors.Read(filepath.Join(out, shard2)); s2.Get("head.weight") == nil {
		t.Error("the head is not in the last shard")
	}
	buf.Reset()
	back := filepath.Join(dir, "back")
	if err := runMerge([]string{"--unmerge", "--base", filepath.Join(out, adapterio.ModelIndexFile), "--adapter", adapter, "--out", back}, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "unmerged 1 weights, removed 1 modules_to_save tensors merge had added (head.weight)") {
		t.Errorf("unmerge output %q", buf.String())
	}
	singleBack := filepath.Join(dir, "single-back.safetensors")
	if err := runMerge([]string{"--unmerge", "--base", ref, "--adapter", adapter, "--out", singleBack}, &buf); err != nil {
		t.Fatal(err)
	}
	got, base := dirFiles(t, back), dirFiles(t, folder)
	if got[shard2] != base[shard2] || got[shard1] != fileText(t, singleBack) || got["config.json"] != base["config.json"] {
		t.Error("the unmerged shards differ from the base's second shard / the single-file unmerge")
	}
	var gi, bi map[string]any
	_ = json.Unmarshal([]byte(got[adapterio.ModelIndexFile]), &gi)
	_ = json.Unmarshal([]byte(base[adapterio.ModelIndexFile]), &bi)
	if !reflect.DeepEqual(gi, bi) {
		t.Errorf("unmerged index %v, the base's %v", gi, bi)
	}
	// In place is refused, naming the reason; the help says the check is on without --safe.
	err = runMerge([]string{"--base", folder, "--adapter", adapter, "--out", folder}, &buf)
	if err == nil || !strings.Contains(err.Error(), "is the base checkpoint folder: merging in place would replace the checkpoint being read") {
		t.Errorf("in-place merge: %v", err)
	}
	help, _ := cli("merge", "-h").CombinedOutput()
	if !strings.Contains(string(help), "-safe") || !strings.Contains(string(help), "that check is always on,\nwith or without --safe") {
		t.Errorf("merge -h does not document --safe and the check without it:\n%s", help)
	}
}

// TestMergeFolderKilledAtEveryRename SIGKILLs `merge` of a sharded folder over an earlier output at
// each of its kill points (before and after every rename and the folder exchange) and checks that
// --out is then always the complete earlier output or the complete new one, with at most
// temporary siblings beside it, which the next merge into --out removes: after the last,
// uninterrupted merge none is left.
func TestMergeFolderKilledAtEveryRename(t *testing.T) {
	dir, folder, _, adapter := shardedFixture(t)
	out := filepath.Join(dir, "merged")
	var buf bytes.Buffer
	if err := runMerge([]string{"--base", folder, "--adapter", adapter, "--out", out}, &buf); err != nil {
		t.Fatal(err)
	}
	old := dirFiles(t, out)
	editConfig(t, adapter, func(m map[string]any) { m["lora_alpha"] = 8 })
	want := filepath.Join(dir, "want")
	if err := runMerge([]string{"--base", folder, "--adapter", adapter, "--out", want}, &buf); err != nil {
		t.Fatal(err)
	}
	fresh := dirFiles(t, want)
	if reflect.DeepEqual(old, fresh) {
		t.Fatal("the two merges are identical: the test would show nothing")
	}
	leftTemps := 0
	for k := 1; ; k++ {
		if k > 100 {
			t.Fatal("more than 100 kill points: the loop does not end")
		}
		cmd := cli("merge", "--base", folder, "--adapter", adapter, "--out", out)
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", atomicfile.KillEnv, k))
		msg, err := cmd.CombinedOutput()
		now := dirFiles(t, out)
		if err == nil {
			if k < 8 {
				t.Fatalf("only %d kill points were reached: the hook is not wired", k-1)
			}
			if !reflect.DeepEqual(now, fresh) {
				t.Fatal("the completed merge differs from the reference")
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if atomicfile.IsTemp(e.Name()) {
					t.Errorf("the killed merges' temporary %s is still there after a complete merge", e.Name())
				}
			}
			t.Logf("killed at each of %d kill points (%d of them left temporary siblings, each removed by the next merge)", k-1, leftTemps)
			return
		}
		if !killedBySIGKILL(err) {
			t.Fatalf("kill point %d: the merge failed instead of being killed: %v\n%s", k, err, msg)
		}
		if !reflect.DeepEqual(now, old) && !reflect.DeepEqual(now, fresh) {
			t.Fatalf("kill point %d: --out is neither the earlier output nor the new one: %v", k, keys(now))
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if atomicfile.IsTemp(e.Name()) {
				leftTemps++ // left for the next merge to remove
				break
			}
		}
		// Start the next kill from the earlier output again.
		if reflect.DeepEqual(now, fresh) {
			_ = os.RemoveAll(out)
			_ = os.Mkdir(out, 0o755)
			for name, text := range old {
				_ = os.WriteFile(filepath.Join(out, name), []byte(text), 0o644)
			}
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
