//! Every generated CUDA source compiles for sm_80 and sm_90a (the fused kernels without register
//! spills and with tensor-core HMMA instructions in the SASS), and every HIP source for gfx90a
//! and gfx942. Compilers come from scripts/install-gpu-toolchain.sh; under CI=true a missing
//! one fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cascade_codegen::{DType, GpuSchedule, Kernel, Target, emit};
use cascade_ir::Cascade;

struct Unit {
    label: String,
    kernel: Kernel,
}

fn units(target: Target) -> Vec<Unit> {
    let mut out = Vec::new();
    let lib = common::library();
    for c in &lib {
        let s = GpuSchedule::suggested(target, DType::Bf16, 128);
        out.push(Unit {
            label: c.name.clone(),
            kernel: emit(c, &s, target).expect("emit"),
        });
    }
    let fused: &Cascade = lib
        .iter()
        .find(|c| c.name == "attention_1pass")
        .expect("library");
    let variants = [
        ("attention_1pass_fp16_hd64", DType::F16, 64, false),
        ("attention_1pass_f32_hd64", DType::F32, 64, false),
        ("attention_1pass_bf16_hd64_causal", DType::Bf16, 64, true),
        ("attention_1pass_bf16_hd128_plain", DType::Bf16, 128, false),
    ];
    for (label, dtype, hd, causal) in variants {
        let s = GpuSchedule {
            causal,
            // `_plain`: tensor-core operands through ordinary shared-memory loads.
            ldmatrix: !label.ends_with("_plain"),
            ..GpuSchedule::suggested(target, dtype, hd)
        };
        out.push(Unit {
            label: label.into(),
            kernel: emit(fused, &s, target).expect("emit"),
        });
    }
    out
}

/// Runs `jobs` on two threads (the CI machine has two cores).
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let f = &f;
        let chunks: Vec<_> = items.chunks(items.len().div_ceil(2).max(1)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|ch| s.spawn(move || ch.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("compile worker"))
            .collect()
    })
}

fn write(dir: &Path, u: &Unit) -> PathBuf {
    let path = dir.join(format!(
        "{}.{}",
        u.label,
        u.kernel.source_name.rsplit('.').next().unwrap()
    ));
    std::fs::write(&path, &u.kernel.source).expect("write source");
    path
}

#[test]
fn cuda_sources_compile_for_sm80_and_sm90a_with_tensor_cores_and_no_spills() {
    let Some(nvcc) = common::tool("CASCADE_NVCC") else {
        return;
    };
    let Some(cuobjdump) = common::tool("CASCADE_CUOBJDUMP") else {
        return;
    };
    let dir = common::scratch("cuda");
    let units = units(Target::Cuda);
    assert!(
        units.iter().filter(|u| u.kernel.fused).count() >= 5,
        "the 1-pass cascades fuse"
    );
    let jobs: Vec<(&Unit, &str)> = units
        .iter()
        .flat_map(|u| [(u, "sm_80"), (u, "sm_90a")])
        .collect();
    let reports = parallel(&jobs, |(u, arch)| {
        let src = write(&dir, u);
        let cubin = dir.join(format!("{}.{arch}.cubin", u.label));
        let log = common::run(
            Command::new(&nvcc)
                .args([
                    "-std=c++17",
                    "-O3",
                    "-cubin",
                    &format!("-arch={arch}"),
                    "-Xptxas",
                    "-v",
                    "-o",
                ])
                .arg(&cubin)
                .arg(&src),
        );
        // nvdisasm sits next to cuobjdump (the install script puts both there).
        let sass = common::run(
            Command::new(&cuobjdump)
                .env("NVDISASM_PATH", cuobjdump.parent().expect("dir"))
                .arg("-sass")
                .arg(&cubin),
        );
        (*u, *arch, log, sass)
    });
    for (u, arch, log, sass) in reports {
        let hmma = sass.lines().filter(|l| l.contains("HMMA")).count();
        if u.kernel.fused {
            let spills: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("spill") && !l.contains(" 0 bytes spill stores, 0 bytes spill loads")
                })
                .collect();
            assert!(
                spills.is_empty(),
                "{} on {arch} spills registers:\n{log}",
                u.label
            );
            assert!(
                log.contains("Used"),
                "{} on {arch}: ptxas printed no register usage:\n{log}",
                u.label
            );
            if u.kernel.summary.contains("mma.sync") {
                assert!(hmma > 0, "{} on {arch}: no HMMA in the SASS", u.label);
                let ldsm = sass.lines().filter(|l| l.contains("LDSM")).count();
                assert_eq!(
                    ldsm > 0,
                    u.kernel.summary.contains("+ldmatrix"),
                    "{} on {arch}: {ldsm} LDSM",
                    u.label
                );
            } else {
                assert_eq!(
                    hmma, 0,
                    "{} on {arch}: the SIMT path uses no tensor cores",
                    u.label
                );
            }
        }
        eprintln!("{} {arch}: ok, {hmma} HMMA", u.label);
    }
}

