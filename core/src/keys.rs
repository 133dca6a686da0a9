//! Object keys: every key shape promlake writes is a type here, built and parsed in this module
//! only. Block keys are Hive-style so Athena, DuckDB and Spark prune partitions:
//!
//! ```text
//! blocks/region=<r>/day=<YYYY-MM-DD>/hour=<HH>/<min_ts>-<max_ts>-<KofN>-<replica>-<ulid>.parquet
//! state/scrape/region=<r>/shard=<KofN>/replica=<replica>/<seq:020>.json.zst
//! state/alerts/region=<r>/group=<group key>/<tick:020>.json
//! state/alerts/region=<r>/sent/group=<group key>/<tick:020>/<id>
//! ```
//!
//! Keys are relative to the storage URL's prefix.

use std::fmt;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use object_store::path::Path;
use ulid::Ulid;

use crate::clock::TimestampMs;
use crate::error::{Error, Result};
use crate::shard::Shard;

/// The folder of all blocks.
pub const BLOCKS: &str = "blocks";
/// The replica name of blocks written by rule evaluation (recording rules, `ALERTS`). Only the
/// owner of a tick writes them, so they are never HA duplicates; scrape workers may not use it.
pub const RULES_REPLICA: &str = "rules";
const MS_PER_HOUR: i64 = 3_600_000;

/// A name usable in keys: region and replica names.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "{kind} name {name:?} must be non-empty and use only letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn utc(ts: TimestampMs) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ts).single().unwrap_or_default()
}

/// The start of the hour that holds `ts`.
pub fn hour_start(ts: TimestampMs) -> TimestampMs {
    ts.div_euclid(MS_PER_HOUR) * MS_PER_HOUR
}

/// The `day=/hour=` partition of one region's blocks.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourPartition {
    pub region: String,
    /// Start of the hour, ms since the epoch.
    pub hour_start: TimestampMs,
}

impl HourPartition {
    pub fn of(region: &str, ts: TimestampMs) -> Self {
        Self {
            region: region.to_owned(),
            hour_start: hour_start(ts),
        }
    }

    pub fn path(&self) -> Path {
        let t = utc(self.hour_start);
        Path::from(format!(
            "{BLOCKS}/region={}/day={:04}-{:02}-{:02}/hour={:02}",
            self.region,
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        ))
    }

    /// The partitions of a region that can hold samples in `[from, to]`.
    pub fn covering(region: &str, from: TimestampMs, to: TimestampMs) -> Vec<HourPartition> {
        let mut out = Vec::new();
        let mut h = hour_start(from);
        while h <= to {
            out.push(HourPartition {
                region: region.to_owned(),
                hour_start: h,
            });
            h += MS_PER_HOUR;
        }
        out
    }
}

/// The folder of one region's blocks.
pub fn region_blocks(region: &str) -> Path {
    Path::from(format!("{BLOCKS}/region={region}"))
}

/// The region a folder under `blocks/` is for (`region=<r>`), or `None` for any other name.
pub fn region_of_folder(folder: &Path) -> Option<String> {
    folder
        .filename()?
        .strip_prefix("region=")
        .filter(|r| check_name("region", r).is_ok())
        .map(str::to_owned)
}

/// The key of one block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub region: String,
    pub min_ts: TimestampMs,
    pub max_ts: TimestampMs,
    pub shard: Shard,
    pub replica: String,
    pub id: Ulid,
}

impl BlockKey {
    /// The partition the block is filed under (the hour of its first sample; a worker writes one
    /// block per hour so that its last sample is in the same hour).
    pub fn partition(&self) -> HourPartition {
        HourPartition::of(&self.region, self.min_ts)
    }

    pub fn path(&self) -> Path {
        Path::from(format!(
            "{}/{}-{}-{}-{}-{}.parquet",
            self.partition().path(),
            self.min_ts,
            self.max_ts,
            self.shard.key_token(),
            self.replica,
            self.id
        ))
    }

