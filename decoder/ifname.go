package decoder

import (
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"sync"

	"github.com/probe-exporter/probe_exporter/config"
)

// ifname turns a u32 interface index into the interface name; an index no
// interface has (any more) becomes "unknown:N".
type ifname struct {
	lookup func(int) (string, error)
	mu     sync.Mutex
	cache  map[uint32][]byte
}

func newIfname(_ config.Decoder, env *Env) (Decoder, error) {
	d := &ifname{cache: map[uint32][]byte{}, lookup: func(i int) (string, error) {
		iface, err := net.InterfaceByIndex(i)
		if err != nil {
			return "", err
		}
		return iface.Name, nil
	}}
	if env != nil && env.Ifnames != nil {
		d.lookup = env.Ifnames
	}
	return d, nil
}

func (d *ifname) Decode(in []byte) ([]byte, error) {
	if len(in) < 4 {
		return nil, errors.New("interface indexes are u32")
	}
	idx := binary.NativeEndian.Uint32(in[:4])
	d.mu.Lock()
	defer d.mu.Unlock()
	if name, ok := d.cache[idx]; ok {
		return name, nil
	}
	name, err := d.lookup(int(idx))
	if err != nil {
		return strconv.AppendUint([]byte("unknown:"), uint64(idx), 10), nil
	}
	d.cache[idx] = []byte(name)
	return d.cache[idx], nil
}