/// The host side too (launchers, allocation, launch syntax): shared libraries of a fused and two
/// generic sources per GPU target, built as their README says.
#[test]
fn launchers_build_into_shared_libraries() {
    let Some(nvcc) = common::tool("CASCADE_NVCC") else {
        return;
    };
    let Some(cuda_home) = common::tool("CASCADE_CUDA_HOME") else {
        return;
    };
    let Some(hipcc) = common::tool("CASCADE_HIPCC") else {
        return;
    };
    let dir = common::scratch("host");
    let lib = common::library();
    let names = ["attention_causal_1pass", "attention_3pass", "pedagogical_3"];
    let jobs: Vec<(Target, &Cascade)> = [Target::Cuda, Target::Hip]
        .into_iter()
        .flat_map(|t| {
            lib.iter()
                .filter(|c| names.contains(&c.name.as_str()))
                .map(move |c| (t, c))
        })
        .collect();
    let built = parallel(&jobs, |(target, c)| {
        let kernel = emit(
            c,
            &GpuSchedule::suggested(*target, DType::Bf16, 128),
            *target,
        )
        .expect("emit");
        let src = dir.join(&kernel.source_name);
        std::fs::write(&src, &kernel.source).expect("write");
        let so = dir.join(format!("lib{}_{target}.so", kernel.symbol));
        let mut cmd = match target {
            Target::Cuda => {
                let mut cmd = Command::new(&nvcc);
                cmd.args([
                    "-O3",
                    "-std=c++17",
                    "-arch=sm_80",
                    "-Xcompiler",
                    "-fPIC",
                    "-shared",
                ])
                .arg(format!("-L{}", cuda_home.join("lib").display()));
                cmd
            }
            _ => {
                let mut cmd = Command::new(&hipcc);
                cmd.args([
                    "-O3",
                    "-std=c++17",
                    "--offload-arch=gfx90a",
                    "-fPIC",
                    "-shared",
                    "-Werror=unused-result",
                ]);
                cmd
            }
        };
        common::run(cmd.arg("-o").arg(&so).arg(&src));
        let size = std::fs::metadata(&so).map(|m| m.len()).unwrap_or(0);
        (kernel.symbol, *target, size)
    });
    for (symbol, target, size) in built {
        assert!(size > 0, "{symbol} ({target}): no shared library");
        eprintln!("{symbol} ({target}): {size} bytes");
    }
}

#[test]
fn hip_sources_compile_for_gfx90a_and_gfx942() {
    let Some(clang15) = common::tool("CASCADE_HIP_CLANG") else {
        return;
    };
    let Some(libs15) = common::tool("CASCADE_HIP_DEVICE_LIBS") else {
        return;
    };
    let Some(clang19) = common::tool("CASCADE_CLANG19") else {
        return;
    };
    let Some(libs942) = common::tool("CASCADE_GFX942_DEVICE_LIBS") else {
        return;
    };
    let dir = common::scratch("hip");
    let units = units(Target::Hip);
    let jobs: Vec<(&Unit, &str)> = units
        .iter()
        .flat_map(|u| [(u, "gfx90a"), (u, "gfx942")])
        .collect();
    let done = parallel(&jobs, |(u, arch)| {
        let src = write(&dir, u);
        let (clang, libs) = if *arch == "gfx942" {
            (&clang19, &libs942)
        } else {
            (&clang15, &libs15)
        };
        let obj = dir.join(format!("{}.{arch}.co", u.label));
        common::run(
            Command::new(clang)
                .args([
                    "-x",
                    "hip",
                    "-std=c++17",
                    "--rocm-path=/usr",
                    "-O3",
                    "--cuda-device-only",
                    "--no-gpu-bundle-output",
                    "-Werror=return-type",
                ])
                .arg(format!("--hip-device-lib-path={}", libs.display()))
                .arg(format!("--offload-arch={arch}"))
                .arg("-c")
                .arg(&src)
                .arg("-o")
                .arg(&obj),
        );
        let size = std::fs::metadata(&obj).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0, "{} for {arch}: empty code object", u.label);
        format!("{} {arch}: {size} bytes", u.label)
    });
    for line in done {
        eprintln!("{line}");
    }
}
