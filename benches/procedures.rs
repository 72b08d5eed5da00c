//! The maintenance procedures, one run each on one instance of a member account of the local
//! cloud: the real runner and procedure state machines on the local engine in virtual time, the
//! real functions, with AWS-like durations set in the local cloud (below). Prints per procedure:
//! its time (the nested execution's, virtual), its transitions and task invocations (nested
//! executions included), the AWS calls the whole run made, and, where it freezes, the frozen
//! window the local cloud observed (from the freeze's end to the thaw's end, or the watchdog).
//!
//! `cargo bench --bench procedures` (`make bench`). Needs the local cloud's venv (installs it).

use std::collections::BTreeMap;
use std::sync::Arc;

use opsflow::local::runbook::{LocalRunbooks, MemberAccount, Options, OPT_IN};
use opsflow::local::LocalCloud;
use opsflow_asl::ExecutionResult;
use serde_json::{json, Value};

const EXTERNAL_ID: &str = "opsflow-bench-3c1e";
const ACCOUNT: &str = "111111111111";
const REGION: &str = "eu-west-1";

/// Durations as AWS shows them, roughly: a start's pending and status checks, the SSM agent
/// coming online after a boot, a clean OS shutdown, a reboot, an incremental snapshot, a root
/// volume replacement (with its reboot), SSM's delivery of a command.
const CONFIG: &str = r#"{"instance_pending_seconds": 15, "status_checks_seconds": 60, "online_delay_seconds": 20,
    "instance_stopping_seconds": 30, "reboot_seconds": 60, "snapshot_seconds": 120,
    "replace_root_seconds": 90, "command_pending_seconds": 1}"#;

/// The scripts' runs: health check 3 s, pre-stop 20 s, freeze and thaw 1 s each, a patch that
/// installs for 2 minutes, reboots, and finishes in 30 s, a forensic collection and upload 90 s.
const RULES: &str = r#"[
    {"document": "opsflow-HealthCheck", "duration_seconds": 3, "stdout": "PASS unit:app: active\n0 check(s) failed\n"},
    {"document": "opsflow-PreStop", "duration_seconds": 20, "stdout": "stopping app\npre-stop done\n"},
    {"document": "opsflow-Freeze", "duration_seconds": 1, "stdout": "WATCHDOG armed: thaws in 30s\nFROZEN /data\n"},
    {"document": "opsflow-Thaw", "duration_seconds": 1, "stdout": "THAWED /data\n"},
    {"document": "AWS-RunPatchBaselineWithHooks", "runs": [
        {"exit_code": 194, "duration_seconds": 120, "stdout": "Installing 12 packages"},
        {"exit_code": 0, "duration_seconds": 30, "stdout": "Installed 12 packages"}]},
    {"document": "opsflow-ForensicCollect", "duration_seconds": 90}
]"#;

struct Case {
    label: &'static str,
    procedure: &'static str,
    parameters: Value,
    /// Stop the instance first (start-and-check starts it).
    stopped: bool,
    /// A health check rule added for this case only (the patch that breaks it).
    health: Option<Value>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            label: "start-and-check (stopped)",
            procedure: "start-and-check",
            parameters: json!({"Units": "app"}),
            stopped: true,
            health: None,
        },
        Case {
            label: "clean-stop",
            procedure: "clean-stop",
            parameters: json!({"Services": "app"}),
            stopped: false,
            health: None,
        },
        Case {
            label: "consistent-snapshot",
            procedure: "consistent-snapshot",
            parameters: json!({"Mounts": "/data", "WaitForCompletion": true}),
            stopped: false,
            health: None,
        },
        Case {
            label: "patch (healthy)",
            procedure: "patch",
            parameters: json!({"FreezeMounts": "/data", "Units": "app"}),
            stopped: false,
            health: None,
        },
        Case {
            label: "forensic-capture",
            procedure: "forensic-capture",
            parameters: json!({"CaseId": "IR-1"}),
            stopped: false,
            health: None,
        },
        Case {
            label: "forensic-capture (isolated)",
            procedure: "forensic-capture",
            parameters: json!({"CaseId": "IR-2", "IsolateNetwork": true, "DetachFromTargetGroups": true}),
            stopped: false,
            health: None,
        },
        Case {
            label: "patch (rolled back)",
            procedure: "patch",
            parameters: json!({"FreezeMounts": "/data", "Units": "app"}),
            stopped: false,
            health: Some(
                json!({"document": "opsflow-HealthCheck", "count": 1, "exit_code": 1, "duration_seconds": 3,
                                "stdout": "FAIL unit:app: inactive\n1 check(s) failed\n"}),
            ),
        },
    ]
}

