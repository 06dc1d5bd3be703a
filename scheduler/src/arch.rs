//! Architecture descriptions: raw TOML data, validated once into an [`ArchSpec`].
//!
//! An architecture file holds the structure (units, ops and their cycle costs, buffer, DRAM,
//! clock, binding and pipelining policy); a separate cost table prices actions in pJ and
//! components in µm², as Timeloop and Accelergy split them. Parsing is two steps: serde into the
//! `Raw*` types (unknown fields rejected), then [`ArchSpec::new`] checks every invariant and
//! returns all problems at once. After that the fields are private: the type is the proof.

use std::collections::BTreeMap;
use std::fmt;

use cascade_ir::ops::{OpKind, UNARY, point_functions, point_ops};
use cascade_ir::{Cascade, EinsumId, Section, UnaryOp};
use serde::Deserialize;

mod sram;
pub use sram::{Sram, SramTable};

/// A problem in an architecture, cost or workload file, naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The TOML text does not parse or does not match the schema (unknown field, wrong type).
    #[error("{message}")]
    Syntax { message: String },
    /// A field has a value the model cannot use.
    #[error("`{field}`: {problem}")]
    Field { field: String, problem: String },
}

impl ConfigError {
    fn field(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn syntax(err: &toml::de::Error) -> ConfigError {
        ConfigError::Syntax {
            message: err.to_string().trim_end().to_string(),
        }
    }
}

/// `arch-configs/*.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArch {
    pub name: Option<String>,
    /// The library cascade this architecture runs unless the caller picks another.
    pub cascade: Option<String>,
    /// The name of the cost table that prices this architecture.
    pub costs: Option<String>,
    pub clock_mhz: Option<f64>,
    pub word_bits: Option<i64>,
    pub units: Option<BTreeMap<String, RawUnit>>,
    pub buffer: Option<RawBuffer>,
    pub dram: Option<RawDram>,
    pub binding: Option<RawBinding>,
    pub pipeline: Option<RawPipeline>,
}

/// One compute unit: a `rows × cols` grid of PEs (`rows = 1` for a 1D array).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnit {
    pub rows: Option<i64>,
    pub cols: Option<i64>,
    pub register_words: Option<i64>,
    /// The PE register file, by the cost table's `register_files` name; without one, the
    /// table's `register_read`/`register_write` energies and `register_word` area apply.
    pub register_file: Option<String>,
    /// Hardware blocks in each PE, by area-table name, for the area estimate.
    pub components: Option<BTreeMap<String, i64>>,
    /// The ops the PE executes: op kinds (`mac`, `other`, …) or unary functions by name
    /// (`tanh`, `sigmoid`, …).
    pub ops: Option<BTreeMap<String, RawOp>>,
    /// Whether a PE with a masked point in a partly present tile is gated (no energy).
    pub gates_masked: Option<bool>,
}

/// How a PE executes one op kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOp {
    /// Cycles the op occupies its functional unit per element.
    pub cycles: Option<i64>,
    /// Energy-table actions one op performs (`exp` as Taylor series: `{ mac = 6 }`).
    pub actions: Option<BTreeMap<String, i64>>,
    /// The functional unit that runs it; ops on different functional units overlap.
    pub pipeline: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    pub capacity_bytes: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDram {
    pub bandwidth_gib_s: Option<f64>,
}

/// Which unit an Einsum runs on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBinding {
    /// Unit for Einsums that iterate the array tile (a key rank and the query rank).
    pub tile: Option<String>,
    /// Unit for per-query and other Einsums.
    pub row: Option<String>,
    /// Explicit bindings by the name of the tensor an Einsum writes.
    pub einsums: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// `fused` (one pipelined phase) or `none` (one phase per run of Einsums on one unit).
    pub fusion: Option<String>,
    /// Whether the tile unit interleaves independent Einsums of different tiles cycle by cycle.
    pub interleave: Option<bool>,
    /// How a tile one unit writes reaches another unit that reads it in the same pass: `link`
    /// (default; the arrays are wired edge to edge, as FuseMax's) or `buffer` (written to the
    /// global buffer and read back from it, as FLAT's arrays share their data).
    pub handoff: Option<String>,
}

/// The per-action energy and per-component area table (`arch-configs/costs/*.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCosts {
    pub name: Option<String>,
    pub energy_pj: Option<BTreeMap<String, f64>>,
    pub buffer: Option<RawBufferCost>,
    pub dram: Option<RawDramCost>,
    pub area_um2: Option<BTreeMap<String, f64>>,
    /// Named PE register files (a design's own, e.g. FLAT's 4 × 64-bit one).
    pub register_files: Option<BTreeMap<String, RawRegisterFile>>,
    /// Static energy per cycle of one instance of a component (`mac`, `exp`, … as in
    /// `area_um2`), spent whether busy or not (the buffer's is in `buffer.sram`).
    pub leakage_pj_per_cycle: Option<BTreeMap<String, f64>>,
}

/// One PE register file: energy per value read or written, and its area.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegisterFile {
    pub read_pj: Option<f64>,
    pub write_pj: Option<f64>,
    pub area_um2: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBufferCost {
    pub access_bits: Option<i64>,
    /// The SRAM characterised at two or more capacities.
    pub sram: Option<Vec<sram::RawSram>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDramCost {
    pub access_bits: Option<i64>,
    pub access_pj: Option<f64>,
}

impl RawArch {
    /// Parses the text of an architecture file.
    pub fn from_toml(text: &str) -> Result<RawArch, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::syntax(&e))
    }
}

