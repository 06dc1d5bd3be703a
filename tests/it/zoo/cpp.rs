//! The zoo through the `cpp` target: each cascade is emitted fused (when it has the online
//! softmax structure) and with `--no-fuse`, built with g++ beside a small driver that feeds
//! it the case's inputs, run, and compared with the f64 interpreter. Builds run on every core.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use cascade_codegen::{DType, GpuSchedule, Kernel, Target, emit};
use cascade_ir::Cascade;
use ndarray::ArrayD;

use super::{Case, F32_TOL, Outcome, compare, input_tensors};

fn schedule(case: &Case, fuse: bool) -> GpuSchedule {
    let head = case.spec.sizes.get("E").copied().unwrap_or(16).max(16);
    GpuSchedule {
        block_m: 16,
        block_n: 16,
        warps: 1,
        stages: 2,
        dtype: DType::F32,
        head_dim: head as u32,
        causal: false,
        fuse,
        ldmatrix: true,
    }
}

fn compiler() -> Option<String> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    if Command::new(&cxx).arg("--version").output().is_ok() {
        return Some(cxx);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{cxx} is missing under CI=true"
    );
    None
}

/// The two cpp cells of every case, in case order.
pub fn run_all(cases: &[Case]) -> Vec<Vec<(&'static str, Outcome)>> {
    let Some(cxx) = compiler() else {
        eprintln!("skipping the cpp target: no C++ compiler");
        let skipped = || Outcome::Refused("no C++ compiler on this machine".into());
        return cases
            .iter()
            .map(|_| vec![("cpp fused", skipped()), ("cpp no-fuse", skipped())])
            .collect();
    };
    let jobs: Vec<(usize, bool)> = (0..cases.len())
        .flat_map(|i| [(i, true), (i, false)])
        .collect();
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = Mutex::new(0usize);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let j = {
                        let mut n = next.lock().unwrap();
                        let j = *n;
                        *n += 1;
                        j
                    };
                    let Some(&(i, fuse)) = jobs.get(j) else {
                        return;
                    };
                    let outcome = run_one(&cases[i], fuse, &cxx);
                    results.lock().unwrap()[j] = Some(outcome);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap().into_iter();
    cases
        .iter()
        .map(|_| {
            let fused = results.next().flatten().expect("ran");
            let plain = results.next().flatten().expect("ran");
            vec![("cpp fused", fused), ("cpp no-fuse", plain)]
        })
        .collect()
}

