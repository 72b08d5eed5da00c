//! # opsflow-aws
//!
//! The ports of [`opsflow_core::ports`] implemented with the AWS SDK for Rust: [`Ec2Adapter`],
//! [`IamAdapter`], [`SsmAdapter`], and [`HttpResponseSink`] for the CloudFormation response
//! upload. This is the only crate of the workspace that compiles `aws-sdk-*`.
//!
//! A Lambda loads an [`AwsConfig`] once, with [`AwsConfig::from_env`] (honours
//! `AWS_ENDPOINT_URL`, so the same binary talks to AWS or to the local cloud), and builds only
//! the adapters it uses from it; the local pipeline and tests take every client at once with
//! [`Clients::for_endpoint`].
//!
//! Every SDK error becomes a [`opsflow_core::CoreError`] (see [`error`] for the rules), the
//! AWS error code kept in its detail; [`aws_error_parts`] reads it back.

pub mod alerts;
pub mod audit;
pub mod clients;
pub mod clock;
pub mod dynamodb;
pub mod ec2;
pub mod error;
pub mod http;
pub mod iam;
pub mod member;
pub mod runbook;
pub mod s3;
pub mod sfn;
pub mod ssm;
pub mod stacks;

pub use alerts::{AlertAdapter, DynamoAlertLedger, MemberAccess, SnsPublisher};
pub use audit::{AuditAdapter, AuditFleet};
pub use clients::{AwsConfig, Clients, DEFAULT_REGION};
pub use clock::SystemClock;
pub use dynamodb::DynamoStore;
pub use ec2::Ec2Adapter;
pub use error::{aws_error_parts, from_sdk_error};
pub use http::{HttpResponseSink, RESPONSE_PUT_TIMEOUT};
pub use iam::IamAdapter;
pub use runbook::{DynamoRunLog, MemberAdapter, MemberFleet, S3Objects};
pub use s3::ResponseBucket;
pub use sfn::SfnWorkflow;
pub use ssm::SsmAdapter;
pub use stacks::StackAdapter;

/// The SDK crates, for callers that need their types (e.g. a custom `SdkConfig`).
pub use {
    aws_config, aws_sdk_autoscaling, aws_sdk_cloudformation, aws_sdk_cloudwatch, aws_sdk_dynamodb, aws_sdk_ec2,
    aws_sdk_elasticloadbalancingv2, aws_sdk_iam, aws_sdk_resourcegroups, aws_sdk_s3, aws_sdk_sfn, aws_sdk_sns, aws_sdk_sqs, aws_sdk_ssm,
    aws_sdk_sts,
};