impl RawCosts {
    /// Parses the text of a cost table.
    pub fn from_toml(text: &str) -> Result<RawCosts, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::syntax(&e))
    }
}

/// Index of a unit in [`ArchSpec::units`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitId(pub usize);

/// What a unit prices: an op kind of the IR (`mac`, `exp`, `other`, …) or one unary function of
/// its operator table by name (`tanh`, `sigmoid`, `recip`, …; [`cascade_ir::ops::UNARY`]).
///
/// A function the unit does not price by name falls back to its kind (`recip` to `div`, `tanh`
/// to `other`), so an arch file can give one cost to every function of a kind or one per
/// function. `exp` is both a kind and a function name; it is the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PointOp {
    Kind(OpKind),
    Function(UnaryOp),
}

impl PointOp {
    /// The name an arch file writes (`ops.NAME`).
    pub fn name(self) -> &'static str {
        match self {
            PointOp::Kind(k) => k.name(),
            PointOp::Function(f) => f.info().name,
        }
    }

    /// The op an arch file's `ops.NAME` names: an op kind first, else a unary function.
    pub fn from_name(name: &str) -> Option<PointOp> {
        OpKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .map(PointOp::Kind)
            .or_else(|| UnaryOp::from_name(name).map(PointOp::Function))
    }

    /// Every name an arch file may write, kinds first.
    pub fn all_names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = OpKind::ALL.iter().map(|k| k.name()).collect();
        for u in &UNARY {
            if !names.contains(&u.name) {
                names.push(u.name);
            }
        }
        names
    }

    /// The kind a function falls back to when a unit does not price it by name.
    pub fn kind(self) -> OpKind {
        match self {
            PointOp::Kind(k) => k,
            PointOp::Function(f) => f.info().kind,
        }
    }
}

impl fmt::Display for PointOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The ops one Einsum performs per point of its iteration space, as units price them: the IR's
/// op kinds ([`point_ops`]), with each unary function other than `exp` counted by name instead
/// of under its kind.
pub fn einsum_ops(cascade: &Cascade, id: EinsumId) -> BTreeMap<PointOp, u32> {
    let mut ops: BTreeMap<PointOp, u32> = point_ops(cascade, id)
        .into_iter()
        .map(|(k, n)| (PointOp::Kind(k), n))
        .collect();
    for (f, n) in point_functions(cascade, id) {
        let op = PointOp::Function(f);
        if PointOp::from_name(op.name()) != Some(op) {
            continue; // `exp`: the kind itself.
        }
        let kind = PointOp::Kind(op.kind());
        if let Some(count) = ops.get_mut(&kind) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                ops.remove(&kind);
            }
        }
        *ops.entry(op).or_default() += n;
    }
    ops
}

/// How one op runs on a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct OpImpl {
    cycles: u64,
    actions: BTreeMap<String, u64>,
    pipeline: String,
}

impl OpImpl {
    pub fn cycles(&self) -> u64 {
        self.cycles
    }
    pub fn actions(&self) -> &BTreeMap<String, u64> {
        &self.actions
    }
    /// The functional unit; ops on different functional units overlap per element.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }
}

/// A validated compute unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    name: String,
    rows: u64,
    cols: u64,
    register_words: u64,
    register_file: Option<String>,
    components: BTreeMap<String, u64>,
    ops: BTreeMap<PointOp, OpImpl>,
    gates_masked: bool,
}

impl Unit {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn rows(&self) -> u64 {
        self.rows
    }
    pub fn cols(&self) -> u64 {
        self.cols
    }
    /// PEs: at most `MAX_DIM²`, which validation guarantees.
    pub fn pes(&self) -> u64 {
        self.rows * self.cols
    }
    /// A 2D array has more than one row of PEs.
    pub fn is_2d(&self) -> bool {
        self.rows > 1
    }
    pub fn register_words(&self) -> u64 {
        self.register_words
    }
    /// The cost table's register file this unit's PEs use, if it names one.
    pub fn register_file(&self) -> Option<&str> {
        self.register_file.as_deref()
    }
    pub fn components(&self) -> &BTreeMap<String, u64> {
        &self.components
    }
    /// Whether a PE whose point is masked (absent) in a partly present tile is gated, spending
    /// no energy; it still occupies its cycle.
    pub fn gates_masked(&self) -> bool {
        self.gates_masked
    }
    /// How the unit runs an op kind, as the file gives it.
    pub fn op(&self, kind: OpKind) -> Option<&OpImpl> {
        self.ops.get(&PointOp::Kind(kind))
    }
    /// How the unit runs `op`: its own entry, or for a function the entry of its kind.
    pub fn resolve(&self, op: PointOp) -> Option<&OpImpl> {
        self.ops
            .get(&op)
            .or_else(|| self.ops.get(&PointOp::Kind(op.kind())))
    }
    /// Every op the file prices, by kind or by function.
    pub fn ops(&self) -> &BTreeMap<PointOp, OpImpl> {
        &self.ops
    }

    /// Cycles per iteration-space point for the given op counts, or the first unsupported op.
    /// Ops on the same functional unit add up; different functional units overlap, so the
    /// slowest functional unit sets the throughput.
    pub fn cycles_per_point(&self, ops: &BTreeMap<PointOp, u32>) -> Result<u64, PointOp> {
        let mut per_pipe: BTreeMap<&str, u64> = BTreeMap::new();
        for (&op, &count) in ops {
            let imp = self.resolve(op).ok_or(op)?;
            let slot = per_pipe.entry(imp.pipeline.as_str()).or_default();
            *slot = slot.saturating_add(imp.cycles.saturating_mul(u64::from(count)));
        }
        Ok(per_pipe.values().copied().max().unwrap_or(0))
    }
}

