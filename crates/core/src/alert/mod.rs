//! # Alert enrichment
//!
//! A CloudWatch alarm state change arrives through SNS (the alarm's action, directly or through
//! SQS), EventBridge ("CloudWatch Alarm State Change") or CloudWatch's Lambda alarm action;
//! [`event`] turns each into [`Alarm`]s, and anything else into an "unrecognized" message that
//! is published for people all the same. [`ledger`] makes it one publication per state change.
//! [`enrich()`] runs the lookups (EC2, SSM, IAM, CloudWatch datapoints) concurrently through
//! the [`AlertLookups`] port, in the alarm's account and region: a failed lookup becomes a
//! note, never a lost alert. [`policy`] judges severity and admin roles. [`render`] turns the
//! [`Enriched`] alert into the SNS message for the enriched-alerts topic. [`diagnose`] adds a
//! read-only diagnostics command's output for instances that opted in.

pub mod diagnose;
pub mod enrich;
pub mod event;
pub mod ledger;
pub mod model;
pub mod policy;
pub mod render;

pub use enrich::{datapoint_queries, enrich, handle, handle_until, AlertLookups, AlertPublisher, AlertSettings, Reach};
pub use event::{incoming, target, target_and_place, Incoming};
pub use ledger::{AlertLedger, Claim, NoLedger};
pub use model::*;
pub use render::{diagnostics_publication, publication, sparkline, unrecognized_publication};
