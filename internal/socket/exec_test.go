package socket

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// execEnv makes the test binary bind a socket, say its address, wait for
// a line on stdin and replace itself (Exec) by the test binary as a child
// (childEnv) that takes the socket over by its address.
const execEnv = "DDNN_SOCKET_TEST_EXEC"

func execChild() int {
	s, err := New()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Printf("bound %s\n", s.Addr)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, execEnv+"=") }), childEnv+"=1")
	err = Exec(self, []string{self, s.Addr}, env, []*Socket{s})
	fmt.Println("error:", err)
	return 1
}

// A process replaced by Exec hands its socket to the new program, which
// takes it over by its address: a connection made before the exec waits
// in the backlog and is answered by the new program, and the environment
// names the socket no further.
func TestExecHandsSocketsOver(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), execEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	out := bufio.NewReader(pipe)
	line, _ := out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "bound ")
	if !ok {
		t.Fatalf("the process said %q", line)
	}
	// Connected before the exec: in the backlog, accepted by the new
	// program.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintln(in, "exec")
	line, _ = out.ReadString('\n')
	if want := fmt.Sprintf("listening on %s; %s=\"\"", addr, listenFDsEnv); !strings.HasPrefix(line, want) {
		t.Fatalf("the new program said %q, want it to start with %q", line, want)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 8)
	n, _ := c.Read(b)
	if got := string(b[:n]); got != "hi0" {
		t.Errorf("the connection made before the exec got %q, want hi0", got)
	}
}

// An exec that fails leaves the sockets this process' own, closed on exec
// again, and still listening.
func TestExecFailureKeepsSockets(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	missing := t.TempDir() + "/missing"
	err = Exec(missing, []string{missing}, os.Environ(), []*Socket{s})
	if err == nil || !strings.Contains(err.Error(), "exec "+missing) || !strings.Contains(err.Error(), syscall.ENOENT.Error()) {
		t.Fatalf("exec of a missing program: %v", err)
	}
	fd, err := descriptor(s.file)
	if err != nil {
		t.Fatal(err)
	}
	flags, err := fcntl(fd, syscall.F_GETFD, 0)
	if err != nil || flags&syscall.FD_CLOEXEC == 0 {
		t.Errorf("socket descriptor flags %#x (%v) after a failed exec, want close-on-exec", flags, err)
	}
	ln, err := s.listener()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial after a failed exec: %v", err)
	}
	c.Close()
}

// Provide gives a socket the process keeps to its own next Listen of the
// address; CloseUnclaimed closes what no Listen took.
func TestProvideAndCloseUnclaimed(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := Provide(s); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr().String() != s.bound {
		t.Errorf("Listen(%s) listens on %s, want the provided %s", s.Addr, ln.Addr(), s.bound)
	}
	ln.Close()
	// The socket is still held: a new bind of its address fails.
	if again, err := net.Listen("tcp", s.Addr); err == nil {
		again.Close()
		t.Fatalf("%s bound again after the provided listener closed", s.Addr)
	}
	if err := Provide(s); err != nil {
		t.Fatal(err)
	}
	if got := CloseUnclaimed(); !slices.Equal(got, []string{s.Addr}) {
		t.Errorf("CloseUnclaimed closed %v, want [%s]", got, s.Addr)
	}
	if got := CloseUnclaimed(); len(got) != 0 {
		t.Errorf("CloseUnclaimed again closed %v", got)
	}
}

// Bind takes over a socket passed down for its address.
func TestBindTakesOverInherited(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := Provide(s); err != nil { // as a socket passed down would be
		t.Fatal(err)
	}
	got, err := Bind(s.Addr)
	if err != nil {
		t.Fatalf("Bind(%s) of a socket passed down: %v", s.Addr, err)
	}
	defer got.Close()
	if got.bound != s.bound {
		t.Errorf("Bind(%s) holds %s, want %s", s.Addr, got.bound, s.bound)
	}
	if _, err := Bind("127.0.0.1:1=3"); err == nil {
		t.Error("Bind of an address with '=' succeeded")
	}
}

// A UDP socket is passed as a listening one is: a datagram sent before
// the child runs waits in its buffer and the child, which takes the
// socket over by its address, answers it.
func TestPacketSocketPassed(t *testing.T) {
	s, err := BindPacket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if again, err := net.ListenPacket("udp", s.bound); err == nil {
		again.Close()
		t.Fatalf("udp %s bound again while held", s.bound)
	}
	ua, err := net.ResolveUDPAddr("udp", s.bound)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	files, env := Pass(os.Environ(), []*Socket{s})
	if want := listenFDsEnv + "=" + udpPrefix + s.Addr; !slices.Contains(env, want) {
		t.Fatalf("environment without %s", want)
	}
	line := start(t, udpPrefix+s.Addr, files, env)
	if want := fmt.Sprintf("listening on %s%s;", udpPrefix, s.bound); !strings.HasPrefix(line, want) {
		t.Fatalf("child said %q, want it to start with %q", line, want)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if got := string(b[:n]); err != nil || got != "hi early" {
		t.Errorf("the datagram sent before the child ran got %q (%v), want %q", got, err, "hi early")
	}
	dup, err := s.Dup()
	if err != nil {
		t.Fatal(err)
	}
	dup.Close()
	if _, err := BindPacket("127.0.0.1:1 2"); err == nil {
		t.Error("BindPacket of an address with a space succeeded")
	}
}