/// Whether Einsums share one pipelined phase or run as phases through DRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fusion {
    Fused,
    None,
}

/// Energy and area prices.
#[derive(Debug, Clone, PartialEq)]
pub struct CostTable {
    name: String,
    energy_pj: BTreeMap<String, f64>,
    buffer_access_bits: u64,
    buffer_sram: sram::SramTable,
    dram_access_bits: u64,
    dram_access_pj: f64,
    area_um2: BTreeMap<String, f64>,
    register_files: BTreeMap<String, RegisterFile>,
    leakage_pj_per_cycle: BTreeMap<String, f64>,
}

/// A validated PE register file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegisterFile {
    pub read_pj: f64,
    pub write_pj: f64,
    pub area_um2: f64,
}

impl CostTable {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Energy of one action (`mac`, `register_read`, …).
    pub fn energy_pj(&self, action: &str) -> Option<f64> {
        self.energy_pj.get(action).copied()
    }
    pub fn area_um2(&self, component: &str) -> Option<f64> {
        self.area_um2.get(component).copied()
    }
    /// Read and write energy per word for a buffer of `capacity` bytes: one row access of
    /// `access_bits` moves that many words, so each word pays its share of the row.
    pub fn buffer_word_pj(&self, capacity_bytes: u64, word_bits: u64) -> (f64, f64) {
        let words_per_access = (self.buffer_access_bits / word_bits).max(1) as f64;
        let s = self.buffer_sram.at(capacity_bytes);
        (s.read_pj / words_per_access, s.write_pj / words_per_access)
    }
    /// Buffer area for `capacity` bytes.
    pub fn buffer_area_mm2(&self, capacity_bytes: u64) -> f64 {
        self.buffer_sram.at(capacity_bytes).area_mm2
    }
    /// The buffer's static energy per cycle for `capacity` bytes.
    pub fn buffer_leak_pj_per_cycle(&self, capacity_bytes: u64) -> f64 {
        self.buffer_sram.at(capacity_bytes).leak_pj_per_cycle
    }
    /// The SRAM characterisations the buffer's costs come from.
    pub fn buffer_sram(&self) -> &sram::SramTable {
        &self.buffer_sram
    }
    pub fn dram_word_pj(&self, word_bits: u64) -> f64 {
        self.dram_access_pj / (self.dram_access_bits / word_bits).max(1) as f64
    }
    /// A named register file; validation guarantees every unit's exists.
    pub fn register_file(&self, name: &str) -> Option<RegisterFile> {
        self.register_files.get(name).copied()
    }
    /// Static energy per cycle of one `component` (or of the global buffer, `buffer`); 0 when
    /// the table gives none.
    pub fn leakage_pj_per_cycle(&self, component: &str) -> f64 {
        self.leakage_pj_per_cycle
            .get(component)
            .copied()
            .unwrap_or(0.0)
    }
}

/// A validated architecture with its cost table.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchSpec {
    name: String,
    cascade: String,
    clock_hz: f64,
    word_bits: u64,
    units: Vec<Unit>,
    buffer_bytes: u64,
    dram_bytes_per_s: f64,
    tile_unit: UnitId,
    row_unit: UnitId,
    explicit: BTreeMap<String, UnitId>,
    fusion: Fusion,
    interleave: bool,
    handoff: Handoff,
    costs: CostTable,
}

