//! Whether this process may run Intel AMX int8 instructions: CPUID, OS support, and the Linux
//! permission request for the tile data state. Self-contained (no dependency on the kernels), so
//! it can move as is into a shared CPU-detection module.
//!
//! Why raw CPUID: on Rust 1.95 `is_x86_feature_detected!("amx-tile" | "amx-int8")` is still
//! unstable (`x86_amx_intrinsics`, rust-lang/rust#126622), as are the AMX target features.
//!
//! Why the permission request: Linux keeps the 8 KiB tile data state (XTILEDATA, XSAVE component
//! 18) disabled per process through XFD; the first tile instruction of a process that has not
//! asked with `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` gets SIGILL. The permission
//! is process-wide (threads started before or after the request all have it) and idempotent.

use std::sync::OnceLock;

/// Why AMX int8 cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AmxUnavailable {
    /// The CPU (or the CPUID the hypervisor shows) has no AMX-TILE + AMX-INT8.
    NotInCpu,
    /// The CPU reports AMX, but the OS, the tile geometry or the permission request rules it out.
    Refused(String),
}

impl std::fmt::Display for AmxUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AmxUnavailable::NotInCpu => f.write_str("the CPU reports no amx-tile + amx-int8"),
            AmxUnavailable::Refused(why) => f.write_str(why),
        }
    }
}

/// `Ok` once this process may execute AMX-TILE and AMX-INT8 instructions with palette 1 tiles of
/// 16 rows × 64 bytes. Probed and, if needed, requested once per process; later calls return the
/// cached answer. Fails closed: anything unexpected is an `Err`.
pub(crate) fn amx_int8() -> Result<(), AmxUnavailable> {
    static STATUS: OnceLock<Result<(), AmxUnavailable>> = OnceLock::new();
    STATUS.get_or_init(probe_and_request).clone()
}

#[cfg(not(target_arch = "x86_64"))]
fn probe_and_request() -> Result<(), AmxUnavailable> {
    Err(AmxUnavailable::NotInCpu)
}

#[cfg(target_arch = "x86_64")]
fn probe_and_request() -> Result<(), AmxUnavailable> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};

    let refused = |why: String| Err(AmxUnavailable::Refused(why));
    let max_leaf = __cpuid(0).eax;
    if max_leaf < 7 {
        return Err(AmxUnavailable::NotInCpu);
    }
    // CPUID.(EAX=7,ECX=0):EDX bit 24 = AMX-TILE, bit 25 = AMX-INT8.
    let edx = __cpuid_count(7, 0).edx;
    if edx & (1 << 24) == 0 || edx & (1 << 25) == 0 {
        return Err(AmxUnavailable::NotInCpu);
    }
    if max_leaf < 0x1e {
        return refused(format!(
            "CPUID stops at leaf {max_leaf:#x}, before the tile (0x1d) and TMUL (0x1e) leaves"
        ));
    }
    // Tile palette 1 (leaf 0x1d, subleaf 1): the kernels use 8 tiles of 16 rows × 64 bytes.
    let palette = __cpuid_count(0x1d, 1);
    let (bytes_per_row, names, max_rows) = (
        palette.ebx & 0xffff,
        palette.ebx >> 16,
        palette.ecx & 0xffff,
    );
    if __cpuid_count(0x1d, 0).eax < 1 || bytes_per_row < 64 || names < 8 || max_rows < 16 {
        return refused(format!(
            "tile palette 1 is {names} tiles × {max_rows} rows × {bytes_per_row} bytes, \
             need 8 × 16 × 64"
        ));
    }
    // TMUL (leaf 0x1e): K up to 16 rows of B, N up to 64 bytes.
    let tmul = __cpuid_count(0x1e, 0).ebx;
    if tmul & 0xff < 16 || (tmul >> 8) & 0xffff < 64 {
        return refused(format!("TMUL limits {tmul:#x} are below 16 × 64"));
    }
    // The OS must enable XSAVE and the two tile components (XCR0 bits 17 XTILECFG, 18 XTILEDATA).
    if __cpuid(1).ecx & (1 << 27) == 0 {
        return refused("the OS has not enabled XSAVE (OSXSAVE clear)".into());
    }
    const XTILE_BITS: u64 = (1 << 17) | (1 << 18);
    if xcr0() & XTILE_BITS != XTILE_BITS {
        return refused("the OS does not enable the AMX tile state in XCR0".into());
    }
    request_tile_data()
}

/// XCR0, the OS-enabled XSAVE components.
#[cfg(target_arch = "x86_64")]
fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `xgetbv` with ECX = 0 is valid whenever CPUID.1:ECX.OSXSAVE is set, which the only
    // caller checked; it reads a register and touches neither memory nor the stack.
    unsafe {
        std::arch::asm!(
            "xgetbv",
            in("ecx") 0u32,
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags)
        );
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> Result<(), AmxUnavailable> {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_GET_XCOMP_PERM: u64 = 0x1022;
    const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
    const XFEATURE_XTILEDATA: u64 = 18;

    /// `arch_prctl(code, arg)`: 0 or a negative errno.
    fn arch_prctl(code: u64, arg: u64) -> i64 {
        let ret: i64;
        // SAFETY: a plain Linux x86_64 system call (number in rax, arguments in rdi/rsi; the
        // kernel clobbers rcx and r11). Both codes used here either change only the process's
        // XSAVE permission or write one u64 through `arg`, which the caller points at a live
        // local; no `nomem`, so the compiler assumes memory may have been written.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") code,
                in("rsi") arg,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        ret
    }

    let ret = arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
    if ret != 0 {
        // ENOSPC (28): a thread's sigaltstack is too small for the tile state.
        return Err(AmxUnavailable::Refused(format!(
            "arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) failed with errno {}",
            -ret
        )));
    }
    let mut permitted: u64 = 0;
    let ret = arch_prctl(
        ARCH_GET_XCOMP_PERM,
        std::ptr::from_mut(&mut permitted) as u64,
    );
    if ret != 0 || permitted & (1 << XFEATURE_XTILEDATA) == 0 {
        return Err(AmxUnavailable::Refused(format!(
            "tile data not in the permitted XSAVE features (arch_prctl {ret}, mask {permitted:#x})"
        )));
    }
    Ok(())
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_data() -> Result<(), AmxUnavailable> {
    Err(AmxUnavailable::Refused(
        "the AMX permission request is only implemented for Linux".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_cached_and_stable() {
        let first = amx_int8();
        assert_eq!(amx_int8(), first);
        println!("AMX int8 on this machine: {first:?}");
    }
}
