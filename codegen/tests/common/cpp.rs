//! The `cpp` target against the reference interpreter: a case is a cascade, a schedule, a shape
//! and what must happen (a fused or generic kernel that matches `eval`, a refusal naming the
//! problem, or a launcher that rejects the shape). Every kernel that is emitted is compiled
//! with g++ and compared with the f64 interpreter on random inputs, whatever the case expects.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cascade_codegen::{DType, GpuSchedule, Target, abi_sizes, emit};
use cascade_ir::eval::{evaluate, tensor_extents};
use cascade_ir::reference;
use cascade_ir::{Cascade, RankId, Shape, ShapeSpec, TensorKind};
use ndarray::{ArrayD, Ix2};

/// f32 against the f64 interpreter: relative to each value, with a floor of a tenth of the
/// output's largest magnitude: outputs are signed averages, and where they cancel to near 0 an
/// f32 sum of ~50 terms is only accurate relative to the terms (~1e-7 absolute here).
pub const REL_TOL: f64 = 1e-5;

/// Computes the expected outputs from the inputs by name (instead of the interpreter).
pub type DirectReference = fn(&BTreeMap<String, ArrayD<f64>>) -> ArrayD<f64>;

/// What a case must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The fused kernel, matching the interpreter.
    Fused,
    /// The generic lowering, matching the interpreter.
    Generic,
    /// `emit` refuses, with a message containing this text.
    Refused(&'static str),
    /// The launcher returns `CASCADE_ERR_SHAPE` for this shape (which the interpreter rejects).
    ShapeError,
}

pub struct Case {
    pub label: String,
    pub cascade: Cascade,
    pub schedule: GpuSchedule,
    /// The sizes the interpreter resolves the shape from; the launcher gets the same shape
    /// through its ABI (0 for a split's inner size when neither part is given).
    pub spec: ShapeSpec,
    /// An input `T[M,P]` set to `-inf` where `(m + p) % 3 == 0` and for every key of query 1.
    pub poison: Option<&'static str>,
    pub reference: Option<DirectReference>,
    pub expect: Expect,
}

/// A 16-row, 16-key, head-dim-16 f32 schedule.
pub fn schedule(fuse: bool) -> GpuSchedule {
    GpuSchedule {
        block_m: 16,
        block_n: 16,
        warps: 1,
        stages: 2,
        dtype: DType::F32,
        head_dim: 16,
        causal: false,
        fuse,
        ldmatrix: true,
    }
}

impl Case {
    /// A case with the default schedule (fused where it applies) and the given sizes.
    pub fn new(label: &str, cascade: Cascade, sizes: &str, expect: Expect) -> Case {
        Case {
            label: label.into(),
            cascade,
            schedule: schedule(true),
            spec: sizes
                .parse()
                .unwrap_or_else(|e| panic!("{label}: sizes {e}")),
            poison: None,
            reference: None,
            expect,
        }
    }

    /// The same case through the generic lowering.
    pub fn no_fuse(mut self) -> Case {
        self.schedule.fuse = false;
        self
    }

    pub fn poison(mut self, input: &'static str) -> Case {
        self.poison = Some(input);
        self
    }
}

