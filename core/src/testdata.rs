//! Where the shared reference data lives (`../shared` beside the repository, or
//! `$PROMLAKE_SHARED`). Tests read the files in place; a missing folder is a test failure.

use std::path::PathBuf;

/// The `shared/` folder with `seed/` and `testdata/`.
pub fn shared_dir() -> PathBuf {
    if let Ok(p) = std::env::var("PROMLAKE_SHARED") {
        return PathBuf::from(p);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let dir = repo.join("../shared");
    assert!(
        dir.join("testdata").is_dir(),
        "reference data not found at {} (set PROMLAKE_SHARED)",
        dir.display()
    );
    dir
}

/// A file under `shared/testdata/prometheus/`.
pub fn prometheus_file(rel: &str) -> PathBuf {
    shared_dir().join("testdata/prometheus").join(rel)
}

/// The S3-compatible server tests use: `$PROMLAKE_TEST_S3_ENDPOINT` (default LocalStack on
/// `http://127.0.0.1:4566`, started by `localstack/start.sh`) and bucket
/// `$PROMLAKE_TEST_BUCKET` (default `promlake`).
pub fn s3_test_endpoint() -> (String, String) {
    let endpoint = std::env::var("PROMLAKE_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned());
    let bucket = std::env::var("PROMLAKE_TEST_BUCKET").unwrap_or_else(|_| "promlake".to_owned());
    (endpoint, bucket)
}

/// Options that reach the test S3 server. Panics (the test fails, it is not skipped) when the
/// server does not answer.
pub fn s3_test_options() -> crate::store::StoreOptions {
    let (endpoint, _) = s3_test_endpoint();
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
        });
    assert!(
        reachable,
        "the S3 server for tests is not reachable at {endpoint}: start it with localstack/start.sh \
         (scripts/test does), or point PROMLAKE_TEST_S3_ENDPOINT at one"
    );
    let mut o = crate::store::StoreOptions::s3_endpoint(&endpoint, "test", "test");
    o.max_retries = 3;
    o
}

/// An `s3://` URL with a fresh prefix in the test bucket.
pub fn s3_test_url(name: &str) -> String {
    let (_, bucket) = s3_test_endpoint();
    format!(
        "s3://{bucket}/test/{name}-{}",
        ulid::Ulid::from_parts(0, rand::random::<u128>())
    )
}
