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

async fn world_with(external_id: &str, endpoint: Option<&str>) -> World {
    let serial = SERIAL.lock().await;
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await.unwrap().expect("local cloud"));
    let a = MemberAccount::seed(&cloud, A, EXTERNAL_ID).await.unwrap();
    let b = MemberAccount::seed(&cloud, B, EXTERNAL_ID).await.unwrap();
    let options = Options {
        role_name: "opsflow-member".into(),
        external_id: external_id.into(),
        connections: vec![Connection::api_key("healthz", "x-api-key", "s3cr3t-k3y-never-in-history")],
        endpoints: endpoint
            .map(|e| [("healthz".to_string(), e.to_string())].into_iter().collect())
            .unwrap_or_default(),
        http_time_limit: Some(std::time::Duration::from_millis(1500)),
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
    world_with(EXTERNAL_ID, None).await
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

/// The runner's execution ends as the summary says; the run is refused when `error` is given.
fn failed_with(out: &opsflow::local::runbook::RunOutcome, error: &str) -> String {
    assert_eq!(out.execution.status, Status::Failed, "{:?}", out.execution.output);
    assert_eq!(out.execution.error.as_deref(), Some(error), "{:?}", out.execution.cause);
    let cause = out.execution.cause.clone().unwrap_or_default();
    // A Lambda's error arrives as AWS words it: {"errorType", "errorMessage"}.
    match serde_json::from_str::<Value>(&cause) {
        Ok(v) if v["errorMessage"].is_string() => v["errorMessage"].as_str().unwrap().to_string(),
        _ => cause,
    }
}

/// Every event of an execution and of the executions it started, as text.
fn all_history(r: &opsflow_asl::ExecutionResult) -> String {
    let mut text = format!("{:?}", r.events);
    for c in &r.children {
        text.push_str(&all_history(&c.result));
    }
    text
}

async fn invocation_count(w: &World) -> usize {
    w.cloud.get("invocations").await.unwrap()["invocations"].as_array().unwrap().len()
}

#[test]
fn a_wrong_external_id_is_refused_before_anything_runs() {
    block_on(async {
        let w = world_with("not-the-agreed-id", None).await;
        dev_fleet(&w).await;
        let out = w
            .runbooks
            .run(run_input("disk-cleanup", json!({})), "wrong-id", |_| {})
            .await
            .unwrap();
        let cause = failed_with(&out, "AccessDenied");
        assert!(
            cause.contains("sts:AssumeRole") && cause.contains(&format!("arn:aws:iam::{A}:role/opsflow-member")),
            "{cause}"
        );
        assert_eq!(invocation_count(&w).await, 0);
        assert!(w.runbooks.log.targets(&out.execution_arn).await.unwrap().is_empty());
    });
}

#[test]
fn a_procedure_outside_the_catalogue_is_refused_before_anything_runs() {
    block_on(async {
        let w = world().await;
        dev_fleet(&w).await;
        let mut input = run_input("disk-cleanup", json!({}));
        input["Procedure"] = json!("rm-rf");
        let out = w.runbooks.run(input, "not-allowed", |_| {}).await.unwrap();
        let cause = failed_with(&out, "InvalidInput");
        assert!(cause.contains("Procedure: \"rm-rf\" is not in the catalogue"), "{cause}");
        let mut input = run_input("restart-app", json!({"Parameters": {"Service": "postgres"}}));
        input["Targets"] = json!({"InstanceIds": ["i-0123456789abcdef0"]});
        let out = w.runbooks.run(input, "bad-parameter", |_| {}).await.unwrap();
        let cause = failed_with(&out, "InvalidInput");
        assert!(
            cause.contains("Parameters.Service: must be one of app, billing-api, worker"),
            "{cause}"
        );
        assert_eq!(invocation_count(&w).await, 0);
    });
}

#[test]
fn max_errors_stops_new_starts_and_the_rest_are_not_started() {
    block_on(async {
        let w = world().await;
        dev_fleet(&w).await;
        let (queue, queue_arn) = opsflow::fixtures::queue(&w.runbooks.clients, "ops").await.unwrap();
        opsflow::fixtures::subscribe(&w.runbooks.clients, &w.runbooks.topic_arn, &queue_arn)
            .await
            .unwrap();
        // The first two invocations fail; with one at a time and one error allowed, the second
        // failure stops new starts.
        commands(
            &w,
            json!([
                {"document": "AWS-RunShellScript", "match": "journalctl", "duration_seconds": 5, "stdout": "ok\n"},
                {"document": "AWS-RunShellScript", "match": "journalctl", "duration_seconds": 5, "exit_code": 1, "count": 2,
                 "stdout": "Vacuuming done\n", "stderr": "find: '/var/tmp/x': Permission denied\n"}
            ]),
        )
        .await;
        let out = w
            .runbooks
            .run(
                run_input("disk-cleanup", json!({"MaxConcurrency": "1", "MaxErrors": "1"})),
                "stop-early",
                |_| {},
            )
            .await
            .unwrap();
        let cause = failed_with(&out, "TargetsFailed");
        assert_eq!(cause, "runbook disk-cleanup: 2 of 8 failed, 6 not started");
        let s = out.summary.unwrap();
        assert_eq!((s.counts.failed, s.counts.not_started, s.counts.succeeded), (2, 6, 0));
        assert_eq!(invocation_count(&w).await, 2, "no command after the second error");
        let failed = &s.targets[0];
        assert_eq!((failed.status, failed.exit_code), (TargetStatus::Failed, Some(1)));
        assert!(failed.output_tail.ends_with("Permission denied"), "{failed:?}");
        assert!(
            failed
                .output_url
                .as_deref()
                .is_some_and(|u| u.contains("opsflow-runs-local/output/disk-cleanup/stop-early/")),
            "{failed:?}"
        );
        let rows = w.runbooks.log.targets(&out.execution_arn).await.unwrap();
        assert_eq!(rows.len(), 8, "every target has its audit row, the not started too");
        assert_eq!(rows.iter().filter(|r| r.status == TargetStatus::NotStarted).count(), 6);
        let got = w
            .runbooks
            .clients
            .sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let envelope: Value = serde_json::from_str(got.messages()[0].body().unwrap()).unwrap();
        let body: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        assert_eq!(body["counts"]["notStarted"], 6);
        assert_eq!(body["failures"][0]["exitCode"], 1);
        assert!(body["failures"][0]["outputTail"].as_str().unwrap().contains("Permission denied"));
    });
}

#[test]
fn a_reboot_asked_with_exit_194_is_carried_through() {
    block_on(async {
        let w = world().await;
        let id =
            w.a.instance("eu-west-1", "patch-me", &[("Env", "dev"), OPT_IN], false)
                .await
                .unwrap();
        commands(
            &w,
            json!([{"document": "AWS-RunShellScript", "match": "journalctl", "reboot_seconds": 90,
            "runs": [{"exit_code": 194, "duration_seconds": 20, "stdout": "kernel updated, rebooting\n"},
                     {"exit_code": 0, "duration_seconds": 10, "stdout": "after reboot: all clean\n"}]}]),
        )
        .await;
        let mut input = run_input("disk-cleanup", json!({"Accounts": [A], "Regions": ["eu-west-1"]}));
        input["Targets"] = json!({"InstanceIds": [id]});
        let out = w.runbooks.run(input, "reboot", |_| {}).await.unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "{:?}", out.execution.cause);
        let t = &out.summary.unwrap().targets[0];
        assert_eq!((t.status, t.exit_code), (TargetStatus::Succeeded, Some(0)));
        assert!(t.output_tail.contains("after reboot: all clean"), "{t:?}");
        let inv = &w.cloud.get("invocations").await.unwrap()["invocations"][0];
        assert_eq!((inv["runs"].as_u64(), inv["reboots"].as_u64()), (Some(2), Some(1)), "{inv}");
    });
}

#[test]
fn output_past_ssms_window_keeps_its_last_lines_from_the_s3_copy() {
    block_on(async {
        let w = world().await;
        let id =
            w.b.instance("eu-north-1", "chatty", &[("Env", "dev"), OPT_IN], false)
                .await
                .unwrap();
        let mut stdout: String = (0..2_000).map(|i| format!("line {i:05} of a long cleanup log\n")).collect();
        stdout.push_str("FATAL: the very last line\n");
        assert!(stdout.len() > 60_000);
        commands(
            &w,
            json!([{"document": "AWS-RunShellScript", "match": "journalctl", "duration_seconds": 3, "exit_code": 3, "stdout": stdout}]),
        )
        .await;
        let mut input = run_input("disk-cleanup", json!({"Accounts": [B], "Regions": ["eu-north-1"]}));
        input["Targets"] = json!({"InstanceIds": [id]});
        let out = w.runbooks.run(input, "long-output", |_| {}).await.unwrap();
        failed_with(&out, "TargetsFailed");
        let t = &out.summary.unwrap().targets[0];
        assert_eq!(t.exit_code, Some(3));
        assert!(
            t.output_tail.ends_with("FATAL: the very last line"),
            "the tail is the end of the output: {:?}",
            &t.output_tail[t.output_tail.len().saturating_sub(200)..]
        );
        assert!(t.output_tail.len() <= 2_048 + 64);
        let url = t.output_url.clone().unwrap();
        let (bucket, key) = opsflow_core::runbook::steps::s3_location(&url).unwrap();
        let full = w
            .runbooks
            .clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert_eq!(full.len(), stdout.len(), "the S3 copy is the whole output");
    });
}

#[test]
fn a_dry_run_lists_the_targets_and_changes_nothing() {
    block_on(async {
        let w = world().await;
        dev_fleet(&w).await;
        w.a.instance("eu-west-1", "stopped-one", &[("Env", "dev"), OPT_IN], false)
            .await
            .unwrap();
        let before = w.cloud.get("calls").await.unwrap();
        let out = w
            .runbooks
            .run(run_input("disk-cleanup", json!({"DryRun": true})), "dry", |_| {})
            .await
            .unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "{:?}", out.execution.cause);
        let resolved = out.execution.output.unwrap();
        assert_eq!(resolved["Count"], 9);
        assert_eq!(resolved["Preview"].as_array().unwrap().len(), 9);
        assert!(out.summary.is_none());
        let after = w.cloud.get("calls").await.unwrap();
        let mutating = |c: &Value| -> u64 {
            c["calls"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| opsflow::local::cloud::INSTANCE_MUTATIONS.contains(&k.as_str()))
                .map(|(_, v)| v.as_u64().unwrap())
                .sum()
        };
        assert_eq!(mutating(&after), mutating(&before), "a dry run changed an instance");
        assert_eq!(invocation_count(&w).await, 0);
    });
}

