//! Alerting end to end: `promlake alert` replicas as processes, a real Alertmanager 0.25, a
//! webhook sink; one replica is killed mid-run.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::post;
use common::*;
use promlake_core::labels::Labels;

#[test]
fn check_rules_like_promtool() {
    let o = run(promlake().args(["check", "rules", "examples/rules.yml"]));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("SUCCESS: 3 rules found"));
    let live = promlake_core::testdata::prometheus_file("live/rules.yml");
    let o = run(promlake().args(["check", "rules"]).arg(&live));
    assert!(!o.status.success());
    assert!(stdout(&o).contains("PromQL comes later"), "{}", stdout(&o));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: SELECT nope AS value FROM samples\n      - alert: B\n        expr: SELECT 1 AS v\n      - alert: C\n        expr: SELECT map(['a'], [1]) AS m, 1 AS value\n").unwrap();
    let o = run(promlake().args(["check", "rules"]).arg(&bad));
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains("rule \"A\"") && out.contains("nope"), "{out}");
    assert!(
        out.contains("rule \"B\": the query returns no `value` column"),
        "{out}"
    );
    assert!(
        out.contains("rule \"C\": column `m` maps to Int64"),
        "the evaluator's own check of a rule's output: {out}"
    );
}

type Received = Arc<Mutex<Vec<(String, Instant, serde_json::Value)>>>;

