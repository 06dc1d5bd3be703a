//! Simulator: analytical and cycle-level cost models of a schedule (issue 4).