#[test]
fn the_http_check_fails_on_a_non_2xx_and_keeps_the_secret_out_of_the_history() {
    block_on(async {
        let endpoint = opsflow::local::runbook::HealthEndpoint::start(vec![500, 503], std::time::Duration::ZERO)
            .await
            .unwrap();
        let w = world_with(EXTERNAL_ID, Some(&endpoint.url)).await;
        let out = w
            .runbooks
            .run(json!({"Procedure": "healthz", "Notify": "OnFailure"}), "healthz-1", |_| {})
            .await
            .unwrap();
        failed_with(&out, "TargetsFailed");
        let t = &out.summary.unwrap().targets[0];
        assert_eq!(t.status, TargetStatus::Failed);
        assert!(t.reason.contains("States.Http.StatusCode.503"), "{t:?}");
        let requests = endpoint.requests();
        assert_eq!(requests.len(), 2, "one retry of a 5xx");
        assert!(
            requests.iter().all(|(line, h)| line.starts_with("GET /healthz?deep=true")
                && h.contains(&("x-api-key".to_string(), "s3cr3t-k3y-never-in-history".to_string()))),
            "{requests:?}"
        );
        let history = all_history(&out.execution);
        assert!(
            history.contains("ConnectionArn"),
            "the history is read: {}",
            &history[..history.len().min(300)]
        );
        assert!(!history.contains("s3cr3t-k3y"), "the secret is in the history");
    });
}

#[test]
fn the_http_check_passes_after_one_500_and_fails_when_the_endpoint_hangs() {
    block_on(async {
        let flaky = opsflow::local::runbook::HealthEndpoint::start(vec![500, 200], std::time::Duration::ZERO)
            .await
            .unwrap();
        let w = world_with(EXTERNAL_ID, Some(&flaky.url)).await;
        let out = w
            .runbooks
            .run(json!({"Procedure": "healthz"}), "healthz-flaky", |_| {})
            .await
            .unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "{:?}", out.execution.cause);
        assert_eq!(flaky.requests().len(), 2);
        drop(w);
        let hung = opsflow::local::runbook::HealthEndpoint::start(vec![200], std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let w = world_with(EXTERNAL_ID, Some(&hung.url)).await;
        let out = w
            .runbooks
            .run(json!({"Procedure": "healthz"}), "healthz-hung", |_| {})
            .await
            .unwrap();
        failed_with(&out, "TargetsFailed");
        let t = &out.summary.unwrap().targets[0];
        assert_eq!(t.status, TargetStatus::Failed);
        assert!(t.reason.starts_with("States."), "{t:?}");
    });
}

/// `opsflow run …` as an operator types it, against this world's local cloud.
fn opsflow(w: &World, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opsflow"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &w.cloud.endpoint)
        .env("OPSFLOW_EXTERNAL_ID", EXTERNAL_ID)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_operators_command_line_keeps_its_contract() {
    block_on(async {
        let w = world().await;
        let ids = dev_fleet(&w).await;
        commands(&w, json!([{"document": "AWS-RunShellScript", "match": "journalctl", "duration_seconds": 5, "stdout": "ok\n"},
                            {"document": "AWS-RunShellScript", "match": "journalctl", "instance_id": ids[3], "exit_code": 2, "stdout": "no space left\n"}])).await;
        let fleet = [
            "--targets",
            "tag:Env=dev",
            "--accounts",
            "111111111111,222222222222",
            "--regions",
            "eu-west-1,eu-north-1",
        ];
        let w2 = &w;
        let run = move |extra: &[&str]| {
            let mut args = vec!["run", "disk-cleanup", "--local"];
            args.extend_from_slice(&fleet);
            args.extend_from_slice(extra);
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let w = w2;
            async move { tokio::task::block_in_place(|| opsflow(w, &args.iter().map(String::as_str).collect::<Vec<_>>())) }
        };
        let (code, stdout, stderr) = run(&["--dry-run", "--output", "json"]).await;
        assert_eq!(code, 0, "{stderr}");
        let dry: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(dry["resolved"]["Count"], 8, "{dry}");
        assert_eq!(invocation_count(&w).await, 0, "a dry run sent a command");

        let (code, stdout, stderr) = run(&["--max-concurrency", "25%", "--output", "json"]).await;
        assert_eq!(code, 1, "one target failed: exit 1; {stderr}");
        let out: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(out["status"], "Failed");
        assert_eq!(out["procedure"], "disk-cleanup");
        assert!(out["execution"].as_str().unwrap().starts_with("arn:aws:states:"));
        assert_eq!(out["counts"], json!({"targets": 8, "succeeded": 7, "failed": 1, "notStarted": 0}));
        let failed = &out["targets"][0];
        assert_eq!(
            (
                failed["instanceId"].as_str(),
                failed["status"].as_str(),
                failed["exitCode"].as_i64()
            ),
            (Some(ids[3].as_str()), Some("Failed"), Some(2))
        );
        for key in ["account", "region", "outputTail", "outputUrl"] {
            assert!(failed.get(key).is_some(), "{key} missing: {failed}");
        }

        let (code, _, stderr) = run(&["--param", "Path=/"]).await;
        assert_eq!(code, 2, "a parameter the procedure does not take is invalid usage: {stderr}");
        assert!(stderr.contains("Parameters.Path"), "{stderr}");
        let (code, _, stderr) =
            tokio::task::block_in_place(|| opsflow(&w, &["run", "rm-rf", "--local", "--instance-ids", "i-0123456789abcdef0"]));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("not in the catalogue"), "{stderr}");

        let (code, stdout, stderr) = tokio::task::block_in_place(|| opsflow(&w, &["runs", "--local", "--since", "1h", "--output", "json"]));
        assert_eq!(code, 0, "{stderr}");
        let rows: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        assert_eq!(rows.len(), 8, "one audit row per target of the one real run");
        assert!(
            rows.iter().all(|r| r["StartedBy"].as_str().unwrap().starts_with("arn:aws:")),
            "{rows:?}"
        );
    });
}

#[test]
fn a_resource_group_selects_its_tag_querys_instances_where_it_exists() {
    block_on(async {
        let w = world().await;
        let ids = dev_fleet(&w).await;
        let query = json!({"ResourceTypeFilters": ["AWS::EC2::Instance"], "TagFilters": [{"Key": "Env", "Values": ["dev"]}]});
        w.a.clients("eu-west-1")
            .await
            .unwrap()
            .resource_groups
            .create_group()
            .name("dev-fleet")
            .resource_query(
                opsflow_aws::aws_sdk_resourcegroups::types::ResourceQuery::builder()
                    .r#type(opsflow_aws::aws_sdk_resourcegroups::types::QueryType::TagFilters10)
                    .query(query.to_string())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let mut input = run_input("disk-cleanup", json!({"DryRun": true}));
        input["Targets"] = json!({"ResourceGroup": "dev-fleet"});
        let out = w.runbooks.run(input.clone(), "group", |_| {}).await.unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "{:?}", out.execution.cause);
        let resolved = out.execution.output.unwrap();
        let got: Vec<&str> = resolved["Preview"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["InstanceId"].as_str().unwrap())
            .collect();
        // Only account A's eu-west-1 has the group (dev_fleet: A eu-west-1 first, two instances).
        let mut expected: Vec<&str> = ids[..2].iter().map(String::as_str).collect();
        expected.sort();
        assert_eq!(got, expected);
        input["Targets"] = json!({"ResourceGroup": "no-such-group"});
        let out = w.runbooks.run(input, "no-group", |_| {}).await.unwrap();
        let cause = failed_with(&out, "NotFound");
        assert!(
            cause.contains("no account and region of the run has a resource group \"no-such-group\""),
            "{cause}"
        );
    });
}

// ----------------------------------------------------------------------------------------------
// Maintenance procedures: start-and-check, clean-stop
// ----------------------------------------------------------------------------------------------

/// Instances in account A, eu-west-1, tagged Env=maint and opted in with `opt_in`; returns ids.
async fn maintenance_fleet(w: &World, n: usize, opt_in: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let tags = [("Env", "maint"), (OPT_IN.0, opt_in)];
        ids.push(w.a.instance(REGIONS[0], &format!("maint-{i}"), &tags, false).await.unwrap());
    }
    ids
}

fn maintenance_input(procedure: &str, parameters: Value) -> Value {
    json!({
        "Procedure": procedure,
        "Targets": {"Tags": [{"Key": "Env", "Values": ["maint"]}]},
        "Accounts": [A],
        "Regions": [REGIONS[0]],
        "Parameters": parameters,
        "MaxConcurrency": "2",
        "StartedBy": "arn:aws:sts::123456789012:assumed-role/oncall/ann",
    })
}

