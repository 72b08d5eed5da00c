//! One enrichment per alarm state change.
//!
//! SNS, Lambda's asynchronous retries and SQS all deliver at least once, and an alarm may reach
//! the function by two routes (an SNS action and an EventBridge rule): the same state change
//! can arrive twice. Before enriching, the handler *claims* the change's [`key`] — the alarm's
//! account, region, name, new state and state-change time, whatever carried it — in the
//! [`AlertLedger`] (a conditional write). Exactly one delivery wins the claim, publishes, and
//! marks the key published; a delivery that finds it published stops there.
//!
//! The rules that keep an alert from being lost:
//! - A claim holds for a lease. A delivery that finds a live claim of another fails with
//!   `Conflict` so that it is retried later (by then the claim was published, or its lease ran
//!   out — the holder crashed — and the retry takes it over).
//! - A failed publish releases the claim before the invocation fails, so the retry publishes.
//! - When the ledger itself fails, the alert is published anyway, with a note that it may be a
//!   duplicate: a duplicate is better than a lost alert.
//!
//! A state change whose alert went out before its diagnostics ended owes a follow-up
//! ([`crate::alert::diagnose`]): right after the alert is published (before it is recorded
//! published) the follow-up is claimed under its own key, noting the command it waits for
//! ([`AlertLedger::claim_owed`]); an alert whose publish failed notes its command there too, with
//! a lease already over. A later delivery of the same state change takes that claim over only
//! when it exists and its lease ran out ([`AlertLedger::reclaim`]) and reads the noted command:
//! one state change never sends two commands, and an owed follow-up is never lost to a crash.
//!
//! Unrecognized messages are not deduplicated (they have no state change to key on).

use std::future::Future;

use crate::alert::model::Alarm;
use crate::CoreError;

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This delivery holds the state change: enrich and publish it.
    Won,
    /// Published already (by an earlier delivery): the message id it got.
    Published(String),
    /// Another delivery holds a live claim (until `lease_until_s`).
    Busy { lease_until_s: i64 },
}

/// The record of state changes claimed and published (a DynamoDB table with a TTL).
pub trait AlertLedger: Sync {
    /// Claims `key` until `now_s + lease_s`: a new key, or one whose claim's lease ran out, is
    /// won; the record expires (TTL) at `expires_at_s`.
    fn claim(&self, key: &str, now_s: i64, lease_s: i64, expires_at_s: i64) -> impl Future<Output = Result<Claim, CoreError>> + Send;
    /// Marks `key` published with `message_id`.
    fn published(&self, key: &str, message_id: &str, expires_at_s: i64) -> impl Future<Output = Result<(), CoreError>> + Send;
    /// Gives up this delivery's claim of `key` (its publish failed), so a retry can take it.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), CoreError>> + Send;
    /// Claims `key` like [`AlertLedger::claim`], keeping `owed` on the record: what a delivery
    /// that takes the claim over ([`AlertLedger::reclaim`]) needs to finish the work.
    fn claim_owed(
        &self,
        key: &str,
        now_s: i64,
        lease_s: i64,
        expires_at_s: i64,
        owed: &str,
    ) -> impl Future<Output = Result<Claim, CoreError>> + Send;
    /// Claims `key` like [`AlertLedger::claim`], but only if it was claimed before: None when
    /// there is no record of it (nothing is owed); else the claim and what the record owes.
    fn reclaim(
        &self,
        key: &str,
        now_s: i64,
        lease_s: i64,
        expires_at_s: i64,
    ) -> impl Future<Output = Result<Option<(Claim, String)>, CoreError>> + Send;
}

/// No ledger: every delivery is enriched and published (a deployment without the table).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLedger;

impl AlertLedger for NoLedger {
    async fn claim(&self, _key: &str, _now_s: i64, _lease_s: i64, _expires_at_s: i64) -> Result<Claim, CoreError> {
        Ok(Claim::Won)
    }
    async fn published(&self, _key: &str, _message_id: &str, _expires_at_s: i64) -> Result<(), CoreError> {
        Ok(())
    }
    async fn release(&self, _key: &str) -> Result<(), CoreError> {
        Ok(())
    }
    async fn claim_owed(&self, _key: &str, _now_s: i64, _lease_s: i64, _expires_at_s: i64, _owed: &str) -> Result<Claim, CoreError> {
        Ok(Claim::Won)
    }
    async fn reclaim(&self, _key: &str, _now_s: i64, _lease_s: i64, _expires_at_s: i64) -> Result<Option<(Claim, String)>, CoreError> {
        Ok(None)
    }
}

/// The state change's key: `<account>/<region>/<alarm name>/<state>/<state change ms>`. The
/// same for every route that carries it (SNS, EventBridge, the Lambda action), so a change that
/// arrives by two routes is published once.
pub fn key(alarm: &Alarm) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        alarm.account_id, alarm.region, alarm.name, alarm.state, alarm.changed_at_ms
    )
}

/// A ledger if the deployment has one: `None` behaves as [`NoLedger`].
impl<L: AlertLedger> AlertLedger for Option<L> {
    async fn claim(&self, key: &str, now_s: i64, lease_s: i64, expires_at_s: i64) -> Result<Claim, CoreError> {
        match self {
            Some(l) => l.claim(key, now_s, lease_s, expires_at_s).await,
            None => Ok(Claim::Won),
        }
    }
    async fn published(&self, key: &str, message_id: &str, expires_at_s: i64) -> Result<(), CoreError> {
        match self {
            Some(l) => l.published(key, message_id, expires_at_s).await,
            None => Ok(()),
        }
    }
    async fn release(&self, key: &str) -> Result<(), CoreError> {
        match self {
            Some(l) => l.release(key).await,
            None => Ok(()),
        }
    }
    async fn claim_owed(&self, key: &str, now_s: i64, lease_s: i64, expires_at_s: i64, owed: &str) -> Result<Claim, CoreError> {
        match self {
            Some(l) => l.claim_owed(key, now_s, lease_s, expires_at_s, owed).await,
            None => Ok(Claim::Won),
        }
    }
    async fn reclaim(&self, key: &str, now_s: i64, lease_s: i64, expires_at_s: i64) -> Result<Option<(Claim, String)>, CoreError> {
        match self {
            Some(l) => l.reclaim(key, now_s, lease_s, expires_at_s).await,
            None => Ok(None),
        }
    }
}
