package socket

import (
	"fmt"
	"net"
	"strings"
)

// udpPrefix leads the environment's name of a UDP socket.
const udpPrefix = "udp/"

// BindPacket binds a UDP socket on addr for a child told to serve on addr
// (CoAP), or takes over the one passed down to this process for addr (see
// Exec). Datagrams sent while no process reads it wait in its receive
// buffer (up to its size) instead of being answered "port unreachable".
func BindPacket(addr string) (*Socket, error) {
	if strings.ContainsAny(addr, " \t\n=") {
		return nil, fmt.Errorf("listen on udp %q: the address holds a space or '='", addr)
	}
	if c := takeInheritedPacket(addr); c != nil {
		return fromPacketConn(addr, c)
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	return fromPacketConn(addr, c)
}

// ListenPacket is net.ListenUDP("udp", addr) for a child: the UDP socket
// its supervisor passed down for addr when there is one, else a new one.
func ListenPacket(addr string) (*net.UDPConn, error) {
	if c := takeInheritedPacket(addr); c != nil {
		return c, nil
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return net.ListenUDP("udp", ua)
}

// fromPacketConn is a Socket for addr on c's socket; it closes c.
func fromPacketConn(addr string, c *net.UDPConn) (*Socket, error) {
	defer c.Close()
	f, err := c.File()
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s: %w", addr, err)
	}
	return &Socket{Addr: addr, file: f, bound: c.LocalAddr().String(), udp: true}, nil
}

// packetConn is a UDP conn on the socket, with a descriptor of its own.
func (s *Socket) packetConn() (*net.UDPConn, error) {
	c, err := net.FilePacketConn(s.file)
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s: %w", s.Addr, err)
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("listen on udp %s: not a UDP socket", s.Addr)
	}
	return uc, nil
}

// takeInheritedPacket is the UDP socket passed down for addr, nil when
// there is none (left).
func takeInheritedPacket(addr string) *net.UDPConn {
	inherited.once.Do(adoptSockets)
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	cs := inherited.packets[addr]
	if len(cs) == 0 {
		return nil
	}
	inherited.packets[addr] = cs[1:]
	return cs[0]
}