/// A CPU alarm on `instance` (dimension InstanceId).
async fn alarm(cw: &opsflow_aws::aws_sdk_cloudwatch::Client, name: &str, instance: &str) {
    use opsflow_aws::aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/EC2")
        .metric_name("CPUUtilization")
        .dimensions(Dimension::builder().name("InstanceId").value(instance).build())
        .statistic(Statistic::Average)
        .period(60)
        .evaluation_periods(1)
        .threshold(90.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
}

/// The mute rules of account A's first region.
async fn mute_rules(cw: &opsflow_aws::aws_sdk_cloudwatch::Client) -> Vec<String> {
    let out = cw.list_alarm_mute_rules().send().await.unwrap();
    out.alarm_mute_rule_summaries()
        .iter()
        .filter_map(|r| r.alarm_mute_rule_arn().map(str::to_string))
        .collect()
}

async fn state_of(w: &World, id: &str) -> String {
    let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
    let out = ec2.describe_instances().instance_ids(id).send().await.unwrap();
    let i = &out.reservations()[0].instances()[0];
    i.state().and_then(|s| s.name()).unwrap().as_str().to_string()
}

/// Every invocation of `document` in the local cloud's log.
async fn invocations_of(w: &World, document: &str) -> Vec<Value> {
    let all = w.cloud.get("invocations").await.unwrap();
    all["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["document"] == document)
        .cloned()
        .collect()
}

#[test]
fn start_and_check_starts_a_stopped_instance_waits_until_ready_then_runs_the_health_check() {
    block_on(async {
        let w = world().await;
        w.cloud
            .control(
                "config",
                json!({"instance_pending_seconds": 20, "status_checks_seconds": 40, "online_delay_seconds": 10}),
            )
            .await
            .unwrap();
        let ids = maintenance_fleet(&w, 2, "start-and-check").await;
        let (stopped, running) = (&ids[0], &ids[1]);
        let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
        ec2.stop_instances().instance_ids(stopped).send().await.unwrap();
        assert_eq!(state_of(&w, stopped).await, "stopped");
        commands(
            &w,
            json!([{"document": "opsflow-HealthCheck", "duration_seconds": 3,
                    "stdout": "PASS disk:/: 61% free (minimum 10%)\nPASS unit:app: active\n0 check(s) failed\n"}]),
        )
        .await;
        let start_ms = w.cloud.now_ms().await.unwrap();
        let out = w
            .runbooks
            .run(
                maintenance_input("start-and-check", json!({"Units": "app"})),
                "morning-start",
                |_| {},
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
        let s = out.summary.unwrap();
        assert_eq!((s.counts.targets, s.counts.succeeded), (2, 2), "{s:?}");
        assert!(s.targets.iter().all(|t| t.output_tail.contains("PASS unit:app: active")), "{s:?}");
        assert_eq!(state_of(&w, stopped).await, "running");
        // The health check ran on the started instance only once it was ready: running after
        // 20 s, status checks ok 40 s later (its agent was Online after 30 s).
        let checks = invocations_of(&w, "opsflow-HealthCheck").await;
        assert_eq!(checks.len(), 2, "{checks:?}");
        let on_started = checks.iter().find(|i| i["instance_id"] == stopped.as_str()).unwrap();
        let waited = on_started["requested_ms"].as_i64().unwrap() - start_ms;
        assert!((60_000..120_000).contains(&waited), "sent {waited} ms after the start");
        let on_running = checks.iter().find(|i| i["instance_id"] == running.as_str()).unwrap();
        assert!(
            on_running["requested_ms"].as_i64().unwrap() - start_ms < 60_000,
            "no wait for a ready instance"
        );
        // The document got the parameters; nothing is spliced into a command line.
        let rows = w.runbooks.log.targets(&out.execution_arn).await.unwrap();
        assert!(rows.iter().all(|r| r.status == TargetStatus::Succeeded));
    });
}

#[test]
fn a_failed_health_check_fails_the_target_naming_the_checks_that_failed() {
    block_on(async {
        let w = world().await;
        let ids = maintenance_fleet(&w, 1, "start-and-check").await;
        commands(
            &w,
            json!([{"document": "opsflow-HealthCheck", "exit_code": 1,
                    "stdout": "PASS disk:/: 61% free (minimum 10%)\nFAIL unit:app: failed\nFAIL port:5432: nothing accepts connections on 127.0.0.1:5432\n2 check(s) failed\n"}]),
        )
        .await;
        let out = w
            .runbooks
            .run(
                maintenance_input("start-and-check", json!({"Units": "app", "Ports": "5432"})),
                "check-db",
                |_| {},
            )
            .await
            .unwrap();
        failed_with(&out, "TargetsFailed");
        let t = &out.summary.unwrap().targets[0];
        assert_eq!((t.instance_id.as_str(), t.status), (ids[0].as_str(), TargetStatus::Failed));
        assert_eq!(
            t.reason,
            "health check failed: unit:app: failed; port:5432: nothing accepts connections on 127.0.0.1:5432"
        );
        // A parameter outside the catalogue's pattern never reaches SSM.
        let refused = w
            .runbooks
            .run(
                maintenance_input("start-and-check", json!({"Units": "app; reboot"})),
                "check-injected",
                |_| {},
            )
            .await
            .unwrap();
        let cause = failed_with(&refused, "InvalidInput");
        assert!(cause.contains("Parameters.Units"), "{cause}");
        assert_eq!(invocations_of(&w, "opsflow-HealthCheck").await.len(), 1);
    });
}

#[test]
fn clean_stop_runs_the_pre_stop_script_then_stops_and_waits_until_stopped() {
    block_on(async {
        let w = world().await;
        w.cloud.control("config", json!({"instance_stopping_seconds": 45})).await.unwrap();
        let ids = maintenance_fleet(&w, 2, "clean-stop").await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        alarm(&cw, "cpu-high-0", &ids[0]).await;
        alarm(&cw, "status-check-0", &ids[0]).await;
        alarm(&cw, "unrelated", "i-0000000000000beef").await;
        commands(
            &w,
            json!([{"document": "opsflow-PreStop", "duration_seconds": 30, "stdout": "stopping app\nstopping postgresql\npre-stop done\n"}]),
        )
        .await;
        let out = w
            .runbooks
            .run(
                maintenance_input("clean-stop", json!({"Services": "app postgresql"})),
                "evening-stop",
                |_| {},
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
        let s = out.summary.unwrap();
        assert_eq!(s.counts.succeeded, 2, "{s:?}");
        for id in &ids {
            assert_eq!(state_of(&w, id).await, "stopped", "{id}");
        }
        assert!(s.targets.iter().all(|t| t.output_tail.contains("pre-stop done")), "{s:?}");
        // The stop came after the script's end: it ran 30 s on a running instance.
        let pre = invocations_of(&w, "opsflow-PreStop").await;
        assert!(pre.iter().all(|i| i["status"] == "Success"), "{pre:?}");
        // The instance's own alarms were muted (one rule, its alarms only) and are restored.
        let history = all_history(&out.execution);
        assert!(history.contains(&format!("opsflow-{}-", ids[0])), "no mute rule for {}", ids[0]);
        assert!(history.contains("cpu-high-0") && history.contains("status-check-0"), "{history}");
        assert!(!history.contains("unrelated"), "another instance's alarm was muted");
        assert!(
            !history.contains(&format!("opsflow-{}-", ids[1])),
            "{} has no alarm to mute",
            ids[1]
        );
        assert_eq!(mute_rules(&cw).await, Vec::<String>::new(), "restored after the stop");
    });
}

#[test]
fn a_failing_pre_stop_aborts_or_stops_anyway_as_the_policy_says() {
    block_on(async {
        let w = world().await;
        let ids = maintenance_fleet(&w, 1, "clean-stop").await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        alarm(&cw, "cpu-high", &ids[0]).await;
        commands(
            &w,
            json!([{"document": "opsflow-PreStop", "duration_seconds": 5, "exit_code": 1,
                    "stdout": "stopping postgresql\n", "stderr": "FAIL unit:postgresql: did not stop within 120s\n"}]),
        )
        .await;
        let out = w
            .runbooks
            .run(
                maintenance_input("clean-stop", json!({"Services": "postgresql"})),
                "stop-abort",
                |_| {},
            )
            .await
            .unwrap();
        failed_with(&out, "TargetsFailed");
        let t = &out.summary.unwrap().targets[0];
        assert_eq!(t.status, TargetStatus::Failed);
        assert!(
            t.reason.contains("was not stopped and keeps running (OnPreStopFailure=abort)"),
            "{t:?}"
        );
        assert!(t.output_tail.contains("did not stop within 120s"), "{t:?}");
        assert_eq!(state_of(&w, &ids[0]).await, "running", "abort leaves the instance running");
        assert!(all_history(&out.execution).contains("cpu-high"), "muted during the attempt");
        assert_eq!(mute_rules(&cw).await, Vec::<String>::new(), "restored on the abort path");

        let out = w
            .runbooks
            .run(
                maintenance_input("clean-stop", json!({"Services": "postgresql", "OnPreStopFailure": "stop"})),
                "stop-anyway",
                |_| {},
            )
            .await
            .unwrap();
        failed_with(&out, "TargetsFailed");
        let t = &out.summary.unwrap().targets[0];
        assert_eq!(t.status, TargetStatus::Failed);
        assert!(
            t.reason
                .starts_with("stopped although the pre-stop script did not succeed (OnPreStopFailure=stop)"),
            "{t:?}"
        );
        assert_eq!(state_of(&w, &ids[0]).await, "stopped", "stop anyway stops it");
        assert_eq!(mute_rules(&cw).await, Vec::<String>::new(), "restored on the stop-anyway path");
    });
}

// ----------------------------------------------------------------------------------------------
// Maintenance procedures: consistent-snapshot
// ----------------------------------------------------------------------------------------------

/// The errors of every execution the run started (the procedures' own error names).
fn child_errors(r: &opsflow_asl::ExecutionResult) -> Vec<String> {
    let mut errors = Vec::new();
    for c in &r.children {
        errors.extend(c.result.error.clone());
        errors.extend(child_errors(&c.result));
    }
    errors
}

/// The local cloud's freeze episodes of `instance` (GET /_opsflow/frozen).
async fn episodes(w: &World, instance: &str) -> Vec<Value> {
    let frozen = w.cloud.get("frozen").await.unwrap();
    frozen["instances"][instance].as_array().cloned().unwrap_or_default()
}

/// Snapshots of account A's first region carrying `key=value`.
async fn snapshots_tagged(w: &World, key: &str, value: &str) -> Vec<opsflow_aws::aws_sdk_ec2::types::Snapshot> {
    use opsflow_aws::aws_sdk_ec2::types::Filter;
    let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
    let out = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name(format!("tag:{key}")).values(value).build())
        .send()
        .await
        .unwrap();
    out.snapshots().to_vec()
}

fn tag<'s>(s: &'s opsflow_aws::aws_sdk_ec2::types::Snapshot, key: &str) -> Option<&'s str> {
    s.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

/// A data volume attached to `instance` as /dev/sdf; returns its id.
async fn data_volume(w: &World, instance: &str) -> String {
    let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
    let out = ec2.describe_instances().instance_ids(instance).send().await.unwrap();
    let zone = out.reservations()[0].instances()[0]
        .placement()
        .and_then(|p| p.availability_zone())
        .unwrap()
        .to_string();
    let v = ec2.create_volume().availability_zone(zone).size(20).send().await.unwrap();
    let id = v.volume_id().unwrap().to_string();
    ec2.attach_volume()
        .volume_id(&id)
        .instance_id(instance)
        .device("/dev/sdf")
        .send()
        .await
        .unwrap();
    id
}

const FROZEN: &str = "WATCHDOG armed: thaws in 30s\nFROZEN /data\n";
const THAWED: &str = "THAWED /data\nfrozen for 1.042 s\n";

#[test]
fn consistent_snapshot_freezes_snapshots_every_volume_thaws_and_prunes_its_old_snapshots() {
    block_on(async {
        let w = world().await;
        w.cloud.control("config", json!({"snapshot_seconds": 40})).await.unwrap();
        let ids = maintenance_fleet(&w, 2, "consistent-snapshot").await;
        let data = data_volume(&w, &ids[0]).await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        alarm(&cw, "cpu-high-0", &ids[0]).await;
        // Older snapshots: this procedure's of ids[0] (to prune), and two it must keep (one of an
        // instance outside the run, and one of ids[0] not taken by the procedure).
        let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
        let old = |instance: &str, kind: &str| {
            use opsflow_aws::aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
            let spec = TagSpecification::builder()
                .resource_type(ResourceType::Snapshot)
                .tags(Tag::builder().key("opsflow:kind").value(kind).build())
                .tags(Tag::builder().key("opsflow:procedure").value("consistent-snapshot").build())
                .tags(Tag::builder().key("opsflow:instance").value(instance).build())
                .build();
            ec2.create_snapshot().volume_id(&data).tag_specifications(spec).send()
        };
        let expired = old(&ids[0], "consistent-snapshot")
            .await
            .unwrap()
            .snapshot_id()
            .unwrap()
            .to_string();
        let other_instance = old("i-0123456789abcdef0", "consistent-snapshot")
            .await
            .unwrap()
            .snapshot_id()
            .unwrap()
            .to_string();
        let not_ours = old(&ids[0], "hand-made").await.unwrap().snapshot_id().unwrap().to_string();
        let now = w.cloud.now_ms().await.unwrap();
        w.cloud.control("clock", json!({"now_ms": now + 8 * 86_400_000})).await.unwrap();
        commands(
            &w,
            json!([{"document": "opsflow-Freeze", "duration_seconds": 1, "stdout": FROZEN},
                   {"document": "opsflow-Thaw", "duration_seconds": 1, "stdout": THAWED}]),
        )
        .await;
        let out = w
            .runbooks
            .run(
                maintenance_input(
                    "consistent-snapshot",
                    json!({"Mounts": "/data", "WaitForCompletion": true, "RetentionDays": 7}),
                ),
                "nightly-snapshot",
                |_| {},
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
        let s = out.summary.unwrap();
        assert_eq!(s.counts.succeeded, 2, "{s:?}");
        let t0 = s.targets.iter().find(|t| t.instance_id == ids[0]).unwrap();
        assert!(t0.reason.starts_with("2 snapshots, application-consistent, completed: "), "{t0:?}");
        assert!(t0.reason.contains(&format!("({data})")), "{t0:?}");
        assert!(t0.reason.contains(&format!("deleted 1 older than 7 days: {expired}")), "{t0:?}");
        assert!(
            t0.output_tail.contains("FROZEN /data") && t0.output_tail.contains("frozen for 1.042 s"),
            "{t0:?}"
        );
        // Each instance was frozen once, its snapshots taken inside the frozen window, thawed by
        // the procedure (not the watchdog).
        for id in &ids {
            let e = episodes(&w, id).await;
            assert_eq!(e.len(), 1, "{id}: {e:?}");
            assert_eq!(e[0]["thawed_by"], "thaw", "{id}: {e:?}");
            let taken = snapshots_tagged(&w, "opsflow:instance", id).await;
            let mine: Vec<String> = taken
                .iter()
                .filter(|s| tag(s, "opsflow:run") == Some("nightly-snapshot"))
                .map(|s| s.snapshot_id().unwrap().to_string())
                .collect();
            let inside: Vec<String> = serde_json::from_value(e[0]["snapshots"].clone()).unwrap();
            assert!(
                !mine.is_empty() && mine.iter().all(|m| inside.contains(m)),
                "{id}: {mine:?} vs {e:?}"
            );
            let window_ms = e[0]["thawed_at"].as_i64().unwrap() - e[0]["frozen_at"].as_i64().unwrap();
            // Two targets run at once, each in its own virtual time, and the local cloud's clock
            // follows the furthest: the window seen here includes the other target's waits.
            println!("frozen window of {id}, two targets at once: {window_ms} ms (virtual)");
            assert!(window_ms < 30_000, "thawed by the procedure well inside the watchdog's 30 s");
        }
        let taken = snapshots_tagged(&w, "opsflow:run", "nightly-snapshot").await;
        assert_eq!(taken.len(), 3, "root and data of ids[0], root of ids[1]");
        for snap in &taken {
            assert_eq!(tag(snap, "opsflow:consistency"), Some("application-consistent"));
            assert_eq!(tag(snap, "opsflow:kind"), Some("consistent-snapshot"));
            assert!(matches!(
                snap.state(),
                Some(opsflow_aws::aws_sdk_ec2::types::SnapshotState::Completed)
            ));
        }
        // Retention deleted only the procedure's own old snapshot of that instance.
        let left: Vec<String> = snapshots_tagged(&w, "opsflow:procedure", "consistent-snapshot")
            .await
            .iter()
            .map(|s| s.snapshot_id().unwrap().to_string())
            .collect();
        assert!(!left.contains(&expired), "{left:?}");
        assert!(left.contains(&other_instance) && left.contains(&not_ours), "{left:?}");
        assert_eq!(mute_rules(&cw).await, Vec::<String>::new(), "alarms restored");
        assert!(all_history(&out.execution).contains("cpu-high-0"), "muted during the freeze");
    });
}

/// One consistent-snapshot run on the single instance of the fleet; returns the target's
/// result, the procedure's error (if it failed) and the instance's freeze episodes.
async fn snapshot_run(w: &World, name: &str, parameters: Value) -> (opsflow_core::runbook::TargetResult, Option<String>, Vec<Value>) {
    w.cloud.delete("invocations").await.unwrap();
    let out = w
        .runbooks
        .run(maintenance_input("consistent-snapshot", parameters), name, |_| {})
        .await
        .unwrap();
    let t = out.summary.unwrap().targets.remove(0);
    let id = t.instance_id.clone();
    let errors = child_errors(&out.execution);
    (t, errors.first().cloned(), episodes(w, &id).await)
}

#[test]
fn consistent_snapshot_thaws_on_every_failure_path_by_the_procedure_or_the_watchdog() {
    block_on(async {
        let w = world().await;
        let ids = maintenance_fleet(&w, 1, "consistent-snapshot").await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        alarm(&cw, "cpu-high", &ids[0]).await;
        let params = json!({"Mounts": "/data", "WatchdogSeconds": 30});
        // The freeze and thaw rules: a 1 s run each, succeeding, unless `freeze` / `thaw` say.
        let rules = |freeze: Value, thaw: Value| {
            let rule = |document: &str, stdout: &str, over: Value| {
                let mut r = json!({"document": document, "duration_seconds": 1, "stdout": stdout});
                r.as_object_mut().unwrap().extend(over.as_object().unwrap().clone());
                r
            };
            json!([rule("opsflow-Freeze", FROZEN, freeze), rule("opsflow-Thaw", THAWED, thaw)])
        };
        let check_restored = |what: &'static str| {
            let cw = cw.clone();
            async move { assert_eq!(mute_rules(&cw).await, Vec::<String>::new(), "alarms restored after {what}") }
        };

        // 1. A pre-snapshot hook fails: nothing frozen, no snapshot; the thaw (post-hooks) runs.
        w.cloud.delete("commands").await.unwrap();
        commands(&w, rules(json!({"exit_code": 3, "stdout": "pre-hook /etc/opsflow/pre-snapshot.d/10-db\nFAIL pre-hook /etc/opsflow/pre-snapshot.d/10-db: exit 1\n"}), json!({}))).await;
        let (t, error, e) = snapshot_run(&w, "snap-prehook", params.clone()).await;
        assert_eq!(error.as_deref(), Some("PreHookFailed"), "{t:?}");
        assert!(
            t.reason.contains("a pre-snapshot hook failed") && t.reason.contains("no snapshot was taken"),
            "{t:?}"
        );
        assert!(e.is_empty(), "never frozen: {e:?}");
        assert_eq!(invocations_of(&w, "opsflow-Thaw").await.len(), 1, "the post-hooks ran");
        check_restored("a failed pre-hook").await;

        // 2. The freeze fails after freezing one file system (the script died): OnFreezeFailure
        // fail takes no snapshot and the thaw thaws it.
        w.cloud.delete("commands").await.unwrap();
        commands(
            &w,
            rules(
                json!({"exit_code": 4, "leaves_frozen": true, "stdout": "FAIL freeze /data: fsfreeze -f failed\n"}),
                json!({}),
            ),
        )
        .await;
        let (t, error, e) = snapshot_run(&w, "snap-freeze-fails", params.clone()).await;
        assert_eq!(error.as_deref(), Some("FreezeFailed"), "{t:?}");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["thawed_by"], "thaw", "thawed by the procedure: {e:?}");
        check_restored("a failed freeze").await;

        // 3. The same with OnFreezeFailure crash-consistent: snapshots anyway, and says so.
        let mut fallback = params.clone();
        fallback["OnFreezeFailure"] = json!("crash-consistent");
        let (t, error, _) = snapshot_run(&w, "snap-crash-consistent", fallback).await;
        assert_eq!(error, None, "{t:?}");
        assert_eq!(t.status, TargetStatus::Succeeded);
        assert!(t.reason.starts_with("1 snapshot, crash-consistent"), "{t:?}");
        assert!(t.reason.contains("OnFreezeFailure=crash-consistent"), "{t:?}");
        let taken = snapshots_tagged(&w, "opsflow:run", "snap-crash-consistent").await;
        assert_eq!(tag(&taken[0], "opsflow:consistency"), Some("crash-consistent"));

        // 4. CreateSnapshots throttled once: retried within the frozen window, then thawed.
        w.cloud.delete("commands").await.unwrap();
        commands(&w, rules(json!({}), json!({}))).await;
        w.cloud
            .control(
                "faults",
                json!({"operation": "ec2:CreateSnapshots", "count": 1, "code": "RequestLimitExceeded",
                                       "message": "Request limit exceeded.", "http_status": 503}),
            )
            .await
            .unwrap();
        let (t, error, e) = snapshot_run(&w, "snap-throttled", params.clone()).await;
        assert_eq!((error, t.status), (None, TargetStatus::Succeeded), "{t:?}");
        assert_eq!(e[0]["thawed_by"], "thaw", "{e:?}");
        let window = |e: &Value| e["thawed_at"].as_i64().unwrap() - e["frozen_at"].as_i64().unwrap();
        println!(
            "frozen window, one target, CreateSnapshots throttled once: {} ms (virtual)",
            window(&e[0])
        );

        // 5. CreateSnapshots keeps failing: SnapshotFailed, thawed by the procedure at once.
        w.cloud
            .control(
                "faults",
                json!({"operation": "ec2:CreateSnapshots", "count": 100, "code": "InternalError",
                                       "message": "An internal error has occurred", "http_status": 500}),
            )
            .await
            .unwrap();
        let (t, error, e) = snapshot_run(&w, "snap-create-fails", params.clone()).await;
        w.cloud.delete("faults").await.unwrap();
        assert_eq!(error.as_deref(), Some("SnapshotFailed"), "{t:?}");
        assert!(t.reason.contains("no snapshot was taken"), "{t:?}");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["thawed_by"], "thaw", "{e:?}");
        check_restored("a failed CreateSnapshots").await;

        // 6. The thaw command is lost: the watchdog thaws; the procedure waits for it, then
        // ends ThawFailed with its snapshots.
        w.cloud.delete("commands").await.unwrap();
        commands(&w, rules(json!({}), json!({"undeliverable": true, "pending_seconds": 2}))).await;
        let (t, error, e) = snapshot_run(&w, "snap-thaw-lost", params.clone()).await;
        assert_eq!(error.as_deref(), Some("ThawFailed"), "{t:?}");
        assert!(t.reason.contains("watchdog thaws the file systems 30 s after"), "{t:?}");
        assert!(t.reason.contains("1 snapshot, application-consistent"), "{t:?}");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["thawed_by"], "watchdog", "{e:?}");
        println!(
            "frozen window, thaw lost: {} ms (virtual; the watchdog's 30 s from the freeze's start)",
            window(&e[0])
        );
        check_restored("a lost thaw").await;

        // 7. A snapshot ends in error while waited for: SnapshotFailed after the thaw.
        w.cloud.delete("commands").await.unwrap();
        commands(&w, rules(json!({}), json!({}))).await;
        w.cloud
            .control(
                "snapshot_failures",
                json!({"instance_id": ids[0], "fail_after_seconds": 20,
                                                  "state_message": "The snapshot could not be completed"}),
            )
            .await
            .unwrap();
        let mut wait = params.clone();
        wait["WaitForCompletion"] = json!(true);
        let (t, error, e) = snapshot_run(&w, "snap-error", wait).await;
        println!("frozen window, one target: {} ms (virtual)", window(&e[0]));
        assert_eq!(error.as_deref(), Some("SnapshotFailed"), "{t:?}");
        assert!(t.reason.contains("The snapshot could not be completed"), "{t:?}");
        assert_eq!(e[0]["thawed_by"], "thaw", "{e:?}");
        check_restored("a snapshot in error").await;
        let frozen = w.cloud.get("frozen").await.unwrap();
        assert_eq!(frozen["frozen_now"], json!([]), "nothing is left frozen");
    });
}

