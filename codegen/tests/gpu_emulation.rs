//! The generated CUDA and HIP fused kernels, run on the host under a thread-per-lane emulation
//! of the GPU (tests/emu/emu.h: barriers, warp shuffles, and mma.sync.m16n8k16 from the PTX
//! fragment layout), against the reference interpreter. This checks the kernels' own indexing,
//! tile pipeline, masks, warp reductions and MMA fragment packing without a GPU; speed and the
//! real hardware's behaviour are still for tools/gpu_check.py on a GPU machine.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use cascade_codegen::{DType, GpuSchedule, Target, TargetDialect, emit, fused_kernel_sizes};
use cascade_ir::eval::evaluate;
use cascade_ir::reference;
use cascade_ir::{Cascade, Shape, ShapeSpec, TensorKind};
use ndarray::{ArrayD, Ix2};

/// Rounds to bfloat16 (nearest even), as the emulated kernel's conversions do.
fn bf16(x: f64) -> f64 {
    let f = x as f32;
    if !f.is_finite() {
        return f64::from(f);
    }
    let u = f.to_bits();
    let u = u.wrapping_add(0x7fff + ((u >> 16) & 1)) & 0xffff_0000;
    f64::from(f32::from_bits(u))
}

/// The generated source with the launcher cut off and its PTX replaced by the emulation.
fn emulated_source(source: &str, target: Target) -> String {
    let d = TargetDialect::of(target);
    let mut s = source
        .split("}  // namespace")
        .next()
        .expect("namespace")
        .to_string();
    if target == Target::Cuda {
        s = s.replace(d.async_copy_def, "static inline void cascade_cp_async_16(void* dst, const void* src, bool valid) { emu::copy16(dst, src, valid); }");
        s = s
            .replace(d.async_commit, "(void)0")
            .replace(d.async_wait_prev, "(void)0");
        for (ptx, trans) in [
            ("ldmatrix.sync.aligned.m8n8.x4.shared.b16", "false"),
            ("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", "true"),
        ] {
            if let Some(start) = s.find(&format!("  asm volatile(\"{ptx} ")) {
                let end = s[start..].find("\"r\"(addr));").expect("ldmatrix asm end")
                    + start
                    + "\"r\"(addr));".len();
                s.replace_range(
                    start..end,
                    &format!("  emu::ldmatrix(r, p, {trans}); (void)addr;"),
                );
            }
        }
        s = s.replace("static_cast<unsigned>(__cvta_generic_to_shared(p))", "0u");
        // The SIMT path (f32) has no MMA.
        if let Some(start) = s.find("  asm volatile(\n      \"mma.sync") {
            let end =
                s[start..].find("\"r\"(b1));").expect("mma asm end") + start + "\"r\"(b1));".len();
            s.replace_range(start..end, "  emu::mma(c, a, b0, b1);");
        }
    }
    assert!(!s.contains("asm"), "PTX left in the emulated source");
    s.replacen(
        "namespace {\n",
        "namespace {\nalignas(16) unsigned char cascade_smem[256 * 1024];\n",
        1,
    ) + "}  // namespace\n"
}

/// A host `main` that runs the kernel over its grid on `in.bin` and writes `out.bin`.
fn harness(c: &Cascade, shape: &Shape, kernel: &str, batch: usize) -> String {
    let size = |name: &str| shape.size(c.rank_by_name(name).expect("rank"));
    let (p, m, hd) = (size("P"), size("M"), size("E"));
    let bias = c.tensors.iter().any(|t| t.name == "MASK");
    let params: String = fused_kernel_sizes(c)
        .iter()
        .map(|&r| format!(", {}LL", shape.size(r)))
        .collect();
    let mut s = String::from("#include <cstdio>\n#include <type_traits>\n#include <vector>\n");
    writeln!(
        s,
        "int main() {{\n  const long long P = {p}, M = {m}, HD = {hd}, B = {batch};"
    )
    .unwrap();
    s.push_str("  FILE* f = fopen(\"in.bin\", \"rb\");\n  auto read = [&](long long n) { std::vector<float> x(n); if (fread(x.data(), 4, n, f) != size_t(n)) exit(3); std::vector<elem_t> e; for (float v : x) e.push_back(from_f(v)); return e; };\n");
    s.push_str("  auto q = read(B * P * HD), k = read(B * M * HD), v = read(B * M * HD);\n");
    s.push_str(if bias {
        "  auto bias = read(B * M * P);\n  const elem_t* bias_ptr = bias.data();\n"
    } else {
        "  const elem_t* bias_ptr = nullptr;\n"
    });
    s.push_str("  fclose(f);\n  std::vector<elem_t> out(B * P * HD, from_f(NAN));\n");
    s.push_str("  emu::warp_size = WARP_SIZE;\n  emu::mma_fp16 = std::is_same<elem_t, __half>::value;\n  gridDim = dim3((P + BLOCK_M - 1) / BLOCK_M, B);\n");
    writeln!(s, "  for (unsigned by = 0; by < gridDim.y; ++by)\n    for (unsigned bx = 0; bx < gridDim.x; ++bx)\n      emu::run_block(bx, by, THREADS, [&] {{ {kernel}(q.data(), k.data(), v.data(), out.data(), bias_ptr, P, M{params}); }});").unwrap();
    s.push_str("  FILE* g = fopen(\"out.bin\", \"wb\");\n  for (auto e : out) { float x = to_f(e); fwrite(&x, 4, 1, g); }\n  fclose(g);\n  return 0;\n}\n");
    s
}

