package pretrain

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/tokenizer/bpe"
)

// Corpus is the tokenised training and held-out text of a config.
type Corpus struct {
	Train, HeldOut       []corpora.Address
	Tok                  *bpe.Tokenizer
	TokJSON              []byte
	TrainIDs, HeldOutIDs []int // <s> text </s> per address, concatenated in year order
}

// loadCorpus reads the addresses of c from the package folder dir, splits them, and trains (or
// reads from <cache>/pretrain/tokenizers) the tokenizer.
func loadCorpus(c Config, dir, cache string, logf func(string, ...any)) (*Corpus, error) {
	all, err := corpora.SOTU(dir)
	if err != nil {
		return nil, err
	}
	if c.Addresses > 0 {
		if c.Addresses > len(all) {
			return nil, fmt.Errorf("--addresses %d: the corpus has %d addresses", c.Addresses, len(all))
		}
		all = all[:c.Addresses]
	}
	train, held := corpora.SOTUSplit(all)
	tok, js, err := tokenizer(c, corpora.Texts(train), cache, logf)
	if err != nil {
		return nil, err
	}
	return &Corpus{Train: train, HeldOut: held, Tok: tok, TokJSON: js,
		TrainIDs: stream(tok, train), HeldOutIDs: stream(tok, held)}, nil
}

// tokenizer returns the BPE of c trained on texts, from the cache when an earlier run trained it.
func tokenizer(c Config, texts []string, cache string, logf func(string, ...any)) (*bpe.Tokenizer, []byte, error) {
	path := filepath.Join(cache, "pretrain", "tokenizers", c.tokenizerKey(), "tokenizer.json")
	if js, err := os.ReadFile(path); err == nil {
		tok, err := bpe.FromJSON(js)
		if err == nil {
			logf("tokenizer: %s (cached)", path)
			return tok, js, nil
		}
		logf("tokenizer: %s is unreadable (%v): training it again", path, err)
	}
	logf("tokenizer: training a %d-token byte-level BPE on %d addresses …", c.VocabSize, len(texts))
	tok, err := bpe.Train(texts, c.VocabSize, c.MinPairCount)
	if err != nil {
		return nil, nil, err
	}
	js, err := tok.JSON()
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, err
	}
	if err := atomicfile.WriteFile(path, js, 0o644); err != nil {
		return nil, nil, err
	}
	logf("tokenizer: %d tokens, written to %s", tok.VocabSize(), path)
	return tok, js, nil
}

// stream tokenises each address as <s> text </s> and concatenates them.
func stream(tok *bpe.Tokenizer, as []corpora.Address) []int {
	var ids []int
	for _, a := range as {
		ids = append(ids, 0)
		ids = append(ids, tok.Encode(a.Text)...)
		ids = append(ids, 1)
	}
	return ids
}

// windows is a token stream cut into examples of seq inputs and seq targets: example i is
// ids[i·seq : i·seq+seq] predicting ids[i·seq+1 : i·seq+seq+1] (the last partial window is
// dropped). It implements train.Dataset and train.TokenCounter.
type windows struct {
	ids []int
	seq int
	// onBatch, when set, is called before each batch is built (the tests' interruption hook).
	onBatch func()
}

func (w *windows) Len() int { return (len(w.ids) - 1) / w.seq }

func (w *windows) NumTokens(idx []int) int { return len(idx) * w.seq }

// Batch returns ids and targets [B, seq] (int32) and the loss mask [B, seq] (float32, all 1).
func (w *windows) Batch(idx []int) ([]*tensors.Tensor, error) {
	if w.onBatch != nil {
		w.onBatch()
	}
	b := len(idx)
	in := make([]int32, b*w.seq)
	tg := make([]int32, b*w.seq)
	mask := make([]float32, b*w.seq)
	for r, i := range idx {
		if i < 0 || i >= w.Len() {
			return nil, fmt.Errorf("window %d of %d", i, w.Len())
		}
		for j := 0; j < w.seq; j++ {
			in[r*w.seq+j] = int32(w.ids[i*w.seq+j])
			tg[r*w.seq+j] = int32(w.ids[i*w.seq+j+1])
			mask[r*w.seq+j] = 1
		}
	}
	return []*tensors.Tensor{tensors.FromFlatDataAndDimensions(in, b, w.seq),
		tensors.FromFlatDataAndDimensions(tg, b, w.seq), tensors.FromFlatDataAndDimensions(mask, b, w.seq)}, nil
}

// targets returns the target ids of every window, in order.
func (w *windows) targets() []int { return w.ids[1 : w.Len()*w.seq+1] }

// spread returns n window indices spread evenly over the windows (all when n ≤ 0 or n ≥ Len).
func (w *windows) spread(n int) []int {
	total := w.Len()
	if n <= 0 || n >= total {
		n = total
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i * total / n
	}
	return out
}

// Score is a language model's held-out result: the mean negative log-likelihood per token (nats),
// its perplexity exp(loss), and bits per byte of text (the total NLL in bits over the UTF-8 bytes
// of the predicted tokens; specials count no bytes), which does not depend on the tokenizer.
type Score struct {
	Loss        float64 `json:"loss"`
	Perplexity  float64 `json:"perplexity"`
	BitsPerByte float64 `json:"bits_per_byte"`
	Tokens      int     `json:"tokens"`
}

func score(nllSum float64, targets []int, tok *bpe.Tokenizer) Score {
	bytes := 0
	for _, t := range targets {
		bytes += len(tok.Token(t))
	}
	n := float64(len(targets))
	return Score{Loss: nllSum / n, Perplexity: math.Exp(nllSum / n), BitsPerByte: nllSum / math.Ln2 / float64(max(bytes, 1)), Tokens: len(targets)}
}

// Baselines are count-based models of the training stream scored on the same held-out targets
// as the network, so that its perplexity means something.
type Baselines struct {
	// Unigram: p(w) = (c(w) + 1) / (N + V), add-one smoothing over the whole vocabulary.
	Unigram Score `json:"unigram"`
	// Bigram: interpolated absolute discounting (D = 0.75, no tuning on held-out text):
	// p(w | v) = max(c(v,w) − D, 0)/c(v) + D·n(v)/c(v) · p_uni(w), with n(v) the number of distinct
	// followers of v; p_uni(w) when v was never seen.
	Bigram Score `json:"bigram"`
}

// baselines fits the unigram and bigram models on train (the training token stream) and scores
// each target of held (held-out windows), with the previous token of the stream as the bigram's
// context.
func baselines(train []int, held *windows, vocab int, tok *bpe.Tokenizer) Baselines {
	uni := make([]float64, vocab)
	ctx := make([]float64, vocab)
	pairs := map[[2]int]float64{}
	for i, t := range train {
		uni[t]++
		if i+1 < len(train) {
			ctx[t]++
			pairs[[2]int{t, train[i+1]}]++
		}
	}
	followers := make([]float64, vocab)
	for p := range pairs {
		followers[p[0]]++
	}
	n := float64(len(train))
	pUni := func(w int) float64 { return (uni[w] + 1) / (n + float64(vocab)) }
	const d = 0.75
	var su, sb float64
	targets := held.targets()
	for i, w := range targets {
		v := held.ids[i] // the token before target i in the stream
		su -= math.Log(pUni(w))
		p := pUni(w)
		if ctx[v] > 0 {
			p = math.Max(pairs[[2]int{v, w}]-d, 0)/ctx[v] + d*followers[v]/ctx[v]*pUni(w)
		}
		sb -= math.Log(p)
	}
	return Baselines{Unigram: score(su, targets, tok), Bigram: score(sb, targets, tok)}
}
