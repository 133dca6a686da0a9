//! The query service over HTTP: one [`router`], served by `axum::serve` locally and by the
//! Lambda runtime in AWS.
//!
//! | route | |
//! |---|---|
//! | `POST /api/v1/sql` | the body is one SQL statement; `Accept` or `?format=` picks JSON rows, CSV, Arrow IPC or a text table |
//! | `GET /api/v1/sql?query=` | the same, for a browser |
//! | `GET /federate?match[]=` | Prometheus' federation endpoint |
//! | `GET /metrics` | promlake's own metrics |
//! | `GET /-/healthy`, `/-/ready` | |
//!
//! Errors use Prometheus' envelope: `{"status":"error","errorType":"bad_data","error":"..."}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::QueryError;
use crate::format::{self, Format};
use crate::service::QueryService;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<QueryService>,
}

/// A failed request, in Prometheus' error envelope.
pub struct ApiError(pub QueryError);

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "status": "error",
            "errorType": self.0.error_type(),
            "error": self.0.to_string(),
        });
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        retry_after(&self.0, &mut resp);
        resp
    }
}

/// The router of the query service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/sql", get(sql_get).post(sql_post))
        .route("/federate", get(federate))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "promlake is Healthy.\n" }))
        .route("/-/ready", get(|| async { "promlake is Ready.\n" }))
        .fallback(|| async { plain_error(StatusCode::NOT_FOUND, "404 page not found") })
        .method_not_allowed_fallback(|| async {
            plain_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .with_state(state)
}

fn params(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn pick_format(params: &[(String, String)], headers: &HeaderMap) -> Result<Format, QueryError> {
    if let Some((_, f)) = params.iter().find(|(k, _)| k == "format") {
        return Format::parse(f).ok_or_else(|| {
            QueryError::BadQuery(format!(
                "unknown format {f:?}: use json, csv, arrow or table"
            ))
        });
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(Format::from_accept)
        .unwrap_or(Format::Json))
}

async fn run_sql(state: &AppState, sql: &str, format: Format) -> Result<Response, ApiError> {
    if sql.trim().is_empty() {
        return Err(QueryError::BadQuery("empty query: send one SQL statement".into()).into());
    }
    let (schema, batches) = state.service.sql(sql).await?;
    let body = format::encode(format, &schema, &batches)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

async fn sql_post(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(&q);
    let format = pick_format(&p, &headers)?;
    let sql = std::str::from_utf8(&body)
        .map_err(|_| QueryError::BadQuery("the query is not UTF-8".into()))?;
    // A form body (`query=...`) works too, as for Prometheus' API. `curl --data-binary "SELECT"`
    // labels a raw statement as a form as well: without a `query` field, the body is the SQL.
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if is_form
        && let Some((_, q)) =
            url::form_urlencoded::parse(sql.as_bytes()).find(|(k, _)| k == "query")
    {
        return run_sql(&state, &q, format).await;
    }
    run_sql(&state, sql, format).await
}

async fn sql_get(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = params(&q);
    let format = pick_format(&p, &headers)?;
    let sql = p
        .iter()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    run_sql(&state, &sql, format).await
}

/// `/federate` answers errors as Prometheus' federation handler does: the status and the plain
/// message (`1:1: parse error: unexpected <op:->`), not the API's JSON envelope.
async fn federate(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let selectors: Vec<String> = params(&q)
        .into_iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v)
        .collect();
    match state.service.federate(&selectors).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            let mut resp = plain_error(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &e.to_string(),
            );
            retry_after(&e, &mut resp);
            resp
        }
    }
}

/// A busy service tells the client when to come back.
fn retry_after(e: &QueryError, resp: &mut Response) {
    if let QueryError::Overloaded(_) = e {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
}

/// An error as Go's `http.Error` writes it.
fn plain_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{message}\n"),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.service.registry().render(),
    )
        .into_response()
}
