//! The one way to wait: a poll loop with backoff and a deadline.
//!
//! A step that waits for AWS (an association, a volume modification, an SSM agent, a command)
//! checks, and if not done returns a [`Poll`]: the state machine's Wait state sleeps its
//! `delaySeconds` and calls the check again, until the deadline. Inside one invocation a
//! [`Watch`] may check a few times itself (sleeping on the [`Clock`]) before handing the wait
//! back to the state machine, which saves transitions on short waits.

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::ports::Clock;

/// Backoff of the poll loops: the first delay, the factor and the cap, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPolicy {
    pub first_s: u64,
    pub factor: f64,
    pub max_s: u64,
}

impl PollPolicy {
    /// 1 s, then ×1.5 up to 5 s: a resource that becomes ready is noticed within 5 s.
    pub const DEFAULT: PollPolicy = PollPolicy {
        first_s: 1,
        factor: 1.5,
        max_s: 5,
    };

    /// Every second: for short waits whose end matters to the second (a freeze).
    pub const EVERY_SECOND: PollPolicy = PollPolicy {
        first_s: 1,
        factor: 1.0,
        max_s: 1,
    };
}

/// One invocation's watch over a wait: how long it may go on checking.
pub struct Watch<'c, C> {
    clock: &'c C,
    until_ms: i64,
}

impl<'c, C: Clock> Watch<'c, C> {
    /// A watch of `watch_s` seconds from now.
    pub fn start(clock: &'c C, watch_s: i64) -> Self {
        Watch {
            clock,
            until_ms: clock.now_ms() + watch_s * 1000,
        }
    }

    /// Now, in seconds since the epoch.
    pub fn now_s(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    /// Waits `poll`'s delay and says whether to check again: false (without waiting) when the
    /// delay would end past the watch, so the state machine's Wait takes over.
    pub async fn pause(&self, poll: &Poll) -> Result<bool, CoreError> {
        let delay_ms = poll.delay_seconds * 1000;
        if self.clock.now_ms() + delay_ms as i64 > self.until_ms {
            return Ok(false);
        }
        self.clock.sleep(delay_ms).await?;
        Ok(true)
    }
}

/// What one check of a watched wait found.
pub enum Check<T> {
    /// The wait is over, with what it waited for.
    Done(T),
    /// Still waiting, and why.
    Waiting(String),
}

/// How a [`watch`] ended: done, or handed back to the state machine's Wait (with why it still
/// waits).
pub enum Watched<T> {
    Done(T, Poll),
    Waiting(Poll, String),
}

/// The one way to wait, inside one invocation: checks, and while not done, waits the poll's
/// next delay on the clock for up to `watch_s`, then hands the wait back to the state machine;
/// past the poll's deadline it fails with `DeadlineExceeded` naming `what` and why it waited.
pub async fn watch<T, C: Clock, F: std::future::Future<Output = Result<Check<T>, CoreError>>>(
    clock: &C,
    watch_s: i64,
    mut poll: Poll,
    policy: PollPolicy,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Result<Watched<T>, CoreError> {
    let watch = Watch::start(clock, watch_s);
    loop {
        let why = match check().await? {
            Check::Done(t) => return Ok(Watched::Done(t, poll)),
            Check::Waiting(why) => why,
        };
        poll = poll.next(watch.now_s(), policy, what, &why)?;
        if !watch.pause(&poll).await? {
            return Ok(Watched::Waiting(poll, why));
        }
    }
}

/// Where a poll loop stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    pub attempt: u32,
    pub delay_seconds: u64,
    pub deadline_epoch_s: i64,
}

impl Poll {
    pub fn start(now_s: i64, timeout_s: i64, policy: PollPolicy) -> Poll {
        Poll {
            attempt: 0,
            delay_seconds: policy.first_s,
            deadline_epoch_s: now_s + timeout_s,
        }
    }

    /// The next wait, or `DeadlineExceeded` naming `what` and `why` it is still waiting.
    pub fn next(&self, now_s: i64, policy: PollPolicy, what: &str, why: &str) -> Result<Poll, CoreError> {
        if now_s >= self.deadline_epoch_s {
            return Err(self.expired(what, why));
        }
        let grown = ((self.delay_seconds as f64) * policy.factor).round() as u64;
        let delay = grown.clamp(1, policy.max_s).min((self.deadline_epoch_s - now_s).max(1) as u64);
        Ok(Poll {
            attempt: self.attempt + 1,
            delay_seconds: delay,
            deadline_epoch_s: self.deadline_epoch_s,
        })
    }

    /// The `DeadlineExceeded` of a wait for `what` that is still waiting because of `why`.
    pub fn expired(&self, what: &str, why: &str) -> CoreError {
        CoreError::DeadlineExceeded {
            what: what.to_string(),
            detail: format!(
                "still waiting at the deadline {}: {why}",
                crate::time::format_utc(self.deadline_epoch_s)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SteppedClock;

    #[tokio::test]
    async fn a_watch_waits_each_delay_and_hands_back_before_its_window_ends() {
        let clock = SteppedClock::starting_at(1_000_000);
        let watch = Watch::start(&clock, 10);
        let poll = |delay_seconds| Poll {
            attempt: 0,
            delay_seconds,
            deadline_epoch_s: i64::MAX,
        };
        assert!(watch.pause(&poll(4)).await.unwrap());
        assert!(watch.pause(&poll(5)).await.unwrap());
        assert_eq!(clock.now_ms(), 1_009_000);
        assert_eq!(watch.now_s(), 1_009);
        // 2 s more would end past the 10 s window: no wait, the state machine takes over.
        assert!(!watch.pause(&poll(2)).await.unwrap());
        assert_eq!(clock.now_ms(), 1_009_000);
        assert!(watch.pause(&poll(1)).await.unwrap());
        // A zero window never waits.
        assert!(!Watch::start(&clock, 0).pause(&poll(1)).await.unwrap());
    }

    #[tokio::test]
    async fn watch_checks_until_done_or_hands_back_with_why_it_waits() {
        let clock = SteppedClock::starting_at(1_000_000);
        let start = Poll::start(1_000, 600, PollPolicy::DEFAULT);
        let checks = std::cell::Cell::new(0);
        let done_on_third = || async {
            checks.set(checks.get() + 1);
            Ok(match checks.get() {
                3 => Check::Done("ready"),
                n => Check::Waiting(format!("check {n}")),
            })
        };
        match watch(&clock, 60, start.clone(), PollPolicy::DEFAULT, "x", done_on_third)
            .await
            .unwrap()
        {
            Watched::Done(v, poll) => assert_eq!((v, poll.attempt), ("ready", 2)),
            Watched::Waiting(..) => panic!("done within the watch"),
        }
        // A zero watch hands back at once, saying why.
        let never = || async { Ok(Check::<()>::Waiting("still pending".to_string())) };
        match watch(&clock, 0, start, PollPolicy::DEFAULT, "x", never).await.unwrap() {
            Watched::Waiting(poll, why) => assert_eq!((poll.attempt, why.as_str()), (1, "still pending")),
            Watched::Done(..) => panic!("never done"),
        }
    }
}
