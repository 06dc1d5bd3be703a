//! temp
use cascade_ir::{Shape, dsl, eval, library, reference};
fn main() {
    let filter: Vec<String> = std::env::args().skip(1).collect();
    for name in library::names() {
        if !filter.is_empty() && !filter.iter().any(|f| f == name) {
            continue;
        }
        let c = dsl::parse(library::source(name).unwrap(), name)
            .unwrap()
            .cascade;
        let spec = if name.starts_with("pedagogical") {
            "K=1024".to_string()
        } else if name.contains("window") {
            "E=64,F=64,M=1024,P=1024,W=128".into()
        } else {
            "E=64,F=64,M=1024,P=1024".into()
        };
        let shape = Shape::resolve(&c, &spec.parse().unwrap()).unwrap();
        let inputs = reference::random_inputs(&c, &shape, 1);
        let t = std::time::Instant::now();
        let ev = eval::evaluate(&c, &shape, &inputs).unwrap();
        let dt = t.elapsed();
        let s: f64 = ev.output().unwrap().values.sum();
        println!("{name}: {:.2}s sum {s}", dt.as_secs_f64());
    }
}
