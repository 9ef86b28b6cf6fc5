//! What a thread's seccomp filters answer to a system call, computed in pipecr: a small
//! classic-BPF interpreter over `struct seccomp_data`, as the kernel runs the programs
//! `PTRACE_SECCOMP_GET_FILTER` returns (`kernel/seccomp.c`, `net/core/filter.c`'s
//! checker: only the instructions seccomp accepts). The dump asks it, before injecting
//! a call into a thread under filters, whether the call would be allowed: a filter that
//! kills or traps on it would hurt the very process being saved.
//!
//! It knows nothing of live processes: programs in, action out.

/// `AUDIT_ARCH_X86_64`: the `arch` of `struct seccomp_data` for a 64-bit x86 call.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// `SECCOMP_RET_ACTION_FULL`: the action bits of a filter's return value.
const RET_ACTION_FULL: u32 = 0xffff_0000;
/// `SECCOMP_RET_ALLOW`, `SECCOMP_RET_LOG`: actions that let the call run.
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_LOG: u32 = 0x7ffc_0000;

/// One system call as a filter sees it (`struct seccomp_data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeccompData {
    /// The system call number.
    pub nr: i32,
    /// The `AUDIT_ARCH_*` value.
    pub arch: u32,
    /// The address of the `syscall` instruction.
    pub instruction_pointer: u64,
    /// The six arguments.
    pub args: [u64; 6],
}

