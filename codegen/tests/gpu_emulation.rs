//! The generated CUDA and HIP fused kernels, launchers included, run on the host under a
//! thread-per-lane emulation of the GPU (tests/emu/emu.h: barriers, warp shuffles,
//! `mma.sync.m16n8k16` and `ldmatrix` from the PTX fragment layouts, `v_mfma_f32_16x16x16`
//! from AMD's CDNA layout, grid launches and the runtime calls) against the reference
//! interpreter. This checks the kernels' own indexing, grid, heads and strides, tile pipeline,
//! masks, warp reductions, fragment packing, epilogues and the split-K combine without a GPU;
//! speed and the real hardware's behaviour are still for tools/gpu_check.py on a GPU machine.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use cascade_codegen::{DType, GpuSchedule, Kernel, Target, TargetDialect, emit};
use cascade_ir::eval::{evaluate, tensor_extents};
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

/// `kernel<<<grid, block, smem, stream>>>(args);` as `emu::launch(grid, block, [&] { kernel(args); });`.
fn emulate_chevrons(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(at) = rest.find("<<<") {
        let name_start = rest[..at]
            .rfind(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .map_or(0, |i| i + 1);
        let close = rest[at..].find(">>>(").expect("chevron launch") + at;
        let config: Vec<&str> = rest[at + 3..close].split(", ").collect();
        let args_end = rest[close..].find(");").expect("launch arguments") + close;
        let kernel = &rest[name_start..at];
        let args = &rest[close + 4..args_end];
        out.push_str(&rest[..name_start]);
        write!(
            out,
            "emu::launch({}, {}, [&] {{ {kernel}({args}); }})",
            config[0], config[1]
        )
        .unwrap();
        rest = &rest[args_end + 1..];
    }
    out.push_str(rest);
    out
}

/// The generated source with its inline assembly and HIP vector types replaced by the
/// emulation's, and a host buffer for the dynamic shared memory.
fn emulated_source(source: &str, target: Target) -> String {
    let d = TargetDialect::of(target);
    let mut s = source.to_string();
    s = s.replace(
        d.exp2_def,
        "static inline float cascade_exp2(float x) { return std::exp2(x); }",
    );
    if !d.vector_types_def.is_empty() {
        s = s.replace(d.vector_types_def, "// (emu.h defines the vector types)");
    }
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
        if let Some(start) = s.find("  asm volatile(\n      \"mma.sync") {
            let end =
                s[start..].find("\"r\"(b1));").expect("mma asm end") + start + "\"r\"(b1));".len();
            s.replace_range(start..end, "  emu::mma(c, a, b0, b1);");
        }
        s = emulate_chevrons(&s);
    }
    assert!(
        !s.contains("asm"),
        "inline assembly left in the emulated source"
    );
    s.replacen(
        "namespace {\n",
        "namespace {\nalignas(16) unsigned char cascade_smem[256 * 1024];\n",
        1,
    )
}

/// One emulated kernel: a cascade, the schedule, the problem and the tolerance.
struct Case {
    label: &'static str,
    cascade: Cascade,
    target: Target,
    dtype: DType,
    causal: bool,
    ldmatrix: bool,
    sizes: &'static str,
    /// Against the largest output magnitude (bf16/fp16 operands and weights: 1e-2).
    tol: f64,
    /// The cascade whose interpreter gives the expected outputs, when the schedule changes
    /// the meaning (`--causal`); else the case's own.
    reference: Option<Cascade>,
    /// Call the strided launcher on BSHD copies of Q and AV (see [`driver`]).
    bshd: bool,
}

impl Case {
    fn new(
        label: &'static str,
        cascade: Cascade,
        target: Target,
        dtype: DType,
        sizes: &'static str,
    ) -> Case {
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
        Case {
            label,
            cascade,
            target,
            dtype,
            causal: false,
            ldmatrix: true,
            sizes,
            tol,
            reference: None,
            bshd: false,
        }
    }
}

