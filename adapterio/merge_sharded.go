package adapterio

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/safetensors"
)

// The file names of a Hugging Face checkpoint folder's weights: one file, or shards listed by an
// index ({"metadata": {"total_size": …}, "weight_map": {tensor: shard file}}).
const (
	ModelWeightsFile = "model.safetensors"
	ModelIndexFile   = "model.safetensors.index.json"
)

// MergeCheckpoint merges (or with opt.Unmerge, unmerges) the adapter folder adapterDir into the
// checkpoint base and writes the result to out. base is one of:
//
//   - a .safetensors file: out is then a file, and this is MergeFile (plus opt.Safe);
//   - a Hugging Face checkpoint folder holding model.safetensors, or shards listed by
//     model.safetensors.index.json (a folder with both is refused as ambiguous);
//   - the index file of a sharded checkpoint (a "*.index.json" beside its shards).
//
// For a folder, out is a folder receiving the merged shards under the same names, the index with
// weight_map and metadata.total_size (and total_parameters, when the base's index has it)
// recomputed, and copies of the base folder's other top-level files (config.json, tokenizer
// files, …; symbolic links followed). Subfolders, weights in other formats (.bin, .pt, .pth,
// .ckpt, .h5, .msgpack, .gguf, .onnx, …) and *.safetensors files or indexes that are not the
// checkpoint's are not copied, as they would hold unmerged weights (MergeReport.NotCopied).
//
// Shards are merged one after the other, tensor by tensor as MergeFile does, so memory stays near
// the largest merged tensor whatever the checkpoint's size. A modules_to_save tensor the base lacks
// is added to the last shard in file name order (model-0000N-of-0000N.safetensors: in Hugging Face
// checkpoints the one with the last layers and the head), recorded in that shard's metadata under
// MergeAddedKey and listed in the index; unmerge removes it from whichever shard records it.
//
// Before anything is written the index is checked against the shards' headers — every listed
// tensor is in the shard it names, no shard holds a tensor the index does not list or that
// another shard also holds — and every adapted module against its weight (present, shape,
// dtype). The output is built in a temporary folder beside out and moved into place once complete
// (atomicfile.ReplaceDir): an error (such as a non-finite merged value in the last shard) or a
// kill at any instant leaves either no out or the complete previous one, plus after a kill at
// most the temporary folder ".<out>.tmp-*", which the next merge into out removes (claimOutput). out may not be the base folder (the
// merge would replace the checkpoint it reads: write a new folder) nor contain the base or the
// adapter, and an existing out must be empty or a checkpoint folder, which is replaced whole.
func MergeCheckpoint(base, adapterDir, out string, opt MergeOptions) (MergeReport, error) {
	st, err := os.Stat(base)
	if err != nil {
		return MergeReport{}, fmt.Errorf("base checkpoint: %w", err)
	}
	var dir, indexName string
	switch {
	case st.IsDir():
		dir = base
		if indexName, err = folderLayout(dir); err != nil {
			return MergeReport{}, err
		}
	case strings.HasSuffix(base, ".index.json"):
		dir, indexName = filepath.Dir(base), filepath.Base(base)
	default:
		return mergeFile(base, adapterDir, out, opt)
	}
	if err := checkOutFolder(out, dir, adapterDir); err != nil {
		return MergeReport{}, err
	}
	release, err := claimOutput(out)
	if err != nil {
		return MergeReport{}, err
	}
	defer release()
	cp, err := openCheckpoint(dir, indexName)
	if err != nil {
		return MergeReport{}, err
	}
	defer cp.close()
	var headers []safetensors.Tensor
	for _, r := range cp.readers {
		headers = append(headers, r.Tensors...)
	}
	a, err := LoadWith(adapterDir, BaseShapes(headers))
	if err != nil {
		return MergeReport{}, err
	}
	subs, plans, err := cp.plan(a, opt.Unmerge)
	if err != nil {
		return MergeReport{}, fmt.Errorf("merge %s into %s: %w; nothing was written", adapterDir, base, err)
	}
	rep, err := cp.write(out, subs, plans, opt)
	if err != nil {
		return rep, fmt.Errorf("merge %s into %s: %w; nothing was written", adapterDir, base, err)
	}
	return rep, nil
}

// claimOutput takes out's lock (atomicfile.Lock: a second merge into out at the same time is
// refused, naming the lock) and removes what a killed merge into out left beside it (the
// temporary siblings ".<out>.tmp-*", atomicfile.CleanTemps). Call release when done.
func claimOutput(out string) (release func(), err error) {
	unlock, ok, err := atomicfile.Lock(out)
	if err != nil {
		return nil, fmt.Errorf("output %w", err)
	}
	if ok {
		if _, err := atomicfile.CleanTemps(out); err != nil {
			unlock()
			return nil, fmt.Errorf("output %s: %w", out, err)
		}
	}
	return unlock, nil
}