/// How a tile passes between units within a pass (`[pipeline] handoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Over a direct link between the arrays: no buffer access.
    Link,
    /// Through the global buffer: written once, read by each reader, and held there meanwhile.
    Buffer,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl ArchSpec {
    /// Validates an architecture against its cost table, returning every problem found.
    pub fn new(raw: RawArch, costs: RawCosts) -> Result<ArchSpec, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let costs = check_costs(costs, &mut errs);
        let name = required(raw.name, "name", "add `name = \"my-arch\"`", &mut errs);
        let cascade = required(
            raw.cascade,
            "cascade",
            "name the library cascade it runs, e.g. `cascade = \"attention_1pass\"`",
            &mut errs,
        );
        if let (Some(want), Some(table)) = (&raw.costs, &costs)
            && want != &table.name
        {
            errs.push(ConfigError::field(
                "costs",
                format!("names cost table `{want}` but `{}` was given", table.name),
            ));
        }
        let clock_mhz = positive_f64(
            raw.clock_mhz,
            "clock_mhz",
            "e.g. `clock_mhz = 940.0`",
            &mut errs,
        );
        let clock_mhz = at_most_f64(clock_mhz, MAX_CLOCK_MHZ, "clock_mhz", "MHz", &mut errs);
        let word_bits = positive_int(
            raw.word_bits,
            "word_bits",
            "e.g. `word_bits = 16`",
            &mut errs,
        );
        let word_bits = at_most(word_bits, 1024, "word_bits", &mut errs);
        if let Some(bits) = word_bits
            && bits % 8 != 0
        {
            errs.push(ConfigError::field(
                "word_bits",
                format!("is {bits}; use a whole number of bytes (8, 16, 32)"),
            ));
        }
        let (units, declared) = check_units(raw.units, costs.as_ref(), &mut errs);
        let buffer_bytes = check_buffer(raw.buffer, &mut errs);
        let bandwidth = check_dram(raw.dram, &mut errs);
        let (tile_unit, row_unit, explicit) =
            check_bindings(raw.binding, &units, &declared, &mut errs);
        let handoff = check_handoff(raw.pipeline.as_ref(), &mut errs);
        let (fusion, interleave) = check_pipeline(raw.pipeline, &mut errs);
        match (
            name,
            cascade,
            clock_mhz,
            word_bits,
            buffer_bytes,
            bandwidth,
            tile_unit,
            row_unit,
            fusion,
            interleave,
            costs,
        ) {
            (
                Some(name),
                Some(cascade),
                Some(clock_mhz),
                Some(word_bits),
                Some(buffer_bytes),
                Some(bandwidth),
                Some(tile_unit),
                Some(row_unit),
                Some(fusion),
                Some(interleave),
                Some(costs),
            ) if errs.is_empty() => Ok(ArchSpec {
                name,
                cascade,
                clock_hz: clock_mhz * 1e6,
                word_bits,
                units,
                buffer_bytes,
                dram_bytes_per_s: bandwidth * GIB,
                tile_unit,
                row_unit,
                explicit,
                fusion,
                interleave,
                handoff,
                costs,
            }),
            _ => Err(errs),
        }
    }

    /// Checks the explicit bindings against a cascade: every named Einsum exists and its unit
    /// supports all of its ops.
    pub fn check_binding(&self, cascade: &Cascade) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        for (einsum, &unit) in &self.explicit {
            let field = format!("binding.einsums.{einsum}");
            let found = cascade.einsum_ids().find(|&id| {
                let e = cascade.einsum(id);
                e.section == Section::Body && cascade.tensor(e.output.tensor).name == *einsum
            });
            let Some(id) = found else {
                errs.push(ConfigError::field(
                    field,
                    format!("cascade `{}` has no Einsum writing `{einsum}`; remove the line or fix the name", cascade.name),
                ));
                continue;
            };
            let unit = self.unit(unit);
            if let Err(op) = unit.cycles_per_point(&einsum_ops(cascade, id)) {
                errs.push(ConfigError::field(
                    field,
                    format!(
                        "binds `{einsum}` to `{}`, which has no `{op}` op; bind it to a unit with `ops.{op}` or add the op to `units.{}.ops`",
                        unit.name, unit.name
                    ),
                ));
            }
        }
        errs
    }

    /// A copy with a square `dim × dim` tile unit, a `dim`-wide row unit and another buffer.
    /// Used by design-space sweeps; the per-PE description is kept. A side above [`MAX_DIM`]
    /// or a buffer outside `1..=MAX_BUFFER` bytes is refused, as it is in a file.
    pub fn resized(&self, dim: u64, buffer_bytes: u64) -> Result<ArchSpec, ConfigError> {
        if !(1..=MAX_DIM).contains(&dim) {
            return Err(ConfigError::field(
                "pe_dim",
                format!("is {dim}; the model accepts array sides from 1 to {MAX_DIM}"),
            ));
        }
        if !(1..=MAX_BUFFER).contains(&buffer_bytes) {
            return Err(ConfigError::field(
                "buffer.capacity_bytes",
                format!("is {buffer_bytes}; the model accepts 1 to {MAX_BUFFER} bytes"),
            ));
        }
        let mut arch = self.clone();
        let (tile, row) = (self.tile_unit.0, self.row_unit.0);
        let unit = &mut arch.units[tile];
        if unit.rows > 1 {
            unit.rows = dim;
        }
        unit.cols = dim;
        if row != tile {
            arch.units[row].cols = dim;
        }
        arch.buffer_bytes = buffer_bytes;
        arch.name = format!("{}-{dim}x{dim}", self.name);
        Ok(arch)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// The library cascade this architecture runs by default.
    pub fn cascade(&self) -> &str {
        &self.cascade
    }
    pub fn clock_hz(&self) -> f64 {
        self.clock_hz
    }
    pub fn word_bits(&self) -> u64 {
        self.word_bits
    }
    pub fn word_bytes(&self) -> u64 {
        self.word_bits / 8
    }
    pub fn units(&self) -> &[Unit] {
        &self.units
    }
    pub fn unit(&self, id: UnitId) -> &Unit {
        &self.units[id.0]
    }
    pub fn unit_ids(&self) -> impl Iterator<Item = UnitId> {
        (0..self.units.len()).map(UnitId)
    }
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer_bytes
    }
    pub fn buffer_words(&self) -> u64 {
        self.buffer_bytes / self.word_bytes()
    }
    pub fn dram_bytes_per_s(&self) -> f64 {
        self.dram_bytes_per_s
    }
    /// DRAM bytes per clock cycle.
    pub fn dram_bytes_per_cycle(&self) -> f64 {
        self.dram_bytes_per_s / self.clock_hz
    }
    pub fn tile_unit(&self) -> UnitId {
        self.tile_unit
    }
    pub fn row_unit(&self) -> UnitId {
        self.row_unit
    }
    /// Explicit bindings by output tensor name.
    pub fn explicit_binding(&self, einsum: &str) -> Option<UnitId> {
        self.explicit.get(einsum).copied()
    }
    pub fn fusion(&self) -> Fusion {
        self.fusion
    }
    pub fn interleave(&self) -> bool {
        self.interleave
    }
    pub fn handoff(&self) -> Handoff {
        self.handoff
    }
    pub fn costs(&self) -> &CostTable {
        &self.costs
    }
    /// Energy per value read and written in a PE register of `unit`: its register file's, or
    /// the table's `register_read`/`register_write`.
    pub fn register_pj(&self, unit: UnitId) -> (f64, f64) {
        let t = &self.costs;
        match self
            .unit(unit)
            .register_file()
            .and_then(|f| t.register_file(f))
        {
            Some(f) => (f.read_pj, f.write_pj),
            None => (
                t.energy_pj("register_read").unwrap_or(0.0),
                t.energy_pj("register_write").unwrap_or(0.0),
            ),
        }
    }
    /// Area of one PE's register file in µm²: the named file's, or words × `register_word`.
    pub fn register_area_um2(&self, unit: UnitId) -> f64 {
        let t = &self.costs;
        let u = self.unit(unit);
        match u.register_file().and_then(|f| t.register_file(f)) {
            Some(f) => f.area_um2,
            None => u.register_words() as f64 * t.area_um2("register_word").unwrap_or(0.0),
        }
    }
    /// Static energy per cycle, by component: each unit's PEs × their components' leakage
    /// (`array2d`), then the global buffer's (`global buffer`); components the table gives no
    /// leakage for are left out.
    pub fn leakage_pj_per_cycle(&self) -> Vec<(String, f64)> {
        let t = &self.costs;
        let mut out: Vec<(String, f64)> = self
            .unit_ids()
            .map(|id| {
                let u = self.unit(id);
                let per_pe: f64 = u
                    .components()
                    .iter()
                    .map(|(c, &k)| k as f64 * t.leakage_pj_per_cycle(c))
                    .sum();
                (u.name().to_string(), per_pe * u.pes() as f64)
            })
            .collect();
        out.push((
            "global buffer".into(),
            t.buffer_leak_pj_per_cycle(self.buffer_bytes()),
        ));
        out.retain(|&(_, pj)| pj > 0.0);
        out
    }
}