/// A host `main` in the kernel's translation unit: converts the f32 inputs of `in.bin` to the
/// element type, poisons the outputs with NaN, calls the launcher (no workspace: it allocates
/// its own) and writes the outputs, as f32, to `out.bin`.
/// With `bshd`, the driver lays Q and AV out as (batch, position, head, feature) instead of the
/// cascade's (batch, head, position, feature) and calls the strided launcher with those strides
/// (for Q[E,P,H] K[E,M] V[F,M] AV[F,P,H]).
fn driver(
    c: &Cascade,
    shape: &Shape,
    kernel: &Kernel,
    sizes: &[i64],
    batch: usize,
    bshd: bool,
) -> String {
    let numel = |t: cascade_ir::TensorId| -> usize { tensor_extents(c, shape, t).iter().product() };
    let mut s = String::from("#include <cstdio>\n#include <type_traits>\nint main() {\n");
    s.push_str(
        "  emu::warp_size = WARP_SIZE;\n  emu::mma_fp16 = std::is_same<elem_t, __half>::value;\n",
    );
    s.push_str("  FILE* f = fopen(\"in.bin\", \"rb\");\n  auto read = [&](size_t n) { std::vector<float> x(n); if (fread(x.data(), 4, n, f) != n) exit(3); std::vector<elem_t> e; for (float v : x) e.push_back(from_f(v)); return e; };\n");
    let mut args = Vec::new();
    for (i, t) in c.tensors.iter().enumerate() {
        if t.kind == TensorKind::Input {
            let n = numel(cascade_ir::TensorId(i as u32)) * batch;
            writeln!(s, "  auto in_{} = read({n});", t.name).unwrap();
            args.push(format!("in_{}.data()", t.name));
        }
    }
    s.push_str("  fclose(f);\n");
    for &o in &c.outputs {
        let n = numel(o) * batch;
        writeln!(
            s,
            "  std::vector<elem_t> out_{}({n}, from_f(NAN));",
            c.tensor(o).name
        )
        .unwrap();
        args.push(format!("out_{}.data()", c.tensor(o).name));
    }
    args.push(batch.to_string());
    args.extend(sizes.iter().map(|v| format!("{v}LL")));
    let mut symbol = kernel.symbol.clone();
    if bshd {
        let size = |n: &str| shape.size(c.rank_by_name(n).expect("rank"));
        let (p, h, e, m) = (size("P"), size("H"), size("E"), size("M"));
        // (b, h, p, e) <-> (b, p, h, e) for Q and AV, in place of the buffers.
        writeln!(s, "  auto swap = [&](std::vector<elem_t>& x, bool to_bshd) {{ std::vector<elem_t> y(x.size()); for (size_t b = 0; b < {batch}; ++b) for (long long hh = 0; hh < {h}; ++hh) for (long long pp = 0; pp < {p}; ++pp) for (long long ee = 0; ee < {e}; ++ee) {{ const size_t bhsd = ((b * {h} + hh) * {p} + pp) * {e} + ee, bshd = ((b * {p} + pp) * {h} + hh) * {e} + ee; if (to_bshd) y[bshd] = x[bhsd]; else y[bhsd] = x[bshd]; }} x = y; }};").unwrap();
        s.push_str("  swap(in_Q, true);\n");
        writeln!(
            s,
            "  const long long strides[] = {{{q_batch}, {q_seq}, {e}, {k_batch}, {e}, 0, {k_batch}, {e}, 0, {q_batch}, {q_seq}, {e}}};",
            q_batch = p * h * e,
            q_seq = h * e,
            k_batch = m * e
        )
        .unwrap();
        args.push("strides".into());
        symbol.push_str("_strided");
    }
    args.extend(["nullptr".to_string(), "0ull".into(), "nullptr".into()]);
    writeln!(
        s,
        "  const int rc = {symbol}({});\n  if (rc != 0) {{ fprintf(stderr, \"launcher returned %d\\n\", rc); return 20 + rc; }}",
        args.join(", ")
    )
    .unwrap();
    if bshd {
        s.push_str("  swap(out_AV, false);\n");
    }
    s.push_str("  FILE* g = fopen(\"out.bin\", \"wb\");\n");
    for &o in &c.outputs {
        writeln!(
            s,
            "  for (auto e : out_{}) {{ float x = to_f(e); fwrite(&x, 4, 1, g); }}",
            c.tensor(o).name
        )
        .unwrap();
    }
    s.push_str("  fclose(g);\n  return 0;\n}\n");
    s
}

