//! Scheduler: binds each Einsum of a cascade to a unit of a spatial array and pipelines it (issue 4).
