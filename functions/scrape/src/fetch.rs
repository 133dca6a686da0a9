//! Fetching a target's page over HTTP, as Prometheus does: its `Accept` header, gzip, the
//! `X-Prometheus-Scrape-Timeout-Seconds` header, a timeout for the whole exchange and a body size
//! limit applied to the decompressed page.

use std::io::Read;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use promlake_core::config::{ScrapeConfig, ScrapeProtocol};
use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};

/// Cap on a page when the job sets no `body_size_limit` (Prometheus has none; an unbounded
/// response would otherwise be held in memory).
pub const DEFAULT_BODY_LIMIT: u64 = 256 << 20;

/// Why a scrape failed before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("scrape timed out after {0:?}")]
    Timeout(Duration),
    #[error("body size limit exceeded ({0} bytes)")]
    BodyTooLarge(u64),
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("{0}")]
    Http(String),
    #[error("decompressing the gzip body: {0}")]
    Gzip(String),
    #[error("reading credentials: {0}")]
    Credentials(String),
}

impl FetchError {
    /// A short, stable reason for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::BodyTooLarge(_) => "body_size_limit",
            FetchError::Status(_) => "http_status",
            FetchError::Http(_) => "connection",
            FetchError::Gzip(_) => "gzip",
            FetchError::Credentials(_) => "credentials",
        }
    }
}

/// A fetched page.
#[derive(Debug, Clone)]
pub struct Page {
    pub body: Bytes,
    pub content_type: Option<String>,
}

/// Prometheus' `Accept` header for a list of protocols, most preferred first.
pub fn accept_header(protocols: &[ScrapeProtocol]) -> String {
    let mut weight = 6; // Prometheus knows 5 protocols: weights 0.6 down, then */*.
    let mut parts = Vec::new();
    for p in protocols {
        parts.push(format!("{};q=0.{weight}", p.media_type()));
        weight -= 1;
    }
    parts.push(format!("*/*;q=0.{weight}"));
    parts.join(",")
}

/// Builds the HTTP client of a job (redirects and TLS settings are per job).
pub fn client_for(job: &ScrapeConfig) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .redirect(if job.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true);
    if let Some(tls) = &job.tls_config {
        if tls.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("tls_config.ca_file {ca}: {e}"))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("tls_config.ca_file {ca}: {e}"))?;
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| e.to_string())
}

fn read_secret(
    inline: &Option<String>,
    file: &Option<String>,
) -> Result<Option<String>, FetchError> {
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    if let Some(f) = file {
        return std::fs::read_to_string(f)
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| FetchError::Credentials(format!("{f}: {e}")));
    }
    Ok(None)
}

/// Fetches `url` for `job` within `timeout`, reading at most `limit` bytes of page.
pub async fn fetch(
    client: &reqwest::Client,
    job: &ScrapeConfig,
    url: &str,
    timeout: Duration,
) -> Result<Page, FetchError> {
    let limit = match job.body_size_limit() {
        0 => DEFAULT_BODY_LIMIT,
        n => n,
    };
    let exchange = async {
        let mut req = client
            .get(url)
            .header(ACCEPT, accept_header(&job.protocols()))
            .header(
                ACCEPT_ENCODING,
                if job.enable_compression {
                    "gzip"
                } else {
                    "identity"
                },
            )
            .header(USER_AGENT, concat!("promlake/", env!("CARGO_PKG_VERSION")))
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", timeout.as_secs_f64()),
            );
        if let Some(b) = &job.basic_auth {
            let pw = read_secret(&b.password, &b.password_file)?;
            req = req.basic_auth(&b.username, pw);
        }
        if let Some(a) = &job.authorization
            && let Some(cred) = read_secret(&a.credentials, &a.credentials_file)?
        {
            req = req.header(AUTHORIZATION, format!("{} {cred}", a.kind));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| FetchError::Http(error_chain(&e)))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(resp.status().to_string()));
        }
        let gzip = resp
            .headers()
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| FetchError::Http(error_chain(&e)))?;
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(FetchError::BodyTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        let body = if gzip {
            let mut out = Vec::with_capacity(body.len() * 4);
            let read = flate2::read::GzDecoder::new(&body[..])
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| FetchError::Gzip(e.to_string()))?;
            if read as u64 > limit {
                return Err(FetchError::BodyTooLarge(limit));
            }
            Bytes::from(out)
        } else {
            body.freeze()
        };
        Ok(Page { body, content_type })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(timeout)),
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_like_prometheus() {
        assert_eq!(
            accept_header(&[
                ScrapeProtocol::OpenMetricsText1_0_0,
                ScrapeProtocol::OpenMetricsText0_0_1,
                ScrapeProtocol::PrometheusText0_0_4
            ]),
            "application/openmetrics-text;version=1.0.0;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.3"
        );
    }
}
