//! Finding blocks: listing only the partitions a time range can touch.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use crate::clock::TimestampMs;
use crate::error::{Error, Result};
use crate::keys::{BLOCKS, BlockKey, HourPartition, region_blocks};

/// A block found in storage.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundBlock {
    pub key: BlockKey,
    pub meta: ObjectMeta,
}

/// What a listing cost and met.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListStats {
    /// LIST requests made.
    pub lists: u64,
    /// Objects under `blocks/` whose key is not a block key (skipped).
    pub foreign: Vec<String>,
}

/// The regions that have blocks in a store (one delimiter LIST).
pub async fn regions(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let root = Path::from(BLOCKS);
    let l = store
        .list_with_delimiter(Some(&root))
        .await
        .map_err(|e| Error::store(&root, e))?;
    let mut out: Vec<String> = l
        .common_prefixes
        .iter()
        .filter_map(crate::keys::region_of_folder)
        .collect();
    out.sort();
    Ok(out)
}

/// The blocks of `region` that can hold samples in `[from, to]` (all of them when no range is
/// given). With a range, only the `day=/hour=` partitions of the range are listed, never the whole
/// region; blocks whose own range is outside `[from, to]` are left out.
pub async fn list_blocks(
    store: &dyn ObjectStore,
    region: &str,
    range: Option<(TimestampMs, TimestampMs)>,
    stats: &mut ListStats,
) -> Result<Vec<FoundBlock>> {
    let prefixes: Vec<Path> = match range {
        Some((from, to)) => HourPartition::covering(region, from, to)
            .iter()
            .map(HourPartition::path)
            .collect(),
        None => vec![region_blocks(region)],
    };
    let mut out = Vec::new();
    for p in prefixes {
        stats.lists += 1;
        let metas: Vec<ObjectMeta> = store
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(|e| Error::store(&p, e))?;
        for m in metas {
            match BlockKey::parse(&m.location) {
                Ok(key) => {
                    if let Some((from, to)) = range
                        && (key.max_ts < from || key.min_ts > to)
                    {
                        continue;
                    }
                    out.push(FoundBlock { key, meta: m });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an object that is not a block");
                    stats.foreign.push(m.location.to_string());
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (a.key.min_ts, &a.key.replica, a.key.shard, a.key.id).cmp(&(
            b.key.min_ts,
            &b.key.replica,
            b.key.shard,
            b.key.id,
        ))
    });
    Ok(out)
}