fn check(case: &Case) -> Result<String, String> {
    let label = case.label;
    let c = &case.cascade;
    let spec: ShapeSpec = common::cpp::declared(c, case.sizes)
        .parse()
        .map_err(|e| format!("{label}: {e:?}"))?;
    let head = spec.sizes.get("E").copied().unwrap_or(64) as u32;
    let schedule = GpuSchedule {
        causal: case.causal,
        ldmatrix: case.ldmatrix,
        ..GpuSchedule::suggested(case.target, case.dtype, head)
    };
    let kernel = emit(c, &schedule, case.target).map_err(|e| format!("{label}: {e}"))?;
    if !kernel.fused {
        return Err(format!("{label}: not fused: {}", kernel.summary));
    }
    let shape = Shape::resolve(c, &spec).map_err(|e| format!("{label}: {e:?}"))?;
    let batch = 2;
    let round = |x: f64| {
        if case.dtype == DType::Bf16 {
            bf16(x)
        } else {
            f64::from(x as f32)
        }
    };
    let per_batch: Vec<BTreeMap<String, ArrayD<f64>>> = (0..batch)
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
    // Outputs in the driver's order: each output, its batch entries back to back.
    let mut expected: Vec<Vec<f64>> = Vec::new();
    for o in &c.outputs {
        let mut values = Vec::new();
        for ins in &per_batch {
            let reference = case.reference.as_ref().unwrap_or(c);
            let ev =
                evaluate::<f64>(reference, &shape, ins).map_err(|e| format!("{label}: {e}"))?;
            let want = ev
                .tensor(&c.tensor(*o).name)
                .expect("output")
                .values
                .clone();
            values.extend(want.view().reversed_axes().iter().copied());
        }
        expected.push(values);
    }
    let sizes = common::cpp::abi_args(c, &spec, Some(&shape));
    let dir = common::scratch(&format!("emu_{label}"));
    let src = emulated_source(&kernel.source, case.target);
    std::fs::write(
        dir.join("kernel.cpp"),
        src + "\n" + &driver(c, &shape, &kernel, &sizes, batch, case.bshd),
    )
    .unwrap();
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
    let total: usize = expected.iter().map(Vec::len).sum();
    if got.len() != total {
        return Err(format!("{label}: {} outputs, expected {total}", got.len()));
    }
    let mut worst = 0.0f64;
    let mut at = 0;
    for want in &expected {
        let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
        for (i, w) in want.iter().enumerate() {
            let g = got[at + i];
            let err = (g - w).abs() / scale;
            if !g.is_finite() || err > case.tol {
                return Err(format!(
                    "{label}: output {i}: got {g}, expected {w} (error {err:.2e} of the largest output)"
                ));
            }
            worst = worst.max(err);
        }
        at += want.len();
    }
    Ok(format!(
        "{label}: ok ({} values, worst error {worst:.1e} of the largest output; {})",
        got.len(),
        kernel.summary
    ))
}

fn zoo(name: &str) -> Cascade {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/zoo")
        .join(format!("{name}.cascade"));
    common::parse(&std::fs::read_to_string(path).expect("zoo file"), name)
}

fn lib(name: &str) -> Cascade {
    common::parse(cascade_ir::library::source(name).expect("library"), name)
}

