package teamcache

import (
	"sort"

	"github.com/vrift/vrift/cas"
	"github.com/vrift/vrift/treefile"
)

// frame is one blob's frame in a pack.
type frame struct {
	k           cas.Key
	off, length int64
}

func (f frame) end() int64 { return f.off + f.length }

// span is one planned range read of a pack: its frames in offset order,
// from the first's offset to the last's end.
type span struct {
	pack     string
	off, end int64
	frames   []frame
}

// fetchPlan is how a pull reads the blobs it lacks.
type fetchPlan struct {
	spans  []span
	zstd   []cas.Key // one GET each of a zstd object
	legacy []cas.Key // one GET each of a version 1 object
}

// planFetch groups the wanted blobs by where they are: frames by pack,
// sorted by offset, neighbours merged into one range when at most gap
// bytes lie between them, and ranges cut at about maxRange bytes so they
// run in parallel. S3 serves no multi-range GET, so each range is one
// request; a gap costs its bytes on the wire, a split costs a request.
func planFetch(want map[cas.Key]treefile.Where, gap, maxRange int64) fetchPlan {
	var p fetchPlan
	byPack := map[string][]frame{}
	for k, w := range want {
		switch {
		case w.Pack != "":
			byPack[w.Pack] = append(byPack[w.Pack], frame{k: k, off: w.Offset, length: w.Length})
		case w.Zstd:
			p.zstd = append(p.zstd, k)
		default:
			p.legacy = append(p.legacy, k)
		}
	}
	ids := make([]string, 0, len(byPack))
	for id := range byPack {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fs := byPack[id]
		sort.Slice(fs, func(i, j int) bool { return fs[i].off < fs[j].off })
		var cur *span
		for _, f := range fs {
			if cur != nil && f.off >= cur.end && f.off-cur.end <= gap && f.end()-cur.off <= maxRange {
				cur.frames = append(cur.frames, f)
				cur.end = f.end()
				continue
			}
			p.spans = append(p.spans, span{pack: id, off: f.off, end: f.end(), frames: []frame{f}})
			cur = &p.spans[len(p.spans)-1]
		}
	}
	byName := func(ks []cas.Key) {
		sort.Slice(ks, func(i, j int) bool { return ks[i].Name() < ks[j].Name() })
	}
	byName(p.zstd)
	byName(p.legacy)
	// Biggest first: the long reads start early and the short ones fill
	// in around them.
	sort.SliceStable(p.spans, func(i, j int) bool { return p.spans[i].end-p.spans[i].off > p.spans[j].end-p.spans[j].off })
	return p
}
