package adapterio

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
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
	// A checkpoint folder's merge (MergeCheckpoint) also reports: the shard files written (1 for a
	// folder with a single model.safetensors), the shard that received the Added tensors, the
	// other files of the base folder copied (config.json, tokenizer files, …), and the entries
	// left out (subfolders, weights in other formats, shards the index does not list).
	Shards    int
	AddedTo   string
	Copied    []string
	NotCopied []string
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
	if len(written.Data) != 2*len(w) || len(w0) != len(w) {
		return fmt.Errorf("tensor %s: %d bytes written for %d values", name, len(written.Data), len(w))
	}
	// Decoded in pieces (16-bit values are exact in float32), not as a whole float64 copy.
	var e2, d2 float64
	got := make([]float32, min(len(w), 4096))
	for lo := 0; lo < len(w); lo += len(got) {
		piece := got[:min(len(got), len(w)-lo)]
		if err := safetensors.DecodeFloat32s(written.DType, written.Data[2*lo:2*(lo+len(piece))], piece); err != nil {
			return fmt.Errorf("tensor %s: %w", name, err)
		}
		for k, g := range piece {
			i := lo + k
			e := float64(g) - w[i]
			r.MaxAbs = max(r.MaxAbs, math.Abs(e))
			e2 += e * e
			d := w[i] - w0[i]
			d2 += d * d
		}
	}
	r.Tensors++
	if d2 > 0 {
		if lost := math.Sqrt(e2 / d2); lost > r.Lost {
			r.Lost, r.LostIn = lost, name
		}
	}
	return nil
}

// MergeOptions are the choices of a merge (MergeCheckpoint).
type MergeOptions struct {
	// Unmerge subtracts the adapter's frozen ΔW instead of adding it (see MergeTensors).
	Unmerge bool
	// Safe is PEFT's safe_merge: before merging each adapted weight it also checks that the base's
	// own values are finite, so that a checkpoint that already holds NaN or ±Inf is reported
	// naming its tensor instead of the merge blaming the adapter. Every tensor a merge writes is
	// checked for NaN/Inf whether or not Safe is set.
	Safe bool
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
	p, err := planMerge(a, base.Tensors, base.Metadata, unmerge)
	if err != nil {
		return nil, MergeReport{}, err
	}
	byName := make(map[string]*safetensors.Tensor, len(base.Tensors))
	for i := range base.Tensors {
		byName[base.Tensors[i].Name] = &base.Tensors[i]
	}
	out := make([]safetensors.Tensor, len(p.tensors))
	for i := range p.tensors {
		t := &p.tensors[i]
		if t.src == srcBase {
			out[i] = *byName[t.Name]
			continue
		}
		out[i], err = p.compute(a, t, byName[t.Name], MergeOptions{Unmerge: unmerge})
		if err != nil {
			return nil, p.rep, err
		}
	}
	return &safetensors.File{Tensors: out, Metadata: p.metadata}, p.rep, nil
}

// tensorSource says where a merged checkpoint's tensor comes from.
type tensorSource int

const (
	srcBase   tensorSource = iota // the base's tensor, unchanged
	srcMerged                     // the base's weight with an adapted module's ΔW added (or subtracted)
	srcSaved                      // one of the adapter's modules_to_save tensors
)

// plannedTensor is one tensor of a merged checkpoint: its header (Data nil) and its source.
type plannedTensor struct {
	safetensors.Tensor
	src    tensorSource
	module *Module      // srcMerged
	saved  *SavedTensor // srcSaved
}

// mergePlan is a merge decided from the base's header alone: the output tensors in order, the
// output metadata, and the report's lists (its Rounding is filled in as tensors are computed).
type mergePlan struct {
	tensors  []plannedTensor
	metadata map[string]string
	rep      MergeReport
}

