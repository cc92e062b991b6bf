// Package socket passes listening sockets from a supervisor to the child
// processes it starts: the supervisor binds them (New) and hands them to
// every process of a child (Pass), the child takes them over by address
// (Listen).
package socket

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// listenFDsEnv tells a child how many listening sockets its supervisor
// passed down, from file descriptor 3 on.
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
	Addr string // host:port, for the child's flag and its URLs
	file *os.File
}

// New binds a new listening socket on a free port of 127.0.0.1.
func New() (*Socket, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on a free port: %w", err)
	}
	defer ln.Close() // the file holds its own descriptor of the socket
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, fmt.Errorf("listen on a free port: %w", err)
	}
	return &Socket{Addr: ln.Addr().String(), file: f}, nil
}

// Close closes the supervisor's descriptor; the socket is gone once no
// process holds it.
func (s *Socket) Close() error { return s.file.Close() }

// Pass returns the files that hand sockets to a new process at file
// descriptors 3, 4, ... and env with their count in it. It drops a count
// env already holds: a child's own sockets are not its children's.
func Pass(env []string, sockets []*Socket) (files []*os.File, _ []string) {
	for _, s := range sockets {
		files = append(files, s.file)
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, listenFDsEnv+"=") {
			out = append(out, kv)
		}
	}
	if len(files) > 0 {
		out = append(out, listenFDsEnv+"="+strconv.Itoa(len(files)))
	}
	return files, out
}

var inherited struct {
	once   sync.Once
	mu     sync.Mutex
	byAddr map[string]net.Listener // not claimed by Listen yet
}

// Listen is net.Listen("tcp", addr) for a child: the socket its
// supervisor passed down for addr when there is one, else a new one.
// Every server a supervisor may start as a child listens through it.
func Listen(addr string) (net.Listener, error) {
	inherited.once.Do(adoptSockets)
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	if ln, ok := inherited.byAddr[addr]; ok {
		delete(inherited.byAddr, addr)
		return ln, nil
	}
	return net.Listen("tcp", addr)
}

// adoptSockets takes over the sockets named by the environment, once, and
// clears the variable so that nothing started later believes it.
func adoptSockets() {
	inherited.byAddr = map[string]net.Listener{}
	n, err := strconv.Atoi(os.Getenv(listenFDsEnv))
	os.Unsetenv(listenFDsEnv)
	if err != nil {
		return
	}
	for fd := 3; fd < 3+n; fd++ {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
			continue // not passed by a supervisor: not ours to close
		}
		f := os.NewFile(uintptr(fd), "inherited socket")
		ln, err := net.FileListener(f) // its own descriptor, closed on exec
		f.Close()
		if err != nil {
			continue
		}
		inherited.byAddr[ln.Addr().String()] = ln
	}
}
