//! What opsflow remembers about the resources it set up, in a store only opsflow writes (a
//! DynamoDB table on AWS): never in tags, which anyone who may tag the instance could edit.
//!
//! - A **lifecycle** per resource and instance (stack, logical id, instance), from the first
//!   profile change opsflow makes to the Delete: the profile the instance had before it, the
//!   profile opsflow applied, and the request that started it. `OnDelete: Revert` restores
//!   exactly that previous profile; a failed Create, or the failed Update that moved the resource
//!   to this instance, restores it at once (CloudFormation's rollback never sends a Delete for
//!   it). The Delete ends the lifecycle, so a later stack on the same instance starts afresh.
//! - The **command** a request's execution last sent, so that whatever ends the execution
//!   (a failure, a timeout, an abort) can cancel it.
//! - An **answer** per RequestId: claimed before the PUT, so a redelivered request, the safety
//!   net and the dead-letter handler never answer a request twice.

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::ports::SetupStore;

/// How long an answered RequestId is remembered: CloudFormation redelivers within the hour.
pub const ANSWER_TTL_S: i64 = 7 * 24 * 3600;

/// A resource's lifecycle on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub instance_id: String,
    /// The profile the instance had before opsflow's first change (ARN), `None` for none.
    pub previous_profile_arn: Option<String>,
    /// The profile opsflow last applied (ARN), `None` when it removed the profile.
    pub applied_profile_arn: Option<String>,
    /// The RequestId of the Create (or replacing Update) that started the lifecycle.
    pub started_by: String,
}

/// The key of a resource's lifecycle on an instance.
pub fn lifecycle_key(stack_id: &str, logical_id: &str, instance_id: &str) -> String {
    format!("lifecycle|{stack_id}|{logical_id}|{instance_id}")
}

/// The key of a request's answer.
pub fn answer_key(request_id: &str) -> String {
    format!("answer|{request_id}")
}

fn to_json<T: Serialize>(v: &T) -> Result<String, CoreError> {
    serde_json::to_string(v).map_err(|e| CoreError::transient("serialize a state record", e.to_string()))
}

fn from_json<T: for<'de> Deserialize<'de>>(key: &str, text: &str) -> Result<T, CoreError> {
    serde_json::from_str(text).map_err(|e| CoreError::conflict(format!("state record {key}"), format!("is not readable: {e}")))
}

/// The record the store gave for `key`, if any, read.
fn record<T: for<'de> Deserialize<'de>>(key: &str, text: Option<String>) -> Result<Option<T>, CoreError> {
    text.map(|text| from_json(key, &text)).transpose()
}

pub async fn lifecycle(store: &impl SetupStore, key: &str) -> Result<Option<Lifecycle>, CoreError> {
    record(key, store.get(key).await?)
}

/// Starts the lifecycle unless one is under way (the first change of a lifecycle records what
/// was there before; later ones keep it). Returns the lifecycle in force.
pub async fn begin_lifecycle(store: &impl SetupStore, key: &str, fresh: &Lifecycle) -> Result<Lifecycle, CoreError> {
    if store.put_new(key, &to_json(fresh)?, None).await? {
        return Ok(fresh.clone());
    }
    lifecycle(store, key)
        .await?
        .ok_or_else(|| CoreError::transient("read the lifecycle", format!("{key} vanished while it was read")))
}

/// Records the profile opsflow now applied.
pub async fn record_applied(store: &impl SetupStore, key: &str, mut life: Lifecycle, applied: Option<&str>) -> Result<(), CoreError> {
    life.applied_profile_arn = applied.map(String::from);
    store.put(key, &to_json(&life)?, None).await
}

pub async fn end_lifecycle(store: &impl SetupStore, key: &str) -> Result<(), CoreError> {
    store.delete(key).await
}

/// Claims the one answer to a request: false when it was answered (or is being answered) already.
pub async fn claim_answer(store: &impl SetupStore, request_id: &str, status: &str, now_s: i64) -> Result<bool, CoreError> {
    let record = serde_json::json!({"status": status, "at": now_s}).to_string();
    store.put_new(&answer_key(request_id), &record, Some(now_s + ANSWER_TTL_S)).await
}

/// Gives a claim back when the PUT failed, so a retry can answer.
pub async fn release_answer(store: &impl SetupStore, request_id: &str) -> Result<(), CoreError> {
    store.delete(&answer_key(request_id)).await
}

/// The execution running for a resource (a stack's logical id): a Delete or an Update that
/// arrives while it runs (CloudFormation gave up on it, or its ServiceTimeout passed) stops it
/// and undoes what it did first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub request_id: String,
    /// The request it runs for, to undo it.
    pub request: serde_json::Value,
}

pub fn running_key(stack_id: &str, logical_id: &str) -> String {
    format!("running|{stack_id}|{logical_id}")
}

pub async fn running(store: &impl SetupStore, stack_id: &str, logical_id: &str) -> Result<Option<Running>, CoreError> {
    let key = running_key(stack_id, logical_id);
    record(&key, store.get(&key).await?)
}

pub async fn record_running(
    store: &impl SetupStore,
    stack_id: &str,
    logical_id: &str,
    running: &Running,
    now_s: i64,
) -> Result<(), CoreError> {
    store
        .put(&running_key(stack_id, logical_id), &to_json(running)?, Some(now_s + ANSWER_TTL_S))
        .await
}

/// Forgets the resource's running execution, if it is `request_id`'s.
pub async fn end_running(store: &impl SetupStore, stack_id: &str, logical_id: &str, request_id: &str) -> Result<(), CoreError> {
    if running(store, stack_id, logical_id)
        .await?
        .is_some_and(|r| r.request_id == request_id)
    {
        store.delete(&running_key(stack_id, logical_id)).await?;
    }
    Ok(())
}

/// The command a request's execution last sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentCommand {
    pub command_id: String,
    pub instance_id: String,
}

pub fn command_key(request_id: &str) -> String {
    format!("command|{request_id}")
}

pub async fn record_command(
    store: &impl SetupStore,
    request_id: &str,
    command_id: &str,
    instance_id: &str,
    now_s: i64,
) -> Result<(), CoreError> {
    let record = SentCommand {
        command_id: command_id.to_string(),
        instance_id: instance_id.to_string(),
    };
    // Kept as long as an answer: past that, no execution of the request can be running.
    store
        .put(&command_key(request_id), &to_json(&record)?, Some(now_s + ANSWER_TTL_S))
        .await
}

pub async fn sent_command(store: &impl SetupStore, request_id: &str) -> Result<Option<SentCommand>, CoreError> {
    let key = command_key(request_id);
    record(&key, store.get(&key).await?)
}
