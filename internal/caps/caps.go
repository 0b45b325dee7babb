// Package caps drops Linux capabilities the exporter no longer needs once
// it has started.
package caps

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// names are the capability names the kernel knows, by number.
var names = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
	"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// Parse turns "CAP_BPF,perfmon" into a capability mask.
func Parse(list string) (uint64, error) {
	var mask uint64
	for _, n := range strings.Split(list, ",") {
		n = strings.ToUpper(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		if !strings.HasPrefix(n, "CAP_") {
			n = "CAP_" + n
		}
		found := false
		for i, name := range names {
			if name == n {
				mask |= 1 << uint(i)
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
	}
	return mask, nil
}

// Names lists the capabilities in mask.
func Names(mask uint64) []string {
	var out []string
	for i, n := range names {
		if mask&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// ErrNotSupported is returned where capabilities cannot be dropped for every
// thread (binaries built with cgo).
var ErrNotSupported = errors.New("dropping capabilities for all threads needs a binary built with CGO_ENABLED=0")

func lastCap() int {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return len(names) - 1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return len(names) - 1
	}
	return n
}

// Drop keeps only the capabilities in keep, in every thread: the bounding
// set (so that scripts the exporter starts cannot regain others), and the
// effective, permitted and inheritable sets.
func Drop(keep uint64) error {
	err := dropBounding(keep)
	if err != nil && !errors.Is(err, ErrBoundingKept) {
		return err
	}
	if serr := setSets(keep); serr != nil {
		return serr
	}
	return err
}

// ErrBoundingKept says the bounding set could not shrink: the process
// lacks CAP_SETPCAP, as a container that drops ALL and adds only what the
// exporter uses does. no_new_privs is set instead, so that no program the
// exporter starts regains what the bounding set still holds.
var ErrBoundingKept = errors.New("the bounding set cannot shrink without CAP_SETPCAP: no_new_privs set instead, so started programs cannot regain dropped capabilities")

// dropBounding removes from every thread's bounding set what keep lacks.
func dropBounding(keep uint64) error {
	for c := 0; c <= lastCap(); c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		// Already out of the bounding set (a container's runtime dropped
		// it): nothing to drop, nothing that needs CAP_SETPCAP.
		if in, _, errno := syscall.RawSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_READ, uintptr(c), 0); errno == 0 && in == 0 {
			continue
		}
		if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); errno != 0 {
			switch errno {
			case syscall.ENOTSUP:
				return ErrNotSupported
			case syscall.EINVAL:
				continue
			case syscall.EPERM:
				if _, _, errno := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); errno != 0 {
					return fmt.Errorf("setting no_new_privs: %w", errno)
				}
				return ErrBoundingKept
			}
			return fmt.Errorf("dropping %s from the bounding set: %w", names[c], errno)
		}
	}
	return nil
}

// setSets makes keep (within what is permitted) the effective, permitted
// and inheritable sets of every thread.
func setSets(keep uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for i := range data {
		k := uint32(keep >> (32 * uint(i)))
		data[i].Permitted &= k
		data[i].Effective = data[i].Permitted
		data[i].Inheritable &= k
	}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		if errno == syscall.ENOTSUP {
			return ErrNotSupported
		}
		return fmt.Errorf("capset: %w", errno)
	}
	return nil
}

// SwitchUser makes every thread run as uid and gid, keeping the
// capabilities in keep (which become effective again after the switch).
func SwitchUser(uid, gid int, keep uint64) error {
	// The bounding set can only shrink with CAP_SETPCAP effective: before.
	kept := dropBounding(keep)
	if kept != nil && !errors.Is(kept, ErrBoundingKept) {
		return kept
	}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); errno != 0 {
		if errno == syscall.ENOTSUP {
			return ErrNotSupported
		}
		return fmt.Errorf("keeping capabilities across the user switch: %w", errno)
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	// setuid cleared the effective set; raise the kept capabilities again.
	if err := setSets(keep); err != nil {
		return err
	}
	return kept
}
