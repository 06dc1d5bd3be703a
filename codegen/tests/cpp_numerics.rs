//! The `cpp` target, built with g++, against the reference interpreter on random inputs:
//! every library cascade (fused and generic lowerings), with causal and window masks.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use cascade_codegen::{DType, GpuSchedule, Target, emit};
use cascade_ir::eval::evaluate;
use cascade_ir::reference::{self, AttentionMask};
use cascade_ir::{Cascade, Shape, ShapeSpec, TensorKind};
use ndarray::{ArrayD, Ix2};

/// f32 against the f64 interpreter: relative to each value, with a floor of a tenth of the
/// output's largest magnitude: outputs are signed averages, and where they cancel to near 0 an
/// f32 sum of ~50 terms is only accurate relative to the terms (~1e-7 absolute here).
const REL_TOL: f64 = 1e-5;

fn schedule(block_n: u32, head_dim: u32, causal: bool) -> GpuSchedule {
    GpuSchedule {
        block_m: 16,
        block_n,
        warps: 1,
        stages: 2,
        dtype: DType::F32,
        head_dim,
        causal,
        fuse: true,
        ldmatrix: true,
    }
}

/// Sizes of a cascade's ABI ranks: head dims 16, 48 keys, 40 queries, window 5, K = 48.
fn sizes(c: &Cascade) -> ShapeSpec {
    let mut spec = ShapeSpec::default();
    for r in &c.ranks {
        let v = match r.name.as_str() {
            "E" | "F" => 16,
            "M" | "K" => 48,
            "P" => 40,
            "W" => 5,
            "M0" => 16,
            _ => continue,
        };
        spec.sizes.insert(r.name.clone(), v);
    }
    spec
}

