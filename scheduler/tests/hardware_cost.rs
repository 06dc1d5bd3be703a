//! Hardware costs for the rewriter: the per-op-kind weights of [`HardwareCost`] against the
//! numbers of the shipped TOML files, read here with `toml` and combined by hand.

use cascade_ir::ops::OpKind;
use cascade_ir::rewrite::CostModel;
use cascade_scheduler::shipped;
use cascade_scheduler::{HardwareCost, Metric};
use toml::Value;

fn table<'a>(v: &'a Value, key: &str) -> &'a toml::Table {
    v.get(key)
        .and_then(Value::as_table)
        .unwrap_or_else(|| panic!("`{key}` is a table"))
}

fn int(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_integer)
        .unwrap_or_else(|| panic!("`{key}` is an integer")) as f64
}

/// The unary functions of kind `other`, which a unit may price one by one.
const OTHER_FUNCTIONS: [&str; 7] = ["neg", "sqrt", "sigmoid", "softplus", "relu", "elu1", "tanh"];

/// The entries of a unit that price `kind`: its own, or for `other` (when the unit has no
/// `other` entry) every function of that kind it prices.
fn entries(unit: &Value, kind: OpKind) -> Vec<&Value> {
    let Some(ops) = unit.get("ops") else {
        return Vec::new();
    };
    match ops.get(kind.name()) {
        Some(op) => vec![op],
        None if kind == OpKind::Other => {
            OTHER_FUNCTIONS.iter().filter_map(|f| ops.get(*f)).collect()
        }
        None => Vec::new(),
    }
}

/// The unit a kind is charged on and its weight, from the raw TOML: the tile unit if it has
/// the op, else the row unit, else the unit with the most PEs (first by name on a tie). A kind
/// priced function by function costs its most expensive function (cycles, then energy).
fn expected(arch: &Value, costs: &Value, kind: OpKind, metric: Metric) -> Option<(String, f64)> {
    let units = table(arch, "units");
    let binding = table(arch, "binding");
    let has = |u: &str| !entries(&units[u], kind).is_empty();
    let pes = |u: &str| int(&units[u], "rows") * int(&units[u], "cols");
    let preferred = ["tile", "row"]
        .iter()
        .map(|r| binding[*r].as_str().expect("unit name").to_string())
        .find(|u| has(u));
    let unit = preferred.or_else(|| {
        let mut with: Vec<&String> = units.keys().filter(|u| has(u)).collect();
        with.sort_by(|a, b| pes(b).total_cmp(&pes(a)).then(a.cmp(b)));
        with.first().map(|u| u.to_string())
    })?;
    let energy_of = |op: &Value| {
        let energy = table(costs, "energy_pj");
        op.get("actions")
            .and_then(Value::as_table)
            .map_or(0.0, |actions| {
                actions
                    .iter()
                    .map(|(a, n)| {
                        n.as_integer().expect("count") as f64 * energy[a].as_float().expect("pJ")
                    })
                    .sum::<f64>()
            })
    };
    let op = entries(&units[&unit], kind)
        .into_iter()
        .max_by(|a, b| {
            (int(a, "cycles"), energy_of(a))
                .partial_cmp(&(int(b, "cycles"), energy_of(b)))
                .expect("finite")
        })
        .expect("has the op");
    let weight = match metric {
        Metric::Cycles => int(op, "cycles") / pes(&unit),
        Metric::Energy => energy_of(op),
    };
    Some((unit, weight))
}

#[test]
fn weights_are_the_arch_files_numbers() {
    let costs: Value = toml::from_str(shipped::COSTS[0].1).expect("cost table parses");
    let mut priced = 0;
    for (name, text) in shipped::ARCHS {
        let raw: Value = toml::from_str(text).expect("arch parses");
        let arch = shipped::load_arch(name).expect("shipped").expect("valid");
        for metric in [Metric::Cycles, Metric::Energy] {
            let hw = HardwareCost::new(&arch, metric);
            assert_eq!((hw.arch(), hw.metric()), (*name, metric));
            for kind in OpKind::ALL {
                match (expected(&raw, &costs, kind, metric), hw.price(kind)) {
                    (None, None) => {
                        assert_eq!(hw.weight(kind), f64::INFINITY, "{name} {kind}");
                        assert!(hw.unsupported().contains(&kind));
                    }
                    (Some((unit, w)), Some(p)) => {
                        assert_eq!(p.unit, unit, "{name} {kind}");
                        assert!(
                            (p.weight - w).abs() <= 1e-12 * w.abs(),
                            "{name} {kind} {metric:?}: {} vs {w}",
                            p.weight
                        );
                        assert_eq!(hw.op_cost(kind, 3.0), 3.0 * p.weight);
                        priced += 1;
                    }
                    (want, got) => panic!("{name} {kind}: expected {want:?}, got {got:?}"),
                }
            }
        }
    }
    // Five architectures × two metrics × seven priced kinds (`other` through the functions).
    assert_eq!(priced, 70);
}

#[test]
fn shipped_prices_as_the_reference_describes() {
    let fusemax = shipped::load_arch("fusemax").unwrap().unwrap();
    let hw = HardwareCost::new(&fusemax, Metric::Cycles);
    // FuseMax: exp is a 6-MAC Taylor series on the 256×256 array; division only on the 1D array.
    assert_eq!(hw.weight(OpKind::Exp), 6.0 / 65536.0);
    assert_eq!(hw.price(OpKind::Div).unwrap().unit, "array1d");
    assert_eq!(hw.weight(OpKind::Div), 1.0 / 256.0);
    let hw = HardwareCost::new(&fusemax, Metric::Energy);
    assert!((hw.weight(OpKind::Exp) - 6.0 * 17.16).abs() < 1e-9);
    // FLAT: the 2D array only multiplies; exp runs on the 1D array's dedicated unit.
    let flat = shipped::load_arch("flat").unwrap().unwrap();
    let hw = HardwareCost::new(&flat, Metric::Energy);
    assert_eq!(hw.price(OpKind::Exp).unwrap().unit, "array1d");
    assert!((hw.weight(OpKind::Exp) - 94.65).abs() < 1e-9);
    assert_eq!(hw.price(OpKind::Mac).unwrap().unit, "array2d");
}

#[test]
fn unsupported_kinds_cost_infinity_but_zero_ops_cost_nothing() {
    // FuseMax without its unary functions: nothing executes `other`.
    let text: String = shipped::arch("fusemax")
        .unwrap()
        .lines()
        .filter(|l| {
            !OTHER_FUNCTIONS
                .iter()
                .any(|f| l.starts_with(&format!("ops.{f} ")))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let arch = shipped::parse_arch(&text, |n| shipped::costs(n).map(str::to_string)).unwrap();
    let hw = HardwareCost::new(&arch, Metric::Cycles);
    assert_eq!(hw.unsupported(), vec![OpKind::Other]);
    assert_eq!(hw.op_cost(OpKind::Other, 1.0), f64::INFINITY);
    assert_eq!(hw.op_cost(OpKind::Other, 0.0), 0.0);
    assert!(hw.to_string().contains("other unsupported"), "{hw}");
}
