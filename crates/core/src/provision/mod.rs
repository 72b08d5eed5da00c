//! `Custom::OpsflowInstanceSetup`: the CloudFormation custom resource that sets up an EC2
//! instance for the stack that asks (instance profile, bigger volume and file system, bootstrap
//! through SSM), answering CloudFormation exactly once.
//!
//! - [`cfn`]: the custom resource protocol: [`cfn::CfnRequest`], [`cfn::CfnResponse`],
//!   physical IDs, update change sets.
//! - [`guard`]: who may have opsflow do what: ownership, instance state, ResponseURL, documents.
//! - [`props`]: [`props::SetupProps::parse`] and the instance profile [`props::AllowList`].
//! - [`plan`]: profile, volume, readiness and file system decisions.
//! - [`script`]: file system grow scripts (bash, PowerShell) and the bootstrap command.
//! - [`state`]: what opsflow remembers (lifecycles, answers), where only opsflow writes.
//! - [`steps`]: one function per Lambda of the state machine, the request handler and the
//!   safety net, over the ports.
//! - [`request`]: the request handler, the answer and the safety net.
//! - [`undo`]: what a failed request takes back, and what it says it left.
//! - [`handlers`]: the steps behind one JSON-in, JSON-out entry point per function name.

pub mod cfn;
pub mod guard;
pub mod handlers;
pub mod plan;
pub mod props;
pub mod request;
pub mod script;
pub mod state;
pub mod steps;
pub mod undo;
