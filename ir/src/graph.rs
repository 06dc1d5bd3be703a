//! The dependency DAG of a cascade's Einsums (petgraph): producer → consumer, one edge per
//! tensor read, with edges through iterative state marked so cycle checks can skip them.
//!
//! `RM[m1+1,p] = max(RM[m1,p], LM[m1,p])` reads the state its own previous iteration wrote:
//! that self-edge is *carried* along `M1` and is not a cycle. `SLN[...] = exp(BQK - RM[m1+1,p])`
//! reads the state written in the same iteration: a plain edge.

use petgraph::Direction;
use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::ast::*;

/// What flows along an edge of the dependency graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dep {
    /// The tensor the producer writes and the consumer reads.
    pub tensor: TensorId,
    /// `Some(r)` when the consumer reads state an earlier iteration of rank `r` wrote (the
    /// producer writes `T[r+k]`, the consumer reads `T[r+j]` with `j < k`).
    pub carried: Option<RankId>,
}

/// Einsums as nodes (weight: the [`EinsumId`]) and [`Dep`] edges from producer to consumer.
/// A consumer reading a tensor with several writers (init and update of a state) gets an
/// edge from each; a consumer reading several tensors of one producer gets one edge per read.
#[derive(Debug, Clone)]
pub struct DependencyGraph {
    pub graph: DiGraph<EinsumId, Dep>,
}

/// Builds the dependency graph of a cascade whose ids are valid (see `verify`).
pub fn dependency_graph(c: &Cascade) -> DependencyGraph {
    let mut graph = DiGraph::with_capacity(c.einsums.len(), c.einsums.len() * 2);
    for id in c.einsum_ids() {
        graph.add_node(id);
    }
    let writers = c.writers();
    for consumer in c.einsum_ids() {
        for read in c.accesses(c.einsum(consumer).value) {
            for &producer in writers.of_tensor(read.tensor) {
                let write = &c.einsum(producer).output;
                let dep = Dep {
                    tensor: read.tensor,
                    carried: carried_rank(write, read),
                };
                graph.add_edge(node(producer), node(consumer), dep);
            }
        }
    }
    DependencyGraph { graph }
}

fn node(id: EinsumId) -> NodeIndex {
    NodeIndex::new(id.index())
}

/// `Some((r, k))` for an index `r + k` (`r - k` gives `-k`), `Some((r, 0))` for `r`.
pub(crate) fn offset(idx: &IndexExpr) -> Option<(RankId, i64)> {
    match idx {
        IndexExpr::Var(r) => Some((*r, 0)),
        IndexExpr::Add(a, b) => match (&**a, &**b) {
            (IndexExpr::Var(r), IndexExpr::Lit(k)) => Some((*r, *k)),
            _ => None,
        },
        IndexExpr::Sub(a, b) => match (&**a, &**b) {
            (IndexExpr::Var(r), IndexExpr::Lit(k)) => Some((*r, -*k)),
            _ => None,
        },
        _ => None,
    }
}

/// The rank along which `read` sees state from an earlier iteration than `write` produces.
pub(crate) fn carried_rank(write: &Access, read: &Access) -> Option<RankId> {
    write
        .indices
        .iter()
        .zip(&read.indices)
        .find_map(|(w, r)| match (offset(w), offset(r)) {
            (Some((wr, wk)), Some((rr, rk))) if wr == rr && wk != 0 && rk < wk => Some(wr),
            _ => None,
        })
}

impl DependencyGraph {
    /// The node of an Einsum (node indices equal Einsum ids).
    pub fn node(&self, id: EinsumId) -> NodeIndex {
        node(id)
    }

    /// The Einsums whose output `id` reads, with the edge, in edge order.
    pub fn producers(&self, id: EinsumId) -> Vec<(EinsumId, Dep)> {
        self.neighbours(id, Direction::Incoming)
    }

    /// The Einsums that read the output of `id`, with the edge, in edge order.
    pub fn consumers(&self, id: EinsumId) -> Vec<(EinsumId, Dep)> {
        self.neighbours(id, Direction::Outgoing)
    }

    fn neighbours(&self, id: EinsumId, dir: Direction) -> Vec<(EinsumId, Dep)> {
        let mut out: Vec<(EinsumId, Dep)> = self
            .graph
            .edges_directed(node(id), dir)
            .map(|e| {
                let other = if dir == Direction::Incoming {
                    e.source()
                } else {
                    e.target()
                };
                (self.graph[other], *e.weight())
            })
            .collect();
        out.sort_by_key(|(e, d)| (*e, d.tensor));
        out
    }

    /// Groups of Einsums that depend on each other without going through carried state,
    /// each sorted, in order of their first Einsum. Empty for a valid cascade. Kosaraju's
    /// algorithm walks the graph with explicit stacks, so a chain of any length is fine.
    pub fn cycles(&self) -> Vec<Vec<EinsumId>> {
        let plain = self.within_step();
        let mut cycles: Vec<Vec<EinsumId>> = kosaraju_scc(&plain)
            .into_iter()
            .filter(|scc| scc.len() > 1 || plain.contains_edge(scc[0], scc[0]))
            .map(|scc| {
                let mut ids: Vec<EinsumId> = scc.into_iter().map(|n| plain[n]).collect();
                ids.sort();
                ids
            })
            .collect();
        cycles.sort();
        cycles
    }