impl fmt::Display for ArchSpec {
    /// A stable one-screen summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "arch {} (cascade {}, costs {})",
            self.name, self.cascade, self.costs.name
        )?;
        writeln!(
            f,
            "  clock {} MHz, {}-bit words, buffer {} B, DRAM {:.1} GiB/s",
            self.clock_hz / 1e6,
            self.word_bits,
            self.buffer_bytes,
            self.dram_bytes_per_s / GIB
        )?;
        for (i, u) in self.units.iter().enumerate() {
            let ops: Vec<String> = u
                .ops
                .iter()
                .map(|(k, o)| {
                    let pipe = if o.pipeline == "alu" {
                        String::new()
                    } else {
                        format!("@{}", o.pipeline)
                    };
                    format!("{k}:{}{pipe}", o.cycles)
                })
                .collect();
            let role = match (UnitId(i) == self.tile_unit, UnitId(i) == self.row_unit) {
                (true, true) => " [tile, row]",
                (true, false) => " [tile]",
                (false, true) => " [row]",
                _ => "",
            };
            writeln!(
                f,
                "  unit {} {}x{}{role}: {}",
                u.name,
                u.rows,
                u.cols,
                ops.join(" ")
            )?;
        }
        write!(
            f,
            "  pipeline {}, interleave {}{}",
            match self.fusion {
                Fusion::Fused => "fused",
                Fusion::None => "none",
            },
            self.interleave,
            match self.handoff {
                Handoff::Link => "",
                Handoff::Buffer => ", handoff through the buffer",
            }
        )
    }
}

fn required<T>(value: Option<T>, field: &str, fix: &str, errs: &mut Vec<ConfigError>) -> Option<T> {
    if value.is_none() {
        errs.push(ConfigError::field(field, format!("is missing; {fix}")));
    }
    value
}