fn check(
    label: &str,
    c: &Cascade,
    target: Target,
    dtype: DType,
    causal: bool,
    tol: f64,
) -> Result<String, String> {
    // The plain-load variant of the MMA path is checked too (labels ending in `_plain`).
    let ldmatrix = !label.ends_with("_plain");
    let schedule = GpuSchedule {
        causal,
        ldmatrix,
        ..GpuSchedule::suggested(target, dtype, 64)
    };
    let kernel = emit(c, &schedule, target).map_err(|e| format!("{label}: {e}"))?;
    assert!(kernel.fused, "{label}: expected the fused lowering");
    // M = 150 is not a multiple of the kernel's 64-key tile; the interpreter splits it as
    // 150 × 1 (the result does not depend on the split), the kernel masks its ragged last tile.
    let mut spec = ShapeSpec::default();
    for (name, v) in [
        ("E", 64),
        ("F", 64),
        ("M", 150),
        ("P", 100),
        ("W", 40),
        ("M0", 1),
    ] {
        if c.rank_by_name(name).is_some() {
            spec.sizes.insert(name.into(), v);
        }
    }
    let shape = Shape::resolve(c, &spec).map_err(|e| format!("{label}: {e:?}"))?;
    let batch = 2;
    let round = |x: f64| {
        if dtype == DType::Bf16 {
            bf16(x)
        } else {
            f64::from(x as f32)
        }
    };
    let dir = common::scratch(&format!("emu_{label}"));
    let per_batch: Vec<_> = (0..batch)
        .map(|b| {
            let mut ins = reference::random_inputs(c, &shape, 11 + b as u64);
            for a in ins.values_mut() {
                a.mapv_inplace(round);
            }
            // -inf in the bias, and every key hidden from query 1: its row must come out 0.
            if let Some(mask) = ins.get_mut("MASK") {
                let mut v = mask.view_mut().into_dimensionality::<Ix2>().expect("2-D");
                for ((m, p), x) in v.indexed_iter_mut() {
                    if (m + p) % 3 == 0 || p == 1 {
                        *x = f64::NEG_INFINITY;
                    }
                }
            }
            ins
        })
        .collect();
    let mut bytes = Vec::new();
    for t in c.tensors.iter().filter(|t| t.kind == TensorKind::Input) {
        for ins in &per_batch {
            for x in ins[&t.name].view().reversed_axes().iter() {
                bytes.extend_from_slice(&(*x as f32).to_le_bytes());
            }
        }
    }
    let mut expected = Vec::new();
    for ins in &per_batch {
        let want: ArrayD<f64> = if causal {
            let v2 = |n: &str| ins[n].view().into_dimensionality::<Ix2>().expect("2-D");
            let mask = reference::AttentionMask {
                causal: true,
                ..reference::AttentionMask::none()
            };
            reference::attention(v2("Q"), v2("K"), v2("V"), &mask).into_dyn()
        } else {
            evaluate::<f64>(c, &shape, ins)
                .map_err(|e| format!("{label}: {e}"))?
                .output()
                .expect("output")
                .values
                .clone()
        };
        expected.extend(want.view().reversed_axes().iter().copied());
    }
    let src = emulated_source(&kernel.source, target);
    let main = harness(c, &shape, &format!("{}_fused", kernel.symbol), batch);
    std::fs::write(dir.join("kernel.cpp"), src + &main).unwrap();
    std::fs::write(dir.join("in.bin"), bytes).unwrap();
    let emu = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emu");
    common::run(
        Command::new("g++")
            .current_dir(&dir)
            .args(["-std=c++20", "-O1", "-pthread", "-w", "-I"])
            .arg(&emu)
            .args(["-o", "run", "kernel.cpp"]),
    );
    common::run(Command::new(dir.join("run")).current_dir(&dir));
    let got: Vec<f64> = std::fs::read(dir.join("out.bin"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    if got.len() != expected.len() {
        return Err(format!(
            "{label}: {} outputs, expected {}",
            got.len(),
            expected.len()
        ));
    }
    let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(&expected).enumerate() {
        let err = (g - w).abs() / scale;
        if !g.is_finite() || err > tol {
            return Err(format!(
                "{label}: output {i}: got {g}, expected {w} (error {err:.2e} of the largest output)"
            ));
        }
        worst = worst.max(err);
    }
    Ok(format!(
        "{label}: ok ({} values, worst error {worst:.1e} of the largest output)",
        got.len()
    ))
}

#[test]
fn fused_cuda_and_hip_kernels_match_the_interpreter_under_host_emulation() {
    let lib = |n: &str| common::parse(cascade_ir::library::source(n).expect("library"), n);
    let window = common::window_1pass();
    // No self-attention (`m != p`): tiles on the diagonal are partial, not full.
    let no_self = common::parse(
        &cascade_ir::library::source("attention_1pass")
            .expect("library")
            .replace("BK[e,m1,m0]\n", "BK[e,m1,m0 : m1*M0+m0 != p]\n"),
        "attention_no_self_1pass",
    );
    assert!(
        no_self.einsums.iter().any(|e| !e.output.filters.is_empty()
            || no_self
                .accesses(e.value)
                .iter()
                .any(|a| !a.filters.is_empty())),
        "the != edit no longer matches attention_1pass"
    );
    // bf16 outputs and bf16 probabilities on the MMA path: 1e-2 of the largest output; f32: 1e-5.
    let cases: Vec<(&str, Cascade, Target, DType, bool, f64)> = vec![
        (
            "cuda_bf16_mma",
            lib("attention_1pass"),
            Target::Cuda,
            DType::Bf16,
            false,
            1e-2,
        ),
        (
            "cuda_bf16_mma_causal",
            lib("attention_causal_1pass"),
            Target::Cuda,
            DType::Bf16,
            false,
            1e-2,
        ),
        (
            "cuda_bf16_mma_causal_plain",
            lib("attention_causal_1pass"),
            Target::Cuda,
            DType::Bf16,
            false,
            1e-2,
        ),
        (
            "cuda_bf16_mma_window",
            window.clone(),
            Target::Cuda,
            DType::Bf16,
            false,
            1e-2,
        ),
        (
            "cuda_bf16_mma_rewritten",
            common::parse(
                include_str!("data/attention_rewritten_1pass.cascade"),
                "rewritten",
            ),
            Target::Cuda,
            DType::Bf16,
            false,
            1e-2,
        ),
        (
            "cuda_bf16_mma_bias",
            lib("attention_masked_1pass"),
            Target::Cuda,
            DType::Bf16,
            false,
            1e-2,
        ),
        // fp16 inputs are rounded by the kernel only (the reference keeps f32): still within 1e-2.
        (
            "cuda_fp16_mma_causal",
            lib("attention_causal_1pass"),
            Target::Cuda,
            DType::F16,
            false,
            1e-2,
        ),
        (
            "cuda_f32_simt_causal_flag",
            lib("attention_1pass"),
            Target::Cuda,
            DType::F32,
            true,
            1e-5,
        ),
        (
            "hip_bf16_wave64_causal",
            lib("attention_causal_1pass"),
            Target::Hip,
            DType::Bf16,
            false,
            1e-2,
        ),
        (
            "cuda_bf16_mma_ne_p",
            no_self,
            Target::Cuda,
            DType::Bf16,
            false,
            1e-2,
        ),
        (
            "hip_f32_wave64_window",
            window,
            Target::Hip,
            DType::F32,
            false,
            1e-5,
        ),
    ];
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(l, c, t, d, causal, tol)| s.spawn(move || check(l, c, *t, *d, *causal, *tol)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for r in results.iter().flatten() {
        eprintln!("{r}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