/// `sizes` restricted to the ranks `c` declares (one size list for cascades of several forms).
pub fn declared(c: &Cascade, sizes: &str) -> String {
    let spec: ShapeSpec = sizes.parse().expect("sizes");
    spec.sizes
        .iter()
        .filter(|(name, _)| c.rank_by_name(name).is_some())
        .map(|(name, v)| format!("{name}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The launcher's size arguments: the shape's size, or 0 for a split's inner rank when the
/// sizes name neither part of the split (the launcher then picks the interpreter's default).
pub fn abi_args(c: &Cascade, spec: &ShapeSpec, shape: Option<&Shape>) -> Vec<i64> {
    let given = |r: RankId| spec.sizes.get(&c.rank(r).name).copied();
    abi_sizes(c)
        .into_iter()
        .map(|r| {
            let split = c
                .ranks
                .iter()
                .find_map(|p| p.split.filter(|(_, i)| *i == r));
            if let Some((outer, inner)) = split
                && given(outer).is_none()
                && given(inner).is_none()
            {
                return 0;
            }
            given(r).or_else(|| shape.map(|s| s.size(r))).unwrap_or(0)
        })
        .collect()
}

/// Elements of a tensor (state tensors at their `|R|+1` extent), 1 without a shape.
fn numel(c: &Cascade, shape: Option<&Shape>, t: cascade_ir::TensorId) -> usize {
    shape.map_or(1, |s| tensor_extents(c, s, t).iter().product())
}

/// A C++ driver: reads the inputs (ABI order, f32, batch entries back to back) from `in.bin`,
/// poisons the outputs with NaN, calls the launcher and writes the outputs to `out.bin`; a
/// launcher error `rc` exits with `20 + rc`.
fn driver(c: &Cascade, shape: Option<&Shape>, symbol: &str, sizes: &[i64], batch: usize) -> String {
    let inputs: Vec<_> = (0..c.tensors.len() as u32)
        .map(cascade_ir::TensorId)
        .filter(|&t| c.tensor(t).kind == TensorKind::Input)
        .collect();
    let mut s = String::from("#include <cmath>\n#include <cstdio>\n#include <vector>\n");
    let mut params: Vec<&str> = inputs.iter().map(|_| "const void*").collect();
    params.extend(c.outputs.iter().map(|_| "void*"));
    params.push("int");
    params.extend(sizes.iter().map(|_| "long long"));
    writeln!(s, "extern \"C\" int {symbol}({});", params.join(", ")).unwrap();
    s.push_str("int main() {\n  FILE* f = fopen(\"in.bin\", \"rb\");\n");
    let mut args = Vec::new();
    for &t in &inputs {
        let n = &c.tensor(t).name;
        writeln!(s, "  std::vector<float> in_{n}({});\n  if (fread(in_{n}.data(), 4, in_{n}.size(), f) != in_{n}.size()) return 10;", numel(c, shape, t) * batch).unwrap();
        args.push(format!("in_{n}.data()"));
    }
    s.push_str("  fclose(f);\n");
    for &o in &c.outputs {
        let n = &c.tensor(o).name;
        writeln!(
            s,
            "  std::vector<float> out_{n}({}, NAN);",
            numel(c, shape, o) * batch
        )
        .unwrap();
        args.push(format!("out_{n}.data()"));
    }
    args.push(batch.to_string());
    args.extend(sizes.iter().map(|v| format!("{v}LL")));
    writeln!(
        s,
        "  const int rc = {symbol}({});\n  if (rc != 0) return 20 + rc;",
        args.join(", ")
    )
    .unwrap();
    s.push_str("  FILE* g = fopen(\"out.bin\", \"wb\");\n");
    for &o in &c.outputs {
        let n = &c.tensor(o).name;
        writeln!(s, "  fwrite(out_{n}.data(), 4, out_{n}.size(), g);").unwrap();
    }
    s.push_str("  fclose(g);\n  return 0;\n}\n");
    s
}

/// A tensor in the ABI layout: first declared rank fastest.
fn abi_order(a: &ArrayD<f64>) -> Vec<f64> {
    a.view().reversed_axes().iter().copied().collect()
}

/// Random inputs for one batch entry, rounded to f32 before the f64 reference sees them.
fn inputs_for(case: &Case, shape: &Shape, seed: u64) -> BTreeMap<String, ArrayD<f64>> {
    let mut ins = reference::random_inputs(&case.cascade, shape, seed);
    for a in ins.values_mut() {
        a.mapv_inplace(|x| f64::from(x as f32));
    }
    if let Some(name) = case.poison {
        let mask = ins.get_mut(name).expect("the poisoned input exists");
        let mut mask2 = mask.view_mut().into_dimensionality::<Ix2>().expect("2-D");
        for ((m, p), x) in mask2.indexed_iter_mut() {
            if (m + p) % 3 == 0 || p == 1 {
                *x = f64::NEG_INFINITY;
            }
        }
    }
    ins
}

/// Runs one case; `Ok` describes what ran, `Err` what went wrong.
pub fn check(case: &Case) -> Result<String, String> {
    let label = &case.label;
    let c = &case.cascade;
    let kernel = match (emit(c, &case.schedule, Target::Cpp), case.expect) {
        (Err(e), Expect::Refused(why)) => {
            let text = e.to_string();
            return if text.contains(why) {
                Ok(format!("{label}: refused ({text})"))
            } else {
                Err(format!("{label}: refused, but not for `{why}`: {text}"))
            };
        }
        (Err(e), _) => return Err(format!("{label}: {e}")),
        // A successful emission is checked against the interpreter whatever was expected.
        (Ok(k), _) => k,
    };
    let shape_error = case.expect == Expect::ShapeError;
    let shape = match Shape::resolve(c, &case.spec) {
        Ok(s) => Some(s),
        Err(_) if shape_error => None,
        Err(e) => return Err(format!("{label}: shape {e:?}")),
    };
    let batch = 2;
    let sizes = abi_args(c, &case.spec, shape.as_ref());
    let dir = super::scratch(&format!("cpp_{label}"));
    // The kernel and its driver in one translation unit: one compiler run per case.
    let main = driver(c, shape.as_ref(), &kernel.symbol, &sizes, batch);
    std::fs::write(
        dir.join(&kernel.source_name),
        format!("{}\n{main}", kernel.source),
    )
    .unwrap();
    let gxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    // -O0: the shapes are small, and compiling dominates the run.
    super::run(Command::new(&gxx).current_dir(&dir).args([
        "-O0",
        "-std=c++17",
        "-Wall",
        "-Werror",
        "-Wno-unused-variable",
        "-Wno-shadow",
        "-o",
        "run",
        &kernel.source_name,
    ]));
    let Some(shape) = shape else {
        std::fs::write(dir.join("in.bin"), vec![0u8; 64]).unwrap();
        let status = Command::new(dir.join("run"))
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("{label}: {e}"))?;
        return match status.code() {
            Some(21) => Ok(format!("{label}: CASCADE_ERR_SHAPE as expected")),
            code => Err(format!(
                "{label}: the launcher accepted a shape the interpreter rejects (exit {code:?})"
            )),
        };
    };
    let batches: Vec<_> = (0..batch)
        .map(|b| inputs_for(case, &shape, 7 + b as u64))
        .collect();
    let mut bytes = Vec::new();
    for t in c.tensors.iter().filter(|t| t.kind == TensorKind::Input) {
        for ins in &batches {
            for x in abi_order(&ins[&t.name]) {
                bytes.extend_from_slice(&(x as f32).to_le_bytes());
            }
        }
    }
    // Outputs in the driver's order: each output, its batch entries back to back.
    let mut expected: Vec<(String, Vec<f64>)> = Vec::new();
    for (n, &o) in c.outputs.iter().enumerate() {
        let name = c.tensor(o).name.clone();
        let mut values = Vec::new();
        for ins in &batches {
            let want = match case.reference {
                Some(f) if n == 0 => f(ins),
                _ => {
                    let ev = evaluate::<f64>(c, &shape, ins)
                        .map_err(|e| format!("{label}: eval {e}"))?;
                    ev.tensor(&name).expect("output").values.clone()
                }
            };
            values.extend(abi_order(&want));
        }
        expected.push((name, values));
    }
    std::fs::write(dir.join("in.bin"), bytes).unwrap();
    super::run(Command::new(dir.join("run")).current_dir(&dir));
    let got: Vec<f64> = std::fs::read(dir.join("out.bin"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    let total: usize = expected.iter().map(|(_, v)| v.len()).sum();
    if got.len() != total {
        return Err(format!("{label}: {} outputs, expected {total}", got.len()));
    }
    let mut worst = 0.0f64;
    let mut at = 0;
    for (name, want) in &expected {
        let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for (i, w) in want.iter().enumerate() {
            let g = got[at + i];
            let err = (g - w).abs() / w.abs().max(0.1 * scale).max(f64::MIN_POSITIVE);
            if !err.is_finite() || err > REL_TOL || g.is_nan() {
                return Err(format!(
                    "{label}: {name}[{i}]: got {g}, expected {w} (relative error {err:.2e})"
                ));
            }
            worst = worst.max(err);
        }
        at += want.len();
    }
    let lowering = if kernel.fused { "fused" } else { "generic" };
    let wanted = match case.expect {
        Expect::Fused => Some("fused"),
        Expect::Generic => Some("generic"),
        Expect::Refused(_) | Expect::ShapeError => None,
    };
    if wanted != Some(lowering) {
        return Err(format!(
            "{label}: {lowering} kernel matches the interpreter, but the case expects {:?}",
            case.expect
        ));
    }
    Ok(format!(
        "{label}: {lowering} ({got} values, worst relative error {worst:.1e})",
        got = got.len()
    ))
}

/// Runs every case on two threads and fails with every failure at once.
pub fn check_all(cases: &[Case]) -> Vec<String> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    if Command::new(&cxx).arg("--version").output().is_err() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{cxx} is missing under CI=true"
        );
        eprintln!("skipping: {cxx} not found");
        return Vec::new();
    }
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let r = check(case);
                    results.lock().expect("results").push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(i, _)| *i);
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for (_, r) in results {
        match r {
            Ok(line) => {
                eprintln!("{line}");
                lines.push(line);
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    lines
}
