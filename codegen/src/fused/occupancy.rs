//! The fused kernel's tiles, checked against the target, the buffers they need, and how many
//! blocks of them a multiprocessor holds at once.
//!
//! Registers are estimated from the fragments each thread keeps for the whole key loop (the
//! output accumulator, the tile's scores and, on the tensor-core paths, the query fragments)
//! plus a fixed allowance for addresses, loop state and the softmax temporaries. The estimate
//! decides `__launch_bounds__`' minimum resident blocks: two when two blocks' registers and
//! shared memory fit with a margin (the compiler then keeps under half the register file per
//! thread), else one, which lets the compiler use every register rather than spill. The
//! compile test (`codegen/tests/gpu_compile.rs`) checks that no fused kernel spills.

use crate::dialect::MatrixPath;
use crate::{CodegenError, DType, GpuSchedule, Result, TargetDialect};

/// Registers a thread needs besides its fragments (pointers, 64-bit indices, loop and tile
/// state, the softmax's row temporaries). Calibrated on ptxas (CUDA 13.0): the causal kernel
/// at head dim 64 uses 168 registers (80 in fragments), at 128 216–222 (128 in fragments);
/// on gfx90a the MFMA kernel at head dim 128 uses 156 (56 in fragments).
const BASE_REGISTERS: u32 = 96;

/// The schedule's tiles, checked against the target, and the buffer sizes they imply.
#[derive(Debug, Clone)]
pub struct Tiles {
    pub elem: u32,
    pub rows_per_warp: u32,
    pub threads: u32,
    pub smem_ld: u32,
    pub q_smem_elems: u32,
    pub kv_stage_elems: u32,
    pub p_smem_floats: u32,
    pub smem_bytes: u32,
    pub matrix: MatrixPath,
    /// Estimated registers per thread, and the resident blocks the launch bounds ask for.
    pub registers: u32,
    pub min_blocks_per_sm: u32,
    /// The query fragments stay in registers through the key loop (else they are reloaded
    /// from shared memory per key tile, leaving their registers to the accumulators).
    pub q_in_registers: bool,
}

/// `(warps, block_n)` for `dtype` at `head_dim`: the first of the target's preferences whose
/// tiles fit its shared memory and registers (the last one otherwise, which `plan` reports).
pub fn suggest(d: &TargetDialect, dtype: DType, head_dim: u32) -> (u32, u32) {
    let matrix = TargetDialect::types(d.target, dtype).matrix;
    let prefs = match matrix {
        MatrixPath::MmaM16n8k16 | MatrixPath::Mfma16x16x16 => d.tile_preferences,
        MatrixPath::Simt | MatrixPath::Scalar => d.scalar_tile_preferences,
    };
    let fits = |&&(warps, block_n): &&(u32, u32)| {
        let s = GpuSchedule {
            block_m: warps * d.rows_per_warp(dtype),
            block_n,
            warps,
            stages: 2,
            dtype,
            head_dim,
            causal: false,
            fuse: true,
            ldmatrix: true,
        };
        Tiles::new(&s, d).is_ok()
    };
    let found = prefs.iter().find(fits).or(prefs.last());
    found.copied().unwrap_or((4, 64))
}

