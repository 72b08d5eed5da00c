//! Fleet runbooks: pre-approved procedures run on many instances, across accounts and regions.
//!
//! The runner (`statemachines/run-runbook.asl.json`) checks its input against the catalogue
//! ([`input`], [`catalogue`]), resolves the targets ([`targets`]), runs the procedure on each
//! as a nested execution inside a Distributed Map bounded by [`rate`] controls with SSM Run
//! Command's meaning, and summarizes and publishes the results ([`results`]).

pub mod catalogue;
pub mod forensics;
pub mod handlers;
pub mod input;
pub mod instance;
pub mod log;
pub mod patch;
pub mod rate;
pub mod results;
pub mod snapshot;
pub mod steps;
pub mod targets;

pub use catalogue::{Catalogue, Kind, Os, Procedure};
pub use input::{check, Home, Notify, RunRequest, TargetSelector};
pub use rate::Rate;
pub use results::{Counts, Summary, TargetResult, TargetStatus};
pub use targets::{select, Candidate, Controls, Excluded, Target};
