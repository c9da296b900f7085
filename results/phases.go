package results

import "fmt"

// SetPhases replaces the phases' windows while samples are being recorded,
// keeping their number and order. A live run with manual gates knows a
// phase's window only when its gate opens; it sets windows in the future
// only, so every sample is placed as it would be with the final windows.
// It takes every shard's lock: call it rarely (once per gate), not per
// sample.
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
	if len(phases) != len(c.phases) {
		return fmt.Errorf("results: %d phases given for a collector of %d", len(phases), len(c.phases))
	}
	copy(c.phases, phases) // in place: the slice header is read without locks
	return nil
}