impl Tiles {
    pub fn new(s: &GpuSchedule, d: &TargetDialect) -> Result<Tiles> {
        let bad = |field, reason: String| Err(CodegenError::Schedule { field, reason });
        let target = d.target;
        if s.head_dim == 0 || !s.head_dim.is_multiple_of(16) {
            return bad(
                "head_dim",
                format!("{} is not a positive multiple of 16", s.head_dim),
            );
        }
        if s.warps == 0 {
            return bad("warps", "must be at least 1".into());
        }
        let rows_per_warp = d.rows_per_warp(s.dtype);
        if d.lockstep_warps {
            let rows = s.warps.saturating_mul(rows_per_warp);
            if s.block_m != rows {
                return bad(
                    "block_m",
                    format!(
                        "{} must be warps × {rows_per_warp} = {rows} on {target} (each warp owns {rows_per_warp} query rows)",
                        s.block_m
                    ),
                );
            }
            if s.stages != 2 {
                return bad(
                    "stages",
                    format!("{}: only double buffering (2) is implemented", s.stages),
                );
            }
        } else if s.block_m == 0 {
            return bad("block_m", "must be at least 1".into());
        }
        let elem = s.dtype.bytes();
        let matrix = TargetDialect::types(target, s.dtype).matrix;
        let too_big = || CodegenError::Schedule {
            field: "block_n",
            reason: format!(
                "block_m={} block_n={} head_dim={} need more memory than a 32-bit size holds",
                s.block_m, s.block_n, s.head_dim
            ),
        };
        // A head dimension whose byte size overflows is too big for every tile.
        s.head_dim.checked_mul(elem).ok_or_else(too_big)?;
        let smem_ld = s.head_dim.checked_add(16 / elem).ok_or_else(too_big)?;
        let q_smem_elems = s.block_m.checked_mul(smem_ld).ok_or_else(too_big)?;
        let kv_stage_elems = s.block_n.checked_mul(smem_ld).ok_or_else(too_big)?;
        let p_smem_floats = if matrix == MatrixPath::Simt {
            s.block_m.checked_mul(s.block_n).ok_or_else(too_big)?
        } else {
            0
        };
        let smem_bytes = (u64::from(q_smem_elems)
            + 2 * u64::from(s.stages) * u64::from(kv_stage_elems))
            * u64::from(elem)
            + 4 * u64::from(p_smem_floats);
        let smem_bytes = u32::try_from(smem_bytes).map_err(|_| too_big())?;
        if smem_bytes > d.max_smem_bytes {
            return bad(
                "block_n",
                format!(
                    "the tiles need {smem_bytes} bytes of shared memory, more than {target}'s {}; use smaller block_n or block_m",
                    d.max_smem_bytes
                ),
            );
        }
        let threads = s.warps.checked_mul(d.warp_size).ok_or_else(too_big)?;
        let (mut registers, q_registers) = registers(matrix, s);
        // Keep a fifth of the register file's per-thread limit for the score function, heads
        // and epilogue; past that, the query fragments are the ones to give up.
        let q_in_registers = registers.saturating_mul(5) <= d.max_regs_per_thread.saturating_mul(4);
        if !q_in_registers {
            registers -= q_registers;
        }
        if registers > d.max_regs_per_thread {
            return bad(
                "head_dim",
                format!(
                    "at head dim {} with {}-key tiles a thread needs about {registers} registers, more than {target}'s {}; use smaller block_n",
                    s.head_dim, s.block_n, d.max_regs_per_thread
                ),
            );
        }
        let fits_two = threads > 0
            && u64::from(registers) * 10 / 9 * u64::from(threads) * 2 <= u64::from(d.regs_per_sm)
            && 2 * u64::from(smem_bytes) <= u64::from(d.smem_per_sm)
            && 2 * u64::from(threads) <= u64::from(d.max_threads_per_sm);
        Ok(Tiles {
            elem,
            rows_per_warp,
            threads,
            smem_ld,
            q_smem_elems,
            kv_stage_elems,
            p_smem_floats,
            smem_bytes,
            matrix,
            registers,
            min_blocks_per_sm: if fits_two && d.lockstep_warps { 2 } else { 1 },
            q_in_registers,
        })
    }
}

/// Registers one thread keeps for the key loop on `matrix` (32-bit each), and how many of
/// them hold query fragments.
fn registers(matrix: MatrixPath, s: &GpuSchedule) -> (u32, u32) {
    let (hd, bn) = (s.head_dim, s.block_n);
    let (fragments, q) = match matrix {
        // 32 lanes share a 16-row slice: hd/2 accumulators, bn/2 scores, hd/4 packed Q words.
        MatrixPath::MmaM16n8k16 => (hd / 2 + bn / 2, hd / 4),
        // 64 lanes share 16 queries: hd/4 accumulators, bn/4 scores, hd/8 packed Q words; the
        // 512-register file always keeps them.
        MatrixPath::Mfma16x16x16 => (hd / 4 + bn / 4, hd / 8),
        MatrixPath::Simt => (hd / 2 + bn / 2, 0),
        MatrixPath::Scalar => (0, 0),
    };
    (
        BASE_REGISTERS.saturating_add(fragments).saturating_add(q),
        q,
    )
}
