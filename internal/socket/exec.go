package socket

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Exec replaces this process by the program at path, run with args (its
// argv, args[0] included) and env, and hands it sockets: the new program
// takes each over by its address (Bind, Listen) instead of binding it, so
// that connections made meanwhile wait in the socket's backlog instead of
// being refused. It returns only when the exec failed; sockets are then
// this process' again, as before.
//
// The sockets keep their descriptor numbers across the exec (ADDR=FD in
// the environment): moving them to 3, 4, ... as Pass does for a child
// could overwrite a descriptor the Go runtime still uses should the exec
// fail.
func Exec(path string, args, env []string, sockets []*Socket) error {
	entries := make([]string, 0, len(sockets))
	fds := make([]int, 0, len(sockets))
	for _, s := range sockets {
		fd, err := descriptor(s.file)
		if err != nil {
			return fmt.Errorf("exec %s: socket %s: %w", path, s.key(), err)
		}
		fds, entries = append(fds, fd), append(entries, s.key()+"="+strconv.Itoa(fd))
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, listenFDsEnv+"=") {
			out = append(out, kv)
		}
	}
	if len(entries) > 0 {
		out = append(out, listenFDsEnv+"="+strings.Join(entries, " "))
	}
	// No child may be started, and inherit the sockets, while they are
	// left open across exec.
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	for _, fd := range fds {
		if err := setCloseOnExec(fd, false); err != nil {
			restoreCloseOnExec(fds)
			return fmt.Errorf("exec %s: %w", path, err)
		}
	}
	err := syscall.Exec(path, args, out)
	restoreCloseOnExec(fds)
	return fmt.Errorf("exec %s: %w", path, err)
}

// descriptor is f's descriptor number, read without f.Fd, which would
// make the socket blocking for every listener on it.
func descriptor(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil {
		return 0, err
	}
	return fd, nil
}

func setCloseOnExec(fd int, on bool) error {
	flags, err := fcntl(fd, syscall.F_GETFD, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= syscall.FD_CLOEXEC
	} else {
		flags &^= syscall.FD_CLOEXEC
	}
	_, err = fcntl(fd, syscall.F_SETFD, flags)
	return err
}

func restoreCloseOnExec(fds []int) {
	for _, fd := range fds {
		setCloseOnExec(fd, true)
	}
}

func fcntl(fd, cmd, arg int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
