//! # Alert enrichment
//!
//! A CloudWatch alarm state change arrives through SNS (the alarm's action) or EventBridge
//! ("CloudWatch Alarm State Change"); [`event`] turns either into [`Alarm`]s. [`enrich()`] runs
//! the lookups (EC2, SSM, IAM, CloudWatch datapoints) concurrently through the
//! [`AlertLookups`] port: a failed lookup becomes a note, never a lost alert. [`render`] turns
//! the [`Enriched`] alert into the SNS message for the enriched-alerts topic.

pub mod enrich;
pub mod event;
pub mod model;
pub mod policy;
pub mod render;

pub use enrich::{datapoint_queries, enrich, handle, AlertLookups, AlertPublisher, AlertSettings};
pub use event::{incoming, target, Incoming};
pub use model::*;
pub use render::{publication, sparkline, unrecognized_publication};