/// Runs the cases on two threads and fails with every failure.
fn run_all(cases: &[Case]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let r = check(case);
                    results.lock().unwrap().push(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    for r in results.iter().flatten() {
        eprintln!("{r}");
    }
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// 100 queries and 150 keys are multiples of no tile; head dim 64.
const SIZES: &str = "E=64,F=64,M=150,P=100,W=40";

#[test]
fn cuda_tensor_core_kernels_match_the_interpreter_under_host_emulation() {
    let no_self = common::parse(
        &cascade_ir::library::source("attention_1pass")
            .expect("library")
            .replace("BK[e,m1,m0]\n", "BK[e,m1,m0 : m1*M0+m0 != p]\n"),
        "attention_no_self_1pass",
    );
    let (cuda, bf, fp) = (Target::Cuda, DType::Bf16, DType::F16);
    let mut plain = Case::new(
        "cuda_bf16_causal_plain",
        lib("attention_causal_1pass"),
        cuda,
        bf,
        SIZES,
    );
    plain.ldmatrix = false;
    let mut simt = Case::new(
        "cuda_f32_simt_causal_flag",
        lib("attention_1pass"),
        cuda,
        DType::F32,
        SIZES,
    );
    simt.causal = true;
    simt.reference = Some(lib("attention_causal_1pass"));
    // The strided launcher with a layout other than the cascade's.
    let mut bshd = Case::new(
        "cuda_bf16_mqa_strided_bshd",
        zoo("mqa_3pass"),
        cuda,
        bf,
        "E=64,F=64,M=70,P=40,H=3",
    );
    bshd.bshd = true;
    let cases = vec![
        Case::new("cuda_bf16_1pass", lib("attention_1pass"), cuda, bf, SIZES),
        Case::new(
            "cuda_bf16_causal",
            lib("attention_causal_1pass"),
            cuda,
            bf,
            SIZES,
        ),
        // Head dim 128: the query fragments are reloaded from shared memory per key tile.
        Case::new(
            "cuda_bf16_causal_hd128_q_from_smem",
            lib("attention_causal_1pass"),
            cuda,
            bf,
            "E=128,F=128,M=150,P=100",
        ),
        plain,
        Case::new("cuda_bf16_window", common::window_1pass(), cuda, bf, SIZES),
        Case::new(
            "cuda_bf16_rewritten",
            common::parse(
                include_str!("data/attention_rewritten_1pass.cascade"),
                "rewritten",
            ),
            cuda,
            bf,
            SIZES,
        ),
        Case::new(
            "cuda_bf16_bias",
            lib("attention_masked_1pass"),
            cuda,
            bf,
            SIZES,
        ),
        Case::new(
            "cuda_fp16_causal",
            lib("attention_causal_1pass"),
            cuda,
            fp,
            SIZES,
        ),
        simt,
        bshd,
        Case::new("cuda_bf16_ne_p", no_self, cuda, bf, SIZES),
        // Heads: GQA with two groups of two query heads (E fastest, then the sequence).
        Case::new(
            "cuda_bf16_gqa_1pass",
            zoo("gqa_1pass"),
            cuda,
            bf,
            "E=64,F=64,M=70,P=40,H=4,G=2,M0=10",
        ),
        Case::new(
            "cuda_bf16_mqa_3pass",
            zoo("mqa_3pass"),
            cuda,
            bf,
            "E=64,F=64,M=70,P=40,H=3",
        ),
        // Bottom-right causal over a longer KV cache, a 3-pass form, soft-capping, a sink logit.
        Case::new(
            "cuda_bf16_causal_offset",
            zoo("causal_offset_1pass"),
            cuda,
            bf,
            "E=64,F=64,M=150,P=60,M0=10",
        ),
        Case::new(
            "cuda_bf16_softcap_3pass",
            zoo("softcap_causal_3pass"),
            cuda,
            bf,
            "E=64,F=64,M=150,P=100",
        ),
        Case::new(
            "cuda_bf16_sink",
            zoo("sink_logit_1pass"),
            cuda,
            bf,
            "E=64,F=64,M=150,P=100,M0=10",
        ),
        // ALiBi: a per-head slope and a distance per score; sinks and a window as a union.
        Case::new(
            "cuda_bf16_alibi",
            zoo("alibi_causal_3pass"),
            cuda,
            bf,
            "E=64,F=64,M=90,P=90,H=2",
        ),
        Case::new(
            "cuda_bf16_sinks_window",
            zoo("sinks_window_3pass"),
            cuda,
            bf,
            "E=64,F=64,M=150,P=150,S=4,W=40",
        ),
        // Sigmoid attention (no normaliser) and the split-K pair of kernels.
        Case::new(
            "cuda_bf16_sigmoid",
            zoo("sigmoid_bias_causal"),
            cuda,
            bf,
            "E=64,F=64,M=150,P=150",
        ),
        Case::new(
            "cuda_bf16_split_k",
            zoo("split_k_combine"),
            cuda,
            bf,
            "E=64,F=64,M=600,P=3,M0=30",
        ),
        // Keys and queries read as blocks (`mb*M0+m0`, `pb*P0+p0`) with a per-block bias.
        Case::new(
            "cuda_bf16_block_sparse",
            zoo("block_sparse_mask"),
            cuda,
            bf,
            "E=64,F=64,M=144,P=80,M0=16,P0=16",
        ),
        Case::new(
            "cuda_bf16_output_filter",
            zoo("output_filter_1pass"),
            cuda,
            bf,
            "E=64,F=64,M=64,P=20,M0=16",
        ),
    ];
    run_all(&cases);
}

#[test]
fn hip_matrix_core_kernels_match_the_interpreter_under_host_emulation() {
    let (hip, bf, fp) = (Target::Hip, DType::Bf16, DType::F16);
    let cases = vec![
        Case::new(
            "hip_bf16_causal",
            lib("attention_causal_1pass"),
            hip,
            bf,
            SIZES,
        ),
        Case::new(
            "hip_fp16_bias",
            lib("attention_masked_1pass"),
            hip,
            fp,
            SIZES,
        ),
        Case::new(
            "hip_bf16_gqa_3pass",
            zoo("gqa_3pass"),
            hip,
            bf,
            "E=64,F=64,M=70,P=40,H=4,G=2",
        ),
        Case::new(
            "hip_bf16_split_k",
            zoo("split_k_combine"),
            hip,
            bf,
            "E=64,F=64,M=600,P=3,M0=30",
        ),
        Case::new(
            "hip_f32_simt_window",
            common::window_1pass(),
            hip,
            DType::F32,
            SIZES,
        ),
    ];
    run_all(&cases);
}
