//! Code generation: lowers cascades to CUDA, HIP and C++ kernel sources through askama templates.
//!
//! [`plan`] turns a cascade and a [`GpuSchedule`] into a [`KernelPlan`]: every tile size, loop
//! bound, buffer name and C expression the source needs, computed here in Rust. The templates
//! under `codegen/templates/{cuda,hip,cpp,common}/` only lay that plan out as text, and every
//! CUDA-vs-HIP-vs-C++ difference comes from one [`TargetDialect`] table. [`emit`] renders it.
//! Both lowerings take when each Einsum runs from [`cascade_ir::plan::LoopPlan`], the
//! interpreter's own schedule.
//!
//! Two lowerings:
//! * **fused** — a cascade that [`pattern::recognise`] describes as attention (the 1-pass
//!   online softmax, the 3-pass or deferred softmax, the split-K form, or weighted attention
//!   without a max; any score function of `Q·K`, masks, heads, layouts and epilogue) becomes
//!   one FlashAttention-2-style kernel (two for split-K): a query tile per block, key/value tiles
//!   skipped where the mask holds nowhere (`tiles.rs` classifies them soundly for every
//!   comparison), the two products on tensor cores (`mma.sync.m16n8k16`, CUDA fp16/bf16), matrix
//!   cores (`v_mfma_f32_16x16x16`, HIP fp16/bf16) or scalar FMAs, the online softmax in base 2
//!   in registers, and the outputs from the final numerator, denominator and max. What it
//!   cannot honour (a filter on the values or the head dimension, a computed `Q`, an Einsum
//!   with no role) sends the cascade to the generic lowering with the reason;
//! * **generic** — any other valid cascade becomes one kernel per Einsum over global memory, with
//!   presence, merges, filters, reductions and iterative ranks as the IR semantics define them.
//!   What the interpreter would fail on while running (an index that may leave its tensor, a
//!   stop condition that may not hold in time) is refused at plan time (`bounds.rs`), since a
//!   GPU kernel cannot raise an error.
//!
//! A cascade either lowers to a kernel that computes what `cascade_ir::eval` computes, or
//! [`plan`] returns [`CodegenError::Unsupported`] naming the Einsum and what to write instead.
//!
//! # ABI
//!
//! Every source, fused or generic, exports the same launcher for a cascade:
//! `extern "C" int cascade_<name>(inputs…, outputs…, int batch, long long <size>…[, void*
//! workspace, unsigned long long workspace_bytes][, void* stream])` returning 0 or a
//! `CASCADE_ERR_*` code (the C++ target has neither workspace nor stream). A GPU launcher is
//! stream-ordered; with a workspace of `cascade_<name>_workspace_bytes(batch, <size>…)` bytes it
//! allocates nothing (so it can be captured in a CUDA graph), and given `nullptr` it uses one
//! buffer it allocates on first use and grows. The sizes ([`abi_sizes`]) are every rank that is not
//! the outer part of a split, in declaration order: the plain ranks, the params, and the inner
//! rank of each split (`M0` of `split M -> M1 M0`, declared after `M`). An inner size of 0 asks
//! for the interpreter's default, `gcd(parent, 64)` ([`cascade_ir::shape::Shape::resolve`] given
//! only the parent); any other inner size must divide its parent, and the outer size is the
//! quotient. Every size must be at least 1, as for the interpreter; anything else returns
//! `CASCADE_ERR_SHAPE`. So `attention_1pass` takes `(Q, K, V, AV, batch, E, F, M, P, M0)`, and a
//! GQA cascade with `split H -> G R` takes `R`, the heads per key/value group. The fused kernel
//! tiles keys by its own `block_n`, whatever `M0` is; `M0` only matters to filters that name
//! `m1` or `m0` on their own.
//!
//! A tensor `T[R0,R1,…]` is stored with `R0` fastest (so `Q[E,P]` is the usual row-major
//! `[P][E]`), `batch` copies back to back.

mod bounds;
mod cexpr;
pub mod dialect;
mod fused;
mod generic;
pub mod pattern;
mod render;
mod sizes;
mod tiles;

use std::fmt;

use cascade_ir::Cascade;

pub use dialect::{Target, TargetDialect, TypeDialect};
pub use fused::FusedPlan;
pub use generic::GenericPlan;
pub use sizes::{abi_sizes, fused_kernel_sizes};

