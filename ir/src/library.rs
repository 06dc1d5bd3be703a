//! The attention library: the `*.cascade` files under `ir/cascades/`, embedded at build time,
//! and the model variants under `ir/cascades/variants/` (the attention of today's models on the
//! accelerator model: KV-cache causal masks, windows and sinks, GQA, MQA, MLA, ALiBi,
//! soft-capping, sigmoid, ReLU, softplus, linear, block-sparse; split-K decode is the library's
//! `attention_2pass_localmax`). The variants are
//! a second set so that every stage's library-wide tests keep their scope; each has a direct
//! reference in [`crate::reference`] as the library cascades do.

include!(concat!(env!("OUT_DIR"), "/library_files.rs"));

/// The source of a library cascade by name (the file stem, e.g. `attention_1pass`).
pub fn source(name: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of all library cascades, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(n, _)| *n)
}

/// The source of a model variant by name.
pub fn variant_source(name: &str) -> Option<&'static str> {
    VARIANTS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of all model variants, sorted.
pub fn variant_names() -> impl Iterator<Item = &'static str> {
    VARIANTS.iter().map(|(n, _)| *n)
}
