//! Notifications: written as intents in the tick's state before they are sent, sent with retries,
//! and marked sent afterwards (a create-only marker object).
//!
//! An intent names its sender's deadline: the sender stops trying by then, and until then the
//! intent is its sender's alone. A later tick's owner that finds an intent without a marker
//! leaves it alone while its deadline is ahead (the sender may still be waiting on a slow
//! receiver), and takes it over, with a deadline of its own, once the deadline has passed (the
//! sender died or gave up). So a notification survives the loss of the replica that decided it
//! (at least once), and a slow or failing receiver never gets it twice while nothing crashes.

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
    /// Until when (ms since the epoch, by the evaluators' clock) the intent belongs to the
    /// replica sending it. Entries written before deadlines existed read as 0: long past.
    #[serde(default)]
    pub deadline_ms: i64,
}

/// POSTs an intent, retrying with backoff (250 ms doubling) until it succeeds or `budget` is
/// spent; no attempt outlasts the budget. The error is the last failure.
pub async fn send(
    client: &reqwest::Client,
    intent: &Intent,
    budget: Duration,
) -> Result<u32, String> {
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(250);
    let mut attempts = 0u32;
    loop {
        let left = budget.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "{}: no time left before the send deadline (after {attempts} attempts)",
                intent.url
            ));
        }
        attempts += 1;
        let res = client
            .post(&intent.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("promlake/", env!("CARGO_PKG_VERSION")),
            )
            .body(intent.body.clone())
            .timeout(left)
            .send()
            .await;
        let err = match res {
            Ok(r) if r.status().is_success() => return Ok(attempts),
            Ok(r) => format!("{} answered HTTP {}", intent.url, r.status()),
            Err(e) => format!("{}: {e}", intent.url),
        };
        if started.elapsed() + backoff >= budget {
            return Err(format!("{err} (after {attempts} attempts)"));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
