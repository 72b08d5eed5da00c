//! opsflow offline: the real state machine files on the local engine, the real handlers
//! in-process, AWS calls to the local cloud (moto + extension on 127.0.0.1), whose clock the
//! engine drives. One module per capability, the local cloud shared:
//!
//! - [`cloud`]: starting, stopping and steering the local cloud.
//! - [`provision`]: the custom resource's pipeline.
//! - [`alerts`]: alarms through the enrich handler to a subscribed queue.
//! - [`audit`]: the scheduled fleet audits across the local cloud's accounts.
//! - [`runbook`]: fleet runbooks across the local cloud's accounts and regions.

pub mod alerts;
pub mod audit;
pub mod cloud;
pub mod provision;
pub mod runbook;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context};

use opsflow_asl::{model, StateMachine, TaskClock};
use opsflow_core::ports::Clock;
use opsflow_core::CoreError;
use serde_json::json;

pub use cloud::LocalCloud;

/// The account and region of local ARNs.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// The repository root (where `statemachines/` and `infra/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:opsflow-{name}")
}

pub(crate) fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A step's clock on the local engine: the engine's clock for the invocation, which the local
/// cloud's time-driven progress follows while the step waits.
pub(crate) struct LocalClock {
    pub(crate) task: TaskClock,
    pub(crate) cloud: Arc<LocalCloud>,
}

impl Clock for LocalClock {
    fn now_ms(&self) -> i64 {
        self.task.now_ms()
    }

    async fn sleep(&self, ms: u64) -> Result<(), CoreError> {
        self.task.sleep(ms).await;
        self.cloud
            .control("clock", json!({"now_ms": self.task.now_ms()}))
            .await
            .map(|_| ())
            .map_err(|e| CoreError::transient("set the local cloud's clock", e.to_string()))
    }
}

/// A state machine file of the repository, as SAM would deploy it: each `(placeholder, value)`
/// of `substitutions` replaced (DefinitionSubstitutions), then parsed.
pub fn load_machine(relative: &str, substitutions: &[(String, String)]) -> anyhow::Result<Arc<StateMachine>> {
    let path = repo_root().join(relative);
    let mut text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for (from, to) in substitutions {
        text = text.replace(from, to);
    }
    model::parse(&text).map(Arc::new).map_err(|e| {
        anyhow!(
            "{}: {}",
            path.display(),
            e.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ")
        )
    })
}
