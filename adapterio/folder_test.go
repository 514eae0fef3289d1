package adapterio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/peft"
)

// TestSaveOverExistingFolder: saving over an adapter folder replaces its weights and config
// together (one folder swap), keeps the other files a user put there, and leaves no temporary
// files.
func TestSaveOverExistingFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := Save(dir, newAdapter(t, peft.SingLoRA, testSpecs, 3, 6, false, 100, 10, 1)); err != nil {
		t.Fatal(err)
	}
	readme := []byte("my notes\n")
	if err := os.WriteFile(filepath.Join(dir, "README.md"), readme, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "extra"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "extra", "x.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, WeightsFile))
	if err := Save(dir, newAdapter(t, peft.SingLoRA, testSpecs, 3, 6, false, 100, 20, 2)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, WeightsFile))
	if bytes.Equal(before, after) {
		t.Fatal("the weights were not replaced")
	}
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Config.TrainedSteps != 20 {
		t.Fatalf("trained_steps %d, want the new adapter's 20", a.Config.TrainedSteps)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "README.md")); !bytes.Equal(b, readme) {
		t.Errorf("README.md not kept: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "extra", "x.txt")); string(b) != "x" {
		t.Errorf("extra/x.txt not kept: %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	for _, e := range entries {
		if atomicfile.IsTemp(e.Name()) {
			t.Errorf("stray %s beside the adapter", e.Name())
		}
	}
}
