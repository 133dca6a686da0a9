//! The create-only log: promlake's one coordination primitive.
//!
//! Every coordinated fact is an immutable object written with `PutMode::Create` under a key that
//! names the decision (`<dir>/<seq:020>`). The first writer wins; `AlreadyExists` means another
//! writer decided, and the loser reads the winner's object. Nothing is overwritten; old entries
//! are deleted by sequence, never rewritten. This works on S3 (`If-None-Match: *`), S3-compatible
//! servers, local disk and in memory alike — unlike compare-and-swap, which neither emulator makes
//! atomic and local disk does not offer.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::keys::LogDir;

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// This writer created the entry.
    Created,
    /// Another writer had created it first; here is what it wrote.
    Lost(Bytes),
}

/// A create-only log in a store.
#[derive(Clone, Debug)]
pub struct CreateOnlyLog {
    store: Arc<dyn ObjectStore>,
    dir: LogDir,
    suffix: String,
}

impl CreateOnlyLog {
    /// A log of entries `<dir>/<seq:020><suffix>`.
    pub fn new(store: Arc<dyn ObjectStore>, dir: LogDir, suffix: &str) -> Self {
        Self {
            store,
            dir,
            suffix: suffix.to_owned(),
        }
    }

    pub fn dir(&self) -> &LogDir {
        &self.dir
    }

    pub fn key(&self, seq: u64) -> Path {
        self.dir.entry(seq, &self.suffix)
    }

    /// Writes entry `seq` unless it exists; when it does, returns the existing content. A write
    /// whose response was lost and that is retried finds its own entry and reports `Lost` with
    /// the same bytes: compare them to tell "mine" from "theirs".
    pub async fn append_if_absent(&self, seq: u64, body: Bytes) -> Result<Appended> {
        let key = self.key(seq);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(Appended::Created),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self.read(seq).await?.ok_or_else(|| Error::Corrupt {
                    key: key.to_string(),
                    message: "reported as existing but cannot be read".into(),
                })?;
                Ok(Appended::Lost(existing))
            }
            Err(e) => Err(Error::store(&key, e)),
        }
    }

    /// Entry `seq`, if it exists.
    pub async fn read(&self, seq: u64) -> Result<Option<Bytes>> {
        let key = self.key(seq);
        match self.store.get(&key).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|e| Error::store(&key, e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(&key, e)),
        }
    }

    /// The sequence numbers of all entries, ascending (one LIST of the log's folder).
    pub async fn sequences(&self) -> Result<Vec<u64>> {
        let dir = self.dir.path().clone();
        let mut seqs: Vec<u64> = self
            .store
            .list(Some(&dir))
            .map_err(|e| Error::store(&dir, e))
            .try_filter_map(|m| {
                let s = self
                    .dir
                    .seq_of(&m.location)
                    .filter(|_| m.location.as_ref().ends_with(&self.suffix));
                async move { Ok(s) }
            })
            .try_collect()
            .await?;
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// The entry with the highest sequence, if any.
    pub async fn latest(&self) -> Result<Option<(u64, Bytes)>> {
        // Newest first: an entry deleted between LIST and GET is skipped.
        for seq in self.sequences().await?.into_iter().rev() {
            if let Some(b) = self.read(seq).await? {
                return Ok(Some((seq, b)));
            }
        }
        Ok(None)
    }

    /// Deletes entries with a sequence below `seq`; returns how many.
    pub async fn delete_before(&self, seq: u64) -> Result<usize> {
        let mut n = 0;
        for s in self.sequences().await? {
            if s >= seq {
                break;
            }
            let key = self.key(s);
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
                Err(e) => return Err(Error::store(&key, e)),
            }
        }
        Ok(n)
    }
}
