//! cascade-ir: attention algorithms as Extended Einsum cascades.
//!
//! The IR ([`ast`]), its text format ([`dsl`]), validation ([`verify`]), a reference
//! interpreter ([`eval`]), the loop plan every stage shares ([`plan`]), pass analysis ([`passes`]), presence as a union of guards ([`presence`]) and tile occupancy
//! ([`occupancy`]), and the attention library ([`library`]).
//! This crate knows no hardware: costs reach it as data chosen by the caller.

pub mod ast;
pub mod dsl;
pub mod eval;
pub mod graph;
pub mod library;
pub mod lint;
pub mod occupancy;
pub mod ops;
pub mod passes;
pub mod plan;
pub mod presence;
pub mod reference;
pub mod rewrite;
pub mod shape;
pub mod verify;

pub use ast::*;
pub use plan::{LoopPlan, Phase};
pub use shape::{Shape, ShapeError, ShapeSpec};
