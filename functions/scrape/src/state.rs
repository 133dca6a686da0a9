//! The staleness state of a worker that outlives it: for every target, the series its last scrape
//! returned. A stateless worker (a Lambda invocation, `scrape --once`) reads the latest state when
//! it starts and writes a new one when its series set changed, so that the next invocation can put
//! stale markers on series that vanished in between.
//!
//! States are entries of a create-only log (`state/scrape/region=/shard=/replica=/<ms>.json.zst`):
//! never overwritten, older entries deleted once a newer one is written.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use promlake_core::clock::TimestampMs;
use promlake_core::keys::LogDir;
use promlake_core::labels::{Label, Labels};
use promlake_core::log::{Appended, CreateOnlyLog};
use promlake_core::shard::Shard;
use serde::{Deserialize, Serialize};

/// The series of one target at its last scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetSeries {
    /// The target's series labels (for its `up`, `scrape_*` series).
    pub target: Labels,
    /// The series its last successful scrape stored.
    pub series: Vec<Arc<Labels>>,
}

/// A worker's state: target key → series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub written_ms: TimestampMs,
    pub targets: HashMap<u64, TargetSeries>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    written_ms: i64,
    targets: Vec<TargetFile>,
}

#[derive(Serialize, Deserialize)]
struct TargetFile {
    key: String,
    target: Vec<[String; 2]>,
    series: Vec<Vec<[String; 2]>>,
}

fn pairs(l: &Labels) -> Vec<[String; 2]> {
    l.iter()
        .map(|l| [l.name.to_owned(), l.value.to_owned()])
        .collect()
}

fn labels(p: Vec<[String; 2]>) -> Labels {
    let mut v: Vec<Label> = p
        .into_iter()
        .map(|[n, v]| Label { name: n, value: v })
        .collect();
    v.sort();
    v.dedup_by(|a, b| a.name == b.name);
    Labels::from_sorted_unchecked(v)
}

impl State {
    /// A hash of the content (not the time it was written), to skip writing an unchanged state.
    pub fn fingerprint(&self) -> u64 {
        let mut keys: Vec<_> = self.targets.keys().copied().collect();
        keys.sort_unstable();
        let mut acc = 0u64;
        for k in keys {
            let t = &self.targets[&k];
            let mut ids: Vec<u64> = t.series.iter().map(|s| s.hash()).collect();
            ids.sort_unstable();
            let mut h = k ^ t.target.hash();
            for id in ids {
                h = h.rotate_left(5) ^ id;
            }
            acc = acc.wrapping_mul(31).wrapping_add(h);
        }
        acc
    }

    pub fn encode(&self) -> Bytes {
        let file = StateFile {
            version: 1,
            written_ms: self.written_ms,
            targets: self
                .targets
                .iter()
                .map(|(k, t)| TargetFile {
                    key: format!("{k:016x}"),
                    target: pairs(&t.target),
                    series: t.series.iter().map(|s| pairs(s)).collect(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&file).expect("state serialises");
        Bytes::from(zstd::encode_all(&json[..], 3).expect("zstd in memory"))
    }

    pub fn decode(bytes: &[u8]) -> Result<State, String> {
        let json = zstd::decode_all(bytes).map_err(|e| format!("not zstd: {e}"))?;
        let file: StateFile =
            serde_json::from_slice(&json).map_err(|e| format!("not a state: {e}"))?;
        if file.version != 1 {
            return Err(format!("state version {} is not 1", file.version));
        }
        let mut targets = HashMap::new();
        for t in file.targets {
            let key = u64::from_str_radix(&t.key, 16)
                .map_err(|_| format!("bad target key {:?}", t.key))?;
            targets.insert(
                key,
                TargetSeries {
                    target: labels(t.target),
                    series: t.series.into_iter().map(|s| Arc::new(labels(s))).collect(),
                },
            );
        }
        Ok(State {
            written_ms: file.written_ms,
            targets,
        })
    }
}

/// Where a worker's states live.
#[derive(Clone, Debug)]
pub struct StateLog {
    log: CreateOnlyLog,
}

impl StateLog {
    pub fn new(store: Arc<dyn ObjectStore>, region: &str, shard: Shard, replica: &str) -> Self {
        Self {
            log: CreateOnlyLog::new(
                store,
                LogDir::scrape_state(region, shard, replica),
                ".json.zst",
            ),
        }
    }

    /// The latest state; a corrupt entry is reported and skipped (the worker starts without
    /// staleness information rather than not at all).
    pub async fn load(&self) -> Result<Option<State>, promlake_core::Error> {
        let Some((seq, bytes)) = self.log.latest().await? else {
            return Ok(None);
        };
        match State::decode(&bytes) {
            Ok(s) => Ok(Some(s)),
            Err(message) => {
                tracing::error!(key = %self.log.key(seq), %message, "ignoring unreadable scrape state");
                Ok(None)
            }
        }
    }

    /// Writes `state` as a new entry and deletes the older ones.
    pub async fn save(&self, state: &State) -> Result<(), promlake_core::Error> {
        let seq = state.written_ms.max(0) as u64;
        let body = state.encode();
        match self.log.append_if_absent(seq, body.clone()).await? {
            Appended::Created => {}
            // Our own earlier attempt (a lost response), or another process with the same
            // shard and replica: the entry exists either way.
            Appended::Lost(existing) if existing == body => {}
            Appended::Lost(_) => {
                tracing::warn!(key = %self.log.key(seq), "another worker with the same shard and replica wrote this state");
            }
        }
        self.log.delete_before(seq).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_round_trips_and_keeps_only_the_latest() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let log = StateLog::new(store, "r", Shard::ALL, "a");
        assert_eq!(log.load().await.unwrap(), None);
        let mut s = State {
            written_ms: 1000,
            ..Default::default()
        };
        s.targets.insert(
            7,
            TargetSeries {
                target: Labels::from_pairs([("job", "j")]),
                series: vec![Arc::new(Labels::from_pairs([
                    ("__name__", "m"),
                    ("job", "j"),
                ]))],
            },
        );
        log.save(&s).await.unwrap();
        let fp = s.fingerprint();
        s.written_ms = 2000;
        assert_eq!(s.fingerprint(), fp, "the time is not part of the content");
        log.save(&s).await.unwrap();
        assert_eq!(log.load().await.unwrap(), Some(s.clone()));
        assert_eq!(log.log.sequences().await.unwrap(), vec![2000]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(State::decode(b"garbage").is_err());
        let z = zstd::encode_all(
            &b"{\"version\": 2, \"written_ms\": 0, \"targets\": []}"[..],
            1,
        )
        .unwrap();
        assert!(State::decode(&z).unwrap_err().contains("version"));
    }
}