// planMerge checks adapter a against the base tensors' headers (names, shapes, dtypes; Data is
// not read) and metadata, and plans the merge (or unmerge) MergeTensors documents.
func planMerge(a *Adapter, base []safetensors.Tensor, md map[string]string, unmerge bool) (*mergePlan, error) {
	p := &mergePlan{tensors: make([]plannedTensor, len(base))}
	index := map[string]int{}
	for i, t := range base {
		index[t.Name] = i
		p.tensors[i].Tensor = safetensors.Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	added, err := mergeAdded(md)
	if err != nil {
		return nil, err
	}
	for _, m := range a.Modules {
		name := m.Path + ".weight"
		i, ok := index[name]
		if !ok {
			return nil, fmt.Errorf("module %s: the base has no tensor %s", m.Path, name)
		}
		t := base[i]
		want := []int{m.Out, m.In}
		if m.Layout == peft.InOut {
			want = []int{m.In, m.Out}
		}
		if !slices.Equal(t.Shape, want) {
			return nil, fmt.Errorf("module %s: base tensor %s has shape %v, the adapter needs %v (in=%d, out=%d, layout %s)", m.Path, name, t.Shape, want, m.In, m.Out, m.Layout)
		}
		if !safetensors.IsFloat(t.DType) {
			return nil, fmt.Errorf("module %s: base tensor %s has dtype %s, not a float type", m.Path, name, t.DType)
		}
		p.tensors[i].src, p.tensors[i].module = srcMerged, m
		p.rep.Merged = append(p.rep.Merged, name)
	}
	drop := map[int]bool{}
	for k := range a.Saved {
		s := &a.Saved[k]
		i, inBase := index[s.Name]
		switch {
		case unmerge && inBase && slices.Contains(added, s.Name):
			drop[i] = true
			added = slices.DeleteFunc(added, func(n string) bool { return n == s.Name })
			p.rep.Removed = append(p.rep.Removed, s.Name)
		case unmerge && inBase:
			p.rep.NotRestored = append(p.rep.NotRestored, s.Name)
		case unmerge:
		case inBase:
			t := base[i]
			if !slices.Equal(t.Shape, s.Shape) {
				return nil, fmt.Errorf("module to save %s: base shape %v, adapter shape %v", s.Name, t.Shape, s.Shape)
			}
			if !safetensors.IsFloat(t.DType) {
				return nil, fmt.Errorf("module to save %s: base dtype %s is not a float type", s.Name, t.DType)
			}
			p.tensors[i].src, p.tensors[i].saved = srcSaved, s
			p.rep.Replaced = append(p.rep.Replaced, s.Name)
		default:
			p.tensors = append(p.tensors, plannedTensor{Tensor: safetensors.Tensor{Name: s.Name, DType: safetensors.F32, Shape: s.Shape}, src: srcSaved, saved: s})
			if !slices.Contains(added, s.Name) {
				added = append(added, s.Name)
			}
			p.rep.Added = append(p.rep.Added, s.Name)
		}
	}
	for i := range base {
		if p.tensors[i].src == srcBase && !drop[i] {
			p.rep.Kept++
		}
	}
	if len(drop) > 0 {
		kept := p.tensors[:0:0]
		for i, t := range p.tensors {
			if !drop[i] {
				kept = append(kept, t)
			}
		}
		p.tensors = kept
	}
	p.metadata = maps.Clone(md)
	if len(added) > 0 {
		slices.Sort(added)
		b, _ := json.Marshal(added) // a list of strings always marshals
		if p.metadata == nil {
			p.metadata = map[string]string{}
		}
		p.metadata[MergeAddedKey] = string(b)
	} else {
		delete(p.metadata, MergeAddedKey)
	}
	return p, nil
}

// compute returns the data of planned tensor t (not srcBase), given the base's tensor of that
// name with its data (nil for an added modules_to_save tensor), checking that it is finite; with
// opt.Safe an adapted weight's base values are checked first. A merge's rounding is added to the
// plan's report.
func (p *mergePlan) compute(a *Adapter, t *plannedTensor, base *safetensors.Tensor, opt MergeOptions) (safetensors.Tensor, error) {
	if t.src == srcSaved {
		nt, err := safetensors.FromFloat32s(t.Name, t.DType, t.Shape, t.saved.Data)
		if err != nil {
			return nt, err
		}
		return nt, checkFinite(nt, nil, nil)
	}
	if opt.Safe {
		if err := checkBaseFinite(base, opt.Unmerge); err != nil {
			return safetensors.Tensor{}, err
		}
	}
	w0, err := base.Float64s()
	if err != nil {
		return safetensors.Tensor{}, err
	}
	w, err := MergeWeight(a, t.module, w0, opt.Unmerge)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	nt, err := safetensors.FromFloat64s(t.Name, t.DType, t.Shape, w)
	if err != nil {
		return nt, err
	}
	if err := checkFinite(nt, w, w0); err != nil {
		return nt, err
	}
	if !opt.Unmerge {
		if err := p.rep.Rounding.add(t.Name, w0, w, &nt); err != nil {
			return nt, err
		}
	}
	return nt, nil
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

// nonFiniteAt returns the index of the first NaN or ±Inf among the little-endian values of the
// float dtype in b (read from their bits, without decoding the whole tensor), or -1.
func nonFiniteAt(dtype string, b []byte) int {
	switch dtype {
	case safetensors.F32:
		for j := 0; j+4 <= len(b); j += 4 {
			if binary.LittleEndian.Uint32(b[j:])&0x7f800000 == 0x7f800000 {
				return j / 4
			}
		}
	case safetensors.F64:
		for j := 0; j+8 <= len(b); j += 8 {
			if binary.LittleEndian.Uint64(b[j:])&0x7ff0000000000000 == 0x7ff0000000000000 {
				return j / 8
			}
		}
	case safetensors.F16, safetensors.BF16:
		mask := uint16(0x7c00) // F16: 5 exponent bits
		if dtype == safetensors.BF16 {
			mask = 0x7f80 // BF16: 8 exponent bits
		}
		for j := 0; j+2 <= len(b); j += 2 {
			if binary.LittleEndian.Uint16(b[j:])&mask == mask {
				return j / 2
			}
		}
	}
	return -1
}

// valueAt decodes element j of tensor t (a float dtype whose values are at least 2 bytes).
func valueAt(t *safetensors.Tensor, j int) float64 {
	size := len(t.Data) / max(t.NumElements(), 1)
	one := safetensors.Tensor{Name: t.Name, DType: t.DType, Shape: []int{1}, Data: t.Data[j*size : (j+1)*size]}
	v, _ := one.Float64s() // one element of a float dtype always decodes
	return v[0]
}

// position formats flat index j of a tensor of shape as "[row, col]" for a matrix.
func position(shape []int, j int) string {
	if len(shape) == 2 && shape[1] > 0 {
		return fmt.Sprintf("[%d, %d]", j/shape[1], j%shape[1])
	}
	return fmt.Sprintf("flat index %d", j)
}

// checkFinite returns an error naming t and the first position where t, as encoded in its dtype,
// is NaN or ±Inf. want (the float64 values before rounding to the dtype) and w0 (the base
// values), when given, are quoted in the error.
func checkFinite(t safetensors.Tensor, want, w0 []float64) error {
	j := nonFiniteAt(t.DType, t.Data)
	if j < 0 {
		return nil
	}
	detail := ""
	if want != nil && w0 != nil {
		detail = fmt.Sprintf(" (merged value %v, base value %v)", want[j], w0[j])
	}
	return fmt.Errorf("tensor %s: the merged value at %s is %v in %s%s; the adapter is too large for this checkpoint", t.Name, position(t.Shape, j), valueAt(&t, j), t.DType, detail)
}

// checkBaseFinite (merge --safe) returns an error naming the base tensor t and the first position
// where it is already NaN or ±Inf, before anything is merged into it.
func checkBaseFinite(t *safetensors.Tensor, unmerge bool) error {
	j := nonFiniteAt(t.DType, t.Data)
	if j < 0 {
		return nil
	}
	what := "merge into"
	if unmerge {
		what = "unmerge from"
	}
	return fmt.Errorf("base tensor %s: the value at %s is already %v in %s before any merge: the base checkpoint is not finite, so there is nothing to %s (not the adapter's doing)", t.Name, position(t.Shape, j), valueAt(t, j), t.DType, what)
}

// MergeFile merges (or with unmerge, unmerges) the adapter folder adapterDir into the safetensors
// file basePath and writes the result to outPath, copying every other tensor and the metadata
// unchanged (see MergeTensors for modules_to_save tensors). A SingLoRA module that the adapter's
// module_shapes does not list takes its [out, in] from the base tensor's shape. Everything is
// checked before anything is written, and the output is streamed to a temporary file that
// becomes outPath only once complete and checked, so outPath may equal basePath without risk of
// a half-written file; an error leaves outPath as it was. A second merge into outPath at the same
// time is refused, and the temporary file a killed merge left is removed (claimOutput). Unchanged tensors are copied in pieces
// and merged ones computed one at a time, so memory stays near the largest merged tensor.
// outPath's folder must exist, and outPath may not be a file of the adapter folder.
func MergeFile(basePath, adapterDir, outPath string, unmerge bool) (MergeReport, error) {
	return mergeFile(basePath, adapterDir, outPath, MergeOptions{Unmerge: unmerge})
}

func mergeFile(basePath, adapterDir, outPath string, opt MergeOptions) (MergeReport, error) {
	if err := safetensors.CheckOutputPath(outPath); err != nil {
		return MergeReport{}, fmt.Errorf("output %w", err)
	}
	if err := notAdapterFile(outPath, adapterDir); err != nil {
		return MergeReport{}, err
	}
	release, err := claimOutput(outPath)
	if err != nil {
		return MergeReport{}, err
	}
	defer release()
	r, err := safetensors.Open(basePath)
	if err != nil {
		return MergeReport{}, fmt.Errorf("base checkpoint: %w", err)
	}
	defer r.Close()
	a, err := LoadWith(adapterDir, BaseShapes(r.Tensors))
	if err != nil {
		return MergeReport{}, err
	}
	p, err := planMerge(a, r.Tensors, r.Metadata, opt.Unmerge)
	if err != nil {
		return MergeReport{}, fmt.Errorf("merge %s into %s: %w; nothing was written", adapterDir, basePath, err)
	}
	if _, err := p.write(outPath, r, a, opt); err != nil {
		return p.rep, fmt.Errorf("merge %s into %s: %w; nothing was written", adapterDir, basePath, err)
	}
	return p.rep, nil
}

// notAdapterFile refuses an output path that is one of the adapter folder's own files.
func notAdapterFile(outPath, adapterDir string) error {
	for _, name := range []string{WeightsFile, ConfigFile} {
		p := filepath.Join(adapterDir, name)
		if same, err := SamePath(outPath, p); err != nil {
			return err
		} else if same {
			return fmt.Errorf("output %s is the adapter's own %s; writing the merged checkpoint there would destroy the adapter: choose another output path", outPath, name)
		}
	}
	return nil
}

// write streams the planned checkpoint to path (atomically, see safetensors.Create): unchanged
// tensors are copied from the base file r in 1 MiB pieces, the others computed one at a time.
// It returns the bytes of tensor data written.
func (p *mergePlan) write(path string, r *safetensors.Reader, a *Adapter, opt MergeOptions) (int64, error) {
	headers := make([]safetensors.Tensor, len(p.tensors))
	for i, t := range p.tensors {
		headers[i] = t.Tensor
	}
	sections, f, err := tensorSections(r)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w, err := safetensors.Create(path, headers, p.metadata)
	if err != nil {
		return 0, err
	}
	var total int64
	buf := make([]byte, 1<<20)
	for i := range p.tensors {
		t := &p.tensors[i]
		if t.src == srcBase {
			n, err := io.CopyBuffer(w, sections[t.Name], buf)
			total += n
			if err != nil {
				w.Abort()
				return 0, fmt.Errorf("copying tensor %s from %s: %w", t.Name, r.Path(), err)
			}
			continue
		}
		var base *safetensors.Tensor
		if t.src == srcMerged {
			if base, err = r.Tensor(t.Name); err != nil {
				w.Abort()
				return 0, err
			}
		}
		nt, err := p.compute(a, t, base, opt)
		if err != nil {
			w.Abort()
			return 0, err
		}
		if _, err := w.Write(nt.Data); err != nil {
			w.Abort()
			return 0, err
		}
		total += int64(len(nt.Data))
	}
	return total, w.Close()
}

// tensorSections opens r's file a second time and returns a reader of each tensor's bytes. The
// data buffer follows the 8-byte length and the header, and Open checked that the tensors, in
// the order r lists them, tile it without gaps; the file's size is checked against that layout.
func tensorSections(r *safetensors.Reader) (map[string]*io.SectionReader, *os.File, error) {
	f, err := os.Open(r.Path())
	if err != nil {
		return nil, nil, err
	}
	var n [8]byte
	st, err := f.Stat()
	if err == nil {
		_, err = f.ReadAt(n[:], 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%s: %w", r.Path(), err)
	}
	off := 8 + int64(binary.LittleEndian.Uint64(n[:]))
	out := make(map[string]*io.SectionReader, len(r.Tensors))
	for _, t := range r.Tensors {
		size, _ := r.ByteSize(t.Name)
		out[t.Name] = io.NewSectionReader(f, off, int64(size))
		off += int64(size)
	}
	if off != st.Size() {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%s changed while being merged (%d bytes, its header says %d)", r.Path(), st.Size(), off)
	}
	return out, f, nil
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
