//! The query service end to end: a real Prometheus federating from promlake, and one global view
//! over two regions (local disk and LocalStack) written by `promlake scrape` workers.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use promlake_fleet::{Behaviour, Fleet, PageModel};

const JOB_PAGE: &str = "# TYPE job:requests:rate5m gauge\njob:requests:rate5m{group=\"checkout\"} 42.5\n# TYPE other_metric gauge\nother_metric 1\n";

fn write(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn targets(addrs: &[String]) -> String {
    addrs
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn a_real_prometheus_federates_from_promlake() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let page = Behaviour::Static(
        Arc::new(JOB_PAGE.as_bytes().to_vec()),
        "text/plain; version=0.0.4".into(),
    );
    let fleet = rt
        .block_on(Fleet::start(
            2,
            PageModel {
                series: 60,
                churn: 0.0,
            },
            move |i| {
                if i == 0 {
                    page.clone()
                } else {
                    Behaviour::Normal
                }
            },
        ))
        .unwrap();
    let addrs = fleet.addresses();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "promlake.yml",
        &format!(
            "global: {{external_labels: {{cluster: dc1}}}}\nstorage: {}\nscrape_configs:\n  - job_name: apps\n    static_configs: [{{targets: [{}]}}]\n",
            dir.path().join("data").display(),
            targets(&addrs)
        ),
    );
    let o = run(promlake().args(["scrape", "--once", "--config"]).arg(&cfg));
    assert!(o.status.success(), "{}", stderr(&o));

    let qport = free_port();
    let _query = Proc::spawn(
        promlake()
            .args([
                "query",
                "--listen",
                &format!("127.0.0.1:{qport}"),
                "--config",
            ])
            .arg(&cfg),
    );
    wait_for("promlake query", Duration::from_secs(20), || {
        http_get(&format!("http://127.0.0.1:{qport}/-/ready"))
    });

    // The seed's federation job, pointed at promlake (plus `up`, to see the target labels).
    let prom_cfg = write(
        dir.path(),
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dc_prometheus\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      match[]:\n        - '{{__name__=~\"^job:.*\"}}'\n        - 'up'\n    static_configs:\n      - targets:\n        - 127.0.0.1:{qport}\n"
        ),
    );
    let pport = free_port();
    let _prom = Proc::spawn(
        std::process::Command::new(peer("prometheus"))
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{pport}")),
    );
    let q = |expr: &str| -> Option<serde_json::Value> {
        let body = http_get(&format!(
            "http://127.0.0.1:{pport}/api/v1/query?query={}",
            expr
        ))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let r = v["data"]["result"].as_array()?.clone();
        (!r.is_empty()).then_some(serde_json::Value::Array(r))
    };
    let agg = wait_for(
        "the federated aggregate in Prometheus",
        Duration::from_secs(60),
        || q("job:requests:rate5m"),
    );
    assert_eq!(agg.as_array().unwrap().len(), 1);
    let m = &agg[0]["metric"];
    assert_eq!(m["__name__"], "job:requests:rate5m");
    assert_eq!(m["group"], "checkout");
    assert_eq!(m["job"], "apps", "honor_labels keeps promlake's job");
    assert_eq!(m["instance"], addrs[0].as_str());
    assert_eq!(m["cluster"], "dc1", "promlake's external labels travel");
    assert_eq!(agg[0]["value"][1], "42.5");
    let up = wait_for("federated up", Duration::from_secs(30), || {
        q("up%7Bjob%3D%22apps%22%7D")
    });
    let mut instances: Vec<&str> = up
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"]["instance"].as_str().unwrap())
        .collect();
    instances.sort();
    let mut want: Vec<&str> = addrs.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(instances, want);
    assert!(up.as_array().unwrap().iter().all(|r| r["value"][1] == "1"));
    // `other_metric` matches neither selector: it stays home.
    assert!(q("other_metric").is_none());

    // Bad selectors: the same status and plain-text message from both.
    for sel in [
        "-",
        "up{",
        "up{job=\"x\"",
        "rate(up[5m])",
        "{__name__=\"a\" or __name__=\"b\"}",
        "up{job=\"x\" or job=\"y\"}",
        "up offset 5m",
        "{job=\"a\"} offset 5m",
        "up[5m]",
        "1 + 1",
        "up{job=x}",
        "up{job}",
        "up{,}",
        "up{job=\"\\q\"}",
        "up{job=\"x\"}}",
        "foo bar",
        "sum(up)",
        "",
        "up{job!a}",
        "up{1}",
        "x\"a\"",
        "up{job=\"x}",
        "up{job=\"a\"} == 1",
        "up{job=\"a\" {",
        "on",
        "inf",
    ] {
        let target = format!(
            "/federate?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("match[]", sel)
                .finish()
        );
        let prom = raw_get(pport, &target);
        let ours = raw_get(qport, &target);
        assert_eq!(prom.0, 400, "{sel}: Prometheus said {prom:?}");
        assert_eq!(ours, prom, "{sel}");
    }
    // What `curl -g` sends: braces and quotes raw in the request line.
    let raw = "/federate?match[]={__name__=~\"^job:.*\"}";
    let (prom_status, _) = raw_get(pport, raw);
    let (status, body) = raw_get(qport, raw);
    assert_eq!((prom_status, status), (200, 200), "{body}");
    assert!(body.contains("job:requests:rate5m{"), "{body}");
}