    /// The graph without carried edges: what one step of every iterative rank must respect.
    pub fn within_step(&self) -> DiGraph<EinsumId, Dep> {
        self.graph
            .filter_map(|_, n| Some(*n), |_, d| d.carried.is_none().then_some(*d))
    }

    /// Einsums in an order where every producer precedes its consumers (carried edges
    /// ignored), ties broken by program order; `None` when `cycles` is non-empty.
    pub fn topological_order(&self) -> Option<Vec<EinsumId>> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let plain = self.within_step();
        let mut indegree = vec![0usize; plain.node_count()];
        for e in plain.edge_references() {
            indegree[e.target().index()] += 1;
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..indegree.len())
            .filter(|n| indegree[*n] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(plain[NodeIndex::new(n)]);
            for e in plain.edges(NodeIndex::new(n)) {
                let t = e.target().index();
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push(Reverse(t));
                }
            }
        }
        (order.len() == indegree.len()).then_some(order)
    }

    /// The tensors on non-carried edges inside a group of Einsums (as `cycles` returns).
    pub fn cycle_tensors(&self, group: &[EinsumId]) -> Vec<TensorId> {
        let mut tensors: Vec<TensorId> = self
            .graph
            .edge_references()
            .filter(|e| {
                e.weight().carried.is_none()
                    && group.contains(&self.graph[e.source()])
                    && group.contains(&self.graph[e.target()])
            })
            .map(|e| e.weight().tensor)
            .collect();
        tensors.sort();
        tensors.dedup();
        tensors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dsl, library};

    fn graph_of(name: &str) -> (Cascade, DependencyGraph) {
        let src = library::source(name).unwrap();
        let c = dsl::parse(src, name).unwrap().cascade;
        let g = dependency_graph(&c);
        (c, g)
    }

    fn einsum_of(c: &Cascade, tensor: &str) -> Vec<EinsumId> {
        let t = c.tensor_by_name(tensor).unwrap();
        c.einsum_ids()
            .filter(|e| c.einsum(*e).output.tensor == t)
            .collect()
    }

    #[test]
    fn attention_3pass_is_a_chain_without_cycles() {
        let (c, g) = graph_of("attention_3pass");
        assert!(g.cycles().is_empty());
        assert_eq!(g.topological_order(), Some(c.einsum_ids().collect()));
        let sn = einsum_of(&c, "SN")[0];
        let producers: Vec<&str> = g
            .producers(sn)
            .iter()
            .map(|(_, d)| c.tensor(d.tensor).name.as_str())
            .collect();
        assert_eq!(producers, ["QK", "GM"]);
        assert_eq!(g.consumers(sn).len(), 2, "SD and A read SN");
    }

    #[test]
    fn running_max_self_edge_is_carried() {
        let (c, g) = graph_of("attention_1pass");
        assert!(g.cycles().is_empty());
        // Program order already respects every within-step dependency.
        assert_eq!(g.topological_order(), Some(c.einsum_ids().collect()));
        let rm = einsum_of(&c, "RM");
        let update = rm[1];
        let m1 = c.rank_by_name("M1").unwrap();
        let self_edge: Vec<Dep> = g
            .producers(update)
            .into_iter()
            .filter(|(p, _)| *p == update)
            .map(|(_, d)| d)
            .collect();
        assert_eq!(self_edge.len(), 1);
        assert_eq!(self_edge[0].carried, Some(m1));
        // SLN reads RM[m1+1,p]: the same iteration's state, not carried.
        let sln = einsum_of(&c, "SLN")[0];
        assert!(
            g.producers(sln)
                .iter()
                .any(|(p, d)| *p == update && d.carried.is_none())
        );
        // The init write RM[0,p] feeds the update without being carried.
        assert!(
            g.producers(update)
                .iter()
                .any(|(p, d)| *p == rm[0] && d.carried.is_none())
        );
    }

    #[test]
    fn mutual_reads_form_a_cycle() {
        let src = "cascade t\nranks M\ninput A[M]\nX[m] = Y[m] + A[m]\nY[m] = X[m]\nZ[m] = A[m]\noutput Y\n";
        let c = dsl::parse(src, "t").unwrap().cascade;
        let g = dependency_graph(&c);
        assert_eq!(g.cycles(), vec![vec![EinsumId(0), EinsumId(1)]]);
        assert_eq!(g.topological_order(), None);
        // Without the cycle, Z (no producers) still comes in program order after X and Y.
        let ok = dsl::parse(&src.replace("Y[m] + A[m]", "A[m]"), "t")
            .unwrap()
            .cascade;
        let order = dependency_graph(&ok).topological_order().unwrap();
        assert_eq!(order, vec![EinsumId(0), EinsumId(1), EinsumId(2)]);
        let names: Vec<&str> = g
            .cycle_tensors(&g.cycles()[0])
            .iter()
            .map(|t| c.tensor(*t).name.as_str())
            .collect();
        assert_eq!(names, ["X", "Y"]);
    }
}
