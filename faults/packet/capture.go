package packet

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
)

// captureSnap is how much of each packet the capture keeps: an IPv4 header
// and a TCP header with options (60 + 60 bytes). Lengths come from the IP
// header, so the payload is not needed to recognise retransmissions.
const captureSnap = 128

// captureGrace bounds how long close keeps draining a busy ring.
const captureGrace = 100 * time.Millisecond

// capture counts the TCP retransmissions one namespace sends, from an
// AF_PACKET socket on its TUN device (gopacket/afpacket, pure Go). It sees
// what the kernel hands the device, before the engine touches it, so it
// cross-checks both the engine's count and the kernel's TcpRetransSegs.
type capture struct {
	tp      *afpacket.TPacket
	local   [4]byte
	retrans atomic.Uint64
	packets atomic.Uint64
	stopAt  atomic.Int64 // UnixNano of close; 0 while running
	done    chan struct{}
}

func startCapture(ns netns.NsHandle, ifname string, local [4]byte) (*capture, error) {
	// Keep only TCP (IPv4 protocol byte at offset 9: a TUN device has no link
	// header), truncated to captureSnap.
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(layers.IPProtocolTCP), SkipFalse: 1},
		bpf.RetConstant{Val: captureSnap},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, fmt.Errorf("packet: capture filter: %w", err)
	}
	c := &capture{local: local, done: make(chan struct{})}
	err = inNetns(ns, func() error {
		// The socket and the interface lookup must both happen inside the
		// namespace; afpacket does both in NewTPacket.
		tp, err := afpacket.NewTPacket(
			afpacket.OptInterface(ifname),
			afpacket.TPacketVersion3,
			afpacket.OptFrameSize(2048),
			afpacket.OptBlockSize(1<<17),
			afpacket.OptNumBlocks(16),
			afpacket.OptBlockTimeout(5*time.Millisecond),
			afpacket.OptPollTimeout(50*time.Millisecond),
		)
		if err != nil {
			return err
		}
		if err := tp.SetBPF(prog); err != nil {
			tp.Close()
			return err
		}
		c.tp = tp
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("packet: capture on %s: %w", ifname, err)
	}
	go c.run()
	return c, nil
}

func (c *capture) run() {
	defer close(c.done)
	p := newParser()
	t := newRetransTracker()
	var info pktInfo
	for {
		// On close, keep reading what is already in the ring: until it is
		// empty (a poll timeout) or, under steady traffic, for a grace period.
		if at := c.stopAt.Load(); at != 0 && time.Since(time.Unix(0, at)) > captureGrace {
			return
		}
		data, _, err := c.tp.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, afpacket.ErrTimeout) && c.stopAt.Load() == 0 {
				continue
			}
			return
		}
		p.parse(data, &info)
		if info.proto != uint8(layers.IPProtocolTCP) || info.src != c.local {
			continue // what the engine delivered into this namespace
		}
		c.packets.Add(1)
		if t.observe(&info) {
			c.retrans.Add(1)
		}
	}
}

// close drains the ring, stops the reader (within one poll timeout) and
// closes the socket.
func (c *capture) close() {
	c.stopAt.Store(time.Now().UnixNano())
	<-c.done
	c.tp.Close()
}