/// A C++ driver: reads the inputs (ABI order, f32, batch entries back to back) from `in.bin`,
/// poisons the outputs with NaN, calls the launcher and writes the outputs to `out.bin`.
fn driver(c: &Cascade, shape: &Shape, symbol: &str, batch: usize) -> String {
    let numel = |t: &cascade_ir::Tensor| {
        t.ranks
            .iter()
            .map(|&r| shape.size(r) as usize)
            .product::<usize>()
    };
    let inputs: Vec<_> = c
        .tensors
        .iter()
        .filter(|t| t.kind == TensorKind::Input)
        .collect();
    let mut s = String::from("#include <cmath>\n#include <cstdio>\n#include <vector>\n");
    let mut params: Vec<String> = inputs.iter().map(|_| "const void*".to_string()).collect();
    params.extend(c.outputs.iter().map(|_| "void*".to_string()));
    params.push("int".into());
    let sizes: Vec<_> = cascade_codegen::abi_sizes(c);
    params.extend(sizes.iter().map(|_| "long long".to_string()));
    writeln!(s, "extern \"C\" int {symbol}({});", params.join(", ")).unwrap();
    s.push_str("int main() {\n  FILE* f = fopen(\"in.bin\", \"rb\");\n");
    let mut args = Vec::new();
    for t in &inputs {
        writeln!(s, "  std::vector<float> in_{n}({});\n  if (fread(in_{n}.data(), 4, in_{n}.size(), f) != in_{n}.size()) return 10;", numel(t) * batch, n = t.name).unwrap();
        args.push(format!("in_{}.data()", t.name));
    }
    s.push_str("  fclose(f);\n");
    for &o in &c.outputs {
        let t = c.tensor(o);
        writeln!(
            s,
            "  std::vector<float> out_{n}({}, NAN);",
            numel(t) * batch,
            n = t.name
        )
        .unwrap();
        args.push(format!("out_{}.data()", t.name));
    }
    args.push(batch.to_string());
    args.extend(sizes.iter().map(|&r| format!("{}LL", shape.size(r))));
    writeln!(
        s,
        "  const int rc = {symbol}({});\n  if (rc != 0) return 20 + rc;",
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

/// A tensor in the ABI layout: first declared rank fastest.
fn abi_order(a: &ArrayD<f64>) -> Vec<f64> {
    a.view().reversed_axes().iter().copied().collect()
}

/// Computes the expected output from the inputs by name.
type DirectReference = fn(&BTreeMap<String, ArrayD<f64>>) -> ArrayD<f64>;

struct Case {
    label: String,
    cascade: Cascade,
    schedule: GpuSchedule,
    /// Sets `MASK[m,p] = -inf` where `(m + p) % 3 == 0` and for every key of query 1.
    poison_mask: bool,
    /// A direct reference to use instead of the interpreter (the schedule's causal flag).
    reference: Option<DirectReference>,
}

fn causal_reference(inputs: &BTreeMap<String, ArrayD<f64>>) -> ArrayD<f64> {
    let v2 = |n: &str| inputs[n].view().into_dimensionality::<Ix2>().expect("2-D");
    let mask = AttentionMask {
        causal: true,
        ..AttentionMask::none()
    };
    reference::attention(v2("Q"), v2("K"), v2("V"), &mask).into_dyn()
}

fn check(case: &Case) -> Result<String, String> {
    let c = &case.cascade;
    let dir = common::scratch(&format!("cpp_{}", case.label));
    let kernel =
        emit(c, &case.schedule, Target::Cpp).map_err(|e| format!("{}: {e}", case.label))?;
    let shape = Shape::resolve(c, &sizes(c)).map_err(|e| format!("{}: shape {e:?}", case.label))?;
    let batch = 2;
    std::fs::write(dir.join(&kernel.source_name), &kernel.source).unwrap();
    std::fs::write(
        dir.join("driver.cpp"),
        driver(c, &shape, &kernel.symbol, batch),
    )
    .unwrap();
    let gxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    common::run(Command::new(&gxx).current_dir(&dir).args([
        "-O1",
        "-std=c++17",
        "-Wall",
        "-Werror",
        "-Wno-unused-variable",
        "-Wno-shadow",
        "-o",
        "run",
        &kernel.source_name,
        "driver.cpp",
    ]));
    // Each batch entry gets its own inputs, rounded to f32 before the f64 reference sees them.
    let mut expected = Vec::new();
    let mut bytes = Vec::new();
    let batches: Vec<_> = (0..batch)
        .map(|b| {
            let mut ins = reference::random_inputs(c, &shape, 7 + b as u64);
            for a in ins.values_mut() {
                a.mapv_inplace(|x| f64::from(x as f32));
            }
            if case.poison_mask {
                let mask = ins.get_mut("MASK").expect("a MASK input");
                let mut mask2 = mask.view_mut().into_dimensionality::<Ix2>().expect("2-D");
                for ((m, p), x) in mask2.indexed_iter_mut() {
                    if (m + p) % 3 == 0 || p == 1 {
                        *x = f64::NEG_INFINITY;
                    }
                }
            }
            ins
        })
        .collect();
    for t in c.tensors.iter().filter(|t| t.kind == TensorKind::Input) {
        for ins in &batches {
            for x in abi_order(&ins[&t.name]) {
                bytes.extend_from_slice(&(x as f32).to_le_bytes());
            }
        }
    }
    for ins in &batches {
        let want = match case.reference {
            Some(f) => f(ins),
            None => {
                let ev = evaluate::<f64>(c, &shape, ins)
                    .map_err(|e| format!("{}: eval {e}", case.label))?;
                ev.output().expect("one output").values.clone()
            }
        };
        expected.extend(abi_order(&want));
    }
    std::fs::write(dir.join("in.bin"), bytes).unwrap();
    common::run(Command::new(dir.join("run")).current_dir(&dir));
    let got: Vec<f64> = std::fs::read(dir.join("out.bin"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    if got.len() != expected.len() {
        return Err(format!(
            "{}: {} outputs, expected {}",
            case.label,
            got.len(),
            expected.len()
        ));
    }
    let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(&expected).enumerate() {
        let err = (g - w).abs() / w.abs().max(0.1 * scale).max(f64::MIN_POSITIVE);
        if !err.is_finite() || err > REL_TOL || g.is_nan() {
            return Err(format!(
                "{}: output {i}: got {g}, expected {w} (relative error {err:.2e})",
                case.label
            ));
        }
        worst = worst.max(err);
    }
    Ok(format!(
        "{}: {} ({} values, worst relative error {worst:.1e})",
        case.label,
        if kernel.fused { "fused" } else { "generic" },
        got.len()
    ))
}

#[test]
fn cpp_target_matches_the_interpreter_on_every_library_cascade() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    if Command::new(&cxx).arg("--version").output().is_err() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{cxx} is missing under CI=true"
        );
        eprintln!("skipping: {cxx} not found");
        return;
    }
    let mut cases: Vec<Case> = common::library()
        .into_iter()
        .map(|c| Case {
            label: c.name.clone(),
            cascade: c,
            schedule: schedule(16, 16, false),
            reference: None,
            poison_mask: false,
        })
        .collect();
    // The causal mask added by the schedule (not written in the cascade), against a direct reference.
    let base = cases
        .iter()
        .find(|k| k.label == "attention_1pass")
        .expect("library")
        .cascade
        .clone();
    cases.push(Case {
        label: "attention_1pass+causal".into(),
        cascade: base,
        schedule: schedule(16, 16, true),
        reference: Some(causal_reference),
        poison_mask: false,
    });
    // A 1-pass sliding-window variant: the window filter fuses like the causal one.
    let window = common::window_1pass();
    cases.push(Case {
        label: "attention_window_1pass".into(),
        cascade: window,
        schedule: schedule(16, 16, false),
        reference: None,
        poison_mask: false,
    });
    // Strictly causal: query 0 sees no key, so its row must be zeros (never NaN).
    let strict = common::parse(
        &cascade_ir::library::source("attention_causal_1pass")
            .unwrap()
            .replace("m1*M0+m0 <= p]", "m1*M0+m0 < p]")
            .replace(
                "cascade attention_causal_1pass",
                "cascade attention_strict_causal_1pass",
            ),
        "attention_strict_causal_1pass",
    );
    cases.push(Case {
        label: "attention_strict_causal_1pass".into(),
        cascade: strict,
        schedule: schedule(16, 16, false),
        reference: None,
        poison_mask: false,
    });
    // Reordered operands, an inlined rescale product and a 1/sqrt(E) score scale still fuse.
    let scaled = common::parse(
        &cascade_ir::library::source("attention_1pass")
            .unwrap()
            .replace("Q[e,p] * BK[e,m1,m0]", "Q[e,p] * BK[e,m1,m0] * 1/sqrt(E)")
            .replace("max(RM[m1,p], LM[m1,p])", "max(LM[m1,p], RM[m1,p])")
            .replace("SLD[m1,p] + SPD[m1,p]", "RD[m1,p] * PRM[m1,p] + SLD[m1,p]")
            .replace("SPD[m1,p]     = RD[m1,p] * PRM[m1,p]\n", "")
            .replace("cascade attention_1pass", "cascade attention_scaled_1pass"),
        "attention_scaled_1pass",
    );
    cases.push(Case {
        label: "attention_scaled_1pass".into(),
        cascade: scaled,
        schedule: schedule(16, 16, false),
        reference: None,
        poison_mask: false,
    });
    // -inf in the additive mask, with one query masked entirely: zeros, never NaN.
    let masked = cases
        .iter()
        .find(|k| k.label == "attention_masked_1pass")
        .expect("library")
        .cascade
        .clone();
    cases.push(Case {
        label: "attention_masked_1pass-inf".into(),
        cascade: masked,
        schedule: schedule(16, 16, false),
        reference: None,
        poison_mask: true,
    });
    // The rewriter's 1-pass derivation of attention_3pass (other names and operand orders).
    cases.push(Case {
        label: "attention_rewritten_1pass".into(),
        cascade: common::parse(
            include_str!("data/attention_rewritten_1pass.cascade"),
            "attention_rewritten_1pass",
        ),
        schedule: schedule(16, 16, false),
        reference: None,
        poison_mask: false,
    });
    // exp((a - b)) written as exp of a subtraction keeps the -inf rule on the generic path: with
    // -inf in the bias a row's running max stays -inf while its denominator is a present 0.
    let exp_of_sub = common::parse(
        &cascade_ir::library::source("attention_masked_1pass")
            .unwrap()
            .replace("exp(RM[m1,p] - RM[m1+1,p])", "exp((RM[m1,p] - RM[m1+1,p]))")
            .replace(
                "cascade attention_masked_1pass",
                "cascade attention_exp_of_sub",
            ),
        "attention_exp_of_sub",
    );
    cases.push(Case {
        label: "attention_exp_of_sub".into(),
        cascade: exp_of_sub,
        schedule: schedule(16, 16, false),
        reference: None,
        poison_mask: true,
    });
    // The generic lowering of the fused cascades: iterative ranks, filters and -inf on the slow path.
    let generic: Vec<Case> = cases
        .iter()
        .filter(|k| {
            [
                "attention_1pass",
                "attention_causal_1pass",
                "attention_window_1pass",
                "attention_masked_1pass-inf",
            ]
            .contains(&k.label.as_str())
        })
        .map(|k| Case {
            label: format!("{}-generic", k.label),
            cascade: k.cascade.clone(),
            schedule: GpuSchedule {
                fuse: false,
                ..k.schedule
            },
            reference: k.reference,
            poison_mask: k.poison_mask,
        })
        .collect();
    cases.extend(generic);
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let chunks: Vec<_> = cases.chunks(cases.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| s.spawn(move || chunk.iter().map(check).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut failures = Vec::new();
    for r in &results {
        match r {
            Ok(line) => eprintln!("{line}"),
            Err(e) => failures.push(e.clone()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    let fused: Vec<_> = results
        .iter()
        .flatten()
        .filter(|l| l.contains(": fused"))
        .collect();
    assert!(
        fused.len() >= 4,
        "expected the 1-pass cascades to fuse: {fused:?}"
    );
}