fn run_one(case: &Case, fuse: bool, cxx: &str) -> Outcome {
    let kernel = match emit(&case.cascade, &schedule(case, fuse), Target::Cpp) {
        Ok(k) => k,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    // A cascade without the fused structure gets the same generic code either way: build it
    // once, under `--no-fuse`.
    if fuse && !kernel.fused {
        return Outcome::Agrees("generic (same as --no-fuse)".into());
    }
    let dir = scratch(&format!(
        "zoo_{}_{}",
        case.name,
        if fuse { "fused" } else { "plain" }
    ));
    match build_and_run(case, &kernel, &dir, cxx) {
        Ok(outputs) => {
            for (got, want) in outputs.iter().zip(&case.expected) {
                if let Err(e) = compare(got, &abi_order(want), F32_TOL) {
                    return Outcome::Wrong(format!("cpp ({}): {e}", lowering(&kernel)));
                }
            }
            Outcome::Agrees(lowering(&kernel).into())
        }
        Err(e) => Outcome::Wrong(format!("cpp ({}): {e}", lowering(&kernel))),
    }
}

fn lowering(k: &Kernel) -> &'static str {
    if k.fused { "fused" } else { "generic" }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A tensor in the ABI layout: first declared rank fastest.
fn abi_order(a: &ArrayD<f64>) -> ArrayD<f64> {
    a.view().reversed_axes().as_standard_layout().into_owned()
}

fn build_and_run(
    case: &Case,
    kernel: &Kernel,
    dir: &Path,
    cxx: &str,
) -> Result<Vec<Vec<f64>>, String> {
    let c = &case.cascade;
    std::fs::write(dir.join(&kernel.source_name), &kernel.source).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("driver.cpp"), driver(case, &kernel.symbol))
        .map_err(|e| e.to_string())?;
    let build = Command::new(cxx)
        .current_dir(dir)
        .args([
            "-O1",
            "-std=c++17",
            "-w",
            "-o",
            "run",
            &kernel.source_name,
            "driver.cpp",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !build.status.success() {
        return Err(format!(
            "g++ failed:\n{}",
            String::from_utf8_lossy(&build.stderr)
        ));
    }
    let mut bytes = Vec::new();
    for t in input_tensors(c) {
        for x in abi_order(&case.inputs[&t.name]).iter() {
            bytes.extend_from_slice(&(*x as f32).to_le_bytes());
        }
    }
    std::fs::write(dir.join("in.bin"), bytes).map_err(|e| e.to_string())?;
    let run = Command::new(dir.join("run"))
        .current_dir(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !run.status.success() {
        return Err(format!(
            "the kernel exited with {:?}: {}",
            run.status.code(),
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let raw = std::fs::read(dir.join("out.bin")).map_err(|e| e.to_string())?;
    let mut values = raw
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    Ok(case
        .expected
        .iter()
        .map(|want| values.by_ref().take(want.len()).collect())
        .collect())
}

/// A C++ driver: reads the inputs (ABI order, f32) from `in.bin`, poisons the outputs with NaN,
/// calls the launcher for one batch entry and writes the outputs to `out.bin`.
fn driver(case: &Case, symbol: &str) -> String {
    let c: &Cascade = &case.cascade;
    let numel = |t: &cascade_ir::Tensor| {
        t.ranks
            .iter()
            .map(|&r| case.shape.size(r) as usize)
            .product::<usize>()
    };
    let inputs = input_tensors(c);
    let mut s = String::from("#include <cmath>\n#include <cstdio>\n#include <vector>\n");
    let mut params: Vec<String> = inputs.iter().map(|_| "const void*".to_string()).collect();
    params.extend(c.outputs.iter().map(|_| "void*".to_string()));
    params.push("int".into());
    let sizes = cascade_codegen::abi_sizes(c);
    params.extend(sizes.iter().map(|_| "long long".to_string()));
    writeln!(s, "extern \"C\" int {symbol}({});", params.join(", ")).unwrap();
    s.push_str("int main() {\n  FILE* f = fopen(\"in.bin\", \"rb\");\n");
    let mut args = Vec::new();
    for t in &inputs {
        writeln!(
            s,
            "  std::vector<float> in_{n}({});\n  if (fread(in_{n}.data(), 4, in_{n}.size(), f) != in_{n}.size()) return 10;",
            numel(t),
            n = t.name
        )
        .unwrap();
        args.push(format!("in_{}.data()", t.name));
    }
    s.push_str("  fclose(f);\n");
    for &o in &c.outputs {
        let t = c.tensor(o);
        writeln!(
            s,
            "  std::vector<float> out_{n}({}, NAN);",
            numel(t),
            n = t.name
        )
        .unwrap();
        args.push(format!("out_{}.data()", t.name));
    }
    args.push("1".into());
    args.extend(sizes.iter().map(|&r| format!("{}LL", case.shape.size(r))));
    writeln!(
        s,
        "  const int rc = {symbol}({});\n  if (rc != 0) {{ fprintf(stderr, \"launcher returned %d\\n\", rc); return 20 + rc; }}",
        args.join(", ")
    )
    .unwrap();
    s.push_str("  FILE* g = fopen(\"out.bin\", \"wb\");\n");
    for &o in &c.outputs {
        writeln!(
            s,
            "  fwrite(out_{n}.data(), 4, out_{n}.size(), g);",
            n = c.tensor(o).name
        )
        .unwrap();
    }
    s.push_str("  fclose(g);\n  return 0;\n}\n");
    s
}
