// Package socket passes listening sockets from a supervisor to the child
// processes it starts: the supervisor binds them (New) and hands them to
// every process of a child (Pass), the child takes them over by address
// (Listen). UDP sockets go the same way (BindPacket, ListenPacket). A
// process may also hand its sockets to the program it replaces itself
// with (Exec), which takes them over by address (Bind, BindPacket,
// Listen, ListenPacket).
package socket

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// listenFDsEnv tells a child which listening sockets its supervisor
// passed down: their addresses, as its flags give them, separated by
// spaces, for file descriptors 3, 4, ... in order, a UDP socket's led by
// "udp/"; an entry ADDR=FD names its descriptor instead (Exec passes them
// so).
const listenFDsEnv = "DDNN_LISTEN_FDS"

// A Socket is a listening TCP socket (or a UDP one, BindPacket) that a
// supervisor binds for a child and passes down to every process of it,
// restarts included.
//
// Asking the kernel for a free port, closing it and telling a child to
// bind it leaves a window in which any process on the machine (or an
// outgoing connection's local port) can take the port, and the child then
// fails to bind it at every restart. A passed-down socket has no such
// window, and connections made while the child restarts wait in its
// backlog instead of being refused.
type Socket struct {
	Addr  string // as the child's flag gives it; the child finds the socket by it
	file  *os.File
	bound string // the address taken
	udp   bool   // a UDP socket (BindPacket), not a listening TCP one
}

// key is how the environment names s: its address, led by "udp/" for a
// UDP socket (the same address may have both).
func (s *Socket) key() string {
	if s.udp {
		return udpPrefix + s.Addr
	}
	return s.Addr
}

// New binds a new listening socket on a free port of 127.0.0.1; its Addr
// is the port taken.
func New() (*Socket, error) {
	s, err := bind("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Addr = s.bound
	return s, nil
}

// Bind binds a listening socket on addr (host:port, as a configuration
// gives it) for a child told to listen on addr. A socket passed down to
// this process for addr (by the program it replaced, see Exec) is taken
// over instead, so that connections waiting in its backlog are served.
func Bind(addr string) (*Socket, error) {
	if strings.ContainsAny(addr, " \t\n=") {
		return nil, fmt.Errorf("listen on %q: the address holds a space or '='", addr)
	}
	if ln := takeInherited(addr); ln != nil {
		return fromListener(addr, ln)
	}
	return bind(addr)
}

// bind binds a new listening socket on addr.
func bind(addr string) (*Socket, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return fromListener(addr, ln)
}

// fromListener is a Socket for addr on ln's socket; it closes ln (the
// Socket holds a descriptor of its own).
func fromListener(addr string, ln net.Listener) (*Socket, error) {
	defer ln.Close()
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("listen on %s: not a TCP socket", addr)
	}
	f, err := tl.File()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &Socket{Addr: addr, file: f, bound: ln.Addr().String()}, nil
}

// Dup is another Socket on the same socket, with a descriptor of its own:
// closing one leaves the other open.
func (s *Socket) Dup() (*Socket, error) {
	if s.udp {
		c, err := s.packetConn()
		if err != nil {
			return nil, err
		}
		return fromPacketConn(s.Addr, c)
	}
	ln, err := s.listener()
	if err != nil {
		return nil, err
	}
	return fromListener(s.Addr, ln)
}

// listener is a listener on the socket, with a descriptor of its own.
func (s *Socket) listener() (net.Listener, error) {
	ln, err := net.FileListener(s.file)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.Addr, err)
	}
	return ln, nil
}

// Provide makes the next Listen(s.Addr) of this process serve on s (on a
// descriptor of its own), for a server of the process itself that listens
// through Listen while the process keeps s to hand it on.
func Provide(s *Socket) error {
	ln, err := s.listener()
	if err != nil {
		return err
	}
	inherited.once.Do(adoptSockets)
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	inherited.byAddr[s.Addr] = append([]net.Listener{ln}, inherited.byAddr[s.Addr]...)
	return nil
}

// Close closes the supervisor's descriptor; the socket is gone once no
// process holds it.
func (s *Socket) Close() error { return s.file.Close() }

// Pass returns the files that hand sockets to a new process at file
// descriptors 3, 4, ... and env with their addresses in it. It drops
// what env already says of sockets: a child's own are not its children's.
func Pass(env []string, sockets []*Socket) (files []*os.File, _ []string) {
	addrs := make([]string, len(sockets))
	for i, s := range sockets {
		files, addrs[i] = append(files, s.file), s.key()
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, listenFDsEnv+"=") {
			out = append(out, kv)
		}
	}
	if len(files) > 0 {
		out = append(out, listenFDsEnv+"="+strings.Join(addrs, " "))
	}
	return files, out
}

var inherited struct {
	once    sync.Once
	mu      sync.Mutex
	byAddr  map[string][]net.Listener // not claimed by Listen yet, in the order passed
	packets map[string][]*net.UDPConn // by address, not claimed by ListenPacket yet
}

// passed is one socket passed down: its address and descriptor.
type passed struct {
	addr string
	fd   int
}

