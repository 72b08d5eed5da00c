//! opsflow-asl: a local AWS Step Functions engine.
pub mod choice;
pub mod error;
pub mod intrinsics;
pub mod path;
