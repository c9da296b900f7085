package results

// NewStats returns empty stats as intervals keep them (no lag histogram), to
// merge intervals into: rolling windows and recovery checks re-aggregate
// intervals.jsonl offline.
func NewStats() *Stats { return newStats(false) }

// Merge adds o's samples and counts to s.
func (s *Stats) Merge(o *Stats) { s.merge(o) }
