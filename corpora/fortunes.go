package corpora

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
)

// FortunesDir is where Debian's fortunes package installs its category files.
const FortunesDir = "/usr/share/games/fortunes"

// FortunesVersion is the Debian package version whose files FortuneSHA256 pins.
const FortunesVersion = "1:1.99.1-7.3"

// fortunesInstall is what an error about a missing or changed file tells the user to do.
const fortunesInstall = "install Debian's fortunes " + FortunesVersion + " (apt-get install fortunes) or pass another folder"

// FortuneSHA256 is the sha256 of every plain-text category file of Debian's fortunes
// FortunesVersion (the .dat indexes and the .u8 links are not read).
var FortuneSHA256 = map[string]string{
	"art":           "600b8197bc994fd4fcbb623aa5e700629540af44f044d4907886bd1031f160ce",
	"ascii-art":     "818d0967629e0cd48b69c4b7e93645a7f80bba99ed4f1cd668f42b3d174b7431",
	"computers":     "a86be224d9f733b88eeaf8a46ea0427e05cc69c69edcf5f6db47ddf561ca37fd",
	"cookie":        "5dc97eee96dcc5287c373be629482730d45f77b59da1287933c9c5f482a055eb",
	"debian":        "491dd04bf909b64152bcb554b9bc88df0ca50c0dc676d74d10742bf38aaa50de",
	"definitions":   "57be4744c353d931fa2ca95f50215d4b67539f5a527ae628a6441fb4a1258caa",
	"disclaimer":    "c085d66ea68686d5e28852cef77c3eeb3640895c5647b148deeaaada2c07fa7b",
	"drugs":         "a5a59ee8b0e1fd3085a38dfa29149fe9a2c8d7f256b74aea71aa2cc08a9990c1",
	"education":     "ba13321d6d6beb7a6e65296a47450bfc87b24a319fff2e94762011b59a31aa35",
	"ethnic":        "61695cb9b60dbee91755027da1fa4f850f4c6386ff38197a48e4ff1696385e19",
	"food":          "78077a65b9288df71e7b2a8e8258cd3b1005d1282f7c7e57ad53927f374df45d",
	"fortunes":      "8819e6b83bacd6b7e8a4a2483f41e126b3b4b3ef8cd2aca907a53b163f082fd5",
	"goedel":        "9d447862c803f22cdf7bb26cb70cca1a7f8a2a7992f2793ddcb43cfcf3302ab0",
	"humorists":     "ffdf67e1f4049133bf904b769c364de45e5ae0abfb3ea7c9afb54b87b89acfc4",
	"kids":          "82e51834990afd36f2ea2f25864b368e2f44f9c761aba034035b26061de6d5be",
	"knghtbrd":      "c25e8373b38a6f159a7b1d336f363d5c962224a6ddcc86279dec47aad3c869b3",
	"law":           "f04141f94e788b7899e0adb0490d182ce711f8fdbb8252343a5257e717e9279d",
	"linux":         "85b0e5eadf7adeea77da4e1fbd456c962ce3bd1dabbd053098ecf37de9169cf3",
	"linuxcookie":   "4f75959924ae5bb1955c30a5c985e641ec17cd5ebb7453d839f94b1988331202",
	"literature":    "22eab7d53ce994d0466901bb0d799ae3289603e17dc0bdb7f16666931155c5a5",
	"love":          "4d4fb7c540e5500e44643524dae41dd7d2b21b80be184253fd9f8541f6029fc5",
	"magic":         "b9553a1d84d966db55a24a779206cc4565bf3686c9ecbc31215f654129e3166e",
	"medicine":      "18b8c7b098e649024159c9d9f3e37a0832bbd2d5cf3e2317b313134761afd487",
	"men-women":     "8fc4eb68a8d16826372d9bfdc910c8ab917b8aa59e2aac533f3ec2b49a1314ba",
	"miscellaneous": "e3d81fd016f9f84a70ecb9aa197c4911aca01a8034e49345b81093f6751bba9c",
	"news":          "4b8eebae510353d6f628dfdaf52bf8cbdafb891a122b146421c805b74f389617",
	"paradoxum":     "85228975016fe975065eaf0baf55980d32d26f9e2fa99f69da4696d11ac02036",
	"people":        "2afb4b9f577be114d2dca279bc5590ee8415e1405295d7d7626c888d82f338e8",
	"perl":          "b19145eadf97c31add2e0a199d93ffa0eb92e00275c2724b7ad6b4e412113536",
	"pets":          "084472564bc55df566733a224f8a737d78717132ec43628be0c2af466ac41ecc",
	"platitudes":    "88448274efec3d2c0908cc11525c9b065b95a32c232a2c58c67a87dd88545ee5",
	"politics":      "b56ca45a046edd5c459090a5c6b335332661b436e814b41ac87bb58065ad6131",
	"pratchett":     "48410754f1b2091f418ac27421d2764628b23c91427b12809031cf2b39be5b0e",
	"riddles":       "bcaaab907b156a18a8943f0768828b4f1a18d382497d0e2ef012fe6aaa27becc",
	"science":       "7ab350b142ee6c70c1d8517c5a1b3790c09b190a62859427cad98e6e35a19fcc",
	"songs-poems":   "eb714d297b468da91b6ca32baefb000279a3e3740b09f8a87db24fe58e010b1a",
	"sports":        "b71dd524d7bca888ec1014fb849a8a15cf58017c59127e572d393ef7632c35c8",
	"startrek":      "7b2e4c235b99452b2de4c47d67aae0faac2ea508a2d644609e4ef5db7653c39c",
	"tao":           "4adddc35a122bb233a16c076abc0be0326ea3a68594146a6baee3b5f6489e12b",
	"translate-me":  "a183879cf46ee4a6176f6b9f0f31adb6abfc6333b64f8fbebeba57017c81e12e",
	"wisdom":        "9b0bd6b9331a68c9172219784a411c417c055ed69734edc7b4406795b87d4e94",
	"work":          "ad8a0e104160e2c4782fa86e143cd60ffab2872985d4293ffd0af6df19dbfa28",
	"zippy":         "b996a112c99a2d61782e1a9a1f3c5445122f18ac312485f2c78279e82ca33932",
}

