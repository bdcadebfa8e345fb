// Package kvm tells whether /dev/kvm really runs a guest: it creates a VM and a
// vCPU, loads a few real-mode instructions and runs them. On some machines
// /dev/kvm exists and every ioctl succeeds but KVM_RUN never comes back (broken
// nested virtualisation), so the run happens in a child process that the
// caller kills after a timeout (Probe); RunGuest is what that child executes.
package kvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl numbers from linux/kvm.h (x86-64).
const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmGetVCPUMmapSize     = 0xAE04
	kvmCreateVCPU          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46
	kvmRun                 = 0xAE80
	kvmGetRegs             = 0x8090AE81
	kvmSetRegs             = 0x4090AE82
	kvmGetSregs            = 0x8138AE83
	kvmSetSregs            = 0x4138AE84

	kvmExitIO            = 2
	kvmExitHLT           = 5
	kvmExitInternalError = 17

	probePort = 0x10
	probeByte = 0x42
	guestAddr = 0x1000
)

// code: mov al, 0x42; out 0x10, al; hlt — real mode, at guestAddr.
var code = []byte{0xB0, probeByte, 0xE6, probePort, 0xF4}

type userMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// regs is struct kvm_regs: rax..r15, rip, rflags.
type regs [18]uint64

// sregs is struct kvm_sregs (312 bytes); cs is the first kvm_segment:
// base u64 at 0, limit u32 at 8, selector u16 at 12.
type sregs [312]byte

