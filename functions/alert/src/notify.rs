//! Notifications: written as intents in the tick's state before they are sent, sent with retries,
//! and marked sent afterwards (a create-only marker object). The owner of the next tick resends
//! any intent of the previous tick that has no marker, so a notification survives the loss of the
//! replica that decided it: at least once, and exactly once while nothing crashes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentKind {
    /// A webhook receiver (Alertmanager's payload).
    Webhook,
    /// An Alertmanager's `/api/v2/alerts`.
    Alertmanager,
}

/// A notification decided at a tick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Unique within the tick.
    pub id: u32,
    pub kind: IntentKind,
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// For logs: receiver, group, counts.
    pub description: String,
}

/// POSTs an intent, retrying with backoff (250 ms doubling) until it succeeds or `deadline`
/// passes. The error is the last failure.
pub async fn send(
    client: &reqwest::Client,
    intent: &Intent,
    deadline: Duration,
) -> Result<u32, String> {
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(250);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let left = deadline.saturating_sub(started.elapsed());
        let res = client
            .post(&intent.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("promlake/", env!("CARGO_PKG_VERSION")),
            )
            .body(intent.body.clone())
            .timeout(left.max(Duration::from_millis(100)))
            .send()
            .await;
        let err = match res {
            Ok(r) if r.status().is_success() => return Ok(attempts),
            Ok(r) => format!("{} answered HTTP {}", intent.url, r.status()),
            Err(e) => format!("{}: {e}", intent.url),
        };
        if started.elapsed() + backoff >= deadline {
            return Err(format!("{err} (after {attempts} attempts)"));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
