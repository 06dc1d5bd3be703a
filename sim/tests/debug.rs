//! temp
use cascade_scheduler::{shipped, schedule, Outcome};
#[test]
fn dump() {
    let w = shipped::load_workloads().unwrap();
    for a in ["fusemax", "flat", "unfused", "fusemax-cascade-on-flat", "fusemax-no-interleave"] {
        let arch = shipped::load_arch(a).unwrap().unwrap();
        let src = cascade_ir::library::source(arch.cascade()).unwrap();
        let c = cascade_ir::dsl::parse(src, "x").unwrap().cascade;
        for m in w.models() { for &s in w.seq() {
            let p = w.problem(m, s);
            match schedule(&c, &arch, &p).unwrap() {
                Outcome::Scheduled(sch) => {
                    let r = cascade_sim::simulate(&sch, &arch);
                    if s == 1024 && m.name()=="bert" { println!("{:#?}", sch.phases.iter().map(|p| (&p.partition, &p.placements, &p.traffic, &p.epochs, &p.loop_order, p.spill, p.stall_per_tile)).collect::<Vec<_>>());
                      for e in &sch.einsums { println!("  {} unit{} {:?} pass{} stage{} cyc{} pts{}", e.name, e.unit.0, e.level, e.pass, e.stage, e.cycles, e.points); } }
                    println!("{a} {} {s}: lat {:.4e} s, util {:?}, mem {:.3e} cyc, E {:.3e} pJ (c {:.2e} r {:.2e} b {:.2e} d {:.2e}) macshare {:.3} spill {:.3} area {:.1} e2e {:.4e}",
                      m.name(), r.latency_s, r.units.iter().map(|u| format!("{}={:.3}", u.name, u.utilisation)).collect::<Vec<_>>(), r.memory_cycles, r.energy.total_pj(), r.energy.compute_pj, r.energy.register_pj, r.energy.buffer_pj, r.energy.dram_pj, r.tile_mac_energy_share, r.spill, r.area_mm2, r.end_to_end.latency_cycles);
                }
                Outcome::Infeasible(i) => println!("{a} {} {s}: infeasible {i}", m.name()),
            }
        }}
    }
}
