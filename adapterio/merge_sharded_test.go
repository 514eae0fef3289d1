package adapterio

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// shardedSpecs: three layers of the square / in>out / out>in modules, so that each shard holds
// adapted weights.
var shardedSpecs = func() []peft.LinearSpec {
	var out []peft.LinearSpec
	for l := range 3 {
		for _, s := range testSpecs {
			out = append(out, peft.LinearSpec{Path: strings.Replace(s.Path, "layer.0", fmt.Sprintf("layer.%d", l), 1), In: s.In, Out: s.Out})
		}
	}
	return out
}()

// shardedBase is a generated checkpoint: a folder (sharded with an index, or one
// model.safetensors) and the same tensors, in the same order, in one file.
type shardedBase struct {
	dir, single string
	shards      map[string][]string // shard file → its tensor names, in order
}

// writeShardedBase writes the checkpoint folder dir with nShards shards (1: one
// model.safetensors, no index) of the shardedSpecs weights and biases in dtype, an embedding
// (first shard) and an I64 tensor, plus config.json, a tokenizer file linked from outside the
// folder, and the things a merged folder leaves out (a subfolder, weights in another format).
func writeShardedBase(t *testing.T, dir, dtype string, nShards int) shardedBase {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(21, 22))
	emb, _ := safetensors.FromFloat32s("embeddings.weight", dtype, []int{3, 2}, randVals(rng, 6, 1))
	pos := safetensors.Tensor{Name: "position_ids", DType: safetensors.I64, Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}}
	layers := [][]safetensors.Tensor{{emb, pos}}
	for i, s := range shardedSpecs {
		w, err := safetensors.FromFloat32s(s.Path+".weight", dtype, []int{s.Out, s.In}, randVals(rng, s.In*s.Out, 1))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := safetensors.FromFloat32s(s.Path+".bias", dtype, []int{s.Out}, randVals(rng, s.Out, 1))
		if i%len(testSpecs) == 0 && i > 0 {
			layers = append(layers, nil)
		}
		layers[len(layers)-1] = append(layers[len(layers)-1], w, b)
	}
	md := map[string]string{"format": "pt"}
	sb := shardedBase{dir: dir, single: filepath.Join(filepath.Dir(dir), filepath.Base(dir)+"-single.safetensors"), shards: map[string][]string{}}
	var all []safetensors.Tensor
	weightMap := map[string]string{}
	var size int
	for i, layer := range layers {
		name := ModelWeightsFile
		if nShards > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", min(i+1, nShards), nShards)
		}
		all = append(all, layer...)
		for _, ts := range layer {
			sb.shards[name] = append(sb.shards[name], ts.Name)
			weightMap[ts.Name] = name
			size += len(ts.Data)
		}
	}
	for name, names := range sb.shards {
		var ts []safetensors.Tensor
		for _, n := range names {
			ts = append(ts, *(&safetensors.File{Tensors: all}).Get(n))
		}
		if err := safetensors.Write(filepath.Join(dir, name), ts, md); err != nil {
			t.Fatal(err)
		}
	}
	if err := safetensors.Write(sb.single, all, md); err != nil {
		t.Fatal(err)
	}
	if nShards > 1 {
		writeIndex(t, filepath.Join(dir, ModelIndexFile), map[string]any{
			"metadata": map[string]any{"total_size": size, "total_parameters": 1, "note": "kept"}, "weight_map": weightMap})
	}
	outside := filepath.Join(filepath.Dir(dir), "tokenizer-blob")
	for p, text := range map[string]string{
		filepath.Join(dir, "config.json"): `{"model_type": "test"}`, outside: `{"version": "1.0"}`,
		filepath.Join(dir, "pytorch_model.bin"): "unmerged", filepath.Join(dir, "original", "consolidated.pth"): "unmerged",
	} {
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	return sb
}

