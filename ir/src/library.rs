//! The attention library: the `*.cascade` files under `ir/cascades/`, embedded at build time.

include!(concat!(env!("OUT_DIR"), "/library_files.rs"));

/// The source of a library cascade by name (the file stem, e.g. `attention_1pass`).
pub fn source(name: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of all library cascades, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(n, _)| *n)
}
