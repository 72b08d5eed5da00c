//! The real clock, for the steps that wait while they run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsflow_core::ports::Clock;
use opsflow_core::CoreError;

/// System time and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    async fn sleep(&self, ms: u64) -> Result<(), CoreError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}
