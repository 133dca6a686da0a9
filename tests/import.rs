//! Backfill: `promlake import openmetrics` on the file format `promtool tsdb create-blocks-from
//! openmetrics` reads, on local disk and on the S3 server; bad lines are reported by number and
//! leave storage untouched.

mod common;

use std::path::Path;

use common::*;
use promlake_fleet::PageModel;
use serde_json::Value;

// 2026-11-20T10:30:00Z: two and a half hours from here touch three hour partitions.
const START: i64 = 1_795_602_600_000;
const SCRAPES: u64 = 600; // 2.5 h at 15 s
const TARGETS: u64 = 3;

fn model() -> PageModel {
    PageModel {
        series: 80,
        churn: 0.01,
    }
}

fn write_file(path: &Path) -> u64 {
    let spool = tempfile::tempdir().unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    promlake_fleet::write_openmetrics(
        &model(),
        TARGETS,
        START,
        15_000,
        SCRAPES,
        spool.path(),
        &mut out,
    )
    .unwrap()
}

fn sql(config: &Path, query: &str) -> Value {
    let o = run(s3_env(&mut promlake())
        .args(["sql", "--format", "json", "--config"])
        .arg(config)
        .arg(query));
    assert!(o.status.success(), "{query}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn import(config: &Path, file: &Path) -> std::process::Output {
    run(s3_env(&mut promlake())
        .args(["import", "openmetrics"])
        .arg(file)
        .arg("--config")
        .arg(config))
}

#[test]
fn openmetrics_backfill_on_disk_and_s3() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.om");
    let samples = write_file(&file);
    assert_eq!(samples % (TARGETS * SCRAPES), 0);

    // The file is what promtool backfills from.
    let promtool = peer("promtool");
    let o = std::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir.path().join("prometheus"))
        .output()
        .unwrap();
    assert!(o.status.success(), "promtool: {}", stderr(&o));

    // The model's own sum of one counter, to check values end to end.
    let mut cpu_sum = 0.0;
    for t in 0..TARGETS {
        for k in 0..SCRAPES {
            for s in promlake_fleet::samples(&model(), t, k) {
                if s.name == "node_cpu_seconds_total" {
                    cpu_sum += s.value;
                }
            }
        }
    }

    for (name, storage) in [
        ("disk", dir.path().join("data").display().to_string()),
        ("s3", promlake_core::testdata::s3_test_url("import")),
    ] {
        let config = dir.path().join(format!("{name}.yml"));
        std::fs::write(
            &config,
            format!("global: {{external_labels: {{region: backfill}}}}\nstorage: '{storage}'\n"),
        )
        .unwrap();
        let o = import(&config, &file);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains(&format!("{samples} samples")), "{name}: {out}");
        assert!(out.contains("3 block(s) written"), "{name}: {out}");

        let v = sql(
            &config,
            "SELECT count(*) AS n, count(DISTINCT date_trunc('hour', timestamp)) AS hours, min(timestamp) AS first, count(DISTINCT replica) AS replicas FROM samples_raw",
        );
        assert_eq!(v[0]["n"].as_u64(), Some(samples), "{name}: {v}");
        assert_eq!(v[0]["hours"], 3, "{name}: {v}");
        assert_eq!(v[0]["replicas"], 1, "{name}: {v}");
        let v = sql(
            &config,
            "SELECT sum(value) AS s FROM samples WHERE metric = 'node_cpu_seconds_total' AND labels['job'] = 'fleet'",
        );
        let got = v[0]["s"].as_f64().unwrap();
        assert!(
            ((got - cpu_sum) / cpu_sum).abs() < 1e-12,
            "{name}: {got} vs {cpu_sum}"
        );
        let v = sql(
            &config,
            "SELECT count(*) AS n FROM samples WHERE timestamp < to_timestamp_millis(1795604400000)",
        );
        assert_eq!(
            v[0]["n"].as_u64(),
            Some(samples / SCRAPES * 120),
            "{name}: the first (half) hour holds 120 scrapes: {v}"
        );

        // Importing again writes nothing new.
        let o = import(&config, &file);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("0 block(s) written") && stdout(&o).contains("3 already present"),
            "{name}: {}",
            stdout(&o)
        );
        let v = sql(&config, "SELECT count(*) AS n FROM samples_raw");
        assert_eq!(v[0]["n"].as_u64(), Some(samples), "{name}: {v}");
    }
}

#[test]
fn bad_lines_are_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.om");
    write_file(&good);
    let text = std::fs::read_to_string(&good).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let storage = dir.path().join("data");
    let config = dir.path().join("c.yml");
    std::fs::write(&config, format!("storage: '{}'\n", storage.display())).unwrap();

    // Near the end of the file: everything before it parsed, nothing may be written.
    let at = lines.len() - 3;
    let cases = [
        (
            {
                let mut l = lines.clone();
                l[at] = "node_load1{instance=\"x\" 1 1795602600";
                l
            },
            at + 1,
            "",
        ),
        (
            {
                let mut l = lines.clone();
                l[at] = "node_procs_tracked{instance=\"x\",job=\"fleet\"} 3";
                l
            },
            at + 1,
            "has no timestamp",
        ),
        (
            {
                let mut l = lines.clone();
                l[at] = "node_procs_tracked{instance=\"x\",job=\"fleet\"} 3 -9223372036854775.808";
                l
            },
            at + 1,
            "out of range",
        ),
        (
            {
                let mut l = lines.clone();
                l.pop(); // no # EOF: reported at the end, the line after the last
                l
            },
            lines.len(),
            "# EOF",
        ),
    ];
    for (i, (l, line, words)) in cases.into_iter().enumerate() {
        let bad = dir.path().join(format!("bad{i}.om"));
        std::fs::write(&bad, l.join("\n") + "\n").unwrap();
        let o = import(&config, &bad);
        assert!(!o.status.success(), "case {i}");
        let err = stderr(&o);
        let at = format!("{}:{line}:", bad.display());
        assert!(err.contains(&at), "case {i}: want {at} in {err}");
        assert!(err.contains(words), "case {i}: want {words:?} in {err}");
        assert!(err.contains("nothing was imported"), "case {i}: {err}");
        assert!(
            !storage.join("blocks").exists(),
            "case {i}: a failed import wrote blocks"
        );
    }
}

/// Two files that overlap (the second repeats the first's last hour and adds one): every sample
/// counts once in `samples`, though storage holds the repeated hour twice.
#[test]
fn overlapping_imports_count_each_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("promlake.yml");
    std::fs::write(
        &config,
        format!("storage: {}\n", dir.path().join("data").display()),
    )
    .unwrap();
    let hour = 3_600_000;
    let t0 = START - START % hour;
    let line = |t: i64, v: u64| format!("x_total{{job=\"a\"}} {v} {}.{:03}\n", t / 1000, t % 1000);
    let file = |name: &str, from: i64, to: i64| {
        let mut text = String::from("# TYPE x_total counter\n");
        let mut t = from;
        while t < to {
            text.push_str(&line(t, (t / 1000) as u64));
            t += 15_000;
        }
        text.push_str("# EOF\n");
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let first = file("first.om", t0, t0 + 2 * hour);
    let second = file("second.om", t0 + hour, t0 + 3 * hour);
    for f in [&first, &second] {
        let o = import(&config, f);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let v = sql(&config, "SELECT count(*) AS n FROM samples");
    assert_eq!(v[0]["n"], 3 * 240, "{v}");
    let v = sql(&config, "SELECT count(*) AS n FROM samples_raw");
    assert_eq!(v[0]["n"], 4 * 240, "{v}");
}
