#![allow(dead_code)]
use std::sync::Arc;

use opsflow_asl::{model, Engine, ExecutionResult, StartOptions};
use serde_json::Value;

pub fn machine(def: Value) -> Arc<opsflow_asl::StateMachine> {
    Arc::new(model::parse_value(&def).unwrap_or_else(|e| panic!("definition rejected: {e:?}")))
}

pub async fn run_with(engine: &Engine, def: Value, input: Value) -> ExecutionResult {
    engine
        .run(
            &machine(def),
            input,
            StartOptions {
                name: "test-exec".into(),
                state_machine_name: "Test".into(),
                record_history: true,
            },
        )
        .await
}

pub async fn run(def: Value, input: Value) -> ExecutionResult {
    run_with(&Engine::builder().build(), def, input).await
}

/// The event types of a history, in order.
pub fn types(r: &ExecutionResult) -> Vec<&'static str> {
    r.events.iter().map(|e| e.event_type).collect()
}
