//! One storage conformance suite, run against InMemory, local disk and a real S3 server
//! (LocalStack, started by `localstack/start.sh`; the S3 tests fail when it is not running).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use promlake_core::block::{self, Sample};
use promlake_core::keys::{BlockKey, LogDir, new_ulid};
use promlake_core::labels::Labels;
use promlake_core::log::{Appended, CreateOnlyLog};
use promlake_core::shard::Shard;
use promlake_core::store::{self, Storage, StoreOptions};
use promlake_core::testdata;
use promlake_core::value::{is_stale_nan, stale_nan};

async fn put_get_list_delete(s: &dyn ObjectStore) {
    let a = Path::from("suite/a/one.txt");
    let b = Path::from("suite/a/deeper/two.txt");
    let c = Path::from("suite/b/three.txt");
    for (p, body) in [(&a, "1"), (&b, "22"), (&c, "333")] {
        s.put(p, PutPayload::from(body.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    assert_eq!(
        s.get(&b).await.unwrap().bytes().await.unwrap(),
        Bytes::from("22")
    );
    let mut listed: Vec<String> = s
        .list(Some(&Path::from("suite/a")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(listed, vec!["suite/a/deeper/two.txt", "suite/a/one.txt"]);
    let d = s
        .list_with_delimiter(Some(&Path::from("suite")))
        .await
        .unwrap();
    let mut prefixes: Vec<String> = d.common_prefixes.iter().map(|p| p.to_string()).collect();
    prefixes.sort();
    assert_eq!(prefixes, vec!["suite/a", "suite/b"]);
    assert_eq!(s.head(&c).await.unwrap().size, 3);
    s.delete(&c).await.unwrap();
    assert!(matches!(
        s.get(&c).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

async fn range_reads(s: &dyn ObjectStore) {
    let p = Path::from("suite/range.bin");
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    s.put(&p, PutPayload::from(body.clone())).await.unwrap();
    assert_eq!(
        s.get_range(&p, 100..110).await.unwrap(),
        Bytes::from(body[100..110].to_vec())
    );
    let parts = s.get_ranges(&p, &[0..4, 9_990..10_000]).await.unwrap();
    assert_eq!(parts[0], Bytes::from(body[0..4].to_vec()));
    assert_eq!(parts[1], Bytes::from(body[9_990..].to_vec()));
}

async fn create_only(s: &dyn ObjectStore) {
    let p = Path::from("suite/create-only");
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    s.put_opts(&p, PutPayload::from("first"), create.clone())
        .await
        .unwrap();
    let again = s.put_opts(&p, PutPayload::from("second"), create).await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(
        s.get(&p).await.unwrap().bytes().await.unwrap(),
        Bytes::from("first")
    );
}

async fn create_only_race(s: Arc<dyn ObjectStore>) {
    let log = CreateOnlyLog::new(s, LogDir::new("suite/race"), ".txt");
    let mut tasks = Vec::new();
    for w in 0..16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append_if_absent(7, Bytes::from(format!("writer {w}")))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    let mut seen = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Appended::Created => winners += 1,
            Appended::Lost(b) => seen.push(b),
        }
    }
    assert_eq!(winners, 1, "exactly one of 16 concurrent writers wins");
    let stored = log.read(7).await.unwrap().unwrap();
    assert!(
        seen.iter().all(|b| *b == stored),
        "every loser reads the winner's entry"
    );
}

async fn log_sequence(s: Arc<dyn ObjectStore>) {
    let log = CreateOnlyLog::new(s, LogDir::new("suite/log"), ".json");
    assert_eq!(log.latest().await.unwrap(), None);
    for seq in [3, 10, 2] {
        assert_eq!(
            log.append_if_absent(seq, Bytes::from(seq.to_string()))
                .await
                .unwrap(),
            Appended::Created
        );
    }
    assert_eq!(log.sequences().await.unwrap(), vec![2, 3, 10]);
    assert_eq!(log.latest().await.unwrap(), Some((10, Bytes::from("10"))));
    assert_eq!(log.delete_before(10).await.unwrap(), 2);
    assert_eq!(log.sequences().await.unwrap(), vec![10]);
    assert_eq!(log.read(3).await.unwrap(), None);
}

async fn blocks(s: &dyn ObjectStore) {
    let labels = Arc::new(Labels::from_pairs([("__name__", "up"), ("job", "x")]));
    let mut samples = vec![
        Sample::new(labels.clone(), 1_000, 1.0),
        Sample::new(labels, 16_000, stale_nan()),
    ];
    let shard = Shard::new(0, 2).unwrap();
    let (meta, bytes) = block::encode(&mut samples, "r", shard, "a").unwrap();
    let key = BlockKey {
        region: "r".into(),
        min_ts: meta.min_ts,
        max_ts: meta.max_ts,
        shard,
        replica: "a".into(),
        id: new_ulid(16_000),
    };
    let path = key.path();
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    s.put_opts(&path, PutPayload::from(bytes), create)
        .await
        .unwrap();
    let got = s.get(&path).await.unwrap().bytes().await.unwrap();
    let (meta2, rows) = block::decode(path.as_ref(), got).unwrap();
    assert_eq!(meta, meta2);
    assert_eq!(rows.len(), 2);
    assert!(is_stale_nan(rows[1].value));
    assert_eq!(BlockKey::parse(&path).unwrap(), key);
}

async fn suite(storage: Storage) {
    let s = storage.store.clone();
    put_get_list_delete(s.as_ref()).await;
    range_reads(s.as_ref()).await;
    create_only(s.as_ref()).await;
    create_only_race(s.clone()).await;
    log_sequence(s.clone()).await;
    blocks(s.as_ref()).await;
}

#[tokio::test]
async fn in_memory() {
    let url = format!("memory://suite-{}", new_ulid(0));
    suite(store::open(&url, &StoreOptions::default()).unwrap()).await;
}

#[tokio::test]
async fn local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("not-yet-created").display());
    suite(store::open(&url, &StoreOptions::default()).unwrap()).await;
    // A plain path works too.
    let plain = dir.path().join("plain").display().to_string();
    suite(store::open(&plain, &StoreOptions::default()).unwrap()).await;
}

#[tokio::test]
async fn s3_server() {
    let opts = testdata::s3_test_options();
    let url = testdata::s3_test_url("suite");
    suite(store::open(&url, &opts).unwrap()).await;
}

#[test]
fn bad_urls_are_named() {
    let e = store::open("ftp://x/y", &StoreOptions::default()).unwrap_err();
    assert!(e.to_string().contains("ftp://x/y"), "{e}");
    let e = store::open("s3:///nobucket", &StoreOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no bucket"), "{e}");
}