// ----------------------------------------------------------------------------------------------
// Maintenance procedures: patch
// ----------------------------------------------------------------------------------------------

/// The root volume of `instance` (DescribeInstances).
async fn root_volume(w: &World, instance: &str) -> String {
    let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
    let out = ec2.describe_instances().instance_ids(instance).send().await.unwrap();
    let i = &out.reservations()[0].instances()[0];
    let root = i.root_device_name().unwrap();
    i.block_device_mappings()
        .iter()
        .find(|m| m.device_name() == Some(root))
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_id())
        .unwrap()
        .to_string()
}

/// The patch's rules: freeze and thaw succeed, the patch reboots once then succeeds, the health
/// check answers `health` (then, once used up, passes).
async fn patch_rules(w: &World, patch: Value, health: Option<Value>) {
    w.cloud.delete("commands").await.unwrap();
    let mut rules = vec![
        json!({"document": "opsflow-Freeze", "duration_seconds": 1, "stdout": FROZEN}),
        json!({"document": "opsflow-Thaw", "duration_seconds": 1, "stdout": THAWED}),
        patch,
        json!({"document": "opsflow-HealthCheck", "duration_seconds": 2, "stdout": "PASS unit:app: active\n0 check(s) failed\n"}),
    ];
    rules.extend(health);
    commands(w, Value::Array(rules)).await;
}

