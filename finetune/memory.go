package finetune

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/singlora/singlora/peft"
)

// activationFactor is the ratio of a training step's peak activation memory to the linear
// layers' inputs and outputs alone (norms, attention, activations and the backward's gradients
// make up the rest). Calibrated on USE-Lite with SingLoRA r=8 on the IMDB sentences (up to 128
// tokens; peak RSS 0.56, 1.61, 5.10, 6.69 GB at batch 8, 64, 256, 512): with the model's 0.5 GB
// added, the estimate is 0.63, 1.6, 4.8, 9.1 GB, so it is used only to refuse steps far larger
// than the machine, never to tune one.
const activationFactor = 2

// stepActivationBytes estimates the memory a training step's activations take: for each example
// of the batch, seqLen positions × the sum of every linear layer's input and output widths, in
// float32, times activationFactor; plus, for a causal LM, the logits and their gradient
// (seqLen × vocab, twice).
func stepActivationBytes(linears []peft.LinearSpec, batch, seqLen, vocab int) int64 {
	var widths int64
	for _, l := range linears {
		widths += int64(l.In + l.Out)
	}
	perExample := int64(seqLen) * (activationFactor*widths + 2*int64(vocab)) * 4
	return int64(batch) * perExample
}

// availableMemory returns the memory this process can still use: the kernel's MemAvailable,
// lowered to the cgroup's limit minus its usage where one is set; ok is false where neither can
// be read (then nothing is refused).
func availableMemory() (int64, bool) {
	avail, ok := meminfoAvailable()
	if lim, err := readInt("/sys/fs/cgroup/memory.max"); err == nil {
		if cur, err := readInt("/sys/fs/cgroup/memory.current"); err == nil && lim > cur {
			if !ok || lim-cur < avail {
				avail, ok = lim-cur, true
			}
		}
	}
	return avail, ok
}

func meminfoAvailable() (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64) // "max" is an error: no limit
}

// checkStepMemory refuses a batch whose estimated activation memory exceeds the memory available,
// naming the flags that lower it. seqLen is the longest training example in tokens (what a batch
// is padded to at worst).
func checkStepMemory(c Config, linears []peft.LinearSpec, seqLen, vocab int) error {
	avail, ok := availableMemory()
	if !ok {
		return nil
	}
	need := stepActivationBytes(linears, c.Batch, seqLen, vocab)
	if need <= avail {
		return nil
	}
	fit := int64(c.Batch) * avail / need
	hint := fmt.Sprintf("lower --batch to at most about %d and raise --accum to keep the effective batch", max(fit, 1))
	if fit < 1 {
		hint = "lower --max-length, or use a machine with more memory"
	}
	return fmt.Errorf("--batch %d at up to %d tokens per example needs about %.1f GB for the training step's activations, more than the %.1f GB of memory available: %s",
		c.Batch, seqLen, float64(need)/1e9, float64(avail)/1e9, hint)
}
