//! The runner's Validate step: the input against the catalogue of pre-approved procedures (no
//! AWS call: nothing is touched before the input is known to be allowed).
use opsflow_core::runbook::handlers::RunbookPorts;
use opsflow_core::Unused;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let ports = RunbookPorts {
        fleet: Unused,
        objects: Unused,
        log: Unused,
        publisher: Unused,
    };
    opsflow_functions::run_runbook_task("Validate", ports).await
}