    /// Parses a block key; `Err` names the key and what is wrong with it.
    pub fn parse(path: &Path) -> Result<BlockKey> {
        let key = path.as_ref();
        let bad = |message: &str| Error::Key {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        let parts: Vec<&str> = key.split('/').collect();
        let n = parts.len();
        if n < 5 || parts[n - 5] != BLOCKS {
            return Err(bad("not under blocks/region=/day=/hour="));
        }
        let region = parts[n - 4]
            .strip_prefix("region=")
            .ok_or_else(|| bad("no region= partition"))?;
        let day = parts[n - 3]
            .strip_prefix("day=")
            .ok_or_else(|| bad("no day= partition"))?;
        let hour = parts[n - 2]
            .strip_prefix("hour=")
            .ok_or_else(|| bad("no hour= partition"))?;
        let file = parts[n - 1]
            .strip_suffix(".parquet")
            .ok_or_else(|| bad("not a .parquet file"))?;
        let mut it = file.splitn(4, '-');
        let min_ts: i64 = it
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no min timestamp"))?;
        let max_ts: i64 = it
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no max timestamp"))?;
        let shard = it
            .next()
            .and_then(Shard::from_key_token)
            .ok_or_else(|| bad("no shard (KofN)"))?;
        let rest = it.next().ok_or_else(|| bad("no replica and id"))?;
        let (replica, id) = rest.rsplit_once('-').ok_or_else(|| bad("no block id"))?;
        let id: Ulid = id.parse().map_err(|_| bad("block id is not a ULID"))?;
        if max_ts < min_ts {
            return Err(bad("max timestamp before min timestamp"));
        }
        let k = BlockKey {
            region: region.to_owned(),
            min_ts,
            max_ts,
            shard,
            replica: replica.to_owned(),
            id,
        };
        let expect = k.partition().path();
        let expect = expect.as_ref();
        if !expect.ends_with(&format!("day={day}/hour={hour}")) {
            return Err(bad(
                "day=/hour= partition does not hold the block's first sample",
            ));
        }
        Ok(k)
    }
}

impl fmt::Display for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path())
    }
}

/// The folder of a create-only log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogDir(Path);

impl LogDir {
    /// The staleness state of one scrape worker (shard and replica).
    pub fn scrape_state(region: &str, shard: Shard, replica: &str) -> Self {
        Self(Path::from(format!(
            "state/scrape/region={region}/shard={}/replica={replica}",
            shard.key_token()
        )))
    }

    /// The state log of one alert rule group.
    pub fn alert_group(region: &str, group_key: &AlertGroupKey) -> Self {
        Self(Path::from(format!(
            "state/alerts/region={region}/group={group_key}"
        )))
    }

