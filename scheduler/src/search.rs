//! Ask/tell search: a strategy proposes candidates and is told how each went, so the strategy
//! stays separate from the (possibly expensive) evaluation, as in Timeloop's mapper.

/// Why a search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Every candidate was tried.
    Exhausted,
    /// The candidate budget ran out.
    Budget,
    /// The strategy found what it was looking for.
    Converged,
}

/// A search strategy over candidates of type `C`, told a verdict of type `V` for each.
pub trait Search<C, V> {
    /// The next candidate to evaluate, or `None` when the search is over.
    fn next(&mut self) -> Option<C>;
    /// The verdict of evaluating `candidate`.
    fn report(&mut self, candidate: &C, verdict: V);
    /// Why the search stopped (meaningful once `next` returned `None`).
    fn stop_reason(&self) -> StopReason;
}

/// Doubles a buffer size from `start` while the verdict says "grow", up to `max`.
///
/// The Pareto study's buffer rule: grow the buffer while memory time exceeds compute time.
#[derive(Debug, Clone)]
pub struct BufferDoubling {
    next: Option<u64>,
    max: u64,
    stop: StopReason,
}

impl BufferDoubling {
    pub fn new(start: u64, max: u64) -> BufferDoubling {
        BufferDoubling {
            next: Some(start.clamp(1, max.max(1))),
            max: max.max(1),
            stop: StopReason::Exhausted,
        }
    }
}

impl Search<u64, bool> for BufferDoubling {
    fn next(&mut self) -> Option<u64> {
        self.next.take()
    }

    fn report(&mut self, candidate: &u64, grow: bool) {
        if !grow {
            self.stop = StopReason::Converged;
        } else if *candidate >= self.max {
            self.stop = StopReason::Budget;
        } else {
            self.next = Some((candidate * 2).min(self.max));
        }
    }

    fn stop_reason(&self) -> StopReason {
        self.stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_stops_when_told_or_at_the_cap() {
        let mut s = BufferDoubling::new(1 << 20, 32 << 20);
        let mut seen = Vec::new();
        while let Some(c) = s.next() {
            seen.push(c >> 20);
            s.report(&c, c < (8 << 20));
        }
        assert_eq!(seen, [1, 2, 4, 8]);
        assert_eq!(s.stop_reason(), StopReason::Converged);

        let mut s = BufferDoubling::new(16 << 20, 32 << 20);
        let mut seen = Vec::new();
        while let Some(c) = s.next() {
            seen.push(c >> 20);
            s.report(&c, true);
        }
        assert_eq!(seen, [16, 32]);
        assert_eq!(s.stop_reason(), StopReason::Budget);
    }
}
