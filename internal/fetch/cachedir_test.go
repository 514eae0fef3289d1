package fetch

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCacheDir: $SINGLORA_CACHE wins; inside this repository the cache is its .cache; another
// project's go.mod is not taken for the repository; outside any, the user's cache folder.
func TestCacheDir(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "singlora")
	other := filepath.Join(repo, "vendor", "other")
	for dir, mod := range map[string]string{repo: "module " + Module + "\n\ngo 1.27\n", other: "module example.com/other\n"} {
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(root, "elsewhere")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", filepath.Join(root, "xdg"))
	for _, tc := range []struct {
		wd, env, want string
	}{
		{filepath.Join(repo, "sub"), "", filepath.Join(repo, ".cache")},
		{filepath.Join(other, "sub"), "", filepath.Join(repo, ".cache")},
		{outside, "", filepath.Join(root, "xdg", "singlora")},
		{outside, "/some/cache", "/some/cache"},
	} {
		t.Run(tc.wd, func(t *testing.T) {
			t.Setenv("SINGLORA_CACHE", tc.env)
			t.Chdir(tc.wd)
			if got := CacheDir(); got != tc.want {
				t.Errorf("CacheDir() in %s = %s, want %s", tc.wd, got, tc.want)
			}
		})
	}
}
