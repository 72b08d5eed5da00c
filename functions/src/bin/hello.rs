//! The baseline of the cold-start benchmark (`functions/benches/cold_start.rs`): the smallest
//! Rust Lambda, built with the same profile as the functions. Not deployed.
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(json!({"hello": event.payload}))
    }))
    .await
}
