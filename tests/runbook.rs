//! End to end: the runbook runner and its procedures (the real `statemachines/run-runbook.asl.json`
//! and `statemachines/procedures/*.asl.json`) on the local engine, the real runbook functions,
//! member accounts of the local cloud reached through their role with the ExternalId.

use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{Mutex, MutexGuard};

use opsflow::local::runbook::{Connection, LocalRunbooks, MemberAccount, Options, Progress, OPT_IN};
use opsflow::local::LocalCloud;
use opsflow_asl::Status;
use opsflow_core::ports::RunLog;
use opsflow_core::runbook::TargetStatus;
use serde_json::{json, Value};

/// Scenarios share the machine's two cores: one local cloud at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

const EXTERNAL_ID: &str = "opsflow-test-5f2c";
const A: &str = "111111111111";
const B: &str = "222222222222";
const REGIONS: [&str; 2] = ["eu-west-1", "eu-north-1"];

struct World {
    _serial: MutexGuard<'static, ()>,
    cloud: Arc<LocalCloud>,
    runbooks: LocalRunbooks,
    a: MemberAccount,
    b: MemberAccount,
}

async fn world_with(external_id: &str) -> World {
    let serial = SERIAL.lock().await;
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await.unwrap().expect("local cloud"));
    let a = MemberAccount::seed(&cloud, A, EXTERNAL_ID).await.unwrap();
    let b = MemberAccount::seed(&cloud, B, EXTERNAL_ID).await.unwrap();
    let options = Options {
        role_name: "opsflow-member".into(),
        external_id: external_id.into(),
        connections: vec![Connection::api_key("healthz", "x-api-key", "s3cr3t-k3y-never-in-history")],
        endpoints: Default::default(),
    };
    let runbooks = LocalRunbooks::new(cloud.clone(), options).await.unwrap();
    World {
        _serial: serial,
        cloud,
        runbooks,
        a,
        b,
    }
}

async fn world() -> World {
    world_with(EXTERNAL_ID).await
}

fn run_input(procedure: &str, extra: Value) -> Value {
    let mut input = json!({
        "Procedure": procedure,
        "Targets": {"Tags": [{"Key": "Env", "Values": ["dev"]}]},
        "Accounts": [A, B],
        "Regions": REGIONS,
        "StartedBy": "arn:aws:sts::123456789012:assumed-role/oncall/ann",
    });
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    input
}

/// Two dev instances per account and region, opted in; returns their ids.
async fn dev_fleet(w: &World) -> Vec<String> {
    let mut ids = Vec::new();
    for m in [&w.a, &w.b] {
        for region in REGIONS {
            for n in 0..2 {
                let name = format!("dev-{}-{region}-{n}", &m.account[..1]);
                ids.push(m.instance(region, &name, &[("Env", "dev"), OPT_IN], false).await.unwrap());
            }
        }
    }
    ids
}

async fn commands(w: &World, rules: Value) {
    w.cloud.control("commands", json!({ "rules": rules })).await.unwrap();
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(300), f)
                .await
                .expect("test within 300 s")
        })
}

#[test]
fn a_tagged_fleet_in_two_accounts_and_two_regions_runs_target_by_target() {
    block_on(async {
        let w = world().await;
        let ids = dev_fleet(&w).await;
        // Not opted in: found by the tag, never touched.
        let outsider = w.a.instance("eu-west-1", "dev-no-optin", &[("Env", "dev")], false).await.unwrap();
        commands(&w, json!([{"document": "AWS-RunShellScript", "match": "journalctl", "duration_seconds": 20, "stdout": "Vacuuming done\n/dev/xvda1 8.0G 3.1G 4.9G 39% /\n"}])).await;
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let s = seen.clone();
        let out = w
            .runbooks
            .run(
                run_input("disk-cleanup", json!({"MaxConcurrency": "50%", "Notify": "Always"})),
                "weekly-1",
                move |p| s.lock().unwrap().push(p),
            )
            .await
            .unwrap();
        assert_eq!(
            out.execution.status,
            Status::Succeeded,
            "{:?} {:?}",
            out.execution.error,
            out.execution.cause
        );
        let summary = out.summary.expect("a summary");
        assert_eq!(summary.counts.targets, 8);
        assert_eq!(summary.counts.succeeded, 8);
        let got: Vec<&str> = summary.targets.iter().map(|t| t.instance_id.as_str()).collect();
        for id in &ids {
            assert!(got.contains(&id.as_str()), "{id} missing from {got:?}");
        }
        assert!(!got.contains(&outsider.as_str()));
        assert!(
            summary
                .targets
                .iter()
                .all(|t| t.output_tail.contains("39% /") && t.exit_code == Some(0)),
            "{summary:?}"
        );
        assert!(
            w.runbooks.in_flight().max() <= 4,
            "MaxConcurrency 50% of 8: saw {}",
            w.runbooks.in_flight().max()
        );
        let invocations = w.cloud.get("invocations").await.unwrap();
        let touched: Vec<&str> = invocations["invocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["instance_id"].as_str())
            .collect();
        assert_eq!(touched.len(), 8, "{invocations}");
        assert!(
            !touched.contains(&outsider.as_str()),
            "the instance that did not opt in was sent a command"
        );
        let accounts: std::collections::BTreeSet<&str> = invocations["invocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["account"].as_str())
            .collect();
        assert_eq!(accounts.into_iter().collect::<Vec<_>>(), [A, B]);
        let rows = w.runbooks.log.targets(&out.execution_arn).await.unwrap();
        assert_eq!(rows.len(), 8);
        assert!(rows
            .iter()
            .all(|r| r.started_by == "arn:aws:sts::123456789012:assumed-role/oncall/ann"
                && r.status == TargetStatus::Succeeded
                && r.ended_at.is_some()));
        let started = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| matches!(p, Progress::Started { .. }))
            .count();
        assert_eq!(started, 8);
    });
}
