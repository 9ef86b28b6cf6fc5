//! What this CPU and kernel enable, read with the instructions themselves: the XSAVE
//! feature set (`XCR0`), which restore compares with the state saved in an image.
//!
//! This module owns the raw instructions; what to compare belongs to `restore`.

/// `XGETBV` with `ecx = 0`—the state components the kernel enabled in `XCR0` (bit N: XSAVE
/// feature N: x87, SSE, AVX, ...), or `None` when the kernel has not enabled XSAVE
/// (`CPUID.1:ECX.OSXSAVE` clear; `XGETBV` would fault).
///
/// # References
///  - Intel SDM Vol. 2, XGETBV; Vol. 1 §13 (XSAVE feature set)
#[doc(alias = "xgetbv")]
pub fn xcr0() -> Option<u64> {
    // CPUID leaf 1, ECX bit 27: OSXSAVE.
    let leaf1 = std::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return None;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: OSXSAVE is set, so XGETBV is enabled at every privilege level; with ecx = 0
    // it reads XCR0 into edx:eax and touches no memory, stack or flags.
    unsafe {
        std::arch::asm!(
            "xgetbv",
            in("ecx") 0u32,
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags),
        );
    }
    Some(u64::from(hi) << 32 | u64::from(lo))
}

#[cfg(test)]
mod tests {
    #[test]
    fn xcr0_has_x87_and_sse() {
        // Every x86_64 kernel that enables XSAVE enables these two.
        if let Some(xcr0) = super::xcr0() {
            assert_eq!(xcr0 & 0b11, 0b11, "{xcr0:#x}");
        }
    }
}
