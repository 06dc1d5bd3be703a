//! `cascade codegen FILE|NAME --target cuda|hip|cpp --out DIR`: write a kernel source, its C
//! header and a README with the build line.

use std::path::PathBuf;

use cascade_codegen::{CodegenError, DType, GpuSchedule, Target, emit};
use serde_json::json;

use crate::files;
use crate::load;
use crate::output::{Format, UserError, print_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetArg {
    Cuda,
    Hip,
    Cpp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    Fp16,
    Bf16,
    F32,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path to a .cascade file or a library cascade name.
    #[arg(value_name = "FILE|NAME")]
    pub cascade: String,
    /// What compiles the source: nvcc (cuda), hipcc (hip) or any C++17 compiler (cpp).
    #[arg(long, value_enum)]
    pub target: TargetArg,
    /// Element type of inputs and outputs (f32 accumulation). Default: bf16 on GPUs, f32 for cpp.
    #[arg(long, value_enum)]
    pub dtype: Option<DTypeArg>,
    /// Head dimension (sizes of E and F) the fused kernel is specialised for.
    #[arg(long, default_value_t = 128)]
    pub head_dim: u32,
    /// Add a causal mask (key m visible to query p when m <= p) to the fused kernel.
    #[arg(long)]
    pub causal: bool,
    /// Use the generic lowering (one kernel per Einsum) even where the fused kernel applies.
    #[arg(long)]
    pub no_fuse: bool,
    /// Load tensor-core operands with plain shared-memory loads instead of `ldmatrix` (CUDA).
    #[arg(long)]
    pub no_ldmatrix: bool,
    /// Keys per key/value tile of the fused kernel (not the cascade's M0, which the launcher
    /// takes as a size); default: the target's suggestion.
    #[arg(long)]
    pub block_n: Option<u32>,
    /// Warps per block; the query tile is warps × 16 × warp size / 32 rows.
    #[arg(long)]
    pub warps: Option<u32>,
    /// Directory to write the source, header and README into (created if missing; refused
    /// when it holds anything, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Write into a non-empty --out directory, replacing the kernel's three files there (other
    /// files are kept).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let loaded = load::load(&args.cascade)?;
    let target = match args.target {
        TargetArg::Cuda => Target::Cuda,
        TargetArg::Hip => Target::Hip,
        TargetArg::Cpp => Target::Cpp,
    };
    let dtype = match args.dtype {
        Some(DTypeArg::Fp16) => DType::F16,
        Some(DTypeArg::Bf16) => DType::Bf16,
        Some(DTypeArg::F32) => DType::F32,
        None if target == Target::Cpp => DType::F32,
        None => DType::Bf16,
    };
    let mut schedule = GpuSchedule::suggested(target, dtype, args.head_dim);
    schedule.causal = args.causal;
    schedule.fuse = !args.no_fuse;
    schedule.ldmatrix = !args.no_ldmatrix;
    if let Some(n) = args.block_n {
        schedule.block_n = n;
    }
    if let Some(w) = args.warps {
        schedule = schedule.with_warps(target, w);
    }
    let kernel = emit(&loaded.parsed.cascade, &schedule, target).map_err(|e| match e {
        CodegenError::Template(_) => anyhow::Error::new(e),
        _ => UserError::message(format!("{}: {e}", loaded.path)).into(),
    })?;
    files::output_dir(&args.out, "--out", args.force)?;
    let files = [
        (&kernel.source_name, &kernel.source),
        (&kernel.header_name, &kernel.header),
        (&"README.md".to_string(), &kernel.readme),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = args.out.join(name);
        files::write_atomic(&path, text.as_bytes())?;
        written.push(path.display().to_string());
    }
    match format {
        Format::Text => {
            println!("{} ({target}): {}", kernel.symbol, kernel.summary);
            for w in &written {
                println!("wrote {w}");
            }
        }
        Format::Json => print_json(&json!({
            "ok": true,
            "file": loaded.path,
            "symbol": kernel.symbol,
            "target": target.name(),
            "fused": kernel.fused,
            "plan": kernel.summary,
            "written": written,
        })),
    }
    Ok(())
}