fn patched_with_reboot() -> Value {
    json!({"document": "AWS-RunPatchBaselineWithHooks", "reboot_seconds": 20, "runs": [
        {"exit_code": 194, "duration_seconds": 30, "stdout": "Installing 3 packages"},
        {"exit_code": 0, "duration_seconds": 5, "stdout": "Installed 3 packages: kernel, openssl, glibc\n"}]})
}

#[test]
fn patch_snapshots_patches_through_a_reboot_then_checks_health() {
    block_on(async {
        let w = world().await;
        w.cloud.control("config", json!({"snapshot_seconds": 10})).await.unwrap();
        let ids = maintenance_fleet(&w, 1, "patch").await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        alarm(&cw, "cpu-high", &ids[0]).await;
        let root = root_volume(&w, &ids[0]).await;
        patch_rules(&w, patched_with_reboot(), None).await;
        let out = w
            .runbooks
            .run(maintenance_input("patch", json!({"Units": "app"})), "patch-tuesday", |_| {})
            .await
            .unwrap();
        assert_eq!(
            out.execution.status,
            Status::Succeeded,
            "{:?} {:?}",
            out.execution.error,
            out.execution.cause
        );
        let t = &out.summary.unwrap().targets[0];
        assert_eq!(t.status, TargetStatus::Succeeded, "{t:?}");
        assert!(t.reason.starts_with("patched and healthy; pre-patch snapshots: snap-"), "{t:?}");
        assert!(t.output_tail.contains("Installed 3 packages"), "{t:?}");
        // The snapshot ran nested, first; the patch document got Operation Install and the
        // reboot option; the root volume is the same.
        let history = all_history(&out.execution);
        assert!(history.contains("opsflow-consistent-snapshot"), "no nested snapshot");
        let patch = invocations_of(&w, "AWS-RunPatchBaselineWithHooks").await;
        assert_eq!(patch.len(), 1, "{patch:?}");
        assert_eq!(patch[0]["status"], "Success", "{patch:?}");
        let e = episodes(&w, &ids[0]).await;
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["thawed_by"], "thaw", "thawed before the patch: {e:?}");
        assert_eq!(root_volume(&w, &ids[0]).await, root, "no rollback");
        assert_eq!(mute_rules(&cw).await, Vec::<String>::new(), "alarms restored");
    });
}

#[test]
fn a_patch_that_breaks_the_health_check_is_rolled_back_to_the_pre_patch_root_volume() {
    block_on(async {
        let w = world().await;
        w.cloud
            .control(
                "config",
                json!({"snapshot_seconds": 10, "replace_root_seconds": 30, "online_delay_seconds": 10}),
            )
            .await
            .unwrap();
        let ids = maintenance_fleet(&w, 1, "patch").await;
        let now = w.cloud.now_ms().await.unwrap();
        w.cloud.control("clock", json!({"now_ms": now + 15_000})).await.unwrap();
        let root = root_volume(&w, &ids[0]).await;
        let broken = json!({"document": "opsflow-HealthCheck", "count": 1, "exit_code": 1, "duration_seconds": 2,
                            "stdout": "FAIL unit:app: inactive\n1 check(s) failed\n"});
        patch_rules(&w, patched_with_reboot(), Some(broken.clone())).await;
        let out = w
            .runbooks
            .run(maintenance_input("patch", json!({"Units": "app"})), "patch-breaks", |_| {})
            .await
            .unwrap();
        failed_with(&out, "TargetsFailed");
        assert!(child_errors(&out.execution).contains(&"RolledBack".to_string()));
        let t = &out.summary.unwrap().targets[0];
        assert_eq!(t.status, TargetStatus::Failed);
        assert!(
            t.reason
                .contains("patched, but the health check failed: health check failed: unit:app: inactive"),
            "{t:?}"
        );
        let new_root = root_volume(&w, &ids[0]).await;
        assert_ne!(new_root, root, "the root volume was replaced");
        assert!(
            t.reason.contains(&format!("rolled back: root volume {root} replaced from snap-")) && t.reason.contains("healthy again"),
            "{t:?}"
        );
        let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
        let tasks = ec2.describe_replace_root_volume_tasks().send().await.unwrap();
        let tasks = tasks.replace_root_volume_tasks();
        assert_eq!(tasks.len(), 1, "one task: {tasks:?}");
        assert_eq!(tasks[0].task_state().map(|s| s.as_str()), Some("succeeded"));
        assert_eq!(state_of(&w, &ids[0]).await, "running", "no stop and start");
        let old = ec2.describe_volumes().volume_ids(&root).send().await.unwrap();
        assert_eq!(
            old.volumes()[0].state().map(|s| s.as_str()),
            Some("available"),
            "the patched volume is kept, detached"
        );
        assert_eq!(
            invocations_of(&w, "opsflow-HealthCheck").await.len(),
            2,
            "checked again after the rollback"
        );

        // The same failure with Rollback=false is reported and left as it is.
        patch_rules(
            &w,
            json!({"document": "AWS-RunPatchBaselineWithHooks", "exit_code": 1, "duration_seconds": 5,
                                "stdout": "Failed to install kernel: dependency conflict\n"}),
            None,
        )
        .await;
        let out = w
            .runbooks
            .run(
                maintenance_input("patch", json!({"Units": "app", "Rollback": false})),
                "patch-no-rollback",
                |_| {},
            )
            .await
            .unwrap();
        failed_with(&out, "TargetsFailed");
        assert!(child_errors(&out.execution).contains(&"PatchFailed".to_string()));
        let t = &out.summary.unwrap().targets[0];
        assert!(
            t.reason.contains("the patch failed") && t.reason.contains("not rolled back (Rollback=false)"),
            "{t:?}"
        );
        assert!(t.output_tail.contains("dependency conflict"), "{t:?}");
        assert_eq!(root_volume(&w, &ids[0]).await, new_root, "left as it is");
    });
}

// ----------------------------------------------------------------------------------------------
// start-and-check on every start (the central EventBridge rule)
// ----------------------------------------------------------------------------------------------

/// What `RunbookOnStartRule` of infra/template.yaml makes of `event`, by moto's own EventBridge
/// pattern matching and input transformer: the runner input EventBridge would start the runner
/// with, or None when the rule does not match.
fn on_start_input(event: &Value) -> Option<Value> {
    rule_input("RunbookOnStartRule", event)
}

/// What the template's rule `rule` makes of `event`: its pattern (moto's matcher) and its
/// input transformer (moto's EventTemplateParser), or None when the pattern does not match.
fn rule_input(rule: &str, event: &Value) -> Option<Value> {
    rule_input_in("infra/template.yaml", rule, event)
}

