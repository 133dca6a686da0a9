//! A store wrapper through which nothing can be written: every PUT, multipart upload, copy and
//! delete fails with [`object_store::Error::NotSupported`]. The query service reads every region
//! through it, so no statement that reaches a query session — whatever it asks — can change a
//! stored object.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Reads pass through; writes are refused.
pub struct ReadOnlyStore {
    inner: Arc<dyn ObjectStore>,
}

impl ReadOnlyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for ReadOnlyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadOnly({})", self.inner)
    }
}

impl fmt::Display for ReadOnlyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadOnly({})", self.inner)
    }
}

fn refused(what: &str, location: &Path) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("{what} {location}: the query service's storage is read-only").into(),
    }
}

#[async_trait]
impl ObjectStore for ReadOnlyStore {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> Result<PutResult> {
        Err(refused("writing", location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(refused("writing", location))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        locations
            .map(|l| match l {
                Ok(p) => Err(refused("deleting", &p)),
                Err(e) => Err(e),
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, _from: &Path, to: &Path, _options: CopyOptions) -> Result<()> {
        Err(refused("copying to", to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn reads_pass_and_writes_are_refused() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let key = Path::from("blocks/a.parquet");
        inner.put(&key, "original".into()).await.unwrap();
        let ro = ReadOnlyStore::new(inner.clone());
        assert_eq!(
            ro.get(&key).await.unwrap().bytes().await.unwrap(),
            "original"
        );
        assert!(ro.put(&key, "forged".into()).await.is_err());
        assert!(ro.delete(&key).await.is_err());
        assert!(ro.copy(&Path::from("x"), &key).await.is_err());
        assert!(ro.put_multipart(&key).await.is_err());
        assert_eq!(
            inner.get(&key).await.unwrap().bytes().await.unwrap(),
            "original"
        );
    }
}
