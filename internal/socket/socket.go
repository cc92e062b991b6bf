// Package socket passes listening sockets from a supervisor to the child
// processes it starts: the supervisor binds them (New) and hands them to
// every process of a child (Pass), the child takes them over by address
// (Listen).
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
// spaces, for file descriptors 3, 4, ... in order.
const listenFDsEnv = "DDNN_LISTEN_FDS"

// A Socket is a listening TCP socket on 127.0.0.1 that a supervisor binds
// for a child and passes down to every process of it, restarts included.
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
}

// New binds a new listening socket on a free port of 127.0.0.1; its Addr
// is the port taken.
func New() (*Socket, error) {
	s, err := Bind("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Addr = s.bound
	return s, nil
}

// Bind binds a listening socket on addr (host:port, as a configuration
// gives it) for a child told to listen on addr.
func Bind(addr string) (*Socket, error) {
	if strings.ContainsAny(addr, " \t\n") {
		return nil, fmt.Errorf("listen on %q: the address holds a space", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer ln.Close() // the file holds its own descriptor of the socket
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &Socket{Addr: addr, file: f, bound: ln.Addr().String()}, nil
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
		files, addrs[i] = append(files, s.file), s.Addr
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
	once   sync.Once
	mu     sync.Mutex
	byAddr map[string][]net.Listener // not claimed by Listen yet, in the order passed
}

// The passed descriptors are not for this process' own children, even
// those started before the first Listen.
func init() {
	for i := range strings.Fields(os.Getenv(listenFDsEnv)) {
		if isSocket(3 + i) {
			syscall.CloseOnExec(3 + i)
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

// adoptSockets takes over the sockets named by the environment, once, and
// clears the variable so that nothing started later believes it.
func adoptSockets() {
	inherited.byAddr = map[string][]net.Listener{}
	addrs := strings.Fields(os.Getenv(listenFDsEnv))
	os.Unsetenv(listenFDsEnv)
	for i, addr := range addrs {
		fd := 3 + i
		if !isSocket(fd) {
			continue // not passed by a supervisor: not ours to close
		}
		f := os.NewFile(uintptr(fd), "inherited socket")
		ln, err := net.FileListener(f) // its own descriptor, closed on exec
		f.Close()
		if err != nil {
			continue
		}
		inherited.byAddr[addr] = append(inherited.byAddr[addr], ln)
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