// folderLayout returns the name of the checkpoint folder dir's index, or "" when its weights are
// one model.safetensors.
func folderLayout(dir string) (string, error) {
	single := fileExists(filepath.Join(dir, ModelWeightsFile))
	index := fileExists(filepath.Join(dir, ModelIndexFile))
	switch {
	case single && index:
		return "", fmt.Errorf("base folder %s holds both %s and %s, so which weights to merge is ambiguous: remove the stale one, or give the .safetensors file or the index file as --base", dir, ModelWeightsFile, ModelIndexFile)
	case index:
		return ModelIndexFile, nil
	case single:
		return "", nil
	}
	return "", fmt.Errorf("base folder %s holds neither %s nor %s: give a Hugging Face checkpoint folder, a sharded checkpoint's index file, or a .safetensors file", dir, ModelWeightsFile, ModelIndexFile)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// checkOutFolder checks that the folder out can receive a merge of the checkpoint folder baseDir
// without destroying an input or an unrelated folder.
func checkOutFolder(out, baseDir, adapterDir string) error {
	if same, err := SamePath(out, baseDir); err != nil {
		return err
	} else if same {
		return fmt.Errorf("output folder %s is the base checkpoint folder: merging in place would replace the checkpoint being read; write to a new folder (and rename it afterwards if you want it there)", out)
	}
	if strings.HasSuffix(out, ".safetensors") {
		return fmt.Errorf("output %s names a .safetensors file, but merging a checkpoint folder writes a folder (shards, index and the other files): give a folder path, or give one .safetensors file as the base", out)
	}
	st, err := os.Stat(out)
	if errors.Is(err, os.ErrNotExist) {
		parent := filepath.Dir(filepath.Clean(out))
		if pst, err := os.Stat(parent); err != nil || !pst.IsDir() {
			return fmt.Errorf("output folder %s: the folder %s does not exist (create it first)", out, parent)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("output folder %s: %w", out, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output %s is a file, but merging a checkpoint folder writes a folder (shards, index and the other files): give a folder path", out)
	}
	for _, p := range []struct{ what, path string }{{"base checkpoint", baseDir}, {"adapter", adapterDir}} {
		if within(p.path, out) {
			return fmt.Errorf("output folder %s contains the %s %s, which replacing the folder would delete: choose another output folder", out, p.what, p.path)
		}
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("output folder %s: %w", out, err)
	}
	for _, e := range ents {
		if e.Name() == ModelWeightsFile || strings.HasSuffix(e.Name(), ".index.json") {
			return nil // a checkpoint folder (an earlier merge's output): replaced whole
		}
	}
	if len(ents) > 0 {
		return fmt.Errorf("output folder %s exists and is not a checkpoint folder (no %s or *.index.json), and the merge would replace it whole: give a new or empty folder", out, ModelWeightsFile)
	}
	return nil
}

// within reports whether the existing path p is dir or inside it (symbolic links resolved).
func within(p, dir string) bool {
	rp, err1 := filepath.EvalSymlinks(p)
	rd, err2 := filepath.EvalSymlinks(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rp, _ = filepath.Abs(rp)
	rd, _ = filepath.Abs(rd)
	rel, err := filepath.Rel(rd, rp)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// checkpoint is a checkpoint folder opened for merging: its shards' headers, checked against its
// index.
type checkpoint struct {
	dir       string
	indexName string                     // "" for a folder with one model.safetensors
	index     map[string]json.RawMessage // the index's top-level keys
	shards    []string                   // shard file names, sorted
	readers   []*safetensors.Reader      // their headers, in the same order
	where     map[string]int             // tensor name → its shard
}

// openCheckpoint opens the shards of the checkpoint folder dir (listed by its index indexName,
// or the one model.safetensors when indexName is "") and checks the index against their headers.
func openCheckpoint(dir, indexName string) (_ *checkpoint, err error) {
	cp := &checkpoint{dir: dir, indexName: indexName, where: map[string]int{}}
	defer func() {
		if err != nil {
			cp.close()
		}
	}()
	weightMap := map[string]string{}
	if indexName == "" {
		cp.shards = []string{ModelWeightsFile}
	} else if cp.shards, weightMap, err = cp.readIndex(); err != nil {
		return nil, err
	}
	for i, name := range cp.shards {
		r, err := safetensors.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("base checkpoint %s: shard %s, which the index lists, is missing", dir, name)
		} else if err != nil {
			return nil, fmt.Errorf("base checkpoint: %w", err)
		}
		cp.readers = append(cp.readers, r)
		for _, t := range r.Tensors {
			if j, dup := cp.where[t.Name]; dup {
				return nil, fmt.Errorf("base checkpoint %s: tensor %s is in both shards %s and %s; a tensor must be in exactly one shard", dir, t.Name, cp.shards[j], name)
			}
			cp.where[t.Name] = i
		}
	}
	if indexName == "" {
		return cp, nil
	}
	idx := filepath.Join(dir, indexName)
	for _, name := range sortedKeys(weightMap) {
		i, ok := cp.where[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("%s lists tensor %s in shard %s, which does not hold it (nor does any other shard)", idx, name, weightMap[name])
		case cp.shards[i] != weightMap[name]:
			return nil, fmt.Errorf("%s lists tensor %s in shard %s, but it is in shard %s", idx, name, weightMap[name], cp.shards[i])
		}
	}
	for i, r := range cp.readers {
		for _, t := range r.Tensors {
			if _, ok := weightMap[t.Name]; !ok {
				return nil, fmt.Errorf("%s does not list tensor %s, which shard %s holds; the index must list every tensor of its shards", idx, t.Name, cp.shards[i])
			}
		}
	}
	return cp, nil
}

// readIndex reads the index: its top-level keys (kept), its shard file names (sorted) and its
// weight_map.
func (cp *checkpoint) readIndex() ([]string, map[string]string, error) {
	p := filepath.Join(cp.dir, cp.indexName)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("base checkpoint: %w", err)
	}
	if err := safetensors.CheckJSON(b); err != nil { // a tensor listed twice is a duplicate key
		return nil, nil, fmt.Errorf("%s: %w", p, err)
	}
	if err := json.Unmarshal(b, &cp.index); err != nil {
		return nil, nil, fmt.Errorf("%s is not a JSON object: %w", p, err)
	}
	var weightMap map[string]string
	if err := json.Unmarshal(cp.index["weight_map"], &weightMap); err != nil || len(weightMap) == 0 {
		return nil, nil, fmt.Errorf("%s: \"weight_map\" must be a non-empty object of tensor name → shard file name", p)
	}
	if raw, ok := cp.index["metadata"]; ok {
		var md map[string]json.RawMessage
		if err := json.Unmarshal(raw, &md); err != nil {
			return nil, nil, fmt.Errorf("%s: \"metadata\" must be an object: %v", p, err)
		}
	}
	var shards []string
	for _, name := range sortedKeys(weightMap) {
		f := weightMap[name]
		if f == "" || f == "." || f == ".." || filepath.Base(f) != f || f == cp.indexName {
			return nil, nil, fmt.Errorf("%s: tensor %s maps to %q, not the name of a shard file in the folder", p, name, f)
		}
		if !slices.Contains(shards, f) {
			shards = append(shards, f)
		}
	}
	slices.Sort(shards)
	return shards, weightMap, nil
}

func (cp *checkpoint) close() {
	for _, r := range cp.readers {
		_ = r.Close()
	}
	cp.readers = nil
}

// plan splits adapter a by shard — each adapted module goes with its weight, each modules_to_save
// tensor with the base's tensor of that name or, when there is none, to the last shard — and
// plans each shard's merge.
func (cp *checkpoint) plan(a *Adapter, unmerge bool) ([]*Adapter, []*mergePlan, error) {
	last := len(cp.shards) - 1
	subs := make([]*Adapter, len(cp.shards))
	for i := range subs {
		subs[i] = &Adapter{Config: a.Config}
	}
	for _, m := range a.Modules {
		name := m.Path + ".weight"
		i, ok := cp.where[name]
		if !ok {
			return nil, nil, fmt.Errorf("module %s: the base has no tensor %s (in none of its %d shards)", m.Path, name, len(cp.shards))
		}
		subs[i].Modules = append(subs[i].Modules, m)
	}
	for _, s := range a.Saved {
		i, ok := cp.where[s.Name]
		if !ok {
			i = last
		}
		subs[i].Saved = append(subs[i].Saved, s)
	}
	plans := make([]*mergePlan, len(cp.shards))
	for i, r := range cp.readers {
		p, err := planMerge(subs[i], r.Tensors, r.Metadata, unmerge)
		if err != nil {
			return nil, nil, fmt.Errorf("shard %s: %w", cp.shards[i], err)
		}
		plans[i] = p
	}
	return subs, plans, nil
}

// write builds the merged checkpoint folder beside out and moves it into place.
func (cp *checkpoint) write(out string, subs []*Adapter, plans []*mergePlan, opt MergeOptions) (rep MergeReport, err error) {
	tmp, err := atomicfile.TempDir(out)
	if err != nil {
		return rep, fmt.Errorf("output folder %s: %w", out, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	weightMap := map[string]string{}
	var size, params int64
	for i, name := range cp.shards {
		n, err := plans[i].write(filepath.Join(tmp, name), cp.readers[i], subs[i], opt)
		if err != nil {
			return rep, fmt.Errorf("shard %s: %w", name, err)
		}
		size += n
		for _, t := range plans[i].tensors {
			weightMap[t.Name] = name
			params += int64(t.NumElements())
		}
		rep.add(plans[i].rep)
	}
	rep.Shards = len(cp.shards)
	if len(rep.Added) > 0 {
		rep.AddedTo = cp.shards[len(cp.shards)-1]
	}
	if cp.indexName != "" {
		b, err := cp.indexJSON(weightMap, size, params)
		if err != nil {
			return rep, err
		}
		if err := atomicfile.WriteFile(filepath.Join(tmp, cp.indexName), b, 0o644); err != nil {
			return rep, fmt.Errorf("writing the index %s: %w", cp.indexName, err)
		}
	}
	if rep.Copied, rep.NotCopied, err = cp.copyOthers(tmp); err != nil {
		return rep, err
	}
	if err := atomicfile.ReplaceDir(tmp, out); err != nil {
		return rep, fmt.Errorf("moving the merged checkpoint into %s: %w", out, err)
	}
	return rep, nil
}

// add accumulates one shard's report.
func (r *MergeReport) add(s MergeReport) {
	r.Merged = append(r.Merged, s.Merged...)
	r.Replaced = append(r.Replaced, s.Replaced...)
	r.Added = append(r.Added, s.Added...)
	r.Removed = append(r.Removed, s.Removed...)
	r.NotRestored = append(r.NotRestored, s.NotRestored...)
	r.Kept += s.Kept
	r.Rounding.Tensors += s.Rounding.Tensors
	r.Rounding.MaxAbs = max(r.Rounding.MaxAbs, s.Rounding.MaxAbs)
	if s.Rounding.Lost > r.Rounding.Lost {
		r.Rounding.Lost, r.Rounding.LostIn = s.Rounding.Lost, s.Rounding.LostIn
	}
}

// indexJSON is the merged checkpoint's index: the base index's keys, with weight_map replaced and
// metadata.total_size (bytes of tensor data) and, when present, metadata.total_parameters
// recomputed. Keys are sorted, indented by two spaces, as transformers writes them.
func (cp *checkpoint) indexJSON(weightMap map[string]string, size, params int64) ([]byte, error) {
	top := maps.Clone(cp.index)
	md := map[string]json.RawMessage{}
	if raw, ok := top["metadata"]; ok {
		_ = json.Unmarshal(raw, &md) // readIndex checked it is an object
	}
	md["total_size"] = json.RawMessage(strconv.FormatInt(size, 10))
	if _, ok := md["total_parameters"]; ok {
		md["total_parameters"] = json.RawMessage(strconv.FormatInt(params, 10))
	}
	var err error
	if top["metadata"], err = json.Marshal(md); err != nil {
		return nil, err
	}
	if top["weight_map"], err = json.Marshal(weightMap); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// otherWeightExts are the file extensions of weights in other formats, which a merged folder
// leaves out (they would hold the unmerged weights).
var otherWeightExts = []string{".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx", ".npz", ".pkl", ".safetensors"}

// copyOthers copies into tmp the top-level files of the base folder that are not
// its weights — config.json, tokenizer files, … — following symbolic links (a Hugging Face
// cache snapshot links its files to blobs). It returns the names copied and those left out.
func (cp *checkpoint) copyOthers(tmp string) (copied, left []string, err error) {
	ents, err := os.ReadDir(cp.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("base checkpoint %s: %w", cp.dir, err)
	}
	for _, e := range ents {
		name := e.Name()
		if atomicfile.IsTemp(name) || name == cp.indexName || slices.Contains(cp.shards, name) {
			continue
		}
		src := filepath.Join(cp.dir, name)
		st, err := os.Stat(src)
		switch {
		case err != nil:
			left = append(left, name) // a dangling link
			continue
		case st.IsDir():
			left = append(left, name+"/")
			continue
		case !st.Mode().IsRegular() || strings.HasSuffix(name, ".index.json") || slices.Contains(otherWeightExts, strings.ToLower(filepath.Ext(name))):
			left = append(left, name)
			continue
		}
		if err := copyFile(src, filepath.Join(tmp, name), st.Mode().Perm()); err != nil {
			return nil, nil, fmt.Errorf("copying %s: %w", src, err)
		}
		copied = append(copied, name)
	}
	return copied, left, nil
}

// copyFile copies the file src (symbolic links followed) to the new file dst, synced. A copy, not
// a hard link: editing the merged folder's config.json in place must not edit the base's.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