async fn sink() -> (Received, u16) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = Router::new().route(
        "/{who}",
        post(move |Path(who): Path<String>, body: String| {
            let g = g.clone();
            async move {
                g.lock()
                    .unwrap()
                    .push((who, Instant::now(), serde_json::from_str(&body).unwrap()));
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (got, port)
}

const RULES: &str = r#"groups:
  - name: e2e
    interval: 1s
    rules:
      - alert: Window
        expr: >
          SELECT 'i' || CAST(n AS VARCHAR) AS instance, 1.0 AS value
          FROM generate_series(0, 14) AS t(n)
          WHERE CAST(date_part('epoch', now()) AS BIGINT) % 60 >= n * 4
            AND CAST(date_part('epoch', now()) AS BIGINT) % 60 < n * 4 + 3
      - alert: Steady
        expr: SELECT 'web' AS service, 1.0 AS value
        annotations: {summary: 'service {{ $labels.service }} in {{ $externalLabels.cluster }}'}
"#;

#[test]
fn replicas_notify_once_through_alertmanager_and_webhooks_when_one_is_killed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (got, sink_port) = rt.block_on(sink());
    let dir = tempfile::tempdir().unwrap();
    let am_port = free_port();
    std::fs::write(
        dir.path().join("am.yml"),
        format!("route: {{receiver: sink, group_by: [alertname, instance], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}\nreceivers:\n  - name: sink\n    webhook_configs: [{{url: 'http://127.0.0.1:{sink_port}/am'}}]\n"),
    )
    .unwrap();
    let _am = Proc::spawn(
        std::process::Command::new(peer("prometheus-alertmanager"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address="),
    );
    wait_for("Alertmanager", Duration::from_secs(30), || {
        http_get(&format!("http://127.0.0.1:{am_port}/-/ready"))
    });
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let cfg = dir.path().join("promlake.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{evaluation_interval: 1s, external_labels: {{cluster: e2e}}}}\nrule_files: [rules.yml]\nstorage: {}\nalerting:\n  alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]}}]\n  route: {{receiver: direct, group_by: [alertname, instance], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}\n  receivers:\n    - name: direct\n      webhook_configs: [{{url: 'http://127.0.0.1:{sink_port}/direct'}}]\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let api_port = free_port();
    let mut replicas: Vec<Option<Proc>> = (0..3)
        .map(|i| {
            let mut c = promlake();
            c.args(["alert", "--replica", &format!("r{i}"), "--config"])
                .arg(&cfg);
            if i == 2 {
                c.args(["--listen", &format!("127.0.0.1:{api_port}")]);
            }
            Some(Proc::spawn(&mut c))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(12));
    let mut victim = replicas[0].take().unwrap();
    victim.0.kill().unwrap();
    let _ = victim.0.wait();
    let killed_at = Instant::now();
    std::thread::sleep(Duration::from_secs(14));
    let alerts: serde_json::Value = serde_json::from_str(
        &http_get(&format!("http://127.0.0.1:{api_port}/api/v1/alerts")).unwrap(),
    )
    .unwrap();
    let rules: serde_json::Value = serde_json::from_str(
        &http_get(&format!("http://127.0.0.1:{api_port}/api/v1/rules")).unwrap(),
    )
    .unwrap();
    let am: serde_json::Value = serde_json::from_str(
        &http_get(&format!("http://127.0.0.1:{am_port}/api/v2/alerts")).unwrap(),
    )
    .unwrap();
    for r in replicas.iter_mut() {
        if let Some(p) = r.take() {
            let _ = p.terminate();
        }
    }
    let got = got.lock().unwrap().clone();

    // promlake's own webhook notifications: each (group, status) once.
    let direct: Vec<&serde_json::Value> = got
        .iter()
        .filter(|g| g.0 == "direct")
        .map(|g| &g.2)
        .collect();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for n in &direct {
        *seen
            .entry((
                n["groupKey"].as_str().unwrap().to_owned(),
                n["status"].as_str().unwrap().to_owned(),
            ))
            .or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "sent more than once: {dups:?}");
    assert_eq!(
        seen.get(&("{}:{alertname=\"Steady\"}".into(), "firing".into())),
        Some(&1),
        "{seen:?}"
    );
    let windows_fired = seen
        .keys()
        .filter(|(k, s)| k.contains("Window") && s == "firing")
        .count();
    let windows_resolved = seen
        .keys()
        .filter(|(k, s)| k.contains("Window") && s == "resolved")
        .count();
    assert!(windows_fired >= 4 && windows_resolved >= 3, "{seen:?}");
    assert!(
        got.iter()
            .any(|g| g.0 == "direct" && g.1 > killed_at + Duration::from_secs(2)),
        "notifications continue after a replica is killed"
    );
    let steady = direct
        .iter()
        .find(|n| n["groupKey"] == "{}:{alertname=\"Steady\"}")
        .unwrap();
    assert_eq!(steady["version"], "4");
    assert_eq!(
        steady["alerts"][0]["labels"]["cluster"], "e2e",
        "external labels"
    );
    assert_eq!(
        steady["alerts"][0]["annotations"]["summary"],
        "service web in e2e"
    );

    // Through the real Alertmanager: it got the alerts with their labels, and its fingerprint is
    // the one promlake computes.
    let am_steady = am
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "Steady")
        .expect("Steady in Alertmanager");
    assert_eq!(
        am_steady["labels"],
        serde_json::json!({"alertname": "Steady", "service": "web", "cluster": "e2e"})
    );
    let labels = Labels::from_pairs([
        ("alertname", "Steady"),
        ("service", "web"),
        ("cluster", "e2e"),
    ]);
    assert_eq!(
        am_steady["fingerprint"].as_str().unwrap(),
        format!("{:016x}", labels.fingerprint())
    );
    assert_eq!(
        steady["alerts"][0]["fingerprint"], am_steady["fingerprint"],
        "promlake's own webhook fingerprint is Alertmanager's, external labels included"
    );
    let via_am: Vec<&serde_json::Value> =
        got.iter().filter(|g| g.0 == "am").map(|g| &g.2).collect();
    let am_steady_firing = via_am
        .iter()
        .filter(|n| n["status"] == "firing" && n["groupLabels"]["alertname"] == "Steady")
        .count();
    assert_eq!(am_steady_firing, 1, "Alertmanager notified once");

    // The evaluator's API answers like Prometheus'.
    assert_eq!(alerts["status"], "success");
    assert!(
        alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "Steady" && a["state"] == "firing")
    );
    let g = &rules["data"]["groups"][0];
    assert_eq!(g["name"], "e2e");
    assert_eq!(g["rules"][1]["type"], "alerting");
    assert_eq!(g["rules"][1]["health"], "ok");
}
