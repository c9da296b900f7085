// Package packet impairs traffic below TCP: it joins two network namespaces
// that it creates with two TUN devices and moves every IP packet between
// them through a userspace engine that decodes it with gopacket and loses,
// delays, jitters, duplicates, reorders, corrupts, rate-limits or
// blackholes it, as netem would. The kernels here have no netem, and a
// userspace engine is also what lets a run count what it did (Stats) and
// change it live (Set).
//
//	  namespace <p>-g            this process: the engine              namespace <p>-u
//	+-------------------+      +----------------------------+      +-------------------+
//	| gateway's dialer  |      | ToUpstream:                |      | upstream's        |
//	| (DialContext)     |-TUN->|  read > parse > decide >   |-TUN->| listener (Listen) |
//	| 198.18.0.1        |<-TUN-|  schedule (timerfd) > write|<-TUN-| 198.18.0.2        |
//	|                   |      | FromUpstream: the same     |      |                   |
//	+-------------------+      +----------------------------+      +-------------------+
//
// The gateway and the fake upstream stay in the caller's process: Listen
// and DialContext create their sockets inside the namespaces (a socket keeps
// the namespace it was made in), on a locked thread that is switched back,
// or destroyed if it cannot be.
//
// Addresses are 198.18.0.1 and 198.18.0.2 in every Link (each has its own
// namespaces), inside 198.18.0.0/15, the benchmarking range: nothing here can
// reach a real host. Namespaces and devices are named "<prefix>-g" and
// "<prefix>-u"; Close removes them, and Cleanup removes those of a process
// that was killed.
//
// Timing: scheduled packets leave on a timerfd (an hrtimer), not on Go
// timers, which wake with millisecond granularity; the engine learns how late
// an idle CPU wakes and spins out only that remainder. Stats reports the
// engine's own lateness beside what it did.
//
// Everything random comes from a PCG seeded by (Config.Seed, direction, the
// number of the Set call), so a run repeats.
//
// Root is required (CAP_NET_ADMIN, CAP_SYS_ADMIN, /dev/net/tun);
// CheckPrivileges says what is missing.
package packet
