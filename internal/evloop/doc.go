// Package evloop runs blocking-style network code as coroutines on event
// loops: one goroutine per loop waits in a raw epoll for every socket of
// its tasks and switches straight to the task whose socket became ready.
//
// Why, when Go's netpoller already multiplexes goroutines over epoll: at
// full speed the cost that bounds a load generator or a proxy on loopback
// is what each readiness event costs, and a parked goroutine costs a trip
// through the scheduler for every one (netpoll, ready, a thread woken or
// kept spinning to run it, and after each write a thread that searches for
// other work while the reader it woke waits behind it). wrk and nginx run
// one epoll loop per thread and pay none of that. Measured on the project's
// 2-vCPU machine: the load generator's closed model went from 0.83× to
// about 1.0× wrk's rate (bench/LOADGEN.md), and the smallest relay on these
// loops added less latency than nginx where the goroutine gateway added
// more (bench/GATEWAY.md, run 9).
//
// A task is ordinary code (the HTTP/1.1 client's Conn, the gateway's
// connection server) run through iter.Pull; its sockets are Conns, which
// are net.Conns and syscall.Conns whose waits yield to the loop. So the
// parsers, deadlines and error paths are the same code on loops as on
// goroutines.
//
// The loop's wait is a raw epoll_pwait2: the goroutine keeps its P while
// it waits, so a ready socket costs no P hand-off or thread wake-up. The
// price is that the P is not available to other goroutines while the loop
// waits (for at most maxWait; Go's preemption interrupts the wait for a
// GC). Run loops in a process whose other work is light, with GOMAXPROCS
// above the number of loops, never beside a latency-sensitive goroutine
// server in the same process.
//
// Task code must only block through its Task (its Conns, Sleep, Park).
// Anything else that blocks — a channel, a lock held long — stalls every
// task of the loop, though it stays correct; for a rare wait on something
// else, run it on a goroutine that calls Task.Wake when done.
//
// Event loops are Linux-only (epoll); elsewhere New fails and callers keep
// to goroutines.
package evloop