/// The same for a rule of `template`; a target without an input transformer gets the event.
fn rule_input_in(template: &str, rule: &str, event: &Value) -> Option<Value> {
    use std::io::Write;
    const SCRIPT: &str = r#"
import json, sys, yaml
from moto.events.models import EventPattern, EventTemplateParser
class Loader(yaml.SafeLoader): pass
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
rule = yaml.load(open(sys.argv[1]), Loader=Loader)["Resources"][sys.argv[2]]["Properties"]
event = json.loads(sys.stdin.read())
if not EventPattern.load(json.dumps(rule["EventPattern"])).matches_event(event):
    print("null")
elif "InputTransformer" not in rule["Targets"][0]:
    print(json.dumps(event))
else:
    t = rule["Targets"][0]["InputTransformer"]
    print(json.dumps(EventTemplateParser.parse(input_template=t["InputTemplate"], input_paths_map=t["InputPathsMap"], event=event)))
"#;
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = std::process::Command::new(format!("{root}/.venv/bin/python"))
        .args(["-c", SCRIPT, &format!("{root}/{template}"), rule])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the local cloud's venv python");
    let mut moto_event = event.clone();
    moto_event["ingestion-time"] = json!(0);
    child.stdin.take().unwrap().write_all(moto_event.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_instance_that_asks_is_checked_on_every_start_and_the_others_are_left_alone() {
    block_on(async {
        let w = world().await;
        w.cloud
            .control("config", json!({"instance_pending_seconds": 15, "status_checks_seconds": 10}))
            .await
            .unwrap();
        let asks =
            w.a.instance(
                REGIONS[0],
                "asks",
                &[(OPT_IN.0, "start-and-check"), ("opsflow:on-start", "start-and-check")],
                false,
            )
            .await
            .unwrap();
        let quiet = w.a.instance(REGIONS[0], "quiet", &[(OPT_IN.0, "enabled")], false).await.unwrap();
        let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
        ec2.stop_instances().instance_ids(&asks).instance_ids(&quiet).send().await.unwrap();
        w.cloud.delete("events").await.unwrap();
        // Started from anywhere (here: by hand), the instances enter running after 15 s.
        ec2.start_instances().instance_ids(&asks).instance_ids(&quiet).send().await.unwrap();
        let now = w.cloud.now_ms().await.unwrap();
        w.cloud.control("clock", json!({"now_ms": now + 20_000})).await.unwrap();
        commands(
            &w,
            json!([{"document": "opsflow-HealthCheck", "duration_seconds": 2,
                    "stdout": "PASS disk:/: 61% free (minimum 10%)\n0 check(s) failed\n"}]),
        )
        .await;
        let events = w.cloud.get("events").await.unwrap()["events"].as_array().cloned().unwrap();
        let running = |id: &str| {
            events
                .iter()
                .find(|e| e["detail"]["instance-id"] == id && e["detail"]["state"] == "running")
                .cloned()
                .unwrap_or_else(|| panic!("no running event for {id}: {events:?}"))
        };
        let pending = events.iter().find(|e| e["detail"]["state"] == "pending").unwrap();
        assert_eq!(on_start_input(pending), None, "only running starts a check");

        let input = on_start_input(&running(&asks)).unwrap();
        assert_eq!(input["Accounts"], json!([A]), "the member account the event came from");
        let out = w.runbooks.run(input, "on-start-asks", |_| {}).await.unwrap();
        assert_eq!(
            out.execution.status,
            Status::Succeeded,
            "{:?} {:?}",
            out.execution.error,
            out.execution.cause
        );
        let s = out.summary.unwrap();
        assert_eq!((s.counts.succeeded, s.targets.len()), (1, 1), "{s:?}");
        assert_eq!(s.targets[0].instance_id, asks);
        assert!(s.targets[0].output_tail.contains("0 check(s) failed"), "{s:?}");

        // The instance that did not ask: nothing runs, nothing is reported.
        let out = w
            .runbooks
            .run(on_start_input(&running(&quiet)).unwrap(), "on-start-quiet", |_| {})
            .await
            .unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "{:?}", out.execution.cause);
        let s = out.summary.unwrap();
        assert_eq!((s.targets.len(), s.excluded_count), (0, 0), "{s:?}");
        assert_eq!(
            invocations_of(&w, "opsflow-HealthCheck").await.len(),
            1,
            "checked once, the one that asked"
        );
    });
}

#[test]
fn a_run_aborted_while_the_file_systems_are_frozen_is_thawed_by_the_watchdog() {
    block_on(async {
        let w = world().await;
        let ids = maintenance_fleet(&w, 1, "consistent-snapshot").await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        alarm(&cw, "cpu-high", &ids[0]).await;
        commands(
            &w,
            json!([{"document": "opsflow-Freeze", "duration_seconds": 1, "stdout": FROZEN},
                   {"document": "opsflow-Thaw", "duration_seconds": 1, "stdout": THAWED}]),
        )
        .await;
        // CreateSnapshots answers slowly (real time), so the run can be stopped while frozen.
        w.cloud
            .control("config", json!({"latency_ms": {"ec2:CreateSnapshots": 1500}}))
            .await
            .unwrap();
        let input = maintenance_input("consistent-snapshot", json!({"Mounts": "/data", "WatchdogSeconds": 30}));
        let stop_when_frozen = async {
            for _ in 0..200 {
                let frozen = w.cloud.get("frozen").await.unwrap();
                if frozen["frozen_now"].as_array().is_some_and(|a| !a.is_empty()) {
                    return w.runbooks.stop("the operator's brake, between freeze and thaw");
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            false
        };
        let (out, stopped) = tokio::join!(w.runbooks.run(input, "snap-aborted", |_| {}), stop_when_frozen);
        let out = out.unwrap();
        assert!(stopped, "the run was frozen at some point and stopped then");
        assert_eq!(out.execution.status, Status::Aborted, "{:?}", out.execution.cause);
        let e = episodes(&w, &ids[0]).await;
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["thawed_by"], Value::Null, "nothing thawed it yet: {e:?}");
        // Nobody is left to thaw: the on-instance watchdog does, 30 s after the freeze began.
        let now = w.cloud.now_ms().await.unwrap();
        w.cloud.control("clock", json!({"now_ms": now + 31_000})).await.unwrap();
        let e = episodes(&w, &ids[0]).await;
        assert_eq!(e[0]["thawed_by"], "watchdog", "{e:?}");
        assert_eq!(w.cloud.get("frozen").await.unwrap()["frozen_now"], json!([]));
        // The alarms' mute rule was never deleted: it ends by itself (the procedure's longest hold).
        let rules = cw.list_alarm_mute_rules().send().await.unwrap();
        assert_eq!(rules.alarm_mute_rule_summaries().len(), 1, "left to expire by itself");
    });
}

#[test]
fn a_rollback_whose_task_fails_and_a_restore_that_fails_are_reported_and_bounded() {
    block_on(async {
        let w = world().await;
        w.cloud
            .control("config", json!({"snapshot_seconds": 10, "replace_root_seconds": 30}))
            .await
            .unwrap();
        let ids = maintenance_fleet(&w, 1, "patch").await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        alarm(&cw, "cpu-high", &ids[0]).await;
        let root = root_volume(&w, &ids[0]).await;
        let broken = json!({"document": "opsflow-HealthCheck", "exit_code": 1, "duration_seconds": 2,
                            "stdout": "FAIL unit:app: inactive\n1 check(s) failed\n"});
        patch_rules(&w, patched_with_reboot(), Some(broken)).await;
        // EC2 fails the replacement (AWS documents `failed`: the instance keeps its root volume),
        // and DeleteAlarmMuteRule fails every time.
        w.cloud
            .control("replace_root_failures", json!({"instance_id": ids[0], "fail_after_seconds": 20}))
            .await
            .unwrap();
        w.cloud
            .control(
                "faults",
                json!({"operation": "cloudwatch:DeleteAlarmMuteRule", "count": 100, "code": "InternalServiceError",
                                       "message": "Internal error", "http_status": 500}),
            )
            .await
            .unwrap();
        let out = w
            .runbooks
            .run(maintenance_input("patch", json!({"Units": "app"})), "patch-rollback-fails", |_| {})
            .await
            .unwrap();
        w.cloud.delete("faults").await.unwrap();
        failed_with(&out, "TargetsFailed");
        assert!(child_errors(&out.execution).contains(&"RollbackFailed".to_string()));
        let t = &out.summary.unwrap().targets[0];
        assert!(t.reason.contains("patched, but the health check failed"), "{t:?}");
        assert!(
            t.reason.contains("the rollback failed") && t.reason.contains("ended failed"),
            "{t:?}"
        );
        assert_eq!(
            root_volume(&w, &ids[0]).await,
            root,
            "a failed task leaves the root volume as it was"
        );
        // The restores failed: the run still ended with its result, and the mute rules (the
        // patch's and its nested snapshot's) end by themselves, bounded by the longest hold.
        let rules = cw.list_alarm_mute_rules().send().await.unwrap();
        assert_eq!(rules.alarm_mute_rule_summaries().len(), 2, "left to end by themselves");
        assert!(
            all_history(&out.execution).contains("RestoreError"),
            "the failed restore is on record"
        );
    });
}

#[test]
fn a_rollback_that_does_not_heal_and_a_mute_that_fails_are_said_as_such() {
    block_on(async {
        let w = world().await;
        w.cloud
            .control("config", json!({"snapshot_seconds": 10, "replace_root_seconds": 30}))
            .await
            .unwrap();
        let ids = maintenance_fleet(&w, 1, "patch").await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        alarm(&cw, "cpu-high", &ids[0]).await;
        // The health check fails before and after the rollback: the fault is not the patch's.
        let broken = json!({"document": "opsflow-HealthCheck", "exit_code": 1, "duration_seconds": 2,
                            "stdout": "FAIL disk:/: 3% free (minimum 10%)\n1 check(s) failed\n"});
        patch_rules(&w, patched_with_reboot(), Some(broken)).await;
        let out = w
            .runbooks
            .run(maintenance_input("patch", json!({"Units": "app"})), "patch-no-heal", |_| {})
            .await
            .unwrap();
        failed_with(&out, "TargetsFailed");
        assert!(child_errors(&out.execution).contains(&"UnhealthyAfterRollback".to_string()));
        let t = &out.summary.unwrap().targets[0];
        assert!(
            t.reason
                .contains("but the health check after it failed: health check failed: disk:/: 3% free"),
            "{t:?}"
        );
        assert_eq!(invocations_of(&w, "opsflow-HealthCheck").await.len(), 2);
        assert_eq!(mute_rules(&cw).await, Vec::<String>::new(), "alarms restored");

        // CloudWatch refuses the mute rule: nothing is frozen, snapshotted or patched.
        w.cloud.delete("invocations").await.unwrap();
        w.cloud
            .control(
                "faults",
                json!({"operation": "cloudwatch:PutAlarmMuteRule", "count": 100, "code": "LimitExceeded",
                                       "message": "The maximum number of alarm mute rules has been reached", "http_status": 400}),
            )
            .await
            .unwrap();
        let out = w
            .runbooks
            .run(maintenance_input("patch", json!({"Units": "app"})), "patch-no-mute", |_| {})
            .await
            .unwrap();
        w.cloud.delete("faults").await.unwrap();
        failed_with(&out, "TargetsFailed");
        let t = &out.summary.unwrap().targets[0];
        assert!(t.reason.contains("maximum number of alarm mute rules"), "{t:?}");
        assert_eq!(invocation_count(&w).await, 0, "no command was sent");
        assert!(snapshots_tagged(&w, "opsflow:run", "patch-no-mute").await.is_empty());
    });
}

// ----------------------------------------------------------------------------------------------
// forensic-capture
// ----------------------------------------------------------------------------------------------

/// Checks the evidence under `prefix` the way an investigator would, with other tools than the
/// procedure's (Python's tarfile and hashlib): every part of the manifest is in the archive with
/// its size and SHA-256, nothing else is, and the archive's digest is the manifest's and S3's.
async fn investigate(w: &World, prefix: &str) -> Value {
    use std::io::Write;
    const SCRIPT: &str = r#"
import base64, hashlib, io, json, sys, tarfile
archive, manifest, stored = sys.stdin.buffer.read().split(b"\n--\n", 2)
m = json.loads(manifest)
digest = hashlib.sha256(archive).hexdigest()
found = {}
with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as t:
    for e in t.getmembers():
        if e.isfile():
            b = t.extractfile(e).read()
            found[e.name.removeprefix("./")] = (len(b), hashlib.sha256(b).hexdigest())
listed = {p["Name"]: (p["Bytes"], p["Sha256"]) for p in m["Parts"]}
print(json.dumps({"parts_match": found == listed, "parts": sorted(found),
                  "archive_matches": (m["Archive"]["Bytes"], m["Archive"]["Sha256"]) == (len(archive), digest),
                  "s3_checksum_matches": base64.b64decode(stored).hex() == digest, "manifest": m}))
"#;
    let s3 = &w.runbooks.clients.s3;
    let get = |key: String| async move {
        s3.get_object()
            .bucket(opsflow::local::runbook::FORENSICS_BUCKET)
            .key(&key)
            .checksum_mode(opsflow_aws::aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"))
    };
    let archive = get(format!("{prefix}collection.tar.gz")).await;
    let stored = archive.checksum_sha256().unwrap_or_default().to_string();
    let archive = archive.body.collect().await.unwrap().into_bytes();
    let manifest = get(format!("{prefix}manifest.json"))
        .await
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = std::process::Command::new(format!("{root}/.venv/bin/python"))
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the local cloud's venv python");
    let mut input = archive.to_vec();
    for part in [&b"\n--\n"[..], &manifest, b"\n--\n", stored.as_bytes()] {
        input.extend_from_slice(part);
    }
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn lifecycle_actions(w: &World, group: &str) -> Vec<Value> {
    let all = w.cloud.get("lifecycle_actions").await.unwrap();
    all["lifecycle_actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["group"] == group)
        .cloned()
        .collect()
}

async fn instance_tags(w: &World, id: &str) -> std::collections::BTreeMap<String, String> {
    let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
    let out = ec2.describe_instances().instance_ids(id).send().await.unwrap();
    out.reservations()[0].instances()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

/// Scales `group` in by one; returns the runner input the template's rule makes of the
/// lifecycle action's event, and the instance it holds.
async fn scale_in(w: &World, group: &str, left: i32) -> (Value, String) {
    let c = w.a.clients(REGIONS[0]).await.unwrap();
    let asg = opsflow_aws::aws_sdk_autoscaling::Client::new(&c.sdk_config);
    w.cloud.delete("events").await.unwrap();
    asg.set_desired_capacity()
        .auto_scaling_group_name(group)
        .desired_capacity(left)
        .send()
        .await
        .unwrap();
    let events = w.cloud.get("events").await.unwrap()["events"].as_array().cloned().unwrap();
    let event = events
        .iter()
        .find(|e| e["detail-type"] == "EC2 Instance-terminate Lifecycle Action" && e["detail"]["AutoScalingGroupName"] == group)
        .unwrap_or_else(|| panic!("no lifecycle action event: {events:?}"))
        .clone();
    let instance = event["detail"]["EC2InstanceId"].as_str().unwrap().to_string();
    (
        rule_input("RunbookForensicCaptureRule", &event).expect("the rule takes opsflow-forensics* hooks"),
        instance,
    )
}

#[test]
fn a_scale_in_is_held_while_the_instance_is_captured_verified_snapshotted_and_tagged_then_released_once() {
    block_on(async {
        let w = world().await;
        let tags = [(OPT_IN.0, "forensic-capture"), ("Env", "web")];
        let group = "web-asg";
        w.a.scaling_group(REGIONS[0], group, 2, &tags, "opsflow-forensics", 300)
            .await
            .unwrap();
        // The collection takes 250 s: longer than a third of the hook's heartbeat timeout.
        commands(&w, json!([{"document": "opsflow-ForensicCollect", "duration_seconds": 250}])).await;
        let (input, id) = scale_in(&w, group, 1).await;
        assert_eq!(input["LifecycleAction"]["EC2InstanceId"], json!(id));
        let out = w.runbooks.run(input, "forensics-scale-in", |_| {}).await.unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "{:?}", out.execution.cause);
        let s = out.summary.unwrap();
        let t = &s.targets[0];
        assert_eq!((s.counts.succeeded, t.instance_id.as_str()), (1, id.as_str()), "{s:?}");
        let case = "forensics-scale-in";
        assert!(
            t.reason.contains(&format!(
                "s3://{}/forensics/{case}/{id}/collection.tar.gz",
                opsflow::local::runbook::FORENSICS_BUCKET
            )),
            "{}",
            t.reason
        );
        assert!(t.reason.contains("completed with CONTINUE"), "{}", t.reason);

        // The evidence, checked with other tools than the procedure's.
        let found = investigate(&w, &format!("forensics/{case}/{id}/")).await;
        assert_eq!(
            (&found["parts_match"], &found["archive_matches"], &found["s3_checksum_matches"]),
            (&json!(true), &json!(true), &json!(true)),
            "{found}"
        );
        assert!(found["parts"].as_array().unwrap().contains(&json!("journal.txt")), "{found}");
        assert_eq!(found["manifest"]["CaseId"], json!(case));

        // A snapshot of every volume, tagged with the case; the instance tagged too.
        let snaps = snapshots_tagged(&w, "opsflow:case", case).await;
        assert!(!snaps.is_empty());
        assert!(snaps
            .iter()
            .all(|s| tag(s, "opsflow:kind") == Some("forensic-capture") && tag(s, "opsflow:instance") == Some(id.as_str())));
        assert!(snaps.iter().all(|sn| t.reason.contains(sn.snapshot_id().unwrap())), "{}", t.reason);
        assert_eq!(instance_tags(&w, &id).await.get("opsflow:case").map(String::as_str), Some(case));

        // Kept alive while it was captured, then completed with CONTINUE exactly once.
        let (action,) = <[Value; 1]>::try_from(lifecycle_actions(&w, group).await).unwrap().into();
        assert_eq!(
            (&action["result"], &action["complete_calls"]),
            (&json!("CONTINUE"), &json!(1)),
            "{action}"
        );
        assert_eq!(action["completed_by"], json!("CompleteLifecycleAction"), "{action}");
        assert!(
            action["heartbeats"].as_array().unwrap().len() >= 2,
            "a heartbeat at the start and during the collection: {action}"
        );
    });
}

#[test]
fn a_capture_that_fails_still_snapshots_and_releases_the_scale_in_and_says_what_failed() {
    block_on(async {
        let w = world().await;
        let tags = [(OPT_IN.0, "forensic-capture")];
        w.a.scaling_group(REGIONS[0], "api-asg", 3, &tags, "opsflow-forensics-api", 300)
            .await
            .unwrap();
        for (n, (rule, error)) in [
            (json!({"forensics": {"tamper": "processes.txt"}}), "EvidenceMismatch"),
            (json!({"exit_code": 1, "stderr": "tar: /var/log: Cannot open"}), "CollectionFailed"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut rule = rule;
            rule["document"] = json!("opsflow-ForensicCollect");
            rule["duration_seconds"] = json!(20);
            commands(&w, json!([rule])).await;
            let (input, id) = scale_in(&w, "api-asg", 2 - n as i32).await;
            let name = format!("forensics-failing-{n}");
            let out = w.runbooks.run(input, &name, |_| {}).await.unwrap();
            let t = out.summary.unwrap().targets.remove(0);
            assert_eq!(t.status, opsflow_core::runbook::TargetStatus::Failed, "{t:?}");
            assert_eq!(
                child_errors(&out.execution).first().map(String::as_str),
                Some(error),
                "{}",
                t.reason
            );
            if error == "EvidenceMismatch" {
                assert!(t.reason.contains("part processes.txt"), "names the part: {}", t.reason);
            }
            assert!(
                !snapshots_tagged(&w, "opsflow:case", &name).await.is_empty(),
                "the disks are kept: {}",
                t.reason
            );
            let action = lifecycle_actions(&w, "api-asg")
                .await
                .into_iter()
                .find(|a| a["instance_id"] == json!(id))
                .unwrap();
            assert_eq!(
                (&action["result"], &action["complete_calls"]),
                (&json!("CONTINUE"), &json!(1)),
                "{action}"
            );
        }
    });
}

#[test]
fn forensic_capture_on_demand_captures_each_instance_of_a_small_fleet_under_one_case() {
    block_on(async {
        let w = world().await;
        let ids = maintenance_fleet(&w, 2, "forensic-capture").await;
        let _other = maintenance_fleet(&w, 1, "patch").await;
        commands(&w, json!([{"document": "opsflow-ForensicCollect", "duration_seconds": 15}])).await;
        let input = maintenance_input("forensic-capture", json!({"CaseId": "IR-2026-0042"}));
        let out = w.runbooks.run(input, "forensics-on-demand", |_| {}).await.unwrap();
        let s = out.summary.unwrap();
        assert_eq!(
            (s.counts.succeeded, s.targets.len()),
            (2, 2),
            "only the instances that opted in to it: {s:?}"
        );
        for id in &ids {
            let t = s.targets.iter().find(|t| &t.instance_id == id).unwrap();
            assert!(t.reason.contains("no lifecycle action to complete"), "{}", t.reason);
            let found = investigate(&w, &format!("forensics/IR-2026-0042/{id}/")).await;
            assert_eq!(found["parts_match"], json!(true), "{found}");
            assert_eq!(
                instance_tags(&w, id).await.get("opsflow:case").map(String::as_str),
                Some("IR-2026-0042")
            );
        }
    });
}

#[test]
fn isolation_quarantines_the_network_detaches_target_groups_and_revokes_role_sessions_each_on_its_own_record() {
    block_on(async {
        use opsflow_aws::aws_sdk_elasticloadbalancingv2::types::TargetDescription;
        let w = world().await;
        let ids = maintenance_fleet(&w, 1, "forensic-capture").await;
        let id = &ids[0];
        let c = w.a.clients(REGIONS[0]).await.unwrap();
        let elb = opsflow_aws::aws_sdk_elasticloadbalancingv2::Client::new(&c.sdk_config);
        let enis = c.ec2.describe_network_interfaces().send().await.unwrap();
        let eni = enis
            .network_interfaces()
            .iter()
            .find(|n| n.attachment().and_then(|a| a.instance_id()) == Some(id.as_str()))
            .expect("the instance's interface")
            .clone();
        let tg = elb
            .create_target_group()
            .name("web")
            .protocol(opsflow_aws::aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(80)
            .vpc_id(eni.vpc_id().unwrap())
            .send()
            .await
            .unwrap();
        let tg_arn = tg.target_groups()[0].target_group_arn().unwrap().to_string();
        elb.register_targets()
            .target_group_arn(&tg_arn)
            .targets(TargetDescription::builder().id(id).port(8080).build())
            .send()
            .await
            .unwrap();
        c.iam
            .tag_role()
            .role_name("fleet-ssm")
            .tags(
                opsflow_aws::aws_sdk_iam::types::Tag::builder()
                    .key("opsflow:quarantine")
                    .value("allowed")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        commands(&w, json!([{"document": "opsflow-ForensicCollect", "duration_seconds": 10}])).await;
        let all = json!({"CaseId": "IR-9", "IsolateNetwork": "true", "DetachFromTargetGroups": "true", "RevokeRoleSessions": "true"});
        let out = w
            .runbooks
            .run(maintenance_input("forensic-capture", all.clone()), "isolate-all", |_| {})
            .await
            .unwrap();
        let t = out.summary.unwrap().targets.remove(0);
        assert_eq!(t.status, opsflow_core::runbook::TargetStatus::Succeeded, "{}", t.reason);
        for step in [
            "IsolateNetwork:",
            "DetachFromTargetGroups: deregistered from 1 target group",
            "RevokeRoleSessions: role fleet-ssm",
        ] {
            assert!(t.reason.contains(step), "{step} in {}", t.reason);
        }
        // The interface is in the quarantine group only, which lets nothing in or out.
        let after = c
            .ec2
            .describe_network_interfaces()
            .network_interface_ids(eni.network_interface_id().unwrap())
            .send()
            .await
            .unwrap();
        let groups: Vec<&str> = after.network_interfaces()[0].groups().iter().filter_map(|g| g.group_id()).collect();
        let sg = c.ec2.describe_security_groups().group_ids(groups[0]).send().await.unwrap();
        let sg = &sg.security_groups()[0];
        assert_eq!((groups.len(), sg.group_name()), (1, Some("opsflow-quarantine")));
        assert!(sg.ip_permissions().is_empty() && sg.ip_permissions_egress().is_empty(), "{sg:?}");
        let health = elb.describe_target_health().target_group_arn(&tg_arn).send().await.unwrap();
        assert!(
            health
                .target_health_descriptions()
                .iter()
                .all(|d| d.target().and_then(|t| t.id()) != Some(id.as_str())),
            "{health:?}"
        );
        let policy = c
            .iam
            .get_role_policy()
            .role_name("fleet-ssm")
            .policy_name(format!("opsflow-quarantine-{id}"))
            .send()
            .await
            .unwrap();
        // IAM answers policy documents URL-encoded.
        let doc = percent_encoding::percent_decode_str(policy.policy_document()).decode_utf8_lossy();
        assert!(
            doc.contains("\"Deny\"") && doc.contains(&format!("arn:aws:ec2:{}:{A}:instance/{id}", REGIONS[0])),
            "{doc}"
        );

        // The responder lifts the credentials' quarantine (the deny also kept the instance's SSM
        // agent from registering: the local cloud, like SSM, then no longer lists it).
        c.iam
            .delete_role_policy()
            .role_name("fleet-ssm")
            .policy_name(format!("opsflow-quarantine-{id}"))
            .send()
            .await
            .unwrap();
        // A role its owner did not opt in is left alone and said so; the other steps still run.
        c.iam
            .untag_role()
            .role_name("fleet-ssm")
            .tag_keys("opsflow:quarantine")
            .send()
            .await
            .unwrap();
        // (A second capture under the same case would find the evidence there: the upload
        // refuses to overwrite it, and the collection fails.)
        let mut again = all;
        again["CaseId"] = json!("IR-10");
        let out = w
            .runbooks
            .run(maintenance_input("forensic-capture", again), "isolate-refused", |_| {})
            .await
            .unwrap();
        let t = out.summary.unwrap().targets.remove(0);
        assert_eq!(
            child_errors(&out.execution).first().map(String::as_str),
            Some("IsolationFailed"),
            "{}",
            t.reason
        );
        assert!(t.reason.contains("is not tagged opsflow:quarantine=allowed"), "{}", t.reason);
        assert!(t.reason.contains("IsolateNetwork: network interfaces moved"), "{}", t.reason);
    });
}

#[test]
fn consistent_snapshot_on_windows_lets_vss_take_the_snapshots_and_falls_back_only_when_allowed() {
    block_on(async {
        let w = world().await;
        let tags = [("Env", "maint"), (OPT_IN.0, "consistent-snapshot")];
        w.a.instance(REGIONS[0], "win-sql", &tags, true).await.unwrap();
        commands(&w, json!([{"document": "AWSEC2-CreateVssSnapshot", "duration_seconds": 8}])).await;
        let (t, error, _) = snapshot_run(&w, "vss-ok", json!({"WaitForCompletion": true})).await;
        assert_eq!(
            (t.status, error),
            (opsflow_core::runbook::TargetStatus::Succeeded, None),
            "{}",
            t.reason
        );
        assert!(t.reason.contains("application-consistent, completed"), "{}", t.reason);
        let snaps = snapshots_tagged(&w, "opsflow:run", "vss-ok").await;
        assert!(!snaps.is_empty());
        assert!(
            snaps
                .iter()
                .all(|s| tag(s, "AppConsistent") == Some("true") && tag(s, "opsflow:kind") == Some("consistent-snapshot")),
            "taken by the VSS document, tagged as this execution's: {snaps:?}"
        );
        assert!(invocations_of(&w, "opsflow-Freeze").await.is_empty() && invocations_of(&w, "opsflow-Thaw").await.is_empty());

        // VSS fails (a writer times out): no snapshot unless the fallback is allowed.
        commands(
            &w,
            json!([{"document": "AWSEC2-CreateVssSnapshot", "duration_seconds": 12, "exit_code": 1,
                    "stderr": "VSS_E_WRITERERROR_TIMEOUT: the SQL Server writer did not freeze in time"}]),
        )
        .await;
        let (t, error, _) = snapshot_run(&w, "vss-fail", json!({"OnFreezeFailure": "fail"})).await;
        assert_eq!(error.as_deref(), Some("FreezeFailed"), "{}", t.reason);
        assert!(snapshots_tagged(&w, "opsflow:run", "vss-fail").await.is_empty());
        let (t, error, _) = snapshot_run(&w, "vss-fallback", json!({"OnFreezeFailure": "crash-consistent"})).await;
        assert_eq!(
            (t.status, error),
            (opsflow_core::runbook::TargetStatus::Succeeded, None),
            "{}",
            t.reason
        );
        let snaps = snapshots_tagged(&w, "opsflow:run", "vss-fallback").await;
        assert!(
            !snaps.is_empty()
                && snaps
                    .iter()
                    .all(|s| tag(s, "opsflow:consistency") == Some("crash-consistent") && tag(s, "AppConsistent").is_none()),
            "{snaps:?}"
        );
    });
}

#[test]
fn the_member_stacks_forward_the_events_the_central_rules_take() {
    block_on(async {
        // The local cloud's venv has moto's event pattern matcher.
        let _w = world().await;
        let member = |rule: &str, event: &Value| rule_input_in("infra/member-account.yaml", rule, event);
        let state = |s: &str| {
            json!({"version": "0", "id": "e-1", "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
                   "account": A, "time": "2026-12-06T17:00:00Z", "region": REGIONS[0],
                   "resources": [format!("arn:aws:ec2:{}:{A}:instance/i-0123456789abcdef0", REGIONS[0])],
                   "detail": {"instance-id": "i-0123456789abcdef0", "state": s}})
        };
        assert!(member("InstanceStartForwardRule", &state("running")).is_some());
        assert!(member("InstanceStartForwardRule", &state("stopped")).is_none());
        let lifecycle = |hook: &str| {
            json!({"version": "0", "id": "e-2", "detail-type": "EC2 Instance-terminate Lifecycle Action", "source": "aws.autoscaling",
                   "account": A, "time": "2026-12-06T17:00:00Z", "region": REGIONS[0],
                   "resources": [format!("arn:aws:autoscaling:{}:{A}:autoScalingGroup:1:autoScalingGroupName/web", REGIONS[0])],
                   "detail": {"LifecycleActionToken": "3a4c0a5e-3e2b-4bb8-9a8e-0c8a3b4c5d6e", "AutoScalingGroupName": "web",
                              "LifecycleHookName": hook, "EC2InstanceId": "i-0123456789abcdef0",
                              "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING", "Origin": "AutoScalingGroup", "Destination": "EC2"}})
        };
        // Forwarded as it is, then taken by the central rule into a runner input.
        let forwarded = member("ForensicLifecycleForwardRule", &lifecycle("opsflow-forensics-web")).expect("forwarded");
        let input = rule_input("RunbookForensicCaptureRule", &forwarded).expect("taken");
        assert_eq!(input["LifecycleAction"]["LifecycleHookName"], json!("opsflow-forensics-web"));
        assert_eq!((&input["Accounts"], &input["Regions"]), (&json!([A]), &json!([REGIONS[0]])));
        // Any other hook (a drain, say) is neither forwarded nor taken.
        assert!(member("ForensicLifecycleForwardRule", &lifecycle("drain-connections")).is_none());
        assert!(rule_input("RunbookForensicCaptureRule", &lifecycle("drain-connections")).is_none());
    });
}

#[test]
fn a_prune_that_aws_refuses_fails_as_prune_failed_and_keeps_every_snapshot() {
    block_on(async {
        let w = world().await;
        let ids = maintenance_fleet(&w, 1, "consistent-snapshot").await;
        let data = data_volume(&w, &ids[0]).await;
        let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
        use opsflow_aws::aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::Snapshot)
            .tags(Tag::builder().key("opsflow:kind").value("consistent-snapshot").build())
            .tags(Tag::builder().key("opsflow:procedure").value("consistent-snapshot").build())
            .tags(Tag::builder().key("opsflow:instance").value(&ids[0]).build())
            .build();
        let old = ec2
            .create_snapshot()
            .volume_id(&data)
            .tag_specifications(spec)
            .send()
            .await
            .unwrap();
        let old = old.snapshot_id().unwrap().to_string();
        let now = w.cloud.now_ms().await.unwrap();
        w.cloud.control("clock", json!({"now_ms": now + 8 * 86_400_000})).await.unwrap();
        commands(
            &w,
            json!([{"document": "opsflow-Freeze", "duration_seconds": 1, "stdout": FROZEN},
                   {"document": "opsflow-Thaw", "duration_seconds": 1, "stdout": THAWED}]),
        )
        .await;
        w.cloud
            .control(
                "faults",
                json!({"operation": "ec2:DeleteSnapshot", "count": 5, "code": "UnauthorizedOperation",
                       "message": "You are not authorized to perform this operation.", "http_status": 403}),
            )
            .await
            .unwrap();
        let parameters = json!({"Mounts": "/data", "WaitForCompletion": true, "RetentionDays": 7});
        let (t, error, episodes) = snapshot_run(&w, "prune-refused", parameters).await;
        assert_eq!(error.as_deref(), Some("PruneFailed"), "{}", t.reason);
        assert!(t.reason.contains("deleting older snapshots failed"), "{}", t.reason);
        assert_eq!(episodes[0]["thawed_by"], "thaw", "thawed before the prune: {episodes:?}");
        let new = snapshots_tagged(&w, "opsflow:run", "prune-refused").await;
        assert!(
            !new.is_empty() && new.iter().all(|s| t.reason.contains(s.snapshot_id().unwrap())),
            "{}",
            t.reason
        );
        let still = ec2.describe_snapshots().snapshot_ids(&old).send().await.unwrap();
        assert_eq!(still.snapshots().len(), 1, "the old snapshot is still there");
    });
}

#[test]
fn a_start_that_never_gets_ready_and_a_stop_that_never_ends_fail_at_their_deadlines_with_the_alarms_restored() {
    block_on(async {
        let w = world().await;
        let cw = w.a.clients(REGIONS[0]).await.unwrap().cloudwatch;
        // start-and-check: the agent never comes online within ReadySeconds (900 s).
        w.cloud
            .control("config", json!({"instance_pending_seconds": 10, "online_delay_seconds": 5_000}))
            .await
            .unwrap();
        let ids = maintenance_fleet(&w, 1, "start-and-check").await;
        let ec2 = w.a.clients(REGIONS[0]).await.unwrap().ec2;
        ec2.stop_instances().instance_ids(&ids[0]).send().await.unwrap();
        let started = w.cloud.now_ms().await.unwrap();
        let out = w
            .runbooks
            .run(maintenance_input("start-and-check", json!({})), "never-ready", |_| {})
            .await
            .unwrap();
        let t = out.summary.unwrap().targets.remove(0);
        assert_eq!(
            child_errors(&out.execution).first().map(String::as_str),
            Some("DeadlineExceeded"),
            "{}",
            t.reason
        );
        let waited_s = (w.cloud.now_ms().await.unwrap() - started) / 1000;
        assert!(
            (900..1_200).contains(&waited_s),
            "bounded by ReadySeconds: {waited_s} s; {}",
            t.reason
        );
        assert!(
            invocations_of(&w, "opsflow-HealthCheck").await.is_empty(),
            "no health check on an unready instance"
        );

        // clean-stop: the OS shutdown outlasts StopSeconds (900 s).
        w.cloud
            .control("config", json!({"online_delay_seconds": 0, "instance_stopping_seconds": 2_000}))
            .await
            .unwrap();
        let ids = maintenance_fleet(&w, 1, "clean-stop").await;
        alarm(&cw, "cpu-high-stop", &ids[0]).await;
        commands(&w, json!([{"document": "opsflow-PreStop", "duration_seconds": 5}])).await;
        let out = w
            .runbooks
            .run(maintenance_input("clean-stop", json!({})), "never-stopped", |_| {})
            .await
            .unwrap();
        let t = out.summary.unwrap().targets.into_iter().find(|t| t.instance_id == ids[0]).unwrap();
        assert_eq!(
            child_errors(&out.execution).first().map(String::as_str),
            Some("DeadlineExceeded"),
            "{}",
            t.reason
        );
        assert_eq!(state_of(&w, &ids[0]).await, "stopping");
        assert!(
            mute_rules(&cw).await.is_empty(),
            "the alarms are restored on the deadline's path too"
        );
    });
}
