//! # opsflow-core
//!
//! The domain of opsflow's `Custom::OpsflowInstanceSetup` CloudFormation resource, which sets up
//! an EC2 instance: assign an IAM instance profile, grow a volume and its file system, run a
//! bootstrap through SSM Run Command.
//!
//! ## Layering
//!
//! ```text
//!  Step Functions state machine (ASL)         crates/asl runs it locally
//!        │ invokes
//!  Lambdas (one per step)                     thin: parse input, call ports, call plans
//!        │ use                      │ implement
//!  opsflow-core (this crate)  ◄──── AWS adapter crate (aws-sdk-*)
//!    provision/ (props, plan, script, cfn), command: pure, synchronous, no I/O
//!    ports: the traits the adapter implements
//! ```
//!
//! This crate holds no AWS SDK and no HTTP client. It decides, from facts the ports report
//! ([`facts`]), what to do next ([`provision::plan`]), validates the template's properties
//! before any AWS call ([`provision::props`]), builds what runs on the instance
//! ([`provision::script`]), reads command results ([`command`]) and speaks the custom resource
//! protocol ([`provision::cfn`]). Every decision is a pure
//! function of its inputs, re-run on fresh facts after each wait, so steps are idempotent and
//! the whole flow is testable without AWS.
//!
//! Errors are one enum, [`CoreError`], whose variant names are the Lambdas' error types.
//!
//! ## Modules
//!
//! - [`error`]: [`CoreError`] and the classification of AWS error codes.
//! - [`provision`]: the custom resource, one capability in one folder: the CloudFormation
//!   protocol, property validation, plans, scripts, the steps and their JSON entry points.
//! - [`alert`]: CloudWatch alarms in, enriched alerts out.
//! - [`audit`]: scheduled audits of the fleet (instance roles) and their reports.
//! - [`runbook`]: the catalogue of pre-approved procedures, the runner's input, targets, rate
//!   controls and results.
//!
//! Shared by the capabilities:
//! - [`command`]: SSM command statuses to [`CommandOutcome`].
//! - [`ports`]: the [`Ec2`], [`Iam`], [`Ssm`] and [`ResponseSink`] traits.
//! - [`facts`]: what the ports report.
//! - [`error`]: the one error enum.
//! - [`time`]: UTC formatting for messages.
//! - [`wait`]: the one way to wait, a poll loop with backoff and a deadline.

pub mod alert;
pub mod audit;
pub mod command;
pub mod error;
pub mod facts;
pub mod ports;
pub mod provision;
pub mod readiness;
pub mod runbook;
pub mod time;
pub mod wait;

pub use command::{command_outcome, invocation_lookup_error, tail, CommandOutcome, CommandSpec, InvocationLookup};
pub use error::CoreError;
pub use facts::{
    Association, AssociationState, BlockDevice, CheckStatus, InstanceFacts, InstanceState, Invocation, Modification, ModificationState,
    PingStatus, Platform, ProfileRef, StatusChecks, VolumeFacts,
};
pub use ports::{Ec2, Iam, ResponseSink, Ssm, Unused};
pub use provision::cfn::{
    changed_fields, failure_reason, physical_resource_id, CfnRequest, CfnResponse, CfnStatus, ChangeSet, RequestType,
};
pub use provision::plan::{
    check_reboot_fallback, choose_volume, plan_profile, plan_profile_restore, plan_volume, verify_profile, ChosenVolume, ProfileAction,
    VolumeAction, VolumeRules,
};
pub use provision::props::{AllowList, Bootstrap, BootstrapAction, OnDelete, ProfileSpec, SetupProps};
pub use provision::script::{bootstrap_command, fs_grow_command, parse_fs_size, FsTarget};
pub use readiness::{readiness, Readiness, ReadinessFacts};