func writeIndex(t *testing.T, path string, idx any) {
	t.Helper()
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readIndexFile returns an index's metadata and weight_map.
func readIndexFile(t *testing.T, path string) (map[string]any, map[string]string) {
	t.Helper()
	var idx struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	return idx.Metadata, idx.WeightMap
}

// readFolder reads every shard of a checkpoint folder: tensor name → tensor, tensor name → shard,
// and shard → (tensor names in order, metadata).
func readFolder(t *testing.T, dir string) (map[string]safetensors.Tensor, map[string]string, map[string]*safetensors.File) {
	t.Helper()
	tensors, where, files := map[string]safetensors.Tensor{}, map[string]string{}, map[string]*safetensors.File{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".safetensors") {
			continue
		}
		f, err := safetensors.Read(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = f
		for _, ts := range f.Tensors {
			if prev, dup := where[ts.Name]; dup {
				t.Fatalf("tensor %s in both %s and %s", ts.Name, prev, e.Name())
			}
			tensors[ts.Name], where[ts.Name] = ts, e.Name()
		}
	}
	return tensors, where, files
}

// shardedAdapter is a random adapter of method m over shardedSpecs with two modules_to_save
// tensors: classifier.weight, which the base lacks (added), and embeddings.weight, which the first
// shard holds (replaced).
func shardedAdapter(t *testing.T, m peft.Method, dir string, seed uint64) *Adapter {
	t.Helper()
	a := newAdapter(t, m, shardedSpecs, 2, 4, false, 10, 7, seed)
	a.Config.ModulesToSave = []string{"classifier", "embeddings"}
	rng := rand.New(rand.NewPCG(seed, 3))
	a.Saved = []SavedTensor{
		{Name: "classifier.weight", Matrix: Matrix{Shape: []int{2, 8}, Data: randVals(rng, 16, 1)}},
		{Name: "embeddings.weight", Matrix: Matrix{Shape: []int{3, 2}, Data: randVals(rng, 6, 1)}},
	}
	if err := Save(dir, a); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestShardedMergeMatchesUnsharded: merging a checkpoint folder (sharded with an index given as
// the folder or as the index file, or one model.safetensors) gives, tensor for tensor and byte for
// byte, what merging the same tensors in one file gives (and that, streamed, is what the in-memory
// MergeTensors gives); the index lists where every tensor is, with total_size recomputed; the
// added head goes to the last shard; the other files are copied and unmerged weights left out;
// unmerging gives back the base's layout and (to rounding) its values, again as the single file.
func TestShardedMergeMatchesUnsharded(t *testing.T) {
	cases := []struct {
		name    string
		dtype   string
		method  peft.Method
		shards  int
		byIndex bool // --base is the index file, not the folder
	}{
		{"f32 3 shards", safetensors.F32, peft.SingLoRA, 3, false},
		{"f32 3 shards by index", safetensors.F32, peft.LoRA, 3, true},
		{"bf16 3 shards", safetensors.BF16, peft.SingLoRA, 3, false},
		{"f16 2 shards", safetensors.F16, peft.LoRA, 2, false},
		{"f32 one model.safetensors", safetensors.F32, peft.SingLoRA, 1, false},
		{"bf16 dora 3 shards", safetensors.BF16, peft.DoRA, 3, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			sb := writeShardedBase(t, filepath.Join(tmp, "base"), c.dtype, c.shards)
			ad := filepath.Join(tmp, "adapter")
			a := shardedAdapter(t, c.method, ad, 31)
			base := sb.dir
			if c.byIndex {
				base = filepath.Join(sb.dir, ModelIndexFile)
			}
			out := filepath.Join(tmp, "merged")
			rep, err := MergeCheckpoint(base, ad, out, MergeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			single := filepath.Join(tmp, "merged.safetensors")
			srep, err := MergeFile(sb.single, ad, single, false)
			if err != nil {
				t.Fatal(err)
			}
			// The streamed single file is what the in-memory merge marshals.
			bf, _ := safetensors.Read(sb.single)
			mem, _, err := MergeTensors(a, bf, false)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := safetensors.Marshal(mem.Tensors, mem.Metadata)
			if readBytes(t, single) != string(want) {
				t.Fatal("the streamed MergeFile output differs from MergeTensors'")
			}
			if !slices.Equal(rep.Merged, srep.Merged) || !slices.Equal(rep.Replaced, srep.Replaced) || !slices.Equal(rep.Added, srep.Added) || rep.Kept != srep.Kept {
				t.Errorf("sharded report %+v, single-file report %+v", rep, srep)
			}
			if rep.Shards != c.shards || !slices.Equal(rep.Added, []string{"classifier.weight"}) || !slices.Equal(rep.Replaced, []string{"embeddings.weight"}) {
				t.Errorf("report: %d shards, added %v, replaced %v", rep.Shards, rep.Added, rep.Replaced)
			}
			if (c.dtype != safetensors.F32) != (rep.Rounding.Tensors > 0) || rep.Rounding != srep.Rounding {
				t.Errorf("rounding %+v, single file %+v", rep.Rounding, srep.Rounding)
			}
			got, where, files := readFolder(t, out)
			sf, _ := safetensors.Read(single)
			if len(got) != len(sf.Tensors) {
				t.Errorf("%d tensors in the folder, %d in the single file", len(got), len(sf.Tensors))
			}
			for _, st := range sf.Tensors {
				g, ok := got[st.Name]
				if !ok || g.DType != st.DType || !slices.Equal(g.Shape, st.Shape) || string(g.Data) != string(st.Data) {
					t.Errorf("%s: sharded %v differs from the single file's %v", st.Name, g.String(), st.String())
				}
			}
			// Each base tensor stays in its shard, in order; the head goes last in the last shard.
			shardNames := slices.Sorted(maps.Keys(sb.shards))
			lastShard := shardNames[len(shardNames)-1]
			if rep.AddedTo != lastShard || where["classifier.weight"] != lastShard {
				t.Errorf("head added to %q (report %q), want the last shard %s", where["classifier.weight"], rep.AddedTo, lastShard)
			}
			for name, names := range sb.shards {
				wantNames := names
				if name == lastShard {
					wantNames = append(slices.Clone(names), "classifier.weight")
				}
				if f := files[name]; f == nil || !slices.Equal(f.Names(), wantNames) {
					t.Errorf("shard %s holds %v, want %v", name, f.Names(), wantNames)
				}
				wantMD := map[string]string{"format": "pt"}
				if name == lastShard {
					wantMD[MergeAddedKey] = `["classifier.weight"]`
				}
				if !reflect.DeepEqual(files[name].Metadata, wantMD) {
					t.Errorf("shard %s metadata %v, want %v", name, files[name].Metadata, wantMD)
				}
			}
			if len(files) != len(sb.shards) {
				t.Errorf("%d shard files written, want %d", len(files), len(sb.shards))
			}
			// The index.
			if c.shards > 1 {
				md, wm := readIndexFile(t, filepath.Join(out, ModelIndexFile))
				if !reflect.DeepEqual(wm, where) {
					t.Errorf("index weight_map %v, the shards hold %v", wm, where)
				}
				size, params := 0, 0
				for _, g := range got {
					size += len(g.Data)
					params += g.NumElements()
				}
				if md["total_size"] != float64(size) || md["total_parameters"] != float64(params) || md["note"] != "kept" {
					t.Errorf("index metadata %v, want total_size %d, total_parameters %d, note kept", md, size, params)
				}
			} else if _, err := os.Stat(filepath.Join(out, ModelIndexFile)); err == nil {
				t.Error("an index written for a one-file checkpoint")
			}
			// The other files: copied as regular files (the link followed), unmerged weights not.
			for _, name := range []string{"config.json", "tokenizer.json"} {
				st, err := os.Lstat(filepath.Join(out, name))
				if err != nil || !st.Mode().IsRegular() || readBytes(t, filepath.Join(out, name)) != readBytes(t, filepath.Join(sb.dir, name)) {
					t.Errorf("%s not copied as a regular file with the base's content: %v", name, err)
				}
				if bst, _ := os.Stat(filepath.Join(sb.dir, name)); os.SameFile(st, bst) {
					t.Errorf("%s is a hard link to the base's: editing it in place would edit the base", name)
				}
			}
			for _, name := range []string{"pytorch_model.bin", "original"} {
				if _, err := os.Stat(filepath.Join(out, name)); err == nil {
					t.Errorf("%s copied into the merged folder", name)
				}
			}
			if !slices.Equal(rep.Copied, []string{"config.json", "tokenizer.json"}) || !slices.Equal(rep.NotCopied, []string{"original/", "pytorch_model.bin"}) {
				t.Errorf("copied %v, not copied %v", rep.Copied, rep.NotCopied)
			}
			if c.method == peft.DoRA {
				return // DoRA cannot be unmerged
			}
			// Unmerge: the base's layout back, the values to rounding, as the single file does.
			back := filepath.Join(tmp, "back")
			urep, err := MergeCheckpoint(out, ad, back, MergeOptions{Unmerge: true})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(urep.Removed, []string{"classifier.weight"}) || !slices.Equal(urep.NotRestored, []string{"embeddings.weight"}) {
				t.Errorf("unmerge removed %v, kept %v", urep.Removed, urep.NotRestored)
			}
			singleBack := filepath.Join(tmp, "back.safetensors")
			if _, err := MergeFile(single, ad, singleBack, true); err != nil {
				t.Fatal(err)
			}
			bt, bwhere, bfiles := readFolder(t, back)
			_, basewhere, basefiles := readFolder(t, sb.dir)
			if !reflect.DeepEqual(bwhere, basewhere) {
				t.Errorf("unmerged placement %v, the base's %v", bwhere, basewhere)
			}
			for name, f := range basefiles {
				if !slices.Equal(bfiles[name].Names(), f.Names()) || !reflect.DeepEqual(bfiles[name].Metadata, f.Metadata) {
					t.Errorf("unmerged shard %s: %v %v, the base's %v %v", name, bfiles[name].Names(), bfiles[name].Metadata, f.Names(), f.Metadata)
				}
			}
			sback, _ := safetensors.Read(singleBack)
			for _, st := range sback.Tensors {
				if g := bt[st.Name]; string(g.Data) != string(st.Data) {
					t.Errorf("unmerged %s differs from the single file's unmerge", st.Name)
				}
			}
			tol := map[string]float64{safetensors.F32: 1e-5, safetensors.F16: 4e-3, safetensors.BF16: 3e-2}[c.dtype]
			for _, b0 := range bf.Tensors {
				if !safetensors.IsFloat(b0.DType) || b0.Name == "embeddings.weight" {
					continue
				}
				x, _ := b0.Float64s()
				g := bt[b0.Name]
				y, _ := g.Float64s()
				for j := range x {
					if !approx(y[j], x[j], tol) {
						t.Fatalf("unmerged %s[%d] = %v, the base's %v", b0.Name, j, y[j], x[j])
					}
				}
			}
			if c.shards > 1 {
				md, wm := readIndexFile(t, filepath.Join(back, ModelIndexFile))
				bmd, bwm := readIndexFile(t, filepath.Join(sb.dir, ModelIndexFile))
				if !reflect.DeepEqual(wm, bwm) || md["total_size"] != bmd["total_size"] {
					t.Errorf("unmerged index %v %v, the base's %v %v", md, wm, bmd, bwm)
				}
			}
		})
	}
}

// TestShardedIndexErrors: an index inconsistent with its shards, or a folder that is not a
// checkpoint, is refused naming the culprit, before anything is written.
func TestShardedIndexErrors(t *testing.T) {
	type edit func(t *testing.T, dir string, wm map[string]string) any // returns the index to write (nil: leave it)
	moveTo := func(tensor, shard string) edit {
		return func(t *testing.T, dir string, wm map[string]string) any {
			wm[tensor] = shard
			return map[string]any{"weight_map": wm}
		}
	}
	first, second := "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors"
	cases := []struct {
		name string
		edit edit
		want string
	}{
		{"listed but missing", func(t *testing.T, dir string, wm map[string]string) any {
			wm["enc.layer.9.query.weight"] = first
			return map[string]any{"weight_map": wm}
		}, "lists tensor enc.layer.9.query.weight in shard " + first + ", which does not hold it (nor does any other shard)"},
		{"listed in the wrong shard", moveTo("embeddings.weight", second), "lists tensor embeddings.weight in shard " + second + ", but it is in shard " + first},
		{"not listed", func(t *testing.T, dir string, wm map[string]string) any {
			delete(wm, "position_ids")
			return map[string]any{"weight_map": wm}
		}, "does not list tensor position_ids, which shard " + first + " holds"},
		{"in two shards", func(t *testing.T, dir string, wm map[string]string) any {
			p := filepath.Join(dir, second)
			f, _ := safetensors.Read(p)
			dup, _ := safetensors.FromFloat32s("embeddings.weight", safetensors.F32, []int{1}, []float32{1})
			if err := safetensors.Write(p, append(f.Tensors, dup), f.Metadata); err != nil {
				t.Fatal(err)
			}
			return nil
		}, "tensor embeddings.weight is in both shards " + first + " and " + second},
		{"shard missing", func(t *testing.T, dir string, wm map[string]string) any {
			_ = os.Remove(filepath.Join(dir, second))
			return nil
		}, "shard " + second + ", which the index lists, is missing"},
		{"listed twice", func(t *testing.T, dir string, wm map[string]string) any {
			p := filepath.Join(dir, ModelIndexFile)
			b, _ := os.ReadFile(p)
			s := strings.Replace(string(b), `"weight_map": {`, `"weight_map": {"position_ids": "`+first+`",`, 1)
			_ = os.WriteFile(p, []byte(s), 0o644)
			return nil
		}, `duplicate key "position_ids"`},
		{"no weight_map", func(t *testing.T, dir string, wm map[string]string) any {
			return map[string]any{"metadata": map[string]any{}}
		}, `"weight_map" must be a non-empty object`},
		{"shard outside the folder", moveTo("position_ids", "../"+first), `tensor position_ids maps to "../` + first + `", not the name of a shard file`},
		{"both layouts", func(t *testing.T, dir string, wm map[string]string) any {
			_ = os.WriteFile(filepath.Join(dir, ModelWeightsFile), nil, 0o644)
			return nil
		}, "holds both model.safetensors and model.safetensors.index.json"},
		{"neither layout", func(t *testing.T, dir string, wm map[string]string) any {
			_ = os.Remove(filepath.Join(dir, ModelIndexFile))
			return nil
		}, "holds neither model.safetensors nor model.safetensors.index.json"},
		{"module weight in no shard", func(t *testing.T, dir string, wm map[string]string) any {
			p := filepath.Join(dir, second)
			f, _ := safetensors.Read(p)
			kept := slices.DeleteFunc(slices.Clone(f.Tensors), func(ts safetensors.Tensor) bool { return ts.Name == "enc.layer.1.down.weight" })
			if err := safetensors.Write(p, kept, f.Metadata); err != nil {
				t.Fatal(err)
			}
			delete(wm, "enc.layer.1.down.weight")
			return map[string]any{"weight_map": wm}
		}, "module enc.layer.1.down: the base has no tensor enc.layer.1.down.weight (in none of its 3 shards)"},
		{"shape mismatch", func(t *testing.T, dir string, wm map[string]string) any {
			p := filepath.Join(dir, second)
			f, _ := safetensors.Read(p)
			for i, ts := range f.Tensors {
				if ts.Name == "enc.layer.1.query.weight" {
					f.Tensors[i], _ = safetensors.FromFloat32s(ts.Name, safetensors.F32, []int{4, 9}, make([]float32, 36))
				}
			}
			if err := safetensors.Write(p, f.Tensors, f.Metadata); err != nil {
				t.Fatal(err)
			}
			return nil
		}, "enc.layer.1.query"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			sb := writeShardedBase(t, filepath.Join(tmp, "base"), safetensors.F32, 3)
			ad := filepath.Join(tmp, "adapter")
			shardedAdapter(t, peft.SingLoRA, ad, 5)
			_, wm := readIndexFile(t, filepath.Join(sb.dir, ModelIndexFile))
			if idx := c.edit(t, sb.dir, wm); idx != nil {
				writeIndex(t, filepath.Join(sb.dir, ModelIndexFile), idx)
			}
			out := filepath.Join(tmp, "merged")
			_, err := MergeCheckpoint(sb.dir, ad, out, MergeOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			assertNoOutput(t, tmp, out)
		})
	}
}

// assertNoOutput fails if out exists or a temporary sibling is left in dir.
func assertNoOutput(t *testing.T, dir, out string) {
	t.Helper()
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output %s exists after the error: %v", out, err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
}

// TestShardedMergeErrorLeavesNothing: a non-finite merged value in the second of three shards
// (after the first was written) leaves no output folder and no temporary one, and an earlier
// output in its place untouched.
func TestShardedMergeErrorLeavesNothing(t *testing.T) {
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("earlier output %v", existing), func(t *testing.T) {
			tmp := t.TempDir()
			sb := writeShardedBase(t, filepath.Join(tmp, "base"), safetensors.F16, 3)
			good := filepath.Join(tmp, "good")
			shardedAdapter(t, peft.SingLoRA, good, 5)
			out := filepath.Join(tmp, "merged")
			var before map[string]string
			if existing {
				if _, err := MergeCheckpoint(sb.dir, good, out, MergeOptions{}); err != nil {
					t.Fatal(err)
				}
				before = folderBytes(t, out)
			}
			// Only layer 1's query (second shard) overflows F16.
			a := shardedAdapter(t, peft.SingLoRA, filepath.Join(tmp, "bad"), 5)
			a.Module("enc.layer.1.query").Tensors[peft.NameSingLoRAA].Data[0] = 300
			bad := filepath.Join(tmp, "bad")
			if err := Save(bad, a); err != nil {
				t.Fatal(err)
			}
			_, err := MergeCheckpoint(sb.dir, bad, out, MergeOptions{})
			want := "shard model-00002-of-00003.safetensors: tensor enc.layer.1.query.weight: the merged value at [0, 0] is +Inf in F16"
			if err == nil || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), "nothing was written") {
				t.Fatalf("error %v, want %q … nothing was written", err, want)
			}
			if existing {
				if after := folderBytes(t, out); !reflect.DeepEqual(after, before) {
					t.Error("the earlier output changed")
				}
				_ = os.RemoveAll(out)
			}
			assertNoOutput(t, tmp, out)
		})
	}
}