impl SeccompData {
    /// The 32-bit word at byte offset `k` (aligned, within the 64-byte struct).
    fn word(&self, k: u32) -> Option<u32> {
        let mut raw = [0u8; 64];
        raw[..4].copy_from_slice(&self.nr.to_ne_bytes());
        raw[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        raw[8..16].copy_from_slice(&self.instruction_pointer.to_ne_bytes());
        for (i, a) in self.args.iter().enumerate() {
            raw[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let k = k as usize;
        if k % 4 != 0 || k + 4 > raw.len() {
            return None;
        }
        Some(u32::from_ne_bytes(raw[k..k + 4].try_into().ok()?))
    }
}

/// Why a program could not be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    /// Not a whole number of 8-byte instructions, or empty.
    #[error("a program of {0} bytes")]
    Length(usize),
    /// An instruction seccomp does not accept, or a jump or load out of range.
    #[error("instruction {index} ({code:#06x}) is not one seccomp runs")]
    Instruction {
        /// Its index.
        index: usize,
        /// Its opcode.
        code: u16,
    },
    /// The program ran off its end without returning.
    #[error("the program does not return")]
    NoReturn,
}

/// The value `program` (raw `struct sock_filter` instructions) returns for `data`.
pub fn run(program: &[u8], data: &SeccompData) -> Result<u32, BpfError> {
    if program.is_empty() || program.len() % 8 != 0 {
        return Err(BpfError::Length(program.len()));
    }
    let insns: Vec<(u16, u8, u8, u32)> = program
        .chunks_exact(8)
        .map(|c| {
            (
                u16::from_ne_bytes([c[0], c[1]]),
                c[2],
                c[3],
                u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    while let Some(&(code, jt, jf, k)) = insns.get(pc) {
        let index = pc;
        let bad = || BpfError::Instruction { index, code };
        let src = if code & 0x08 != 0 { x } else { k };
        pc += 1;
        match code & 0x07 {
            // BPF_LD
            0x00 => {
                a = match code {
                    0x20 => data.word(k).ok_or_else(bad)?,         // LD W ABS
                    0x80 => 64,                                    // LD W LEN
                    0x00 => k,                                     // LD IMM
                    0x60 => *mem.get(k as usize).ok_or_else(bad)?, // LD MEM
                    _ => return Err(bad()),
                }
            }
            // BPF_LDX
            0x01 => {
                x = match code {
                    0x81 => 64,                                    // LDX W LEN
                    0x01 => k,                                     // LDX IMM
                    0x61 => *mem.get(k as usize).ok_or_else(bad)?, // LDX MEM
                    _ => return Err(bad()),
                }
            }
            // BPF_ST, BPF_STX
            0x02 => *mem.get_mut(k as usize).ok_or_else(bad)? = a,
            0x03 => *mem.get_mut(k as usize).ok_or_else(bad)? = x,
            // BPF_ALU
            0x04 => {
                a = match code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 => a.checked_div(src).ok_or_else(bad)?,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => a.checked_rem(src).ok_or_else(bad)?,
                    0xa0 => a ^ src,
                    _ => return Err(bad()),
                }
            }
            // BPF_JMP
            0x05 => {
                let off = match code & 0xf0 {
                    0x00 => k as usize, // JA
                    0x10 => usize::from(if a == src { jt } else { jf }),
                    0x20 => usize::from(if a > src { jt } else { jf }),
                    0x30 => usize::from(if a >= src { jt } else { jf }),
                    0x40 => usize::from(if a & src != 0 { jt } else { jf }),
                    _ => return Err(bad()),
                };
                pc = pc
                    .checked_add(off)
                    .filter(|&p| p < insns.len())
                    .ok_or_else(bad)?;
            }
            // BPF_RET
            0x06 => {
                return match code & 0x18 {
                    0x00 => Ok(k),
                    0x10 => Ok(a),
                    _ => Err(bad()),
                };
            }
            // BPF_MISC: TAX, TXA
            _ => match code {
                0x07 => x = a,
                0x87 => a = x,
                _ => return Err(bad()),
            },
        }
    }
    Err(BpfError::NoReturn)
}

/// Whether a chain of filters (`programs`, in any order: every one runs) lets the call
/// `data` run: each returns `SECCOMP_RET_ALLOW` or `SECCOMP_RET_LOG`. `Err` with the
/// first other value (the one that stops it: kill, trap, errno, trace, notify).
pub fn allows<'a>(
    programs: impl IntoIterator<Item = &'a [u8]>,
    data: &SeccompData,
) -> Result<Result<(), u32>, BpfError> {
    for p in programs {
        let ret = run(p, data)?;
        let action = ret & RET_ACTION_FULL;
        if action != RET_ALLOW && action != RET_LOG {
            return Ok(Err(ret));
        }
    }
    Ok(Ok(()))
}

/// A person's name for a filter's return value: `SECCOMP_RET_KILL_PROCESS`,
/// `SECCOMP_RET_ERRNO (EPERM)`, ...
pub fn action_name(ret: u32) -> String {
    match ret & RET_ACTION_FULL {
        0x8000_0000 => "SECCOMP_RET_KILL_PROCESS".to_owned(),
        0x0000_0000 => "SECCOMP_RET_KILL_THREAD".to_owned(),
        0x0003_0000 => "SECCOMP_RET_TRAP (SIGSYS)".to_owned(),
        0x0005_0000 => format!("SECCOMP_RET_ERRNO ({})", ret & 0xffff),
        0x7fc0_0000 => "SECCOMP_RET_USER_NOTIF".to_owned(),
        0x7ff0_0000 => "SECCOMP_RET_TRACE".to_owned(),
        other => format!("action {other:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..2].copy_from_slice(&code.to_ne_bytes());
        b[2] = jt;
        b[3] = jf;
        b[4..].copy_from_slice(&k.to_ne_bytes());
        b
    }

    /// The usual shape: check the arch, kill on `nr`, allow the rest.
    fn deny(nr: u32, ret: u32) -> Vec<u8> {
        [
            insn(0x20, 0, 0, 4),                 // A = arch
            insn(0x15, 1, 0, AUDIT_ARCH_X86_64), // JEQ arch
            insn(0x06, 0, 0, 0x8000_0000),       // kill process
            insn(0x20, 0, 0, 0),                 // A = nr
            insn(0x15, 0, 1, nr),                // JEQ nr
            insn(0x06, 0, 0, ret),               // ret
            insn(0x06, 0, 0, RET_ALLOW),         // allow
        ]
        .concat()
    }

    fn call(nr: i32, arg0: u64) -> SeccompData {
        SeccompData {
            nr,
            arch: AUDIT_ARCH_X86_64,
            instruction_pointer: 0x1000,
            args: [arg0, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn a_denied_call_is_seen_and_others_allowed() {
        let p = deny(157, 0x0005_0001);
        assert_eq!(run(&p, &call(157, 0)), Ok(0x0005_0001));
        assert_eq!(run(&p, &call(39, 0)), Ok(RET_ALLOW));
        let both = [deny(39, 0), deny(157, 0x7ffc_0000)];
        assert_eq!(
            allows(both.iter().map(Vec::as_slice), &call(157, 0)),
            Ok(Ok(()))
        );
        assert_eq!(
            allows(both.iter().map(Vec::as_slice), &call(39, 0)),
            Ok(Err(0))
        );
        assert_eq!(action_name(0x0005_0001), "SECCOMP_RET_ERRNO (1)");
    }

    #[test]
    fn arguments_and_alu_and_scratch_memory() {
        // A = low half of arg0; A &= 0xff; M[0] = A; X = M[0]; A = X; ret A == 7 ? kill : allow
        let p = [
            insn(0x20, 0, 0, 16),
            insn(0x54, 0, 0, 0xff),
            insn(0x02, 0, 0, 0),
            insn(0x61, 0, 0, 0),
            insn(0x87, 0, 0, 0),
            insn(0x15, 0, 1, 7),
            insn(0x06, 0, 0, 0),
            insn(0x06, 0, 0, RET_ALLOW),
        ]
        .concat();
        assert_eq!(run(&p, &call(1, 0x107)), Ok(0));
        assert_eq!(run(&p, &call(1, 0x108)), Ok(RET_ALLOW));
    }

    #[test]
    fn malformed_programs_are_errors_not_panics() {
        assert_eq!(run(&[0; 7], &call(0, 0)), Err(BpfError::Length(7)));
        // A jump past the end.
        let p = [insn(0x05, 0, 0, 5), insn(0x06, 0, 0, 0)].concat();
        assert!(matches!(
            run(&p, &call(0, 0)),
            Err(BpfError::Instruction { .. })
        ));
        // A load beyond seccomp_data, a division by zero, no return.
        let p = [insn(0x20, 0, 0, 64), insn(0x06, 0, 0, 0)].concat();
        assert!(run(&p, &call(0, 0)).is_err());
        let p = [insn(0x34, 0, 0, 0), insn(0x06, 0, 0, 0)].concat();
        assert!(run(&p, &call(0, 0)).is_err());
        let p = insn(0x00, 0, 0, 1).to_vec();
        assert_eq!(run(&p, &call(0, 0)), Err(BpfError::NoReturn));
    }
}
