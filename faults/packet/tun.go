package packet

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openTUN creates the TUN device name in the calling thread's network
// namespace and returns its queue as a non-blocking file, so reads park in
// Go's netpoller and Close wakes them.
//
// Written with x/sys/unix rather than through a library: it is one ioctl,
// vishvananda/netlink's Tuntap closes the queue unless told otherwise and
// still needs the thread switched into the namespace, and wireguard-go's tun
// turns on offloads (GSO super-packets) that would hide per-segment
// decisions from the engine. The device is not persistent, so it disappears
// when the file is closed or the process dies.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUN name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tun:"+name), nil
}

// writeSysctl writes a value under /proc/sys in the calling thread's network
// namespace (net.* entries resolve against the writer's namespace).
func writeSysctl(path, value string) error {
	return os.WriteFile("/proc/sys/"+path, []byte(value), 0)
}