// folderBytes reads every regular file of dir: name → content.
func folderBytes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			out[e.Name()] = readBytes(t, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// TestShardedMergeOutputRefused: outputs that would destroy an input or an unrelated folder are
// refused before anything is read or written; an earlier merge's output is replaced whole.
func TestShardedMergeOutputRefused(t *testing.T) {
	tmp := t.TempDir()
	sb := writeShardedBase(t, filepath.Join(tmp, "base"), safetensors.F32, 3)
	ad := filepath.Join(tmp, "adapter")
	shardedAdapter(t, peft.SingLoRA, ad, 5)
	busy := filepath.Join(tmp, "busy")
	_ = os.MkdirAll(busy, 0o755)
	_ = os.WriteFile(filepath.Join(busy, "notes.txt"), []byte("mine"), 0o644)
	holder := filepath.Join(tmp, "holder")
	_ = os.MkdirAll(holder, 0o755)
	_ = os.WriteFile(filepath.Join(holder, ModelWeightsFile), nil, 0o644)
	inner := filepath.Join(holder, "adapter")
	shardedAdapter(t, peft.SingLoRA, inner, 5)
	file := filepath.Join(tmp, "file.safetensors")
	_ = os.WriteFile(file, []byte("x"), 0o644)
	baseBefore := folderBytes(t, sb.dir)
	cases := []struct {
		name, base, adapter, out, want string
	}{
		{"in place", sb.dir, ad, sb.dir, "is the base checkpoint folder: merging in place would replace the checkpoint being read"},
		{"in place by index", filepath.Join(sb.dir, ModelIndexFile), ad, sb.dir + "/", "is the base checkpoint folder"},
		{"a file", sb.dir, ad, file, "names a .safetensors file, but merging a checkpoint folder writes a folder"},
		{"an existing file", sb.dir, ad, filepath.Join(busy, "notes.txt"), "is a file, but merging a checkpoint folder writes a folder"},
		{"an unrelated folder", sb.dir, ad, busy, "exists and is not a checkpoint folder"},
		{"the folder holding the adapter", sb.dir, inner, holder, "contains the adapter " + inner},
		{"the folder holding the base", sb.dir, ad, tmp, "contains the base checkpoint"},
		{"missing parent", sb.dir, ad, filepath.Join(tmp, "nope", "merged"), "the folder " + filepath.Join(tmp, "nope") + " does not exist (create it first)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := MergeCheckpoint(c.base, c.adapter, c.out, MergeOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if !reflect.DeepEqual(folderBytes(t, sb.dir), baseBefore) || readBytes(t, filepath.Join(busy, "notes.txt")) != "mine" {
				t.Fatal("an input or the unrelated folder changed")
			}
			if _, err := Load(inner); err != nil {
				t.Fatalf("the adapter inside --out was damaged: %v", err)
			}
		})
	}
	// An earlier output is replaced whole (a stale extra file in it is gone).
	out := filepath.Join(tmp, "merged")
	if _, err := MergeCheckpoint(sb.dir, ad, out, MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(out, "stale.txt"), nil, 0o644)
	if _, err := MergeCheckpoint(sb.dir, ad, out, MergeOptions{}); err != nil {
		t.Fatalf("replacing an earlier output: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "stale.txt")); err == nil {
		t.Error("the earlier output was not replaced whole")
	}
	assertNoOutput(t, tmp, filepath.Join(tmp, "never"))
}