// FortuneCategories are the default classes of the fortunes task: six categories of distinct
// styles with at least 600 entries each (computers 1051, definitions 1203, politics 703, science
// 625, songs-poems 720, work 630 before de-duplication).
var FortuneCategories = []string{"computers", "definitions", "politics", "science", "songs-poems", "work"}

// Fortune is one entry of a fortune file, labelled with its category (the file's name).
type Fortune struct {
	Category string
	Text     string
}

// ParseFortunes splits the text of a fortune file into its entries: entries are separated by
// lines consisting of a single "%" (a final "%" is optional). Each entry is cleaned (see
// cleanFortune) and trimmed of surrounding white space; empty entries are dropped.
func ParseFortunes(text string) []string {
	var out []string
	var cur []string
	flush := func() {
		if t := strings.TrimSpace(cleanFortune(strings.Join(cur, "\n"))); t != "" {
			out = append(out, t)
		}
		cur = cur[:0]
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "%" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return out
}

// cleanFortune resolves the nroff overstriking some entries use for bold and underline (a
// backspace erases the rune before it, so "_\bI" reads "I" and "*___\b\b\bone*" reads "*one*")
// and drops the other control characters (the BELs of "^G" jokes) but newlines and tabs.
func cleanFortune(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
		return s
	}
	out := make([]rune, 0, len(s))
	for _, r := range s {
		switch {
		case r == '\b':
			if len(out) > 0 && out[len(out)-1] != '\n' {
				out = out[:len(out)-1]
			}
		case r == '\n' || r == '\t' || !unicode.IsControl(r):
			out = append(out, r)
		}
	}
	return string(out)
}

// ReadFortunes reads the category files dir/<category> in the order given and returns their
// entries (ParseFortunes), each text with one label: a text is kept once per category (its first
// entry), and a text that appears in more than one category is dropped from all of them. Texts
// are compared with their runs of white space collapsed to one space.
//
// With verify, every category must be one of FortuneSHA256's and its file must have that sha256
// (Debian's fortunes FortunesVersion); without it (test files, another version of the package)
// any file name is read as it is.
func ReadFortunes(dir string, categories []string, verify bool) ([]Fortune, error) {
	if len(categories) < 2 {
		return nil, fmt.Errorf("fortune categories %q: a classification task needs at least 2", categories)
	}
	for i, cat := range categories { // every name before any file
		if err := checkFortuneCategory(dir, cat, verify); err != nil {
			return nil, err
		}
		if slices.Contains(categories[:i], cat) {
			return nil, fmt.Errorf("fortune category %q is listed twice", cat)
		}
	}
	texts := make([][]string, len(categories))
	owners := map[string][]int{} // normalised text → the categories it appears in
	for i, cat := range categories {
		b, err := readFortuneFile(dir, cat, verify)
		if err != nil {
			return nil, err
		}
		for _, t := range ParseFortunes(string(b)) {
			k := strings.Join(strings.Fields(t), " ")
			if o := owners[k]; len(o) > 0 && o[len(o)-1] == i {
				continue // a duplicate within the category
			}
			owners[k] = append(owners[k], i)
			texts[i] = append(texts[i], t)
		}
	}
	var out []Fortune
	for i, cat := range categories {
		for _, t := range texts[i] {
			if len(owners[strings.Join(strings.Fields(t), " ")]) == 1 {
				out = append(out, Fortune{Category: cat, Text: t})
			}
		}
	}
	return out, nil
}

