package up

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ddnn-continuum/ddnn/internal/socket"
)

// handover is what `ddnn up` keeps for its whole life, across an in-place
// restart: the listening sockets it holds, and whether the stop under way
// is a restart's.
type handover struct {
	log        *slog.Logger
	restarting atomic.Bool

	mu   sync.Mutex
	held []*heldSocket // in the order bound
	// sitesLeft counts down the sites of a Run still starting; at 0 the
	// sockets passed down that no site took over are closed.
	sitesLeft int
}

type heldSocket struct {
	*socket.Socket
	udp   bool // bound by socket.BindPacket
	inUse bool // by a site of the Run under way
}

func newHandover(log *slog.Logger) *handover { return &handover{log: log} }

// hold is the listening TCP socket for addr held for the process' life:
// one held and not in use by this Run, else one bound now (or taken over
// from the process this one replaced, see socket.Bind).
func (h *handover) hold(addr string) (*socket.Socket, error) {
	return h.holdSocket(addr, false, socket.Bind)
}

// holdPacket is hold of a UDP socket (socket.BindPacket).
func (h *handover) holdPacket(addr string) (*socket.Socket, error) {
	return h.holdSocket(addr, true, socket.BindPacket)
}

func (h *handover) holdSocket(addr string, udp bool, bind func(string) (*socket.Socket, error)) (*socket.Socket, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.held {
		if s.Addr == addr && s.udp == udp && !s.inUse {
			s.inUse = true
			return s.Socket, nil
		}
	}
	s, err := bind(addr)
	if err != nil {
		return nil, err
	}
	h.held = append(h.held, &heldSocket{Socket: s, udp: udp, inUse: true})
	return s, nil
}

// starting is told how many sites a Run starts.
func (h *handover) starting(sites int) {
	h.mu.Lock()
	h.sitesLeft = sites
	h.mu.Unlock()
}

// siteStarted is told that a site's start ended, well or not; after the
// last, sockets passed down that no site took over (their address no
// longer in the pipeline file) are closed.
func (h *handover) siteStarted() {
	h.mu.Lock()
	h.sitesLeft--
	last := h.sitesLeft == 0
	h.mu.Unlock()
	if !last {
		return
	}
	if addrs := socket.CloseUnclaimed(); len(addrs) > 0 {
		h.log.Warn("restart: listening sockets handed over but no longer in the pipeline file; closed", "addrs", strings.Join(addrs, " "))
	}
}

// released makes every held socket free for the next Run.
func (h *handover) released() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.held {
		s.inUse = false
	}
}

// restartingNow reports whether the stop under way is a restart's.
func (h *handover) restartingNow() bool { return h != nil && h.restarting.Load() }

func (h *handover) sockets() []*socket.Socket {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*socket.Socket, len(h.held))
	for i, s := range h.held {
		out[i] = s.Socket
	}
	return out
}

func (h *handover) close() {
	for _, s := range h.sockets() {
		s.Close()
	}
}

// holdAdmin holds the site's admin socket and provides it to the admin
// server's Listen.
func (s *Supervisor) holdAdmin() error {
	sock, err := s.cfg.handover.hold(s.site.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if err := socket.Provide(sock); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}
