//! Property tests of the command line's value parsers (`cascade_cli::values`, and the shape
//! syntax of `cascade_ir::shape`): values in range read back exactly, values out of range are
//! refused with the limit in the message, and no text makes a parser panic.

use cascade_cli::values::{
    self, MAX_BUFFER_BYTES, MAX_MEMORY_BYTES, MAX_PE_DIM, MAX_PE_DIMS, MAX_SEQ,
};
use cascade_ir::shape::MAX_SIZE;
use cascade_ir::{Shape, ShapeSpec, dsl, library};
use proptest::prelude::*;

proptest! {
    /// A geometric range starts at its low end, ends at its high end, rises strictly and stays
    /// within the limit; doubling ranges double until the last step.
    #[test]
    fn geometric_ranges_run_from_low_to_high(
        lo in 1..=values::MAX_RANGE_VALUES * 1000,
        factor in 1u64..1000,
        steps in prop::option::of(1..=values::MAX_RANGE_VALUES),
    ) {
        let hi = lo * factor;
        let arg = match steps {
            Some(n) => format!("{lo}..{hi}:{n}"),
            None => format!("{lo}..{hi}"),
        };
        let v = values::geometric_range(&arg, "--chips", "chips", u64::MAX >> 2).unwrap();
        prop_assert_eq!(v[0], lo);
        prop_assert!(v.windows(2).all(|w| w[0] < w[1]), "{:?}", v);
        prop_assert!(v.len() as u64 <= values::MAX_RANGE_VALUES);
        if steps != Some(1) {
            prop_assert_eq!(*v.last().unwrap(), hi);
        }
        if steps.is_none() {
            prop_assert!(v[..v.len() - 1].windows(2).all(|w| w[1] == 2 * w[0]));
        }
    }

    #[test]
    fn shards_are_disjoint_and_cover_the_sweep(count in 1..=64u64, points in 0..500u64) {
        let shards: Vec<values::Shard> = (1..=count)
            .map(|k| values::shard(&format!("{k}/{count}")).unwrap())
            .collect();
        for position in 0..points {
            // Exactly one shard holds each design point.
            let holders = shards.iter().filter(|s| s.holds(position)).count();
            prop_assert_eq!(holders, 1, "point {}", position);
        }
    }

    #[test]
    fn sequence_lists_in_range_read_back(seqs in prop::collection::vec(1..=MAX_SEQ, 1..20)) {
        let text = seqs.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        prop_assert_eq!(values::seq_list(&text), Ok(seqs));
    }

    #[test]
    fn sequence_lengths_past_the_maximum_name_it(extra in 1..u32::MAX as u64) {
        let e = values::seq_list(&(MAX_SEQ + extra).to_string()).unwrap_err();
        prop_assert!(e.0.contains(&MAX_SEQ.to_string()), "{}", e);
    }

    #[test]
    fn stepped_ranges_make_exactly_their_sizes(
        lo in 1..=MAX_PE_DIM,
        span in 0..=MAX_PE_DIM,
        step in 1..u64::MAX,
    ) {
        let hi = lo.saturating_add(span);
        let got = values::pe_dims(&format!("{lo}..{hi}:{step}"));
        if hi > MAX_PE_DIM {
            prop_assert!(got.unwrap_err().0.contains("65536"));
        } else {
            let count = (hi - lo) / step + 1;
            if count > MAX_PE_DIMS {
                prop_assert!(got.is_err());
            } else {
                let dims = got.unwrap();
                prop_assert_eq!(dims.len() as u64, count);
                prop_assert_eq!(dims[0], lo);
                prop_assert!(dims.iter().all(|d| *d <= hi));
            }
        }
    }

    #[test]
    fn byte_counts_with_suffixes_scale_or_are_refused(n in 0..u64::MAX, suffix in 0usize..6) {
        let (text, shift) = (["", "k", "M", "G", "T", "P"][suffix], [0, 10, 20, 30, 40, 50][suffix]);
        let got = values::bytes(&format!("{n}{text}"), "--max-memory", MAX_MEMORY_BYTES);
        match n.checked_mul(1 << shift) {
            Some(v) if (1..=MAX_MEMORY_BYTES).contains(&v) => prop_assert_eq!(got, Ok(v)),
            Some(0) => prop_assert!(got.unwrap_err().0.contains("is 0 bytes")),
            _ => prop_assert!(got.unwrap_err().0.contains(&MAX_MEMORY_BYTES.to_string())),
        }
    }

    #[test]
    fn no_text_makes_a_value_parser_panic(text in "\\PC{0,40}") {
        let _ = values::seq_list(&text);
        let _ = values::pe_dims(&text);
        let _ = values::bytes(&text, "--max-buffer", MAX_BUFFER_BYTES);
        let _ = text.parse::<ShapeSpec>();
    }

    #[test]
    fn shapes_bind_every_size_in_range_and_refuse_the_rest(
        e in -5i64..=MAX_SIZE + 5,
        m in prop::sample::select(vec![0i64, 1, 2, 3, 64, 1 << 20, MAX_SIZE, MAX_SIZE + 1, i64::MAX]),
        m0 in prop::option::of(prop::sample::select(vec![0i64, 1, 2, 7, 64, MAX_SIZE])),
    ) {
        let c = dsl::parse(library::source("attention_1pass").unwrap(), "a").unwrap().cascade;
        let mut text = format!("E={e},F=4,P=4,M={m}");
        if let Some(m0) = m0 {
            text.push_str(&format!(",M0={m0}"));
        }
        let spec: ShapeSpec = text.parse().unwrap();
        let valid = |x: i64| (1..=MAX_SIZE).contains(&x);
        let divides = m0.is_none_or(|t| valid(t) && m % t == 0);
        match Shape::resolve(&c, &spec) {
            Ok(shape) => {
                prop_assert!(valid(e) && valid(m) && divides, "{} resolved", text);
                prop_assert!(shape.sizes().iter().all(|s| valid(*s)));
            }
            Err(errors) => {
                prop_assert!(!(valid(e) && valid(m) && divides), "{}: {:?}", text, errors);
                prop_assert!(!errors.is_empty());
            }
        }
    }
}
