//! The one rule by which promlake counts each stored sample once, whoever stored it and however
//! often. The query scan (`samples`, `/federate`) applies it to blocks as it reads them; a
//! compactor applies it when it merges blocks; both take it from here.
//!
//! Within a region:
//!
//! 1. A series' samples fall into **slots** of the dedup interval (`query.dedup_interval`,
//!    default the scrape interval): `slot = timestamp div interval`, rounding down.
//! 2. In each series and slot, the samples of the **first replica by name** that has one there
//!    count; other replicas' samples in that slot do not. Two HA replicas that scrape the same
//!    targets thus give one sample per slot, and when one stops the other owns the slots from
//!    then on: no gap, no double count.
//! 3. A sample stored more than once by that replica — the same series and timestamp in two
//!    blocks, as two overlapping `promlake import` runs or a retried write leave it — counts
//!    once. Such copies can exist only where two blocks of one replica and shard overlap in
//!    time ([`DedupRule::may_repeat`]); elsewhere readers skip the check.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use crate::keys::BlockKey;

/// The rule, for one dedup interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupRule {
    interval_ms: i64,
}

/// One stored sample, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub series_id: u64,
    pub timestamp_ms: i64,
    pub replica: &'a str,
}

impl DedupRule {
    /// A rule with slots of `interval` (at least a millisecond).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval_ms: (interval.as_millis() as i64).max(1),
        }
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// The slot of a timestamp.
    pub fn slot(&self, timestamp_ms: i64) -> i64 {
        timestamp_ms.div_euclid(self.interval_ms)
    }

    /// Whether replica `a` wins a slot over replica `b`: the first by name.
    pub fn prefers(a: &str, b: &str) -> bool {
        a < b
    }

    /// Whether blocks with these keys can hold one sample twice: two blocks of one replica and
    /// shard whose time ranges overlap.
    pub fn may_repeat<'k>(keys: impl IntoIterator<Item = &'k BlockKey>) -> bool {
        let mut by_writer: HashMap<(&str, crate::shard::Shard), Vec<(i64, i64)>> = HashMap::new();
        for k in keys {
            by_writer
                .entry((k.replica.as_str(), k.shard))
                .or_default()
                .push((k.min_ts, k.max_ts));
        }
        by_writer.into_values().any(|mut ranges| {
            ranges.sort_unstable();
            ranges.windows(2).any(|w| w[1].0 <= w[0].1)
        })
    }

    /// The rule applied to rows in memory: the indices of the rows that count, in input order.
    pub fn keep(&self, rows: &[Row<'_>]) -> Vec<usize> {
        let mut winner: HashMap<(u64, i64), &str> = HashMap::new();
        for r in rows {
            match winner.entry((r.series_id, self.slot(r.timestamp_ms))) {
                Entry::Vacant(v) => {
                    v.insert(r.replica);
                }
                Entry::Occupied(mut o) => {
                    if Self::prefers(r.replica, o.get()) {
                        o.insert(r.replica);
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        rows.iter()
            .enumerate()
            .filter(|(_, r)| winner[&(r.series_id, self.slot(r.timestamp_ms))] == r.replica)
            .filter(|(_, r)| seen.insert((r.series_id, r.timestamp_ms)))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::new_ulid;
    use crate::shard::Shard;

    fn row(series_id: u64, timestamp_ms: i64, replica: &str) -> Row<'_> {
        Row {
            series_id,
            timestamp_ms,
            replica,
        }
    }

    #[test]
    fn first_replica_per_slot_and_each_copy_once() {
        let rule = DedupRule::new(Duration::from_secs(15));
        let rows = [
            row(1, 0, "b"),
            row(1, 1_000, "a"),
            row(1, 15_000, "b"), // a has nothing in this slot: b's counts
            row(1, 30_000, "a"),
            row(1, 30_000, "a"), // stored twice by a
            row(1, 31_000, "b"),
            row(2, 0, "b"), // another series: b alone
        ];
        assert_eq!(rule.keep(&rows), vec![1, 2, 3, 6]);
        assert_eq!(rule.slot(-1), -1, "slots round down");
    }

    #[test]
    fn repeats_are_possible_only_where_one_writers_blocks_overlap() {
        let key = |replica: &str, shard: Shard, min_ts, max_ts| BlockKey {
            region: "r".into(),
            min_ts,
            max_ts,
            shard,
            replica: replica.into(),
            id: new_ulid(max_ts),
        };
        let s0 = Shard::new(0, 2).unwrap();
        let s1 = Shard::new(1, 2).unwrap();
        let apart = [
            key("a", s0, 0, 59_000),
            key("a", s0, 60_000, 119_000),
            key("b", s0, 0, 119_000),
            key("a", s1, 0, 119_000),
        ];
        assert!(!DedupRule::may_repeat(&apart));
        let overlapping = [
            key("import", s0, 0, 60_000),
            key("import", s0, 60_000, 90_000),
        ];
        assert!(DedupRule::may_repeat(&overlapping));
    }
}