// checkFortuneCategory checks that cat names a file in dir, and with verify one of
// FortuneSHA256's categories.
func checkFortuneCategory(dir, cat string, verify bool) error {
	if _, known := FortuneSHA256[cat]; verify && !known {
		return fmt.Errorf("fortune category %q: not one of fortunes %s's: %s", cat, FortunesVersion, strings.Join(knownFortuneCategories(), ", "))
	}
	if cat == "" || cat != filepath.Base(cat) || strings.HasPrefix(cat, ".") {
		return fmt.Errorf("fortune category %q: want the name of a file in %s", cat, dir)
	}
	return nil
}

// readFortuneFile reads dir/cat, checking the name and, when verify is set, its sha256.
func readFortuneFile(dir, cat string, verify bool) ([]byte, error) {
	if err := checkFortuneCategory(dir, cat, verify); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, cat)
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) && verify {
			return nil, fmt.Errorf("%s is missing: %s", path, fortunesInstall)
		}
		return nil, fmt.Errorf("fortune category %q: %w", cat, err)
	}
	if verify {
		sum := sha256.Sum256(b)
		if got, want := hex.EncodeToString(sum[:]), FortuneSHA256[cat]; got != want {
			return nil, fmt.Errorf("%s has sha256 %s, want %s (fortunes %s): %s", path, got, want, FortunesVersion, fortunesInstall)
		}
	}
	return b, nil
}

// knownFortuneCategories returns FortuneSHA256's categories, sorted.
func knownFortuneCategories() []string {
	out := make([]string, 0, len(FortuneSHA256))
	for c := range FortuneSHA256 {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// FortuneSplitMin is the fewest entries per category SplitFortunes accepts (at least one
// validation and two test entries per class).
const FortuneSplitMin = 10

// SplitFortunes returns a balanced 70/10/20 split of all (ReadFortunes' entries): every category
// contributes n = min(its smallest category's count, perClass) entries (perClass ≤ 0: no cap),
// the first n of its entries shuffled by
//
//	rand.New(rand.NewPCG(seed, fnv64a(category)))  (math/rand/v2's Shuffle)
//
// so a category's sample depends on nothing but its own entries, n and seed. Of each category's
// n, the first round(0.7n) are train, the next round(0.1n) validation and the rest test, so each
// split holds the same number of entries per class; the splits are disjoint. Within a split
// the classes are interleaved (one entry of each category in the order they first appear in
// all, then the next). Fewer than FortuneSplitMin entries in a category is an error naming it.
func SplitFortunes(all []Fortune, perClass int, seed uint64) (train, val, test []Fortune, err error) {
	var cats []string
	by := map[string][]Fortune{}
	for _, f := range all {
		if _, ok := by[f.Category]; !ok {
			cats = append(cats, f.Category)
		}
		by[f.Category] = append(by[f.Category], f)
	}
	if len(cats) < 2 {
		return nil, nil, nil, fmt.Errorf("fortune split: %d categories (%q), want at least 2", len(cats), cats)
	}
	n := len(all)
	for _, c := range cats {
		n = min(n, len(by[c]))
	}
	if perClass > 0 {
		n = min(n, perClass)
	}
	if n < FortuneSplitMin {
		for _, c := range cats {
			if len(by[c]) < FortuneSplitMin {
				return nil, nil, nil, fmt.Errorf("fortune split: category %q has %d distinct entries, want at least %d", c, len(by[c]), FortuneSplitMin)
			}
		}
		return nil, nil, nil, fmt.Errorf("fortune split: %d per class, want at least %d", n, FortuneSplitMin)
	}
	nTrain := int(0.7*float64(n) + 0.5)
	nVal := int(0.1*float64(n) + 0.5)
	for _, c := range cats {
		fs := slices.Clone(by[c])
		h := fnv.New64a()
		h.Write([]byte(c))
		rand.New(rand.NewPCG(seed, h.Sum64())).Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
		by[c] = fs[:n]
	}
	interleave := func(lo, hi int) []Fortune {
		out := make([]Fortune, 0, (hi-lo)*len(cats))
		for i := lo; i < hi; i++ {
			for _, c := range cats {
				out = append(out, by[c][i])
			}
		}
		return out
	}
	return interleave(0, nTrain), interleave(nTrain, nTrain+nVal), interleave(nTrain+nVal, n), nil
}
