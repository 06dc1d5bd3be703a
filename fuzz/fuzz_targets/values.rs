//! Fuzzes the command line's value parsers (`cascade_cli::values` and the shape syntax): any
//! text as a sequence list, a batch list, an array-size range, a geometric range (`--seq`,
//! `--chips` of `scale`), a byte count, a sweep shard and a shape, the
//! shape also bound to every library cascade. A parser must refuse what it cannot use, and what it accepts must
//! be within its stated limits.

#![no_main]

use cascade_cli::values::{
    self, MAX_BATCH, MAX_BUFFER_BYTES, MAX_PE_DIM, MAX_PE_DIMS, MAX_SEQ, MAX_SHARDS,
};
use cascade_ir::shape::MAX_SIZE;
use cascade_ir::{Shape, ShapeSpec, dsl, library};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(seqs) = values::seq_list(&text) {
        assert!(!seqs.is_empty() && seqs.iter().all(|s| (1..=MAX_SEQ).contains(s)));
    }
    if let Ok(batches) = values::batch_list(&text) {
        assert!(!batches.is_empty() && batches.iter().all(|b| (1..=MAX_BATCH).contains(b)));
    }
    if let Ok(dims) = values::pe_dims(&text) {
        assert!(!dims.is_empty() && dims.len() as u64 <= MAX_PE_DIMS);
        assert!(dims.iter().all(|d| (1..=MAX_PE_DIM).contains(d)));
        assert!(dims.windows(2).all(|w| w[0] < w[1]), "sizes ascend");
    }
    if let Ok(v) = values::geometric_range(&text, "--chips", "chips", 1 << 16) {
        assert!(!v.is_empty() && v.len() as u64 <= values::MAX_RANGE_VALUES);
        assert!(v.iter().all(|n| (1..=1 << 16).contains(n)));
        assert!(v.windows(2).all(|w| w[0] < w[1]), "values ascend");
    }
    if let Ok(n) = values::bytes(&text, "--max-buffer", MAX_BUFFER_BYTES) {
        assert!((1..=MAX_BUFFER_BYTES).contains(&n));
    }
    if let Ok(shard) = values::shard(&text) {
        assert!(shard.index < shard.count && shard.count <= MAX_SHARDS);
    }
    if let Ok(spec) = text.parse::<ShapeSpec>() {
        for name in library::names() {
            let c = dsl::parse(library::source(name).expect("library"), name)
                .expect("library parses")
                .cascade;
            if let Ok(shape) = Shape::resolve(&c, &spec) {
                assert!(shape.sizes().iter().all(|s| (1..=MAX_SIZE).contains(s)));
            }
        }
    }
});
