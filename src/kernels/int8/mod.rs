//! u8 x s8 -> s32 GEMM/GEMV with runtime ISA dispatch.