// RunGuest runs the tiny guest in this process and returns nil when it wrote
// the expected byte to the I/O port and halted. It may never return on a
// machine where KVM hangs: call it only in a child process (see Probe).
func RunGuest(dev string) error {
	runtime.LockOSThread()
	kvm, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(kvm)
	v, err := ioctl(kvm, kvmGetAPIVersion, 0)
	if err != nil {
		return fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != 12 {
		return fmt.Errorf("KVM API version %d, want 12", v)
	}
	vm, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	defer unix.Close(int(vm))

	mem, err := unix.Mmap(-1, 0, memSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("mmap guest memory: %w", err)
	}
	defer unix.Munmap(mem)
	copy(mem[guestAddr:], code)
	region := userMemoryRegion{GuestPhysAddr: 0, MemorySize: uint64(len(mem)), UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(int(vm), kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}

	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	// The same check in the three modes a PC guest goes through: real mode
	// (firmware), 32-bit protected mode (boot loaders), 64-bit long mode with
	// paging (the kernel). Each does an IRET first, as interrupt handlers do all
	// the time. Some KVMs (e.g. a nested "PVM") run real mode and fail or hang
	// later: that is what this catches.
	for i, m := range []mode{realMode, protectedMode, longMode} {
		if err := runVCPU(int(vm), i, int(size), mem, m); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return nil
}

type mode int

const (
	realMode mode = iota
	protectedMode
	longMode
)

func (m mode) String() string {
	return [...]string{"real mode", "32-bit protected mode", "64-bit long mode"}[m]
}

// Each program IRETs to the next instruction, then writes probeByte to
// probePort and halts.
var programs = map[mode][]byte{
	// pushf; push cs; push 0x1006; iret
	realMode: {0x9C, 0x0E, 0x68, 0x06, 0x10, 0xCF},
	// pushfd; push 0x08; push 0x1009; iretd
	protectedMode: {0x9C, 0x6A, 0x08, 0x68, 0x09, 0x10, 0x00, 0x00, 0xCF},
	// mov rax, rsp; push 0x10; push rax; pushfq; push 0x18; push 0x1010; iretq
	longMode: {0x48, 0x89, 0xE0, 0x6A, 0x10, 0x50, 0x9C, 0x6A, 0x18, 0x68, 0x10, 0x10, 0x00, 0x00, 0x48, 0xCF},
}

// GDT at gdtAddr: null, 32-bit code (0x08), data (0x10), 64-bit code (0x18).
var gdt = []uint64{0, 0x00cf9a000000ffff, 0x00cf92000000ffff, 0x00af9a000000ffff}

// Guest memory layout for long mode: page tables identity-mapping the first
// 2 MiB with one large page.
const (
	gdtAddr  = 0x500
	pml4Addr = 0x2000
	pdptAddr = 0x3000
	pdAddr   = 0x4000
	memSize  = 0x8000

	pteFlags = 0x7  // present, writable, user
	ptePS    = 0x80 // 2 MiB page

	cr0PE   = 1 << 0
	cr0MP   = 1 << 1
	cr0ET   = 1 << 4
	cr0NE   = 1 << 5
	cr0WP   = 1 << 16
	cr0AM   = 1 << 18
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

func runVCPU(vm, id, runSize int, mem []byte, m mode) error {
	vcpu, err := ioctl(vm, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	defer unix.Close(int(vcpu))
	run, err := unix.Mmap(int(vcpu), 0, runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap kvm_run: %w", err)
	}
	defer unix.Munmap(run)

	var s sregs
	if _, err := ioctl(int(vcpu), kvmGetSregs, uintptr(unsafe.Pointer(&s))); err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	put64 := func(off int, v uint64) { *(*uint64)(unsafe.Pointer(&mem[off])) = v }
	prog := append(append([]byte(nil), programs[m]...), code...)
	copy(mem[guestAddr:], prog)
	for i, d := range gdt {
		put64(gdtAddr+8*i, d)
	}
	switch m {
	case realMode:
		clear(s[0:8])   // cs.base = 0
		clear(s[12:14]) // cs.selector = 0
	case protectedMode, longMode:
		setU64(&s, 8*24, gdtAddr) // gdt.base
		*(*uint16)(unsafe.Pointer(&s[8*24+8])) = uint16(8*len(gdt) - 1)
		data := func() {
			for _, i := range []int{1, 2, 3, 4, 5} { // ds, es, fs, gs, ss
				setSegment(&s, i, 0x10, 3, false, true)
			}
		}
		if m == protectedMode {
			setU64(&s, 224, cr0PE|cr0ET|cr0NE) // cr0
			setSegment(&s, 0, 0x08, 11, false, true)
			data()
			break
		}
		put64(pml4Addr, pdptAddr|pteFlags)
		put64(pdptAddr, pdAddr|pteFlags)
		put64(pdAddr, pteFlags|ptePS)
		setU64(&s, 224+2*8, pml4Addr)                              // cr3
		setU64(&s, 224+3*8, cr4PAE)                                // cr4
		setU64(&s, 224, cr0PE|cr0MP|cr0ET|cr0NE|cr0WP|cr0AM|cr0PG) // cr0
		setU64(&s, 224+5*8, eferLME|eferLMA)                       // efer
		setSegment(&s, 0, 0x18, 11, true, false)                   // cs: 64-bit code
		data()
	}
	if _, err := ioctl(int(vcpu), kvmSetSregs, uintptr(unsafe.Pointer(&s))); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	var r regs
	r[6] = memSize    // rsp
	r[16] = guestAddr // rip
	r[17] = 2         // rflags: bit 1 is always set
	if _, err := ioctl(int(vcpu), kvmSetRegs, uintptr(unsafe.Pointer(&r))); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}

	sawOut := false
	for i := 0; i < 10; i++ {
		if _, err := ioctl(int(vcpu), kvmRun, 0); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("KVM_RUN: %w", err)
		}
		reason := *(*uint32)(unsafe.Pointer(&run[8]))
		switch reason {
		case kvmExitIO:
			// struct io: direction u8 @32, size u8 @33, port u16 @34, count u32 @36, data_offset u64 @40.
			port := *(*uint16)(unsafe.Pointer(&run[34]))
			off := *(*uint64)(unsafe.Pointer(&run[40]))
			if port != probePort || off >= uint64(len(run)) || run[off] != probeByte {
				return fmt.Errorf("guest wrote to port %#x, want %#x with %#x", port, probePort, probeByte)
			}
			sawOut = true
		case kvmExitHLT:
			if !sawOut {
				return errors.New("guest halted before its I/O write")
			}
			return nil
		case kvmExitInternalError:
			sub := *(*uint32)(unsafe.Pointer(&run[32]))
			return fmt.Errorf("KVM internal error (suberror %d%s): KVM cannot run this guest code", sub, map[uint32]string{1: ", emulation failure"}[sub])
		default:
			return fmt.Errorf("KVM_RUN exit reason %d, want I/O then HLT", reason)
		}
	}
	return errors.New("guest did not halt within 10 exits")
}

func setU64(s *sregs, off int, v uint64) { *(*uint64)(unsafe.Pointer(&s[off])) = v }

// setSegment fills kvm_segment i of sregs: flat, base 0, limit 4 GiB, ring 0.
func setSegment(s *sregs, i int, selector uint16, typ uint8, long, db bool) {
	seg := s[i*24 : i*24+24]
	clear(seg)
	*(*uint32)(unsafe.Pointer(&seg[8])) = 0xffffffff // limit
	*(*uint16)(unsafe.Pointer(&seg[12])) = selector
	seg[14] = typ
	seg[15] = 1 // present
	seg[18] = 1 // s: code/data
	if long {
		seg[19] = 1 // l: 64-bit
	}
	if db {
		seg[17] = 1 // db: 32-bit
	}
	seg[20] = 1 // g: 4 KiB granularity
}

func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// Result is what Probe found.
type Result struct {
	OK     bool
	Reason string // why not (or "a test guest ran" when OK)
}

// ChildEnv is set in the environment of the probe child, and ChildArg is its
// only argument: a binary must call ChildMain before anything else (vmm's main
// and the tests do). Both are needed, so the variable alone in a container's
// environment does not turn vmm into a probe child.
const (
	ChildEnv = "BERTH_KVM_PROBE_CHILD"
	ChildArg = "berth-kvm-probe-child"
)

// Probe runs the test guest in a child process (self re-executed with
// ChildEnv=dev) and kills it after timeout. It never hangs longer than timeout
// plus a moment for the kill.
func Probe(ctx context.Context, self, dev string, timeout time.Duration) Result {
	if _, err := os.Stat(dev); err != nil {
		return Result{Reason: fmt.Sprintf("%s: %v", dev, errors.Unwrap(err))}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, ChildArg)
	cmd.Env = append(os.Environ(), ChildEnv+"="+dev)
	cmd.WaitDelay = 500 * time.Millisecond // a child stuck in the kernel must not block us either
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return Result{Reason: fmt.Sprintf("a test guest did not finish within %s (KVM_RUN hangs: broken nested virtualisation?)", timeout)}
	case err != nil && msg != "":
		return Result{Reason: msg}
	case err != nil:
		return Result{Reason: fmt.Sprintf("probe child: %v", err)}
	}
	return Result{OK: true, Reason: "a test guest ran in real, protected and long mode"}
}

// ChildMain is the probe child: when ChildEnv is set and ChildArg is the only
// argument it runs the guest and exits (0: it ran; 1: the reason on stderr).
// Otherwise it returns at once.
func ChildMain() {
	dev := os.Getenv(ChildEnv)
	if dev == "" || len(os.Args) != 2 || os.Args[1] != ChildArg {
		return
	}
	if err := RunGuest(dev); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