    /// A log under an arbitrary folder (tests, other subsystems).
    pub fn new(path: impl Into<Path>) -> Self {
        Self(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The key of entry `seq` with a file `suffix` (`.json.zst`).
    pub fn entry(&self, seq: u64, suffix: &str) -> Path {
        self.0.clone().join(format!("{seq:020}{suffix}"))
    }

    /// The sequence number of an entry key of this log.
    pub fn seq_of(&self, key: &Path) -> Option<u64> {
        let name = key.filename()?;
        let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
        (digits.len() == 20).then(|| digits.parse().ok()).flatten()
    }
}

/// The key of an alert rule group, under which its state log and sent markers live: a name
/// safe in keys, from the rule file's name as configured and the group's name, so every replica
/// that loads the group agrees on it however it reached the file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertGroupKey(String);

impl AlertGroupKey {
    /// The key of group `group` of the rule file named `file`.
    pub fn new(file: &str, group: &str) -> Self {
        let clean: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect();
        let id = crate::labels::hash_pairs([(format!("{file};{group}").as_str(), "")].into_iter());
        Self(format!("{clean}-{id:016x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AlertGroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The marker saying notification `id` decided at `tick` by a rule group was sent:
/// `state/alerts/region=<r>/sent/group=<key>/<tick:020>/<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMarker {
    pub region: String,
    pub group: AlertGroupKey,
    pub tick: u64,
    pub id: u32,
}

impl SentMarker {
    /// The folder of a rule group's sent markers.
    pub fn dir(region: &str, group: &AlertGroupKey) -> Path {
        Path::from(format!("state/alerts/region={region}/sent/group={group}"))
    }

    pub fn path(&self) -> Path {
        Self::dir(&self.region, &self.group)
            .join(format!("{:020}", self.tick))
            .join(self.id.to_string())
    }

    /// A marker key; `None` for any other key.
    pub fn parse(path: &Path) -> Option<SentMarker> {
        let parts: Vec<_> = path.parts().collect();
        let [state, alerts, region, sent, group, tick, id] = parts.as_slice() else {
            return None;
        };
        if state.as_ref() != "state" || alerts.as_ref() != "alerts" || sent.as_ref() != "sent" {
            return None;
        }
        let tick = tick.as_ref();
        if tick.len() != 20 {
            return None;
        }
        Some(SentMarker {
            region: region.as_ref().strip_prefix("region=")?.to_owned(),
            group: AlertGroupKey(group.as_ref().strip_prefix("group=")?.to_owned()),
            tick: tick.parse().ok()?,
            id: id.as_ref().parse().ok()?,
        })
    }
}

/// A ULID from the injected clock's time and fresh randomness.
pub fn new_ulid(now_ms: TimestampMs) -> Ulid {
    Ulid::from_parts(now_ms.max(0) as u64, rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_keys_round_trip() {
        let g = AlertGroupKey::new("rules/a.yml", "my group/1");
        assert!(g.as_str().starts_with("my_group_1-"), "{g}");
        assert_ne!(g, AlertGroupKey::new("rules/b.yml", "my group/1"));
        let m = SentMarker {
            region: "eu".into(),
            group: g.clone(),
            tick: 1_795_478_400_000,
            id: 3,
        };
        let p = m.path();
        assert_eq!(
            p.as_ref(),
            format!("state/alerts/region=eu/sent/group={g}/00000001795478400000/3")
        );
        assert_eq!(SentMarker::parse(&p), Some(m));
        assert!(p.as_ref().starts_with(SentMarker::dir("eu", &g).as_ref()));
        assert_eq!(
            LogDir::alert_group("eu", &g).path().as_ref(),
            format!("state/alerts/region=eu/group={g}")
        );
        for other in [
            "state/alerts/region=eu/group=g-1/00000001795478400000.json",
            "state/alerts/region=eu/sent/group=g-1/1795478400000/3",
            "state/alerts/region=eu/sent/group=g-1/00000001795478400000/x",
        ] {
            assert_eq!(SentMarker::parse(&Path::from(other)), None, "{other}");
        }
    }

    #[test]
    fn block_keys_round_trip() {
        let k = BlockKey {
            region: "eu-west-1".into(),
            min_ts: 1_795_477_171_709,
            max_ts: 1_795_477_231_000,
            shard: Shard::new(2, 4).unwrap(),
            replica: "a-1".into(),
            id: new_ulid(1_795_477_231_000),
        };
        let p = k.path();
        assert!(
            p.as_ref().starts_with("blocks/region=eu-west-1/day=2026-11-23/hour=23/1795477171709-1795477231000-2of4-a-1-"),
            "{p}"
        );
        assert_eq!(BlockKey::parse(&p).unwrap(), k);
        assert_eq!(
            region_of_folder(&region_blocks("eu-west-1")).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of_folder(&Path::from("blocks/tmp")), None);
    }

    #[test]
    fn bad_block_keys_are_named() {
        for bad in [
            "blocks/region=a/day=2026-11-23/hour=23/x.parquet",
            "blocks/region=a/day=2026-11-23/hour=22/1795477171709-1795477231000-0of1-r-01ARZ3NDEKTSV4RRFFQ69G5FAV.parquet",
            "other/region=a/day=2026-11-23/hour=23/1-2-0of1-r-01ARZ3NDEKTSV4RRFFQ69G5FAV.parquet",
        ] {
            let e = BlockKey::parse(&Path::from(bad)).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn partitions_cover_a_range() {
        let p = HourPartition::covering("r", 3_600_000 * 10 + 5, 3_600_000 * 12);
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[0].path().as_ref(),
            "blocks/region=r/day=1970-01-01/hour=10"
        );
    }

    #[test]
    fn log_entries_sort_by_sequence() {
        let d = LogDir::scrape_state("r", Shard::ALL, "a");
        let k = d.entry(42, ".json.zst");
        assert_eq!(
            k.as_ref(),
            "state/scrape/region=r/shard=0of1/replica=a/00000000000000000042.json.zst"
        );
        assert_eq!(d.seq_of(&k), Some(42));
    }
}
