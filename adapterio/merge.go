package adapterio

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// MergeAddedKey is the safetensors metadata key under which a merge records (as a JSON list of
// names) the modules_to_save tensors it added to a checkpoint that did not have them, so that an
// unmerge can remove exactly those.
const MergeAddedKey = "singlora_merge_added"

// MergeReport says what MergeFile changed.
type MergeReport struct {
	Merged   []string // base tensor names updated with an adapter's ΔW
	Replaced []string // merge: modules_to_save tensors written over the base's
	Added    []string // merge: modules_to_save tensors the base did not have
	// Removed (unmerge) are modules_to_save tensors the merge had added (listed under
	// MergeAddedKey), dropped again.
	Removed []string
	// NotRestored (unmerge) are modules_to_save tensors of the adapter that the file holds but
	// that the merge did not record adding: the merge replaced the base's own tensor (whose
	// original values are not in the adapter), or the file was merged by another tool. They are
	// kept with the values they have.
	NotRestored []string
	Kept        int // tensors copied unchanged
	// Rounding measures what writing merged weights back in 16 bits (an F16/BF16 base) lost, over
	// all such tensors; zero for float32 bases.
	Rounding Rounding
}

// Rounding is the effect of rounding merged weights W = W0 + ΔW to the base's 16-bit dtype.
type Rounding struct {
	Tensors int     // merged tensors written in 16 bits
	MaxAbs  float64 // max |round(W) − W| over their entries
	// Lost is the largest fraction of a tensor's update that rounding took away:
	// ‖round(W) − W‖ / ‖W − W0‖ (Frobenius norms), and LostIn that tensor. A value near 1 means
	// the update is below the 16-bit spacing of W0's values and mostly vanished.
	Lost   float64
	LostIn string
}

// add records tensor name's merged values w (exact, float64), written as written, over w0.
func (r *Rounding) add(name string, w0, w []float64, written *safetensors.Tensor) error {
	if written.DType != safetensors.F16 && written.DType != safetensors.BF16 {
		return nil
	}
	got, err := written.Float64s()
	if err != nil {
		return err
	}
	var e2, d2 float64
	for i := range w {
		e := got[i] - w[i]
		r.MaxAbs = max(r.MaxAbs, math.Abs(e))
		e2 += e * e
		d := w[i] - w0[i]
		d2 += d * d
	}
	r.Tensors++
	if d2 > 0 {
		if lost := math.Sqrt(e2 / d2); lost > r.Lost {
			r.Lost, r.LostIn = lost, name
		}
	}
	return nil
}

// MergeTensors merges (or unmerges) adapter a into the checkpoint base and returns the new file
// (tensors in the same order, modules_to_save tensors absent from the base appended). Each
// adapted module "<path>" needs the base tensor "<path>.weight" of shape [out, in] (or [in, out]
// for fan_in_fan_out modules). Weights are merged in float64 and written back in their own dtype
// (F16 and BF16 rounded to nearest even through float32); every tensor written must be finite in
// its dtype, or nothing is returned.
//
// Merge writes the adapter's modules_to_save tensors over the base's, appends those the base
// lacks, and records the appended names in the metadata under MergeAddedKey. Unmerge subtracts
// the same frozen ΔW, removes the modules_to_save tensors recorded there (they were not in the
// original base), and keeps the others it finds (reported as NotRestored: their originals are not
// in the adapter).
func MergeTensors(a *Adapter, base *safetensors.File, unmerge bool) (*safetensors.File, MergeReport, error) {
	var rep MergeReport
	out := slices.Clone(base.Tensors)
	index := map[string]int{}
	for i, t := range out {
		index[t.Name] = i
	}
	added, err := mergeAdded(base.Metadata)
	if err != nil {
		return nil, rep, err
	}
	changed := map[int]bool{}
	for _, m := range a.Modules {
		name := m.Path + ".weight"
		i, ok := index[name]
		if !ok {
			return nil, rep, fmt.Errorf("module %s: the base has no tensor %s", m.Path, name)
		}
		t := out[i]
		want := []int{m.Out, m.In}
		if m.Layout == peft.InOut {
			want = []int{m.In, m.Out}
		}
		if !slices.Equal(t.Shape, want) {
			return nil, rep, fmt.Errorf("module %s: base tensor %s has shape %v, the adapter needs %v (in=%d, out=%d, layout %s)", m.Path, name, t.Shape, want, m.In, m.Out, m.Layout)
		}
		if !safetensors.IsFloat(t.DType) {
			return nil, rep, fmt.Errorf("module %s: base tensor %s has dtype %s, not a float type", m.Path, name, t.DType)
		}
		w0, err := t.Float64s()
		if err != nil {
			return nil, rep, err
		}
		w, err := MergeWeight(a, m, w0, unmerge)
		if err != nil {
			return nil, rep, err
		}
		nt, err := safetensors.FromFloat64s(name, t.DType, t.Shape, w)
		if err != nil {
			return nil, rep, err
		}
		if err := checkFinite(nt, w, w0); err != nil {
			return nil, rep, err
		}
		if !unmerge {
			if err := rep.Rounding.add(name, w0, w, &nt); err != nil {
				return nil, rep, err
			}
		}
		out[i] = nt
		changed[i] = true
		rep.Merged = append(rep.Merged, name)
	}
	drop := map[int]bool{}
	for _, s := range a.Saved {
		i, inBase := index[s.Name]
		switch {
		case unmerge && inBase && slices.Contains(added, s.Name):
			drop[i] = true
			added = slices.DeleteFunc(added, func(n string) bool { return n == s.Name })
			rep.Removed = append(rep.Removed, s.Name)
		case unmerge && inBase:
			rep.NotRestored = append(rep.NotRestored, s.Name)
		case unmerge:
		case inBase:
			t := out[i]
			if !slices.Equal(t.Shape, s.Shape) {
				return nil, rep, fmt.Errorf("module to save %s: base shape %v, adapter shape %v", s.Name, t.Shape, s.Shape)
			}
			if !safetensors.IsFloat(t.DType) {
				return nil, rep, fmt.Errorf("module to save %s: base dtype %s is not a float type", s.Name, t.DType)
			}
			nt, err := safetensors.FromFloat32s(s.Name, t.DType, s.Shape, s.Data)
			if err != nil {
				return nil, rep, err
			}
			if err := checkFinite(nt, nil, nil); err != nil {
				return nil, rep, err
			}
			out[i] = nt
			changed[i] = true
			rep.Replaced = append(rep.Replaced, s.Name)
		default:
			nt, err := safetensors.FromFloat32s(s.Name, safetensors.F32, s.Shape, s.Data)
			if err != nil {
				return nil, rep, err
			}
			out = append(out, nt)
			if !slices.Contains(added, s.Name) {
				added = append(added, s.Name)
			}
			rep.Added = append(rep.Added, s.Name)
		}
	}
	if len(drop) > 0 {
		kept := out[:0:0]
		for i, t := range out {
			if !drop[i] {
				kept = append(kept, t)
			}
		}
		out = kept
	}
	md := maps.Clone(base.Metadata)
	if len(added) > 0 {
		slices.Sort(added)
		b, _ := json.Marshal(added) // a list of strings always marshals
		if md == nil {
			md = map[string]string{}
		}
		md[MergeAddedKey] = string(b)
	} else {
		delete(md, MergeAddedKey)
	}
	for i := range base.Tensors {
		if !changed[i] && !drop[i] {
			rep.Kept++
		}
	}
	return &safetensors.File{Tensors: out, Metadata: md}, rep, nil
}

