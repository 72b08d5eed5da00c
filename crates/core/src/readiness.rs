//! Whether an instance can take SSM commands: running, both status checks passed, its SSM
//! agent Online. One decision for every step that waits for an instance (the custom resource's
//! CheckReadiness, the start-and-check procedure), re-run on fresh facts after each wait.

use serde::{Deserialize, Serialize};

use crate::facts::{CheckStatus, InstanceState, PingStatus, StatusChecks};

/// What is known about the instance when deciding whether SSM commands can run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessFacts {
    pub instance_id: String,
    pub state: InstanceState,
    /// `None` while DescribeInstanceStatus reports nothing for the instance.
    pub status: Option<StatusChecks>,
    /// `None` while the instance is not a managed node of SSM.
    pub ping: Option<PingStatus>,
}

/// Whether SSM Run Command can be used on the instance now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "readiness")]
pub enum Readiness {
    Ready,
    /// Not yet: check again later (the caller bounds the total wait).
    Waiting {
        reason: String,
    },
    /// Waiting will not help.
    Failed {
        reason: String,
    },
}

/// Decides readiness from the instance state, both status checks and the SSM ping status.
pub fn readiness(f: &ReadinessFacts) -> Readiness {
    let id = &f.instance_id;
    let waiting = |reason: String| Readiness::Waiting { reason };
    match f.state {
        InstanceState::Pending => return waiting(format!("instance {id} is pending")),
        InstanceState::ShuttingDown | InstanceState::Terminated => {
            return Readiness::Failed {
                reason: format!("instance {id} is {}", f.state),
            }
        }
        InstanceState::Stopping | InstanceState::Stopped => {
            return Readiness::Failed {
                reason: format!("instance {id} is {}; SSM commands need a running instance", f.state),
            }
        }
        InstanceState::Running => {}
    }
    let Some(checks) = f.status else {
        return waiting(format!("status checks of {id} are not reported yet"));
    };
    for (which, status) in [("system", checks.system_status), ("instance", checks.instance_status)] {
        if status == CheckStatus::Impaired {
            return Readiness::Failed {
                reason: format!("the {which} status check of {id} is impaired"),
            };
        }
    }
    let passed = |s: CheckStatus| matches!(s, CheckStatus::Ok | CheckStatus::NotApplicable);
    if !passed(checks.system_status) || !passed(checks.instance_status) {
        return waiting(format!(
            "status checks of {id}: system {}, instance {}",
            checks.system_status, checks.instance_status
        ));
    }
    match f.ping {
        Some(PingStatus::Online) => Readiness::Ready,
        Some(other) => waiting(format!("the SSM agent of {id} is not online (ping status {other})")),
        None => waiting(format!(
            "{id} is not registered with SSM yet (the SSM agent must run and the instance profile must allow it to reach SSM)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: InstanceState, status: Option<(CheckStatus, CheckStatus)>, ping: Option<PingStatus>) -> ReadinessFacts {
        ReadinessFacts {
            instance_id: "i-0123456789abcdef0".into(),
            state,
            status: status.map(|(instance_status, system_status)| StatusChecks {
                instance_status,
                system_status,
            }),
            ping,
        }
    }

    #[test]
    fn readiness_from_instance_state() {
        use InstanceState::*;
        assert_eq!(
            readiness(&facts(Pending, None, None)),
            Readiness::Waiting {
                reason: "instance i-0123456789abcdef0 is pending".into()
            }
        );
        assert_eq!(
            readiness(&facts(Terminated, None, None)),
            Readiness::Failed {
                reason: "instance i-0123456789abcdef0 is terminated".into()
            }
        );
        assert_eq!(
            readiness(&facts(ShuttingDown, None, None)),
            Readiness::Failed {
                reason: "instance i-0123456789abcdef0 is shutting-down".into()
            }
        );
        assert_eq!(
            readiness(&facts(Stopped, None, None)),
            Readiness::Failed {
                reason: "instance i-0123456789abcdef0 is stopped; SSM commands need a running instance".into()
            }
        );
        assert!(matches!(readiness(&facts(Stopping, None, None)), Readiness::Failed { .. }));
    }

    #[test]
    fn readiness_from_status_checks() {
        use CheckStatus::*;
        let running = |i, s, p| readiness(&facts(InstanceState::Running, Some((i, s)), p));
        assert_eq!(
            readiness(&facts(InstanceState::Running, None, Some(PingStatus::Online))),
            Readiness::Waiting {
                reason: "status checks of i-0123456789abcdef0 are not reported yet".into()
            }
        );
        assert_eq!(
            running(Initializing, Ok, Some(PingStatus::Online)),
            Readiness::Waiting {
                reason: "status checks of i-0123456789abcdef0: system ok, instance initializing".into()
            }
        );
        assert!(matches!(
            running(Ok, InsufficientData, Some(PingStatus::Online)),
            Readiness::Waiting { .. }
        ));
        assert_eq!(
            running(Impaired, Ok, Some(PingStatus::Online)),
            Readiness::Failed {
                reason: "the instance status check of i-0123456789abcdef0 is impaired".into()
            }
        );
        assert_eq!(
            running(Ok, Impaired, Some(PingStatus::Online)),
            Readiness::Failed {
                reason: "the system status check of i-0123456789abcdef0 is impaired".into()
            }
        );
        assert_eq!(running(Ok, Ok, Some(PingStatus::Online)), Readiness::Ready);
        assert_eq!(running(NotApplicable, Ok, Some(PingStatus::Online)), Readiness::Ready);
    }

    #[test]
    fn readiness_from_ssm_ping() {
        let ok = Some((CheckStatus::Ok, CheckStatus::Ok));
        assert_eq!(
            readiness(&facts(InstanceState::Running, ok, Some(PingStatus::ConnectionLost))),
            Readiness::Waiting {
                reason: "the SSM agent of i-0123456789abcdef0 is not online (ping status ConnectionLost)".into()
            }
        );
        assert_eq!(
            readiness(&facts(InstanceState::Running, ok, Some(PingStatus::Inactive))),
            Readiness::Waiting {
                reason: "the SSM agent of i-0123456789abcdef0 is not online (ping status Inactive)".into()
            }
        );
        assert_eq!(
            readiness(&facts(InstanceState::Running, ok, None)),
            Readiness::Waiting {
                reason: "i-0123456789abcdef0 is not registered with SSM yet (the SSM agent must run and the instance profile must allow it to reach SSM)"
                    .into()
            }
        );
    }

    #[test]
    fn readiness_serializes_with_a_tag() {
        let r = serde_json::to_value(Readiness::Waiting { reason: "x".into() }).unwrap();
        assert_eq!(r, serde_json::json!({"readiness": "Waiting", "reason": "x"}));
    }
}
