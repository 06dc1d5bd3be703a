//! The library half of the `cascade` package: the command line's value parsers, which the
//! fuzz targets (`fuzz/`) and the property tests call without running the binary. Everything
//! else of the CLI lives in the binary (`main.rs` and its modules).

pub mod values;
