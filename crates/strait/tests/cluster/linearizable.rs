//! A linearizability checker for one register (Wing & Gong's search with Lowe's cache of
//! visited states, as Knossos does): is there an order of the operations, each taking effect
//! at one instant between its invocation and its completion, in which every read returns the
//! value of the last write before it?
//!
//! A write whose outcome is unknown (a timeout, a 5xx: it may have committed) has no
//! completion: it may take effect at any time after its invocation, or never.

use std::collections::HashSet;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Wrote this value (values are unique per write in the tests, but need not be).
    Write(u32),
    /// Read this value (`None`: the register was never written).
    Read(Option<u32>),
}

/// One operation, with its invocation and completion times (any monotonic unit).
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub call: u128,
    /// `None`: the outcome is unknown (only writes; a failed read is simply left out).
    pub ret: Option<u128>,
    pub kind: Kind,
}

/// `Ok` when the history is linearizable from an unwritten register, else why not.
pub fn check(history: &[Op]) -> Result<(), String> {
    for op in history {
        if let (Kind::Read(_), None) = (op.kind, op.ret) {
            return Err(format!("a read without a completion: {op:?}"));
        }
    }
    // An unknown write nobody read changes nothing if it never happened: leave it out (this
    // keeps the search small when many writes failed during an election).
    let read: HashSet<u32> = history
        .iter()
        .filter_map(|op| match op.kind {
            Kind::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let ops: Vec<Op> = history
        .iter()
        .filter(|op| op.ret.is_some() || matches!(op.kind, Kind::Write(v) if read.contains(&v)))
        .copied()
        .collect();
    let required = ops.iter().filter(|op| op.ret.is_some()).count();
    let mut search = Search {
        ops: &ops,
        done: vec![false; ops.len()],
        seen: HashSet::new(),
    };
    if search.run(None, required) {
        Ok(())
    } else {
        Err(format!(
            "no linearization of {} operations ({} with a known outcome) exists",
            ops.len(),
            required
        ))
    }
}

struct Search<'a> {
    ops: &'a [Op],
    done: Vec<bool>,
    /// (linearized set, register value) already explored without success.
    seen: HashSet<(Vec<u64>, Option<u32>)>,
}

impl Search<'_> {
    fn key(&self, value: Option<u32>) -> (Vec<u64>, Option<u32>) {
        let mut bits = vec![0u64; self.done.len().div_ceil(64)];
        for (i, d) in self.done.iter().enumerate() {
            if *d {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        (bits, value)
    }

    /// Depth-first: linearize next any pending operation invoked before every pending
    /// operation's completion.
    fn run(&mut self, value: Option<u32>, required: usize) -> bool {
        if required == 0 {
            // The unknown writes left may simply not have happened.
            return true;
        }
        if !self.seen.insert(self.key(value)) {
            return false;
        }
        let pending = || (0..self.ops.len()).filter(|i| !self.done[*i]);
        let horizon = pending()
            .filter_map(|i| self.ops[i].ret)
            .min()
            .unwrap_or(u128::MAX);
        let candidates: Vec<usize> = pending().filter(|i| self.ops[*i].call <= horizon).collect();
        for i in candidates {
            let op = self.ops[i];
            let next = match op.kind {
                Kind::Write(v) => Some(v),
                Kind::Read(r) if r == value => value,
                Kind::Read(_) => continue,
            };
            self.done[i] = true;
            if self.run(next, required - usize::from(op.ret.is_some())) {
                return true;
            }
            self.done[i] = false;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(call: u128, ret: u128, v: u32) -> Op {
        Op {
            call,
            ret: Some(ret),
            kind: Kind::Write(v),
        }
    }
    fn r(call: u128, ret: u128, v: Option<u32>) -> Op {
        Op {
            call,
            ret: Some(ret),
            kind: Kind::Read(v),
        }
    }
    fn unknown(call: u128, v: u32) -> Op {
        Op {
            call,
            ret: None,
            kind: Kind::Write(v),
        }
    }

    #[test]
    fn sequential_histories() {
        assert!(check(&[r(0, 1, None), w(2, 3, 1), r(4, 5, Some(1))]).is_ok());
        assert!(check(&[w(0, 1, 1), w(2, 3, 2), r(4, 5, Some(2))]).is_ok());
        // A stale read after the second write completed.
        assert!(check(&[w(0, 1, 1), w(2, 3, 2), r(4, 5, Some(1))]).is_err());
        // A value nobody wrote.
        assert!(check(&[w(0, 1, 1), r(2, 3, Some(9))]).is_err());
        // Reads nothing after a completed write.
        assert!(check(&[w(0, 1, 1), r(2, 3, None)]).is_err());
    }

    #[test]
    fn concurrent_operations_take_effect_in_either_order() {
        // Two overlapping writes; reads after both see the same winner, either one.
        assert!(check(&[w(0, 10, 1), w(1, 11, 2), r(12, 13, Some(1))]).is_ok());
        assert!(check(&[w(0, 10, 1), w(1, 11, 2), r(12, 13, Some(2))]).is_ok());
        // ... but not first one and then the other with no write in between.
        assert!(check(&[
            w(0, 10, 1),
            w(1, 11, 2),
            r(12, 13, Some(2)),
            r(14, 15, Some(1))
        ])
        .is_err());
        // A read overlapping a write may see the old or the new value.
        assert!(check(&[w(0, 1, 1), w(2, 10, 2), r(3, 4, Some(1)), r(5, 6, Some(2))]).is_ok());
        // Once a read saw the new value, a later read cannot see the old one.
        assert!(check(&[w(0, 1, 1), w(2, 10, 2), r(3, 4, Some(2)), r(5, 6, Some(1))]).is_err());
    }

    #[test]
    fn writes_of_unknown_outcome() {
        // A failed write may have happened (read later) ...
        assert!(check(&[w(0, 1, 1), unknown(2, 2), r(5, 6, Some(2))]).is_ok());
        // ... or not.
        assert!(check(&[w(0, 1, 1), unknown(2, 2), r(5, 6, Some(1))]).is_ok());
        // But not before it was invoked.
        assert!(check(&[w(0, 1, 1), r(2, 3, Some(2)), unknown(4, 2)]).is_err());
        // And not both: seen, then undone, then seen again.
        assert!(check(&[
            w(0, 1, 1),
            unknown(2, 2),
            r(5, 6, Some(2)),
            r(7, 8, Some(1))
        ])
        .is_err());
        // A read without a completion is a harness bug.
        let bad = Op {
            call: 0,
            ret: None,
            kind: Kind::Read(None),
        };
        assert!(check(&[bad]).is_err());
    }

    #[test]
    fn a_larger_concurrent_history_is_checked_quickly() {
        // Four clients, 200 writes each overlapping the others, and reads in order.
        let mut h = Vec::new();
        for step in 0..200u32 {
            let t = u128::from(step) * 10;
            for c in 0..4u32 {
                h.push(w(t + u128::from(c), t + 8, step * 4 + c));
            }
            h.push(r(t + 9, t + 9, Some(step * 4 + 3)));
        }
        assert!(check(&h).is_ok());
        let last = h.len() - 1;
        h[last] = r(1999, 1999, Some(0));
        assert!(check(&h).is_err());
    }
}
