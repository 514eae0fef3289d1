package use

import (
	"fmt"
	"sync"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/peft"
)

// Tokenize returns the ids of each text, clipped to MaxLength.
func (m *Model) Tokenize(texts []string) [][]int {
	out, _ := m.TokenizeClipped(texts)
	return out
}

// TokenizeClipped is Tokenize that also returns how many texts had more than MaxLength tokens
// (and lost the rest).
func (m *Model) TokenizeClipped(texts []string) (rows [][]int, clipped int) {
	rows = make([][]int, len(texts))
	for i, t := range texts {
		ids := m.Tokenizer.Encode(t)
		if len(ids) > m.maxLength {
			ids = ids[:m.maxLength]
			clipped++
		}
		rows[i] = ids
	}
	return rows, clipped
}

// PadBatch packs token ids into ids [n, L] (int32, padding 0) and mask [n, L] (float32, 1 at
// real tokens), L being the longest row (at most MaxLength) rounded up to a multiple of
// multiple (≥ 1), so that few distinct shapes get compiled.
func (m *Model) PadBatch(rows [][]int, multiple int) (ids, mask *tensors.Tensor) {
	if multiple < 1 {
		multiple = 1
	}
	longest := 1
	for _, r := range rows {
		longest = max(longest, min(len(r), m.maxLength))
	}
	length := (longest + multiple - 1) / multiple * multiple
	length = min(length, max(m.maxLength, longest))
	idData := make([]int32, len(rows)*length)
	maskData := make([]float32, len(rows)*length)
	for i, r := range rows {
		for j, id := range r {
			if j >= length {
				break
			}
			idData[i*length+j] = int32(id)
			maskData[i*length+j] = 1
		}
	}
	return tensors.FromFlatDataAndDimensions(idData, len(rows), length),
		tensors.FromFlatDataAndDimensions(maskData, len(rows), length)
}

// Embedder computes embeddings of texts in batches with one compiled graph per padded shape.
type Embedder struct {
	m         *Model
	exec      *model.Exec
	mu        sync.Mutex
	BatchSize int // sentences per call (default 64)
	PadTo     int // the padded length is a multiple of this (default 16)
}

// NewEmbedder returns an Embedder computing Embed with inj (nil: the plain model).
func (m *Model) NewEmbedder(backend compute.Backend, inj *peft.Injection) (*Embedder, error) {
	exec, err := model.NewExec(backend, m.Store, func(scope *model.Scope, ids, mask *Node) *Node {
		return m.Embed(inj, scope, ids, mask)
	})
	if err != nil {
		return nil, err
	}
	return &Embedder{m: m, exec: exec, BatchSize: 64, PadTo: 16}, nil
}

// EmbedIDs embeds pre-tokenised sentences; each result has OutputDim values.
func (e *Embedder) EmbedIDs(rows [][]int) ([][]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	bs := e.BatchSize
	if bs < 1 {
		bs = 64
	}
	out := make([][]float32, 0, len(rows))
	for start := 0; start < len(rows); start += bs {
		chunk := rows[start:min(start+bs, len(rows))]
		ids, mask := e.m.PadBatch(chunk, e.PadTo)
		res, err := e.exec.Call(ids, mask)
		if err != nil {
			return nil, fmt.Errorf("embedding batch at %d: %w", start, err)
		}
		flat, err := tensors.CopyFlatData[float32](res[0])
		if err != nil {
			return nil, err
		}
		for i := range chunk {
			out = append(out, flat[i*OutputDim:(i+1)*OutputDim])
		}
	}
	return out, nil
}

// EmbedTexts tokenises and embeds texts.
func (e *Embedder) EmbedTexts(texts []string) ([][]float32, error) {
	return e.EmbedIDs(e.m.Tokenize(texts))
}
