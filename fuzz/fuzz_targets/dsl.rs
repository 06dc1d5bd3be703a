//! Fuzzes the cascade language end to end: any text through the parser, and every cascade it
//! accepts through verify, the printer (`parse(print(c)) == c`), the loop plan, the pass
//! analysis, lint and, when it verifies, the interpreter at a tiny shape. A panic anywhere, or
//! a printed cascade that parses back differently, is a crash.

#![no_main]

use cascade_ir::{Shape, ShapeSpec, dsl, eval, lint, passes, plan::LoopPlan, reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let source = String::from_utf8_lossy(bytes);
    let parsed = match dsl::parse(&source, "fuzz.cascade") {
        Ok(parsed) => parsed,
        Err(diags) => {
            // Rendering points carets into the text: it must cope with any span.
            let _ = diags.render(&source, "fuzz.cascade", false);
            return;
        }
    };
    let c = &parsed.cascade;
    let printed = dsl::print(c);
    let reparsed = dsl::parse(&printed, "printed.cascade")
        .unwrap_or_else(|d| panic!("the printed cascade does not parse:\n{printed}\n{d}"));
    assert_eq!(&reparsed.cascade, c, "parse(print(c)) != c:\n{printed}");
    let diags = dsl::verify_diagnostics(&parsed);
    if !diags.is_empty() {
        let _ = diags.render(&source, "fuzz.cascade", false);
        return;
    }
    let plan = LoopPlan::new(c);
    for rank in passes::top_level_ranks(c) {
        let _ = plan.passes(c, rank);
    }
    let _ = lint::lint(c);
    let _ = dsl::lint_diagnostics(&parsed).render_warnings(&source, "fuzz.cascade", false);
    // Every plain rank and parameter of size 2 (splits take their default tile).
    let mut spec = ShapeSpec::default();
    for r in &c.ranks {
        let part = c
            .ranks
            .iter()
            .any(|p| p.split.is_some_and(|(a, b)| c.rank(a).name == r.name || c.rank(b).name == r.name));
        if !part {
            spec.sizes.insert(r.name.clone(), 2);
        }
    }
    let Ok(shape) = Shape::resolve(c, &spec) else {
        return;
    };
    if eval::points(c, &shape).is_none_or(|p| p.total > 100_000) {
        return;
    }
    let inputs = reference::random_inputs(c, &shape, 7);
    let _ = eval::evaluate::<f64>(c, &shape, &inputs);
});