fn positive_int(
    value: Option<i64>,
    field: &str,
    fix: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<u64> {
    match value {
        None => {
            errs.push(ConfigError::field(field, format!("is missing; {fix}")));
            None
        }
        Some(v) if v <= 0 => {
            errs.push(ConfigError::field(
                field,
                format!("is {v}; it must be at least 1 ({fix})"),
            ));
            None
        }
        Some(v) if v as u64 > MAX_BUFFER => {
            errs.push(ConfigError::field(
                field,
                format!("is {v}; the model accepts at most {MAX_BUFFER}"),
            ));
            None
        }
        Some(v) => Some(v as u64),
    }
}

/// Largest array side the model accepts (so PE counts and products stay countable).
pub const MAX_DIM: u64 = 1 << 16;
/// Largest cycle or action count per op, and register-file size.
const MAX_COUNT: u64 = 1 << 20;
/// Largest integer field otherwise (buffer bytes and the like: 1 PiB).
const MAX_BUFFER: u64 = 1 << 50;

fn at_most(value: Option<u64>, max: u64, field: &str, errs: &mut Vec<ConfigError>) -> Option<u64> {
    match value {
        Some(v) if v > max => {
            errs.push(ConfigError::field(
                field,
                format!("is {v}; the model accepts at most {max}"),
            ));
            None
        }
        v => v,
    }
}

fn positive_f64(
    value: Option<f64>,
    field: &str,
    fix: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<f64> {
    match value {
        None => {
            errs.push(ConfigError::field(field, format!("is missing; {fix}")));
            None
        }
        Some(v) if !(v.is_finite() && v > 0.0) => {
            errs.push(ConfigError::field(
                field,
                format!("is {}; it must be a positive number ({fix})", show(v)),
            ));
            None
        }
        Some(v) => Some(v),
    }
}

/// Physical ranges of the real-valued fields: beyond them a file describes no hardware, and
/// products of them with counts could overflow to infinity.
const MAX_CLOCK_MHZ: f64 = 1e5;
const MAX_BANDWIDTH_GIB_S: f64 = 1048576.0;
/// Energy of one action or access, in pJ (a DRAM access is a few hundred).
const MAX_ENERGY_PJ: f64 = 1e6;
/// Area of one component in µm² (1000 mm²), and of the reference buffer in mm².
const MAX_AREA_UM2: f64 = 1e9;
const MAX_AREA_MM2: f64 = 1e6;

/// A number as a message shows it: exponent notation when it is huge or tiny.
fn show(v: f64) -> String {
    if v != 0.0 && !(1e-4..1e7).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn at_most_f64(
    value: Option<f64>,
    max: f64,
    field: &str,
    unit: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<f64> {
    match value {
        Some(v) if v > max => {
            errs.push(ConfigError::field(
                field,
                format!(
                    "is {} {unit}; the model accepts at most {} {unit}",
                    show(v),
                    show(max)
                ),
            ));
            None
        }
        v => v,
    }
}

fn non_negative_f64(value: f64, max: f64, field: &str, errs: &mut Vec<ConfigError>) -> bool {
    let ok = value.is_finite() && (0.0..=max).contains(&value);
    if !ok {
        errs.push(ConfigError::field(
            field,
            format!(
                "is {}; it must be a number from 0 to {}",
                show(value),
                show(max)
            ),
        ));
    }
    ok
}

/// Every unit under `[units.NAME]` that validates, and the names declared (a declared unit
/// with errors of its own is not reported again where a binding names it).
fn check_units(
    raw_units: Option<BTreeMap<String, RawUnit>>,
    costs: Option<&CostTable>,
    errs: &mut Vec<ConfigError>,
) -> (Vec<Unit>, Vec<String>) {
    let mut units = Vec::new();
    let declared: Vec<String> = raw_units.iter().flat_map(|u| u.keys().cloned()).collect();
    match raw_units {
        None => errs.push(ConfigError::field(
            "units",
            "is missing; describe at least one unit under `[units.NAME]`",
        )),
        Some(raw_units) if raw_units.is_empty() => errs.push(ConfigError::field(
            "units",
            "is empty; describe at least one unit under `[units.NAME]`",
        )),
        Some(raw_units) => {
            for (unit_name, unit) in raw_units {
                if let Some(u) = check_unit(&unit_name, unit, costs, errs) {
                    units.push(u);
                }
            }
        }
    }
    (units, declared)
}

/// `[buffer] capacity_bytes`.
fn check_buffer(raw: Option<RawBuffer>, errs: &mut Vec<ConfigError>) -> Option<u64> {
    match raw {
        None => {
            errs.push(ConfigError::field(
                "buffer",
                "is missing; add `[buffer]` with `capacity_bytes`",
            ));
            None
        }
        Some(b) => positive_int(
            b.capacity_bytes,
            "buffer.capacity_bytes",
            "e.g. 16777216 for 16 MiB",
            errs,
        ),
    }
}

/// `[dram] bandwidth_gib_s`, finite, positive and physical.
fn check_dram(raw: Option<RawDram>, errs: &mut Vec<ConfigError>) -> Option<f64> {
    match raw {
        None => {
            errs.push(ConfigError::field(
                "dram",
                "is missing; add `[dram]` with `bandwidth_gib_s`",
            ));
            None
        }
        Some(d) => {
            let bw = positive_f64(
                d.bandwidth_gib_s,
                "dram.bandwidth_gib_s",
                "e.g. `bandwidth_gib_s = 400.0`",
                errs,
            );
            at_most_f64(
                bw,
                MAX_BANDWIDTH_GIB_S,
                "dram.bandwidth_gib_s",
                "GiB/s",
                errs,
            )
        }
    }
}

/// `[binding]`: the tile and row units and the explicit bindings by Einsum, each naming a
/// declared unit.
fn check_bindings(
    raw: Option<RawBinding>,
    units: &[Unit],
    declared: &[String],
    errs: &mut Vec<ConfigError>,
) -> (Option<UnitId>, Option<UnitId>, BTreeMap<String, UnitId>) {
    let find_unit = |field: &str, unit: &str, errs: &mut Vec<ConfigError>| -> Option<UnitId> {
        let found = units.iter().position(|u| u.name == unit).map(UnitId);
        // A declared unit with errors of its own has been reported already.
        if found.is_none() && !declared.iter().any(|d| d == unit) {
            let known: Vec<&str> = declared.iter().map(String::as_str).collect();
            errs.push(ConfigError::field(
                field,
                format!(
                    "names unit `{unit}`, which is not declared; declared units: {}",
                    known.join(", ")
                ),
            ));
        }
        found
    };
    let (mut tile_unit, mut row_unit, mut explicit) = (None, None, BTreeMap::new());
    match raw {
        None => errs.push(ConfigError::field(
            "binding",
            "is missing; add `[binding]` with `tile = \"UNIT\"` and `row = \"UNIT\"`",
        )),
        Some(b) => {
            match b.tile {
                Some(t) => tile_unit = find_unit("binding.tile", &t, errs),
                None => errs.push(ConfigError::field(
                    "binding.tile",
                    "is missing; name the unit for tile Einsums",
                )),
            }
            match b.row {
                Some(r) => row_unit = find_unit("binding.row", &r, errs),
                None => errs.push(ConfigError::field(
                    "binding.row",
                    "is missing; name the unit for per-query Einsums",
                )),
            }
            for (einsum, unit) in b.einsums.unwrap_or_default() {
                if let Some(id) = find_unit(&format!("binding.einsums.{einsum}"), &unit, errs) {
                    explicit.insert(einsum, id);
                }
            }
        }
    }
    (tile_unit, row_unit, explicit)
}

/// `[pipeline] handoff`: `link` when absent.
fn check_handoff(raw: Option<&RawPipeline>, errs: &mut Vec<ConfigError>) -> Handoff {
    match raw.and_then(|p| p.handoff.as_deref()) {
        None | Some("link") => Handoff::Link,
        Some("buffer") => Handoff::Buffer,
        Some(other) => {
            errs.push(ConfigError::field(
                "pipeline.handoff",
                format!(
                    "is `{other}`; use `link` (units wired to each other) or `buffer` (tiles pass through the global buffer)"
                ),
            ));
            Handoff::Link
        }
    }
}

/// `[pipeline]`: fusion (`fused` or `none`) and interleaving.
fn check_pipeline(
    raw: Option<RawPipeline>,
    errs: &mut Vec<ConfigError>,
) -> (Option<Fusion>, Option<bool>) {
    let (mut fusion, mut interleave) = (None, None);
    match raw {
        None => errs.push(ConfigError::field(
            "pipeline",
            "is missing; add `[pipeline]` with `fusion` and `interleave`",
        )),
        Some(p) => {
            fusion = match p.fusion.as_deref() {
                Some("fused") => Some(Fusion::Fused),
                Some("none") => Some(Fusion::None),
                Some(other) => {
                    errs.push(ConfigError::field(
                        "pipeline.fusion",
                        format!("is `{other}`; use `fused` or `none`"),
                    ));
                    None
                }
                None => {
                    errs.push(ConfigError::field(
                        "pipeline.fusion",
                        "is missing; use `fused` or `none`",
                    ));
                    None
                }
            };
            interleave = p.interleave;
            if interleave.is_none() {
                errs.push(ConfigError::field(
                    "pipeline.interleave",
                    "is missing; use `true` or `false`",
                ));
            }
        }
    }
    (fusion, interleave)
}

fn check_unit(
    name: &str,
    raw: RawUnit,
    costs: Option<&CostTable>,
    errs: &mut Vec<ConfigError>,
) -> Option<Unit> {
    let at = |f: &str| format!("units.{name}.{f}");
    let before = errs.len();
    let rows = positive_int(raw.rows, &at("rows"), "1 for a 1D array", errs);
    let rows = at_most(rows, MAX_DIM, &at("rows"), errs);
    let cols = positive_int(raw.cols, &at("cols"), "the number of PEs per row", errs);
    let cols = at_most(cols, MAX_DIM, &at("cols"), errs);
    let register_words = match raw.register_words {
        Some(v) if !(0..=MAX_COUNT as i64).contains(&v) => {
            errs.push(ConfigError::field(
                at("register_words"),
                format!("is {v}; it must be between 0 and {MAX_COUNT}"),
            ));
            0
        }
        Some(v) => v as u64,
        None => {
            errs.push(ConfigError::field(
                at("register_words"),
                "is missing; give the PE register-file size in words",
            ));
            0
        }
    };
    let mut components = BTreeMap::new();
    for (c, n) in raw.components.unwrap_or_default() {
        let field = at(&format!("components.{c}"));
        if !(0..=MAX_COUNT as i64).contains(&n) {
            errs.push(ConfigError::field(
                &field,
                format!("is {n}; a count must be between 0 and {MAX_COUNT}"),
            ));
            continue;
        }
        if let Some(t) = costs
            && t.area_um2(&c).is_none()
        {
            let known: Vec<&str> = t.area_um2.keys().map(String::as_str).collect();
            errs.push(ConfigError::field(
                &field,
                format!(
                    "`{c}` has no area in cost table `{}`; known components: {}",
                    t.name,
                    known.join(", ")
                ),
            ));
        }
        components.insert(c, n as u64);
    }
    let mut ops = BTreeMap::new();
    let raw_ops = raw.ops.unwrap_or_default();
    if raw_ops.is_empty() {
        errs.push(ConfigError::field(at("ops"), "is empty; list the op kinds the PEs execute, e.g. `ops.mac = { cycles = 1, actions = { mac = 1 } }`"));
    }
    for (op_name, op) in raw_ops {
        let field = at(&format!("ops.{op_name}"));
        let Some(kind) = PointOp::from_name(&op_name) else {
            errs.push(ConfigError::field(
                &field,
                format!(
                    "`{op_name}` is neither an op kind nor a unary function of the IR; use one of {}",
                    PointOp::all_names().join(", ")
                ),
            ));
            continue;
        };
        let cycles = positive_int(
            op.cycles,
            &format!("{field}.cycles"),
            "cycles per element",
            errs,
        );
        let cycles = at_most(cycles, MAX_COUNT, &format!("{field}.cycles"), errs);
        let mut actions = BTreeMap::new();
        for (action, n) in op.actions.unwrap_or_default() {
            let afield = format!("{field}.actions.{action}");
            if !(0..=MAX_COUNT as i64).contains(&n) {
                errs.push(ConfigError::field(
                    &afield,
                    format!("is {n}; a count must be between 0 and {MAX_COUNT}"),
                ));
                continue;
            }
            if let Some(t) = costs
                && t.energy_pj(&action).is_none()
            {
                let known: Vec<&str> = t.energy_pj.keys().map(String::as_str).collect();
                errs.push(ConfigError::field(
                    &afield,
                    format!(
                        "`{action}` has no energy in cost table `{}`; known actions: {}",
                        t.name,
                        known.join(", ")
                    ),
                ));
            }
            actions.insert(action, n as u64);
        }
        if let Some(cycles) = cycles {
            ops.insert(
                kind,
                OpImpl {
                    cycles,
                    actions,
                    pipeline: op.pipeline.unwrap_or_else(|| "alu".into()),
                },
            );
        }
    }
    if let (Some(file), Some(t)) = (&raw.register_file, costs)
        && t.register_file(file).is_none()
    {
        let known: Vec<&str> = t.register_files.keys().map(String::as_str).collect();
        errs.push(ConfigError::field(
            at("register_file"),
            format!(
                "`{file}` is not a register file of cost table `{}`; known: {}",
                t.name,
                if known.is_empty() {
                    "none (add `[register_files.{file}]` to the table, or drop the field for the table's `register_read`/`register_write`)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    (errs.len() == before).then(|| Unit {
        name: name.to_string(),
        rows: rows.unwrap_or(1),
        cols: cols.unwrap_or(1),
        register_words,
        register_file: raw.register_file,
        components,
        ops,
        gates_masked: raw.gates_masked.unwrap_or(false),
    })
}

fn check_costs(raw: RawCosts, errs: &mut Vec<ConfigError>) -> Option<CostTable> {
    let before = errs.len();
    let name = required(raw.name, "costs: name", "add `name = \"my-table\"`", errs);
    let energy_pj = raw.energy_pj.unwrap_or_default();
    for (k, &v) in &energy_pj {
        non_negative_f64(v, MAX_ENERGY_PJ, &format!("costs: energy_pj.{k}"), errs);
    }
    for needed in ["register_read", "register_write"] {
        if !energy_pj.contains_key(needed) {
            errs.push(ConfigError::field(
                format!("costs: energy_pj.{needed}"),
                "is missing; give the energy per access in pJ",
            ));
        }
    }
    let area_um2 = raw.area_um2.unwrap_or_default();
    for (k, &v) in &area_um2 {
        non_negative_f64(v, MAX_AREA_UM2, &format!("costs: area_um2.{k}"), errs);
    }
    if !area_um2.contains_key("register_word") {
        errs.push(ConfigError::field(
            "costs: area_um2.register_word",
            "is missing; give the area of one register word in µm²",
        ));
    }
    let Some(b) = raw.buffer else {
        errs.push(ConfigError::field(
            "costs: buffer",
            "is missing; add `[buffer]` with access energies",
        ));
        return None;
    };
    let Some(d) = raw.dram else {
        errs.push(ConfigError::field(
            "costs: dram",
            "is missing; add `[dram]` with `access_bits` and `access_pj`",
        ));
        return None;
    };
    let bits = |v: Option<i64>, field: &str, errs: &mut Vec<ConfigError>| {
        let v = positive_int(v, field, "e.g. 64", errs);
        at_most(v, 1 << 16, field, errs)
    };
    let energy = |v: Option<f64>, field: &str, errs: &mut Vec<ConfigError>| {
        let v = positive_f64(v, field, "pJ per access", errs);
        at_most_f64(v, MAX_ENERGY_PJ, field, "pJ", errs)
    };
    let buffer_access_bits = bits(b.access_bits, "costs: buffer.access_bits", errs);
    let buffer_sram = sram::check_sram_table(b.sram, errs);
    let dram_access_bits = bits(d.access_bits, "costs: dram.access_bits", errs);
    let dram_access_pj = energy(d.access_pj, "costs: dram.access_pj", errs);
    let register_files = check_register_files(raw.register_files.unwrap_or_default(), errs);
    let leakage_pj_per_cycle = raw.leakage_pj_per_cycle.unwrap_or_default();
    for (k, &v) in &leakage_pj_per_cycle {
        let field = format!("costs: leakage_pj_per_cycle.{k}");
        non_negative_f64(v, MAX_ENERGY_PJ, &field, errs);
        if k == "buffer" {
            errs.push(ConfigError::field(
                field,
                "is the buffer's, which depends on its size: give `leak_pj_per_cycle` with each \
                 size of `buffer.sram` instead",
            ));
        } else if k == "register_word" || !area_um2.contains_key(k) {
            let known: Vec<&str> = area_um2
                .keys()
                .map(String::as_str)
                .filter(|&c| c != "register_word")
                .collect();
            errs.push(ConfigError::field(
                field,
                format!(
                    "`{k}` is not a component of `area_um2` ({})",
                    known.join(", ")
                ),
            ));
        }
    }
    if errs.len() != before {
        return None;
    }
    Some(CostTable {
        name: name?,
        energy_pj,
        buffer_access_bits: buffer_access_bits?,
        buffer_sram: buffer_sram?,
        dram_access_bits: dram_access_bits?,
        dram_access_pj: dram_access_pj?,
        area_um2,
        register_files,
        leakage_pj_per_cycle,
    })
}

fn check_register_files(
    raw: BTreeMap<String, RawRegisterFile>,
    errs: &mut Vec<ConfigError>,
) -> BTreeMap<String, RegisterFile> {
    let mut files = BTreeMap::new();
    for (name, f) in raw {
        let at = |x: &str| format!("costs: register_files.{name}.{x}");
        let pj = |v: Option<f64>, x: &str, errs: &mut Vec<ConfigError>| {
            let v = positive_f64(v, &at(x), "pJ per value", errs);
            at_most_f64(v, MAX_ENERGY_PJ, &at(x), "pJ", errs)
        };
        let read_pj = pj(f.read_pj, "read_pj", errs);
        let write_pj = pj(f.write_pj, "write_pj", errs);
        let area = positive_f64(f.area_um2, &at("area_um2"), "the whole file's µm²", errs);
        let area = at_most_f64(area, MAX_AREA_UM2, &at("area_um2"), "µm²", errs);
        if let (Some(read_pj), Some(write_pj), Some(area_um2)) = (read_pj, write_pj, area) {
            files.insert(
                name,
                RegisterFile {
                    read_pj,
                    write_pj,
                    area_um2,
                },
            );
        }
    }
    files
}
