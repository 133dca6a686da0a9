//! `/api/v1/rules` and `/api/v1/alerts` as Prometheus serves them, from the latest state of each
//! rule group this evaluator knows (its own ticks and the ones it adopted).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::dispatch::rfc3339;
use crate::evaluator::{StatusHandle, state_name};
use crate::state::{Alert, AlertStatus};

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, how Prometheus writes alert values in its API.
pub fn go_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": state_name(a.state),
        "activeAt": rfc3339(a.active_at),
        "value": go_e(a.value),
    })
}

fn rules_json(status: &StatusHandle) -> Value {
    let groups = status.read().map(|s| s.clone()).unwrap_or_default();
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| {
            let st = g.state.as_ref();
            let last = st.map(|s| rfc3339(s.tick_ms)).unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
            let rules: Vec<Value> = g
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let h = st.and_then(|s| s.rules.get(i)).filter(|h| h.name == r.name());
                    let health = h.map(|h| h.health.clone()).unwrap_or_else(|| "unknown".into());
                    let mut v = json!({
                        "name": r.name(),
                        "query": r.expr,
                        "health": health,
                        "evaluationTime": h.map(|h| h.evaluation_seconds).unwrap_or(0.0),
                        "lastEvaluation": last,
                    });
                    if let Some(e) = h.and_then(|h| h.last_error.clone()) {
                        v["lastError"] = json!(e);
                    }
                    if r.is_alert() {
                        let alerts: Vec<&Alert> = h.map(|h| h.alerts.iter().filter(|a| a.state != AlertStatus::Inactive).collect()).unwrap_or_default();
                        let state = if alerts.iter().any(|a| a.state == AlertStatus::Firing) {
                            "firing"
                        } else if alerts.is_empty() {
                            "inactive"
                        } else {
                            "pending"
                        };
                        v["type"] = json!("alerting");
                        v["state"] = json!(state);
                        v["duration"] = json!(r.for_.map(|d| d.0.as_secs_f64()).unwrap_or(0.0));
                        v["keepFiringFor"] = json!(r.keep_firing_for.map(|d| d.0.as_secs_f64()).unwrap_or(0.0));
                        v["labels"] = json!(r.labels);
                        v["annotations"] = json!(r.annotations);
                        v["alerts"] = Value::Array(alerts.into_iter().map(alert_json).collect());
                    } else {
                        v["type"] = json!("recording");
                        v["labels"] = json!(r.labels);
                    }
                    v
                })
                .collect();
            json!({
                "name": g.name,
                "file": g.file,
                "rules": rules,
                "interval": g.interval_seconds,
                "limit": g.limit,
                "evaluationTime": st.map(|s| s.rules.iter().map(|r| r.evaluation_seconds).sum::<f64>()).unwrap_or(0.0),
                "lastEvaluation": last,
            })
        })
        .collect();
    json!({"status": "success", "data": {"groups": groups}})
}

fn alerts_json(status: &StatusHandle) -> Value {
    let groups = status.read().map(|s| s.clone()).unwrap_or_default();
    let alerts: Vec<Value> = groups
        .iter()
        .filter_map(|g| g.state.as_ref())
        .flat_map(|s| {
            s.alerts()
                .filter(|a| a.state != AlertStatus::Inactive)
                .map(alert_json)
                .collect::<Vec<_>>()
        })
        .collect();
    json!({"status": "success", "data": {"alerts": alerts}})
}

fn json_response(v: Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The evaluator's routes.
pub fn router(status: StatusHandle) -> Router {
    Router::new()
        .route(
            "/api/v1/rules",
            get(|State(s): State<StatusHandle>| async move { json_response(rules_json(&s)) }),
        )
        .route(
            "/api/v1/alerts",
            get(|State(s): State<StatusHandle>| async move { json_response(alerts_json(&s)) }),
        )
        .with_state(status)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_like_prometheus_api() {
        assert_eq!(super::go_e(1.0), "1e+00");
        assert_eq!(super::go_e(0.25), "2.5e-01");
        assert_eq!(super::go_e(1234.5), "1.2345e+03");
    }
}
