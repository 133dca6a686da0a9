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