// mergeAdded returns the tensor names recorded under MergeAddedKey.
func mergeAdded(md map[string]string) ([]string, error) {
	v, ok := md[MergeAddedKey]
	if !ok {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(v), &names); err != nil {
		return nil, fmt.Errorf("metadata %s = %q is not a JSON list of tensor names: %v", MergeAddedKey, v, err)
	}
	return names, nil
}

// checkFinite returns an error naming t and the first position where t, as encoded in its dtype,
// is NaN or ±Inf. want (the float64 values before rounding to the dtype) and w0 (the base
// values), when given, are quoted in the error.
func checkFinite(t safetensors.Tensor, want, w0 []float64) error {
	vals, err := t.Float64s()
	if err != nil {
		return err
	}
	for j, v := range vals {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			continue
		}
		pos := fmt.Sprintf("flat index %d", j)
		if len(t.Shape) == 2 {
			pos = fmt.Sprintf("[%d, %d]", j/t.Shape[1], j%t.Shape[1])
		}
		detail := ""
		if want != nil && w0 != nil {
			detail = fmt.Sprintf(" (merged value %v, base value %v)", want[j], w0[j])
		}
		return fmt.Errorf("tensor %s: the merged value at %s is %v in %s%s; the adapter is too large for this checkpoint", t.Name, pos, v, t.DType, detail)
	}
	return nil
}

// MergeFile merges (or with unmerge, unmerges) the adapter folder adapterDir into the safetensors
// file basePath and writes the result to outPath, copying every other tensor and the metadata
// unchanged (see MergeTensors for modules_to_save tensors). A SingLoRA module that the adapter's
// module_shapes does not list takes its [out, in] from the base tensor's shape. Everything is
// checked and computed before anything is written; the output is written atomically, so outPath
// may equal basePath without risk of a half-written file. outPath's folder must exist, and
// outPath may not be a file of the adapter folder.
func MergeFile(basePath, adapterDir, outPath string, unmerge bool) (MergeReport, error) {
	if err := safetensors.CheckOutputPath(outPath); err != nil {
		return MergeReport{}, fmt.Errorf("output %w", err)
	}
	for _, name := range []string{WeightsFile, ConfigFile} {
		p := filepath.Join(adapterDir, name)
		if same, err := SamePath(outPath, p); err != nil {
			return MergeReport{}, err
		} else if same {
			return MergeReport{}, fmt.Errorf("output %s is the adapter's own %s; writing the merged checkpoint there would destroy the adapter: choose another output path", outPath, name)
		}
	}
	f, err := safetensors.Read(basePath)
	if err != nil {
		return MergeReport{}, fmt.Errorf("base checkpoint: %w", err)
	}
	a, err := LoadWith(adapterDir, BaseShapes(f.Tensors))
	if err != nil {
		return MergeReport{}, err
	}
	merged, rep, err := MergeTensors(a, f, unmerge)
	if err != nil {
		return rep, fmt.Errorf("merge %s into %s: %w; nothing was written", adapterDir, basePath, err)
	}
	if err := safetensors.Write(outPath, merged.Tensors, merged.Metadata); err != nil {
		return rep, err
	}
	return rep, nil
}

// ExportLoRAFolder exports the adapter folder src as a plain PEFT LoRA adapter folder dst, which
// must not be src itself (that would replace the adapter with its export).
func ExportLoRAFolder(src, dst string) (*Adapter, error) {
	if same, err := SamePath(src, dst); err != nil {
		return nil, err
	} else if same {
		return nil, fmt.Errorf("export %s: the output folder %s is the source adapter folder; exporting there would replace the adapter with its LoRA export: choose a new folder", src, dst)
	}
	a, err := Load(src)
	if err != nil {
		return nil, err
	}
	e, err := ExportLoRA(a)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", src, err)
	}
	return e, Save(dst, e)
}
