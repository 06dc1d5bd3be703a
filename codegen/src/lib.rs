//! Code generation: lowers cascades to CUDA, HIP and C++ kernel sources (issue 5).
