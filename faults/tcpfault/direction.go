package tcpfault

import (
	"fmt"
	"strings"
)

// Direction is the half of a connection a toxic acts on. The names are
// Toxiproxy's "stream" values, so its clients and files work unchanged.
type Direction uint8

const (
	// Upstream is client → server: requests.
	Upstream Direction = iota
	// Downstream is server → client: responses.
	Downstream

	numDirections
)

func (d Direction) String() string {
	switch d {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// ParseDirection reads "upstream" or "downstream" (case-insensitive).
func ParseDirection(s string) (Direction, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "upstream":
		return Upstream, nil
	case "downstream":
		return Downstream, nil
	}
	return 0, fmt.Errorf("%w: %q: expected upstream (client to server) or downstream (server to client)", ErrInvalidStream, s)
}

// MarshalText writes the name.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a name.
func (d *Direction) UnmarshalText(b []byte) error {
	v, err := ParseDirection(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
