//! The machine code a dump copies into a stopped process to run a whole table of system
//! calls with one ptrace stop ([`batch_code`]), assembled here by the compiler's own
//! assembler (`global_asm!`) and read back as bytes from our own read-only data.
//!
//! What goes in the table, where the code is mapped and how the thread is driven through
//! it belong to [`crate::inject`]; this module owns only the bytes and the table layout
//! they expect.
//!
//! # The code
//!
//! `rbx` points at the first entry of a table of [`ENTRY_SIZE`]-byte entries, each eight
//! little-endian `u64`s: the syscall number, its six arguments, and the address where
//! the result (`rax`) is stored. An entry whose number is [`END`] ends the table.
//!
//! ```text
//! loop:   mov  rax, [rbx]         ; the number; END (-1) ends the table
//!         cmp  rax, -1
//!         je   done
//!         mov  rdi, [rbx + 8]     ; the six arguments, in the syscall ABI's registers
//!         mov  rsi, [rbx + 16]
//!         mov  rdx, [rbx + 24]
//!         mov  r10, [rbx + 32]
//!         mov  r8,  [rbx + 40]
//!         mov  r9,  [rbx + 48]
//!         syscall                 ; clobbers rcx and r11 only
//! after:  mov  rcx, [rbx + 56]    ; where the result goes
//!         mov  [rcx], rax
//!         add  rbx, 64
//!         jmp  loop
//! done:   int3                    ; the one stop: SIGTRAP, rip = done + 1
//!         ud2                     ; reached only if a handler returns from that SIGTRAP
//!         jmp  done
//! ```
//!
//! The code is position-independent (only relative jumps inside itself), reads nothing
//! but the table, and writes nothing but the result slots the table names. An entry
//! that unmaps the code itself makes the next instruction fetch (`after`) fault: the
//! injector takes that `SIGSEGV` at `after` as the end instead of the `int3`.

use std::ptr;

/// Bytes per table entry: number, six arguments, result address.
pub const ENTRY_SIZE: usize = 64;

/// The syscall number that ends a table.
pub const END: u64 = u64::MAX;

// In read-only data, not in our text: the bytes are only ever copied. Global (hidden)
// labels so that the Rust side can find them; numeric labels 2 and 3 because 0 and 1
// would read as binary numbers in Intel syntax.
core::arch::global_asm!(
    ".pushsection .rodata.pipecr_batch_code,\"a\",@progbits",
    ".balign 16",
    ".globl pipecr_batch_code_start",
    ".hidden pipecr_batch_code_start",
    ".globl pipecr_batch_code_after",
    ".hidden pipecr_batch_code_after",
    ".globl pipecr_batch_code_done",
    ".hidden pipecr_batch_code_done",
    ".globl pipecr_batch_code_end",
    ".hidden pipecr_batch_code_end",
    "pipecr_batch_code_start:",
    "2:",
    "mov rax, qword ptr [rbx]",
    "cmp rax, -1",
    "je 3f",
    "mov rdi, qword ptr [rbx + 8]",
    "mov rsi, qword ptr [rbx + 16]",
    "mov rdx, qword ptr [rbx + 24]",
    "mov r10, qword ptr [rbx + 32]",
    "mov r8, qword ptr [rbx + 40]",
    "mov r9, qword ptr [rbx + 48]",
    "syscall",
    "pipecr_batch_code_after:",
    "mov rcx, qword ptr [rbx + 56]",
    "mov qword ptr [rcx], rax",
    "add rbx, 64",
    "jmp 2b",
    "3:",
    "pipecr_batch_code_done:",
    "int3",
    "ud2",
    "jmp 3b",
    "pipecr_batch_code_end:",
    ".popsection",
);

unsafe extern "C" {
    static pipecr_batch_code_start: u8;
    static pipecr_batch_code_after: u8;
    static pipecr_batch_code_done: u8;
    static pipecr_batch_code_end: u8;
}

/// The batch code and the offsets in it that the injector needs.
#[derive(Debug, Clone, Copy)]
pub struct BatchCode {
    /// The machine code, to be copied to the start of an executable page.
    pub bytes: &'static [u8],
    /// Offset of the instruction right after the `syscall`: where a thread that has just
    /// unmapped the code faults.
    pub after_syscall: usize,
    /// Offset of the final `int3`: a thread that ran the whole table stops with `rip`
    /// one byte past it.
    pub trap: usize,
}

/// The code that runs a table of syscalls and ends with `int3` (see the [module
/// documentation](self) for its listing and the table layout).
pub fn batch_code() -> BatchCode {
    let start = (&raw const pipecr_batch_code_start) as usize;
    let after = (&raw const pipecr_batch_code_after) as usize;
    let done = (&raw const pipecr_batch_code_done) as usize;
    let end = (&raw const pipecr_batch_code_end) as usize;
    let base = ptr::addr_of!(pipecr_batch_code_start);
    // SAFETY: the four labels are in the one `.rodata` section the `global_asm!` above
    // emits, in this order and with nothing between them but the assembled code, so
    // `start..end` is initialised, read-only data that lives for the whole program and
    // is never written.
    let bytes = unsafe { std::slice::from_raw_parts(base, end - start) };
    BatchCode {
        bytes,
        after_syscall: after - start,
        trap: done - start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_what_its_listing_says() {
        let code = batch_code();
        // mov rax, [rbx]
        assert_eq!(&code.bytes[..3], &[0x48, 0x8b, 0x03]);
        // One `syscall`, right before `after`.
        let syscalls: Vec<usize> = code
            .bytes
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w == &[0x0f, 0x05])
            .map(|(i, _)| i)
            .collect();
        assert_eq!(syscalls, vec![code.after_syscall - 2]);
        // int3, ud2, then a short jump back to the int3.
        assert_eq!(
            &code.bytes[code.trap..],
            &[0xcc, 0x0f, 0x0b, 0xeb, (-5i8) as u8]
        );
        assert!(code.bytes.len() <= ENTRY_SIZE, "{} bytes", code.bytes.len());
    }
}