/// The tool version named in every generated header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Element type of inputs and outputs; arithmetic always accumulates in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F16,
    Bf16,
    F32,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "fp16",
            DType::Bf16 => "bf16",
            DType::F32 => "f32",
        }
    }

    pub fn bytes(self) -> u32 {
        match self {
            DType::F16 | DType::Bf16 => 2,
            DType::F32 => 4,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the generated kernels tile the work. The caller chooses every field; see
/// [`GpuSchedule::suggested`] for values that fit each target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GpuSchedule {
    /// Query rows per thread block (the tile over P). Must be `warps × 16 × warp_size/32`.
    pub block_m: u32,
    /// Keys per key/value tile of the fused kernel, a multiple of 16. It is the kernel's own
    /// tiling and independent of the cascade's split of M, whose sizes come from the launcher.
    pub block_n: u32,
    pub warps: u32,
    /// Key/value tiles in flight (2: double buffering, the only depth implemented).
    pub stages: u32,
    pub dtype: DType,
    /// Head dimension (the sizes of E and F) the fused kernel is specialised for.
    pub head_dim: u32,
    /// Adds a causal filter (key `m` visible to query `p` only when `m <= p`) to the fused
    /// kernel's mask, on top of the cascade's own filters.
    pub causal: bool,
    /// Use the fused lowering when the cascade has its structure; `false` forces the generic one
    /// (slow, for comparison).
    pub fuse: bool,
    /// Load tensor-core operands with `ldmatrix` (CUDA MMA path); `false` uses plain loads.
    pub ldmatrix: bool,
}

/// The most threads a block may have on every GPU target.
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
/// The most warps a block may have on any target (fewer where warps are wider).
pub const MAX_WARPS: u32 = 32;
/// The largest key tile (`block_n`).
pub const MAX_BLOCK_N: u32 = 1024;
/// The largest head dimension the fused kernel is specialised for.
pub const MAX_HEAD_DIM: u32 = 1024;

impl GpuSchedule {
    /// The same schedule with `warps` warps per block and the query tile that goes with them
    /// (`warps × rows per warp`); [`GpuSchedule::check`] refuses a count out of range.
    pub fn with_warps(mut self, target: Target, warps: u32) -> GpuSchedule {
        self.block_m = warps.saturating_mul(TargetDialect::of(target).rows_per_warp(self.dtype));
        self.warps = warps;
        self
    }

    /// The most warps per block on `target`.
    pub fn max_warps(target: Target) -> u32 {
        let warp_size = TargetDialect::of(target).warp_size.max(1);
        (MAX_THREADS_PER_BLOCK / warp_size).min(MAX_WARPS)
    }

    /// Every field in its range for `target`, each refusal naming the field, its limit and the
    /// fix. [`plan`] calls it first, so no lowering ever sees a zero or wrapped tile size.
    pub fn check(&self, target: Target) -> Result<()> {
        let bad = |field, reason: String| Err(CodegenError::Schedule { field, reason });
        let max_warps = GpuSchedule::max_warps(target);
        if !(1..=max_warps).contains(&self.warps) {
            return bad(
                "warps",
                format!(
                    "{} is not between 1 and {max_warps}, the most warps of a block on {target}",
                    self.warps
                ),
            );
        }
        for (field, value, max) in [
            ("block_n", self.block_n, MAX_BLOCK_N),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
        ] {
            if value == 0 || !value.is_multiple_of(16) || value > max {
                return bad(
                    field,
                    format!("{value} is not a positive multiple of 16 up to {max}"),
                );
            }
        }
        if self.block_m == 0 {
            return bad("block_m", "must be at least 1".into());
        }
        Ok(())
    }

    /// A schedule that fits `target`'s shared memory for `dtype` at `head_dim`.
    pub fn suggested(target: Target, dtype: DType, head_dim: u32) -> GpuSchedule {
        let d = TargetDialect::of(target);
        let (warps, block_n) = fused::suggest(&d, dtype, head_dim);
        GpuSchedule {
            block_m: warps * d.rows_per_warp(dtype),
            block_n,
            warps,
            stages: 2,
            dtype,
            head_dim,
            causal: false,
            fuse: true,
            ldmatrix: true,
        }
    }
}

/// A problem that stops code generation, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("schedule field `{field}`: {reason}")]
    Schedule { field: &'static str, reason: String },
    #[error("cannot lower cascade `{cascade}`: {reason}")]
    Unsupported { cascade: String, reason: String },
    #[error("template rendering failed: {0}")]
    Template(#[from] askama::Error),
}

pub type Result<T> = std::result::Result<T, CodegenError>;

/// Which lowering a plan uses.
#[derive(Debug, Clone)]
pub enum Lowering {
    Fused(Box<FusedPlan>),
    /// The generic lowering, with the reason the fused one did not apply.
    Generic(Box<GenericPlan>),
}

/// Everything a template needs, computed from a cascade, a schedule and a target.
#[derive(Debug, Clone)]
pub struct KernelPlan {
    pub cascade: String,
    pub target: Target,
    pub schedule: GpuSchedule,
    pub lowering: Lowering,
}

impl KernelPlan {
    pub fn is_fused(&self) -> bool {
        matches!(self.lowering, Lowering::Fused(_))
    }

    /// One line naming the lowering and its tiles, as the generated header states it.
    pub fn summary(&self) -> String {
        let s = &self.schedule;
        match &self.lowering {
            Lowering::Fused(p) => format!(
                "fused attention kernel ({}{}): block_m={} block_n={} warps={} stages={} dtype={} head_dim={} matrix={}{}{} smem={}B regs~{} min_blocks={}",
                p.form,
                if p.split {
                    ", split-K + combine kernels"
                } else {
                    ""
                },
                p.block_m,
                p.block_n,
                p.warps,
                p.stages,
                s.dtype,
                p.head_dim,
                p.matrix_path,
                if p.ldmatrix { "+ldmatrix" } else { "" },
                if p.mma && !p.q_in_registers {
                    " q-from-smem"
                } else {
                    ""
                },
                p.smem_bytes,
                p.registers,
                p.min_blocks_per_sm
            ),
            Lowering::Generic(p) => format!(
                "generic lowering: {} kernels (one per Einsum, one store per output), dtype={} (fused lowering not applicable: {})",
                p.kernels.len(),
                s.dtype,
                p.why_not_fused
            ),
        }
    }
}

/// A rendered kernel: the source, its C header and a README with the build line.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `cascade_<name>`: the launcher's symbol and the files' stem.
    pub symbol: String,
    pub target: Target,
    pub fused: bool,
    pub source_name: String,
    pub source: String,
    pub header_name: String,
    pub header: String,
    pub readme: String,
    pub summary: String,
}

/// Computes the plan of `cascade` for `target`: fused when the cascade has the online-softmax
/// structure, generic otherwise.
pub fn plan(cascade: &Cascade, schedule: &GpuSchedule, target: Target) -> Result<KernelPlan> {
    let d = TargetDialect::of(target);
    if !d.dtypes.contains(&schedule.dtype) {
        let supported: Vec<&str> = d.dtypes.iter().map(|t| t.name()).collect();
        return Err(CodegenError::Schedule {
            field: "dtype",
            reason: format!(
                "the {target} target computes in {} only, not {}; use --dtype {}",
                supported.join(", "),
                schedule.dtype,
                supported[0]
            ),
        });
    }
    if let Some(problem) = cascade_ir::verify::verify(cascade).first() {
        return Err(CodegenError::Unsupported {
            cascade: cascade.name.clone(),
            reason: format!("the cascade does not verify: {problem}"),
        });
    }
    schedule.check(target)?;
    let found = if schedule.fuse {
        pattern::recognise(cascade)
    } else {
        Err("the schedule asks for the generic lowering".to_string())
    };
    let lowering = match found {
        Ok(found) => Lowering::Fused(Box::new(fused::plan(cascade, &found, schedule, &d)?)),
        Err(why) => {
            if schedule.causal {
                return Err(CodegenError::Unsupported {
                    cascade: cascade.name.clone(),
                    reason: format!(
                        "--causal needs the fused lowering, which does not apply ({why}); write the mask as a filter in the cascade instead (see attention_causal_1pass)"
                    ),
                });
            }
            Lowering::Generic(Box::new(generic::plan(cascade, &d, why)?))
        }
    };
    Ok(KernelPlan {
        cascade: cascade.name.clone(),
        target,
        schedule: *schedule,
        lowering,
    })
}

/// Plans and renders `cascade` for `target`.
pub fn emit(cascade: &Cascade, schedule: &GpuSchedule, target: Target) -> Result<Kernel> {
    let plan = plan(cascade, schedule, target)?;
    render::render(cascade, &plan)
}
