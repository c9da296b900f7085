package results

import "fmt"

// SetPhases replaces the phases' windows while samples are being recorded,
// keeping their order; phases past the collector's count are added after
// its own. A live run with manual gates knows a phase's window only when its
// gate opens, and a game day's faults derive new phases as they are added
// and removed by hand; it sets windows in the future only, so every sample
// is placed as it would be with the final windows. It takes every shard's
// lock: call it rarely (once per gate or action), not per sample.
func (c *Collector) SetPhases(phases []Phase) error {
	for _, sh := range c.shards {
		sh.mu.Lock()
		c.drain(sh) // placed by the windows they were recorded under
	}
	defer func() {
		for _, sh := range c.shards {
			sh.mu.Unlock()
		}
	}()
	if len(phases) < len(c.phases) {
		return fmt.Errorf("results: %d phases given for a collector of %d", len(phases), len(c.phases))
	}
	for _, sh := range c.shards {
		for len(sh.phases) < len(phases) {
			sh.phases = append(sh.phases, newShardStats(true))
		}
	}
	c.phases = append(c.phases[:0], phases...) // readers hold a shard's lock (phaseCount)
	return nil
}
