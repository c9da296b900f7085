package packet

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// statsLoop emits aggregated counters every StatsInterval; never one event
// per packet.
func (l *Link) statsLoop() {
	t := time.NewTicker(l.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.emitStats(false)
		}
	}
}

// emitStats sends one packet.stats event per direction that saw traffic
// since the last one, with the interval's counts; the final one (at Close)
// also carries the totals.
func (l *Link) emitStats(final bool) {
	l.statsMu.Lock()
	defer l.statsMu.Unlock()
	now := l.Stats()
	for i, cur := range []DirStats{now.ToUpstream, now.FromUpstream} {
		prev := l.lastStats[i]
		if cur.Packets == prev.Packets && !final {
			continue
		}
		d := cur.minus(prev)
		attrs := d.attrs()
		attrs["direction"] = []Direction{ToUpstream, FromUpstream}[i].String()
		attrs["interval_s"] = (l.clock.Now() - l.lastStatsAt).Seconds()
		if final {
			attrs["final"] = true
			attrs["total"] = cur.attrs()
		}
		l.emit("packet.stats", attrs)
	}
	l.lastStats = [2]DirStats{now.ToUpstream, now.FromUpstream}
	l.lastStatsAt = l.clock.Now()
}

func (s DirStats) minus(o DirStats) DirStats {
	return DirStats{
		Packets: s.Packets - o.Packets, Bytes: s.Bytes - o.Bytes, Sent: s.Sent - o.Sent, Dropped: s.Dropped - o.Dropped,
		Lost: s.Lost - o.Lost, Blackholed: s.Blackholed - o.Blackholed, Overflow: s.Overflow - o.Overflow,
		Duplicated: s.Duplicated - o.Duplicated, Reordered: s.Reordered - o.Reordered, Corrupted: s.Corrupted - o.Corrupted,
		Delayed: s.Delayed - o.Delayed, Retransmits: s.Retransmits - o.Retransmits,
		CapturedRetransmits: s.CapturedRetransmits - o.CapturedRetransmits, WriteErrors: s.WriteErrors - o.WriteErrors,
		KernelDropped: s.KernelDropped - o.KernelDropped,
		MeanLateness:  s.MeanLateness, MaxLateness: s.MaxLateness, // since the start: not additive
	}
}

func (s DirStats) attrs() map[string]any {
	return map[string]any{
		"packets": s.Packets, "bytes": s.Bytes, "sent": s.Sent, "dropped": s.Dropped,
		"lost": s.Lost, "blackholed": s.Blackholed, "overflow": s.Overflow, "duplicated": s.Duplicated,
		"reordered": s.Reordered, "corrupted": s.Corrupted, "delayed": s.Delayed,
		"retransmits": s.Retransmits, "captured_retransmits": s.CapturedRetransmits, "write_errors": s.WriteErrors,
		"kernel_dropped":   s.KernelDropped,
		"mean_lateness_us": s.MeanLateness.Microseconds(), "max_lateness_us": s.MaxLateness.Microseconds(),
	}
}

// readSNMP parses the Tcp lines of /proc/net/snmp for the calling thread's
// namespace. /proc/net follows the process's main thread, so the path goes
// through /proc/thread-self.
func readSNMP() (KernelTCP, error) {
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return KernelTCP{}, err
	}
	return parseSNMP(b)
}

func parseSNMP(b []byte) (KernelTCP, error) {
	var names, values []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Tcp:")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
		} else {
			values = strings.Fields(rest)
			break
		}
	}
	if names == nil || len(names) != len(values) {
		return KernelTCP{}, fmt.Errorf("no Tcp counters in /proc/net/snmp")
	}
	var k KernelTCP
	fields := map[string]*uint64{
		"ActiveOpens": &k.ActiveOpens, "AttemptFails": &k.AttemptFails, "InSegs": &k.InSegs, "OutSegs": &k.OutSegs,
		"RetransSegs": &k.RetransSegs, "InErrs": &k.InErrs, "OutRsts": &k.OutRsts, "InCsumErrors": &k.InCsumErrors,
	}
	for i, n := range names {
		if p, ok := fields[n]; ok {
			v, err := strconv.ParseUint(values[i], 10, 64)
			if err != nil {
				return KernelTCP{}, fmt.Errorf("/proc/net/snmp Tcp %s: %w", n, err)
			}
			*p = v
		}
	}
	return k, nil
}