/// (transitions, task invocations) of an execution and every execution it started.
fn totals(r: &ExecutionResult) -> (u64, u64) {
    r.children.iter().fold((r.transitions, r.task_invocations), |(t, i), c| {
        let (ct, ci) = totals(&c.result);
        (t + ct, i + ci)
    })
}

/// The procedure's own execution among the run's (the first whose state machine is it).
fn procedure_run<'r>(r: &'r ExecutionResult, procedure: &str) -> Option<&'r ExecutionResult> {
    let name = format!(":stateMachine:opsflow-{procedure}");
    r.children.iter().find_map(|c| {
        if c.state_machine_arn.ends_with(&name) {
            Some(&c.result)
        } else {
            procedure_run(&c.result, procedure)
        }
    })
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await??);
        let member = MemberAccount::seed(&cloud, ACCOUNT, EXTERNAL_ID).await?;
        let options = Options {
            role_name: "opsflow-member".into(),
            external_id: EXTERNAL_ID.into(),
            connections: vec![],
            endpoints: BTreeMap::new(),
            http_time_limit: None,
        };
        let runbooks = LocalRunbooks::new(cloud.clone(), options).await?;
        let ec2 = member.clients(REGION).await?.ec2;
        println!("maintenance procedures, one instance each, local cloud durations {CONFIG}");
        println!(
            "{:<28} {:>9} {:>12} {:>11} {:>10} {:>14}  result",
            "procedure", "virtual s", "transitions", "task calls", "AWS calls", "frozen window"
        );
        for (n, case) in cases().into_iter().enumerate() {
            cloud.control("config", serde_json::from_str(CONFIG)?).await?;
            let env = format!("bench-{n}");
            let tags = [("Env", env.as_str()), (OPT_IN.0, OPT_IN.1)];
            let id = member.instance(REGION, &format!("bench-{n}"), &tags, false).await?;
            // Past the agent's online delay, as an instance that has long been up.
            let now = cloud.now_ms().await?;
            cloud.control("clock", json!({"now_ms": now + 30_000})).await?;
            if case.stopped {
                ec2.stop_instances().instance_ids(&id).send().await?;
                let now = cloud.now_ms().await?;
                cloud.control("clock", json!({"now_ms": now + 60_000})).await?;
            }
            cloud.delete("commands").await?;
            let mut rules: Vec<Value> = serde_json::from_str(RULES)?;
            rules.extend(case.health.clone());
            cloud.control("commands", json!({ "rules": rules })).await?;
            cloud.delete("invocations").await?;
            cloud.reset_calls().await?;
            let input = json!({
                "Procedure": case.procedure,
                "Targets": {"Tags": [{"Key": "Env", "Values": [env]}]},
                "Accounts": [ACCOUNT], "Regions": [REGION],
                "Parameters": case.parameters,
                "StartedBy": "bench",
            });
            let out = runbooks.run(input, &format!("bench-{n}-{}", case.procedure), |_| {}).await?;
            let calls: u64 = cloud.calls().await?.values().sum();
            let run = procedure_run(&out.execution, case.procedure)
                .ok_or_else(|| anyhow::anyhow!("{}: no {} execution: {:?}", case.label, case.procedure, out.execution.cause))?;
            let (transitions, tasks) = totals(run);
            let frozen = cloud.get("frozen").await?;
            let window = frozen["instances"][&id]
                .as_array()
                .and_then(|e| e.first().cloned())
                .map(|e| {
                    let ms = e["thawed_at"].as_i64().unwrap_or(0) - e["frozen_at"].as_i64().unwrap_or(0);
                    format!("{:.1} s ({})", ms as f64 / 1000.0, e["thawed_by"].as_str().unwrap_or("?"))
                })
                .unwrap_or_else(|| "-".to_string());
            let result = match out.summary.as_ref().and_then(|s| s.targets.first()) {
                Some(t) => format!("{}: {}", t.status.as_str(), t.reason.chars().take(90).collect::<String>()),
                None => format!("{:?}", out.execution.cause),
            };
            println!(
                "{:<28} {:>9.0} {:>12} {:>11} {:>10} {:>14}  {result}",
                case.label,
                run.engine_ms as f64 / 1000.0,
                transitions,
                tasks,
                calls,
                window
            );
        }
        anyhow::Ok(())
    })
}