// TestMergeSafeNaNBase: with Safe, a base weight that already holds NaN or Inf is reported as the
// base's, naming the tensor and position, for a single file and a sharded folder; without it the
// (always on) check of the output still refuses the merge, blaming the merged value. A NaN in a
// tensor the merge does not change is not Safe's concern.
func TestMergeSafeNaNBase(t *testing.T) {
	cases := []struct {
		name    string
		sharded bool
		tensor  string
		value   float32
		safe    bool
		want    string // "" = the merge succeeds
	}{
		{"file safe NaN", false, "enc.layer.0.down.weight", float32(math.NaN()), true, "base tensor enc.layer.0.down.weight: the value at [1, 2] is already NaN in F32 before any merge: the base checkpoint is not finite"},
		{"file unsafe NaN", false, "enc.layer.0.down.weight", float32(math.NaN()), false, "tensor enc.layer.0.down.weight: the merged value at [1, 2] is NaN in F32"},
		{"sharded safe Inf", true, "enc.layer.2.up.weight", float32(math.Inf(-1)), true, "shard model-00003-of-00003.safetensors: base tensor enc.layer.2.up.weight: the value at [1, 2] is already -Inf in F32"},
		{"sharded unsafe Inf", true, "enc.layer.2.up.weight", float32(math.Inf(-1)), false, "the merged value at [1, 2] is -Inf in F32"},
		{"sharded safe NaN in a kept tensor", true, "enc.layer.1.down.bias", float32(math.NaN()), true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			sb := writeShardedBase(t, filepath.Join(tmp, "base"), safetensors.F32, 3)
			// Poison value [1, 2] (flat index 1·cols+2) in the folder's shard and in the single file.
			_, where, _ := readFolder(t, sb.dir)
			for _, p := range []string{filepath.Join(sb.dir, where[c.tensor]), sb.single} {
				f, err := safetensors.Read(p)
				if err != nil {
					t.Fatal(err)
				}
				ts := f.Get(c.tensor)
				vals, _ := ts.Float32s()
				j := 2
				if len(ts.Shape) == 2 {
					j = ts.Shape[1] + 2
				}
				vals[j] = c.value
				*ts, _ = safetensors.FromFloat32s(ts.Name, ts.DType, ts.Shape, vals)
				if err := safetensors.Write(p, f.Tensors, f.Metadata); err != nil {
					t.Fatal(err)
				}
			}
			ad := filepath.Join(tmp, "adapter")
			shardedAdapter(t, peft.LoRA, ad, 9)
			base, out := sb.single, filepath.Join(tmp, "merged.safetensors")
			if c.sharded {
				base, out = sb.dir, filepath.Join(tmp, "merged")
			}
			_, err := MergeCheckpoint(base, ad, out, MergeOptions{Safe: c.safe})
			if c.want == "" {
				if err != nil {
					t.Fatalf("merge refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if c.safe && strings.Contains(err.Error(), "the adapter is too large") {
				t.Errorf("--safe blamed the adapter: %v", err)
			}
			assertNoOutput(t, tmp, out)
		})
	}
}

// TestMergeOutputLocked: while another process holds --out's lock a merge into it is refused,
// naming the lock, and writes nothing; a temporary sibling a killed merge left (file or folder)
// is removed by the next merge into the same output, for a folder and for a single file.
func TestMergeOutputLocked(t *testing.T) {
	tmp := t.TempDir()
	sb := writeShardedBase(t, filepath.Join(tmp, "base"), safetensors.F32, 3)
	ad := filepath.Join(tmp, "adapter")
	shardedAdapter(t, peft.SingLoRA, ad, 5)
	out := filepath.Join(tmp, "merged")
	unlock, ok, err := atomicfile.Lock(out)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	_, err = MergeCheckpoint(sb.dir, ad, out, MergeOptions{})
	unlock()
	if !errors.Is(err, atomicfile.ErrInUse) || !strings.Contains(err.Error(), ".merged.lock") {
		t.Fatalf("merge into a locked output: %v, want ErrInUse naming .merged.lock", err)
	}
	assertNoOutput(t, tmp, out)

	stale := filepath.Join(tmp, atomicfile.TempPrefix("merged")+"4242")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "model-00001-of-00003.safetensors"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MergeCheckpoint(sb.dir, ad, out, MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the killed merge's %s is still there: %v", stale, err)
	}

	file := filepath.Join(tmp, "merged.safetensors")
	staleFile := filepath.Join(tmp, atomicfile.TempPrefix("merged.safetensors")+"77")
	if err := os.WriteFile(staleFile, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MergeCheckpoint(sb.single, ad, file, MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(staleFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the killed merge's %s is still there: %v", staleFile, err)
	}
}
