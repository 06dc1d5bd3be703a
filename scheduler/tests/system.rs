//! System files: every shipped system validates, and each mistake is refused with the field
//! and the fix, all of them at once.

use cascade_scheduler::shipped;
use cascade_scheduler::system::{Assignment, Exchange, RawSystem, Split, SystemSpec, Topology};

fn errors(text: &str) -> Vec<String> {
    match RawSystem::from_toml(text) {
        Err(e) => vec![e.to_string()],
        Ok(raw) => match SystemSpec::new(raw, &shipped::shipped_chip) {
            Ok(_) => Vec::new(),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        },
    }
}

#[test]
fn every_shipped_system_validates() {
    for (name, _) in shipped::SYSTEMS {
        let s = shipped::load_system(name).expect("listed").expect("valid");
        assert_eq!(s.name(), *name);
        assert_eq!(s.chip().name(), "fusemax");
    }
    let ring = shipped::load_system("ring-fusemax").unwrap().unwrap();
    assert_eq!(
        (ring.chips(), ring.topology(), ring.split()),
        (64, Topology::Ring, Split::Query)
    );
    assert_eq!(
        (ring.assignment(), ring.exchange(), ring.overlap()),
        (Assignment::ZigZag, Exchange::Ring, true)
    );
    // 100 GB/s, 1000 ns.
    assert_eq!(ring.link_bytes_per_s(), 100e9);
    assert!((ring.link_latency_s() - 1e-6).abs() < 1e-18);
    let ulysses = shipped::load_system("ulysses-fusemax").unwrap().unwrap();
    assert_eq!(ulysses.split(), Split::Heads);
    // 16 chips: the squarest torus is 4 × 4; 12 chips 3 × 4; 13 (prime) 1 × 13.
    let torus = shipped::load_system("splitk-fusemax").unwrap().unwrap();
    assert_eq!(torus.torus_dims(), (4, 4));
    assert_eq!(torus.with_chips(12).unwrap().torus_dims(), (3, 4));
    assert_eq!(torus.with_chips(13).unwrap().torus_dims(), (1, 13));
    assert!(torus.with_chips(0).is_err());
}

#[test]
fn system_errors_name_the_field_and_the_fix() {
    let base = shipped::system("ring-fusemax").unwrap();
    let cases = [
        (base.replace("chips = 64", "chips = 0"), "`chips`: is 0"),
        (
            base.replace("chips = 64", "chips = 64\ncores = 2"),
            "unknown field `cores`",
        ),
        (
            base.replace("overlap = true", "overlap = true\nduplex = true"),
            "unknown field `duplex`",
        ),
        (
            base.replace("chip = \"fusemax\"", "chip = \"fusemax9\""),
            "`chip`: `fusemax9`: is not a shipped architecture",
        ),
        (
            base.replace("topology = \"ring\"", "topology = \"mesh\""),
            "`interconnect.topology`: is `mesh`; use one of \"ring\", \"torus2d\", \"switch\"",
        ),
        (
            base.replace("link_gb_s = 100.0", "link_gb_s = -1.0"),
            "`interconnect.link_gb_s`: is -1",
        ),
        (
            base.replace("link_gb_s = 100.0", "link_gb_s = nan"),
            "`interconnect.link_gb_s`: is NaN",
        ),
        (
            base.replace("link_latency_ns = 1000.0\n", ""),
            "`interconnect.link_latency_ns`: is missing",
        ),
        (
            base.replace("split = \"query\"", "split = \"batch\""),
            "`partition.split`: is `batch`",
        ),
        (
            base.replace("exchange = \"ring\"", "exchange = \"all-to-all\""),
            "`partition.exchange`: is `all-to-all`, but a query split",
        ),
        (
            base.replace("split = \"query\"", "split = \"heads\""),
            "`partition.exchange`: must be \"all-to-all\" for a head split",
        ),
    ];
    for (text, expected) in cases {
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.contains(expected)),
            "{expected}: {errs:?}"
        );
    }
    // Every mistake at once.
    let text = base
        .replace("chips = 64", "chips = -3")
        .replace("link_pj_per_bit = 5.0", "link_pj_per_bit = -5.0")
        .replace("assignment = \"zigzag\"", "assignment = \"random\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:?}");
}