/// One GET over a plain socket, the target sent as given: (status, body).
fn raw_get(port: u16, target: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp);
    let status = resp[9..12].parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[test]
fn one_global_view_over_two_regions() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let page = Behaviour::Static(
        Arc::new(JOB_PAGE.as_bytes().to_vec()),
        "text/plain; version=0.0.4".into(),
    );
    let fleet = rt
        .block_on(Fleet::start(
            4,
            PageModel {
                series: 60,
                churn: 0.0,
            },
            move |i| {
                if i % 2 == 0 {
                    page.clone()
                } else {
                    Behaviour::Normal
                }
            },
        ))
        .unwrap();
    let addrs = fleet.addresses();
    let dir = tempfile::tempdir().unwrap();
    let eu_data = dir.path().join("eu1");
    let us_url = promlake_core::testdata::s3_test_url("us1");
    let eu = write(
        dir.path(),
        "eu1.yml",
        &format!(
            "global: {{external_labels: {{region: eu1}}}}\nstorage: {}\nscrape_configs:\n  - job_name: apps\n    static_configs: [{{targets: [{}]}}]\n",
            eu_data.display(),
            targets(&addrs[..2])
        ),
    );
    let us = write(
        dir.path(),
        "us1.yml",
        &format!(
            "global: {{external_labels: {{region: us1}}}}\nstorage: {us_url}\nscrape_configs:\n  - job_name: apps\n    static_configs: [{{targets: [{}]}}]\n",
            targets(&addrs[2..])
        ),
    );
    for cfg in [&eu, &us] {
        let o = run(s3_env(&mut promlake())
            .args(["scrape", "--once", "--config"])
            .arg(cfg));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let global = write(
        dir.path(),
        "global.yml",
        &format!(
            "regions:\n  - {{name: eu1, storage: {}}}\n  - {{name: us1, storage: '{us_url}'}}\n",
            eu_data.display()
        ),
    );
    let o = run(s3_env(&mut promlake()).args([
        "sql",
        "--format",
        "json",
        "--config",
        global.to_str().unwrap(),
        "SELECT region, sum(value) AS up, count(*) AS targets FROM samples WHERE metric = 'up' GROUP BY region ORDER BY region",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"region": "eu1", "up": 2.0, "targets": 2}, {"region": "us1", "up": 2.0, "targets": 2}])
    );

    let port = free_port();
    let _q = Proc::spawn(
        s3_env(&mut promlake())
            .args([
                "query",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(&global),
    );
    wait_for("promlake query", Duration::from_secs(20), || {
        http_get(&format!("http://127.0.0.1:{port}/-/ready"))
    });
    let body = http_get(&format!(
        "http://127.0.0.1:{port}/federate?match%5B%5D=%7B__name__%3D~%22job%3A.%2A%22%7D"
    ))
    .unwrap();
    let series: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(series.len(), 2, "{body}");
    assert!(
        series.iter().all(|l| l.starts_with("job:requests:rate5m{")),
        "{body}"
    );
    assert!(
        series.iter().any(|l| l.contains("region=\"eu1\""))
            && series.iter().any(|l| l.contains("region=\"us1\"")),
        "{body}"
    );
    assert!(body.starts_with("# TYPE job:requests:rate5m untyped\n"));

    // A region that cannot be read fails the query, naming it, instead of vanishing from the sum.
    let broken = write(
        dir.path(),
        "broken.yml",
        &format!(
            "regions:\n  - {{name: eu1, storage: {}}}\n  - {{name: ap1, storage: 's3://no-such-bucket-promlake/x'}}\n",
            eu_data.display()
        ),
    );
    let o = run(s3_env(&mut promlake()).args([
        "sql",
        "--config",
        broken.to_str().unwrap(),
        "SELECT sum(value) FROM samples",
    ]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("region ap1 is unavailable") && e.contains("unavailable (503)"),
        "{e}"
    );
}
