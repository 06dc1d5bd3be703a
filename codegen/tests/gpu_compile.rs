//! Every generated CUDA source compiles for sm_80 and sm_90a (one nvcc run builds both), the
//! fused kernels without register spills and with what makes them fast in the SASS:
//! tensor-core HMMA and LDSM, MUFU.EX2 for the base-2 softmax, LDGSTS (`cp.async`) tile loads
//! and 128-bit output stores. Every HIP source compiles for gfx90a and gfx942 to ISA text, the
//! 16-bit fused kernels with MFMA instructions and no scratch. Compilers come from
//! scripts/install-gpu-toolchain.sh; under CI=true a missing one fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cascade_codegen::{DType, GpuSchedule, Kernel, Target, emit};
use cascade_ir::Cascade;

struct Unit {
    label: String,
    kernel: Kernel,
}

fn zoo(name: &str) -> Cascade {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/zoo")
        .join(format!("{name}.cascade"));
    common::parse(&std::fs::read_to_string(path).expect("zoo file"), name)
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
    // The zoo's kernel kinds at head dim 128: heads, split-K, sigmoid, soft-capping, ALiBi,
    // a sink logit and a union of masks.
    for name in [
        "gqa_1pass",
        "split_k_combine",
        "sigmoid_bias_causal",
        "softcap_causal_3pass",
        "alibi_causal_3pass",
        "sink_logit_1pass",
        "sinks_window_3pass",
    ] {
        let s = GpuSchedule::suggested(target, DType::Bf16, 128);
        out.push(Unit {
            label: format!("zoo_{name}"),
            kernel: emit(&zoo(name), &s, target).expect("emit"),
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

/// How many SASS lines contain `op`.
fn count(sass: &str, op: &str) -> usize {
    sass.lines().filter(|l| l.contains(op)).count()
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
        units.iter().filter(|u| u.kernel.fused).count() >= 15,
        "the attention cascades fuse"
    );
    let indices: Vec<usize> = (0..units.len()).collect();
    let reports = parallel(&indices, |&i| {
        let u = &units[i];
        let src = write(&dir, u);
        let fatbin = dir.join(format!("{}.fatbin", u.label));
        let log = common::run(
            Command::new(&nvcc)
                .args([
                    "-std=c++17",
                    "-O3",
                    "-fatbin",
                    "-gencode",
                    "arch=compute_80,code=sm_80",
                    "-gencode",
                    "arch=compute_90a,code=sm_90a",
                    "-Xptxas",
                    "-v",
                    "-o",
                ])
                .arg(&fatbin)
                .arg(&src),
        );
        // nvdisasm sits next to cuobjdump (the install script puts both there).
        let sass = common::run(
            Command::new(&cuobjdump)
                .env("NVDISASM_PATH", cuobjdump.parent().expect("dir"))
                .arg("-sass")
                .arg(&fatbin),
        );
        (i, log, sass)
    });
    for (i, log, sass) in reports {
        let u = &units[i];
        let label = &u.label;
        let hmma = count(&sass, "HMMA");
        if u.kernel.fused {
            let spills: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("spill") && !l.contains(" 0 bytes spill stores, 0 bytes spill loads")
                })
                .collect();
            assert!(spills.is_empty(), "{label} spills registers:\n{log}");
            for arch in ["sm_80", "sm_90a"] {
                assert!(
                    log.contains(&format!("for '{arch}'")),
                    "{label}: ptxas compiled nothing for {arch}:\n{log}"
                );
            }
            assert!(
                log.contains("Used"),
                "{label}: ptxas printed no register usage:\n{log}"
            );
            let summary = &u.kernel.summary;
            if summary.contains("mma.sync") {
                assert!(hmma > 0, "{label}: no HMMA in the SASS");
                assert_eq!(
                    count(&sass, "LDSM") > 0,
                    summary.contains("+ldmatrix"),
                    "{label}: LDSM in the SASS iff the plan loads with ldmatrix"
                );
            } else {
                assert_eq!(hmma, 0, "{label}: the SIMT path uses no tensor cores");
            }
            assert!(
                count(&sass, "LDGSTS") > 0,
                "{label}: no cp.async tile loads"
            );
            if summary.contains("softmax") {
                assert!(
                    count(&sass, "MUFU.EX2") > 0,
                    "{label}: no base-2 exponential"
                );
            }
            if !summary.contains("split-K") && !summary.contains("f32") {
                assert!(
                    count(&sass, "STG.E.128") > 0,
                    "{label}: the output is not stored 128 bits at a time"
                );
            }
        }
        let regs: Vec<&str> = log.lines().filter(|l| l.contains("Used")).collect();
        eprintln!("{label}: ok, {hmma} HMMA; {}", regs.join(" | ").trim());
    }
}

/// The host side too (launchers, workspaces, launch syntax): shared libraries of a fused and
/// two generic sources per GPU target, built with each README's own build line (the HIP one
/// with nvcc on PATH, which hipcc would otherwise take for a CUDA platform).
#[test]
fn launchers_build_into_shared_libraries_with_the_readme_build_line() {
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
    let names = [
        "attention_causal_1pass",
        "attention_2pass_localmax",
        "pedagogical_3",
    ];
    let jobs: Vec<(Target, &Cascade)> = [Target::Cuda, Target::Hip]
        .into_iter()
        .flat_map(|t| {
            lib.iter()
                .filter(|c| names.contains(&c.name.as_str()))
                .map(move |c| (t, c))
        })
        .collect();
    let path = format!(
        "{}:{}:{}",
        nvcc.parent().expect("nvcc dir").display(),
        hipcc.parent().expect("hipcc dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let built = parallel(&jobs, |(target, c)| {
        let kernel = emit(
            c,
            &GpuSchedule::suggested(*target, DType::Bf16, 128),
            *target,
        )
        .expect("emit");
        // One folder per target: both READMEs name the library lib<symbol>.so.
        let dir = dir.join(target.name());
        std::fs::create_dir_all(&dir).expect("target dir");
        let src = dir.join(&kernel.source_name);
        std::fs::write(&src, &kernel.source).expect("write");
        let so = dir.join(format!("lib{}.so", kernel.symbol));
        // The README's line: `[VAR=value …] compiler flags… -o lib….so source`.
        let line = kernel
            .readme
            .lines()
            .find(|l| l.trim_start().contains(" -o lib"))
            .expect("a build line")
            .trim()
            .to_string();
        let mut words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let mut cmd = Command::new("env");
        cmd.env("PATH", &path).current_dir(&dir);
        if *target == Target::Cuda {
            // The wheels' toolkit keeps its libraries in lib/, not lib64/.
            words.push(format!("-L{}", cuda_home.join("lib").display()));
        } else {
            words.push("-Werror=unused-result".into());
        }
        common::run(cmd.args(&words));
        let size = std::fs::metadata(&so).map(|m| m.len()).unwrap_or(0);
        (kernel.symbol, *target, size, line)
    });
    for (symbol, target, size, line) in built {
        assert!(
            size > 0,
            "{symbol} ({target}): no shared library from `{line}`"
        );
        eprintln!("{symbol} ({target}): {size} bytes from `{line}`");
    }
}

#[test]
fn hip_sources_compile_for_gfx90a_and_gfx942_with_matrix_cores_and_no_scratch() {
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
        let isa = dir.join(format!("{}.{arch}.s", u.label));
        common::run(
            Command::new(clang)
                .args([
                    "-x",
                    "hip",
                    "-std=c++17",
                    "--rocm-path=/usr",
                    "-O3",
                    "--cuda-device-only",
                    "-S",
                    "-Werror=return-type",
                ])
                .arg(format!("--hip-device-lib-path={}", libs.display()))
                .arg(format!("--offload-arch={arch}"))
                .arg(&src)
                .arg("-o")
                .arg(&isa),
        );
        let text = std::fs::read_to_string(&isa).expect("ISA text");
        let label = &u.label;
        let mfma = count(&text, "v_mfma_f32_16x16x16");
        if u.kernel.fused {
            assert_eq!(
                mfma > 0,
                u.kernel.summary.contains("mfma"),
                "{label} for {arch}: MFMA in the ISA iff the plan uses matrix cores"
            );
            if mfma > 0 {
                let scratch: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("; ScratchSize:") && !l.ends_with(" 0"))
                    .collect();
                assert!(
                    scratch.is_empty(),
                    "{label} for {arch} uses scratch: {scratch:?}"
                );
            }
        }
        let vgprs: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("; TotalNumVgprs:") || l.contains("; Occupancy:"))
            .collect();
        format!("{label} {arch}: {mfma} MFMA, {}", vgprs.join(" ").trim())
    });
    for line in done {
        eprintln!("{line}");
    }
}
