//! opsflow-asl: a local AWS Step Functions engine. It loads Amazon States Language
//! definitions, validates them as AWS does, and runs them with Task states served by
//! in-process handlers or mocked responses, on a virtual or real clock. No AWS dependency.
pub mod choice;
pub mod engine;
pub mod error;
pub mod history;
pub mod intrinsics;
pub mod jsonata;
pub mod mock;
pub mod model;
pub mod path;
pub mod store;
pub mod time;

pub use engine::{
    CallbackError, Clock, Engine, EngineBuilder, ExecutionHandle, ExecutionResult, RunningExecution, StartOptions, Status, TaskClock,
    TaskHandler, TaskRequest,
};
pub use engine::{InspectionLevel, TestStateError, TestStateOutput, TestStateRequest};
pub use error::{LoadError, StatesError};
pub use history::HistoryEvent;
pub use mock::MockCase;
pub use model::StateMachine;
pub use store::{LocalDirStore, MemoryStore, ObjectStore};
