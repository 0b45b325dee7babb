/* The user registers a stack walk starts from, per architecture: the
 * program is compiled once for each (-D__TARGET_ARCH_x86 or
 * -D__TARGET_ARCH_arm64; include/bpf.mk's BPF_ARCH) and the Go package
 * embeds the object of the architecture it is built for.
 *
 * x86-64 reads struct pt_regs of vmlinux.h (CO-RE). arm64's struct pt_regs
 * begins with struct user_pt_regs, the ptrace ABI (x0..x30, sp, pc,
 * pstate), which no kernel version moves: it is declared here, so that an
 * x86 vmlinux.h serves both builds. The frame record of arm64's AAPCS64
 * ({previous x29, x30} at x29) has x86's layout ({saved rbp, return
 * address} at rbp), so the frame pointer walk is the same. */
#ifndef REGS_BPF_H
#define REGS_BPF_H

#if defined(__TARGET_ARCH_arm64)
struct arm64_user_regs {
	u64 regs[31]; /* x29 is the frame pointer, x30 the link register */
	u64 sp;
	u64 pc;
	u64 pstate;
};

static __always_inline void user_regs(void *regs, u64 *pc, u64 *sp, u64 *fp)
{
	struct arm64_user_regs r;
	if (bpf_probe_read_kernel(&r, sizeof(r), regs))
		return;
	*pc = r.pc;
	*sp = r.sp;
	*fp = r.regs[29];
}
#elif defined(__TARGET_ARCH_x86)
static __always_inline void user_regs(void *regs, u64 *pc, u64 *sp, u64 *fp)
{
	struct pt_regs *r = regs;
	*pc = r->ip;
	*sp = r->sp;
	*fp = r->bp;
}
#else
#error "regs.bpf.h: define __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

#endif
