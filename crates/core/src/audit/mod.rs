//! Watching the fleet: scheduled audits of every account and region, with a report whose top
//! says what changed since the previous one.
//!
//! - [`roles`]: the instance-role audit (instance → profile → role → policies → findings), on
//!   [`policy`] (what a role's policies allow) and [`escalation`] (the published
//!   privilege-escalation paths, kept as data with their sources).
//! - [`ssm`]: SSM fleet health (which running instances SSM can manage, and why not).
//! - [`report`]: findings, the report (JSON and text), the difference from the previous one,
//!   the SNS summary.
//! - [`drift`]: drift alerts, from the CloudTrail events that change an instance's role.
//! - [`handlers`]: the audit function's steps (Plan, Scan, Report) and the drift handler.

pub mod drift;
pub mod escalation;
pub mod handlers;
pub mod policy;
pub mod report;
pub mod roles;
pub mod ssm;

pub use handlers::{AuditPorts, AuditSettings, Check, DriftSettings};
pub use report::{Finding, Report, Severity};
pub use roles::{AuditInstance, IamFacts, RoleFacts};