// passedSockets are the sockets the environment names: ADDR at 3, 4, ...
// by position, or ADDR=FD.
func passedSockets() []passed {
	var ps []passed
	for i, entry := range strings.Fields(os.Getenv(listenFDsEnv)) {
		p := passed{addr: entry, fd: 3 + i}
		if addr, fd, ok := strings.Cut(entry, "="); ok {
			n, err := strconv.Atoi(fd)
			if err != nil || n < 3 {
				continue
			}
			p = passed{addr: addr, fd: n}
		}
		ps = append(ps, p)
	}
	return ps
}

// The passed descriptors are not for this process' own children, even
// those started before the first Listen.
func init() {
	for _, p := range passedSockets() {
		if isSocket(p.fd) {
			syscall.CloseOnExec(p.fd)
		}
	}
}

func isSocket(fd int) bool {
	var st syscall.Stat_t
	return syscall.Fstat(fd, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFSOCK
}

// Listen is net.Listen("tcp", addr) for a child: the socket its
// supervisor passed down for addr when there is one (the first passed
// first, when addr was passed twice, as "127.0.0.1:0" may be), else a new
// one. Every server a supervisor may start as a child listens through it.
func Listen(addr string) (net.Listener, error) {
	inherited.once.Do(adoptSockets)
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	if lns := inherited.byAddr[addr]; len(lns) > 0 {
		inherited.byAddr[addr] = lns[1:]
		return lns[0], nil
	}
	return net.Listen("tcp", addr)
}

// takeInherited is the socket passed down for addr, nil when there is
// none (left).
func takeInherited(addr string) net.Listener {
	inherited.once.Do(adoptSockets)
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	lns := inherited.byAddr[addr]
	if len(lns) == 0 {
		return nil
	}
	inherited.byAddr[addr] = lns[1:]
	return lns[0]
}

// CloseUnclaimed closes the sockets passed down that neither Listen nor
// Bind took over: once a process has opened every listener it will, a
// socket left (its address no longer configured, say) would only hold
// connections that no one accepts. It returns their addresses.
func CloseUnclaimed() []string {
	inherited.once.Do(adoptSockets)
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	var addrs []string
	for addr, lns := range inherited.byAddr {
		for _, ln := range lns {
			ln.Close()
			addrs = append(addrs, addr)
		}
		delete(inherited.byAddr, addr)
	}
	for addr, cs := range inherited.packets {
		for _, c := range cs {
			c.Close()
			addrs = append(addrs, udpPrefix+addr)
		}
		delete(inherited.packets, addr)
	}
	slices.Sort(addrs)
	return addrs
}

// adoptSockets takes over the sockets named by the environment, once, and
// clears the variable so that nothing started later believes it.
func adoptSockets() {
	inherited.byAddr = map[string][]net.Listener{}
	inherited.packets = map[string][]*net.UDPConn{}
	ps := passedSockets()
	os.Unsetenv(listenFDsEnv)
	for _, p := range ps {
		if !isSocket(p.fd) {
			continue // not passed by a supervisor: not ours to close
		}
		f := os.NewFile(uintptr(p.fd), "inherited socket")
		if addr, ok := strings.CutPrefix(p.addr, udpPrefix); ok {
			c, err := net.FilePacketConn(f) // its own descriptor, closed on exec
			f.Close()
			if uc, isUDP := c.(*net.UDPConn); err == nil && isUDP {
				inherited.packets[addr] = append(inherited.packets[addr], uc)
			} else if err == nil {
				c.Close()
			}
			continue
		}
		ln, err := net.FileListener(f) // its own descriptor, closed on exec
		f.Close()
		if err != nil {
			continue
		}
		inherited.byAddr[p.addr] = append(inherited.byAddr[p.addr], ln)
	}
}

// FreePort is a port free on 127.0.0.1, for TCP and UDP, for a process
// that binds it itself (a container, a test's child): where a socket can
// be passed down, New is better, as nothing can take the port between
// this answer and the bind. To narrow that window, the port comes from
// below the kernel's ephemeral range (ip_local_port_range), where
// connections take their local ports and port 0 binds land, and it is
// never one of this process' last recentPorts answers.
func FreePort() (int, error) {
	freePorts.Lock()
	defer freePorts.Unlock()
	lo := ephemeralLow()
	span := min(lo-minPort, 16384)
	for range 200 {
		port := lo - 1 - rand.IntN(span)
		if slices.Contains(freePorts.recent, port) || !free(port) {
			continue
		}
		if len(freePorts.recent) == recentPorts {
			freePorts.recent = freePorts.recent[1:]
		}
		freePorts.recent = append(freePorts.recent, port)
		return port, nil
	}
	return 0, fmt.Errorf("no free port on 127.0.0.1 in %d..%d after 200 tries", lo-span, lo-1)
}

const (
	recentPorts = 1024
	minPort     = 10000 // below: ports services are known to use
)

var freePorts struct {
	sync.Mutex
	recent []int // oldest first
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	const fallback = 32768 // Linux's default
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return fallback
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= minPort+1024 {
		return fallback
	}
	return lo
}

// free reports whether port can be bound on 127.0.0.1 for TCP and UDP.
func free(port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}
