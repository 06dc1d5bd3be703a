//! The zoo's CUDA and HIP sources through the real compilers: every variant's kernel (fused or
//! generic) compiles for sm_90a with nvcc and for gfx942 with clang's HIP front end. No GPU is
//! needed; the compilers come from scripts/install-gpu-toolchain.sh, and under CI=true a
//! missing one fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use cascade_codegen::{DType, GpuSchedule, Target, emit};

use super::Case;

/// The path a `CASCADE_*` variable names, or `None` (skip) outside CI.
fn tool(var: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.exists())
    {
        return Some(path);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{var} is not set or missing under CI=true: run `source \"$(scripts/install-gpu-toolchain.sh)\"` first"
    );
    eprintln!("skipping: {var} is not set");
    None
}

/// The compile command of one source for one target, writing `out`.
fn command(target: Target, src: &Path, out: &Path) -> Option<Command> {
    match target {
        Target::Cuda => {
            let mut cmd = Command::new(tool("CASCADE_NVCC")?);
            cmd.args(["-std=c++17", "-O1", "-cubin", "-arch=sm_90a", "-o"])
                .arg(out)
                .arg(src);
            Some(cmd)
        }
        _ => {
            let libs = tool("CASCADE_GFX942_DEVICE_LIBS")?;
            let mut cmd = Command::new(tool("CASCADE_CLANG19")?);
            cmd.args(["-x", "hip", "-std=c++17", "--rocm-path=/usr", "-O1"])
                .args([
                    "--cuda-device-only",
                    "--no-gpu-bundle-output",
                    "-Werror=return-type",
                ])
                .arg(format!("--hip-device-lib-path={}", libs.display()))
                .args(["--offload-arch=gfx942", "-c"])
                .arg(src)
                .arg("-o")
                .arg(out);
            Some(cmd)
        }
    }
}

/// Compiles every case's source for `target` on every core; the failures, one per case.
pub fn compile_all(cases: &[Case], target: Target) -> Vec<String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("zoo_{}", target.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    if command(target, &dir, &dir).is_none() {
        return Vec::new();
    }
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(case) = cases.get(i) else { return };
                    if let Some(why) = compile_one(case, target, &dir) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {why}", case.name));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    failures
}

fn compile_one(case: &Case, target: Target, dir: &Path) -> Option<String> {
    let head = case
        .spec
        .sizes
        .get("E")
        .copied()
        .unwrap_or(64)
        .clamp(16, 128) as u32;
    let schedule = GpuSchedule::suggested(target, DType::Bf16, head.next_multiple_of(16));
    // A refusal is the zoo summary's business; only emitted sources must compile.
    let kernel = emit(&case.cascade, &schedule, target).ok()?;
    let src = dir.join(format!("{}_{}", case.name, kernel.source_name));
    std::fs::write(&src, &kernel.source).expect("write source");
    let out = src.with_extension("o");
    let result = command(target, &src, &out)?
        .output()
        .expect("compiler runs");
    (!result.status.success()).then(|| {
        let log = String::from_utf8_lossy(&result.stderr);
        log.lines().take(20).collect::<Vec<_>>().join("\n")
    })
}
