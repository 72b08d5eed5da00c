//! The demo's second act: fleet runbooks, entered by an EventBridge schedule. A fleet in two
//! accounts and two regions of the local cloud; the weekly schedule of
//! `infra/examples/runbook-schedules.yaml` fires (its Input read from that file); a bad image
//! makes some targets fail, MaxErrors stops new starts; the results as a subscribed queue gets
//! them; the audit rows; then the 15-minute HTTP check against a local endpoint that answers 500
//! once; then Patch Tuesday: the patch procedure on two web servers, one of which is rolled back;
//! then a scale-in held by a lifecycle hook while forensic-capture takes the leaving instance's
//! evidence.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use opsflow::fixtures;
use opsflow::local::runbook::{Connection, HealthEndpoint, LocalRunbooks, MemberAccount, Options, Progress, OPT_IN};
use opsflow::local::LocalCloud;
use opsflow_core::ports::RunLog;
use opsflow_core::runbook::TargetStatus;
use serde_json::{json, Value};

const EXTERNAL_ID: &str = "opsflow-demo-7d41";
const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
const REGIONS: [&str; 2] = ["eu-north-1", "eu-west-1"];
const SCHEDULES: &str = "infra/examples/runbook-schedules.yaml";

/// The `Input` of schedule `logical_id` in the example stack, with its parameters substituted
/// and the context attribute EventBridge Scheduler fills in when it fires.
fn schedule_input(logical_id: &str, params: &[(&str, &str)], schedule_arn: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(opsflow::local::repo_root().join(SCHEDULES)).context(SCHEDULES)?;
    let start = text
        .find(&format!("\n  {logical_id}:\n"))
        .ok_or_else(|| anyhow!("{SCHEDULES}: no {logical_id}"))?;
    let rest = &text[start..];
    let input_at = rest
        .find("Input:")
        .ok_or_else(|| anyhow!("{SCHEDULES}: {logical_id} has no Input"))?;
    let block: Vec<&str> = rest[input_at..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("          ") || l.trim().is_empty())
        .collect();
    let mut json_text = block.join("\n");
    for (k, v) in params {
        json_text = json_text.replace(&format!("${{{k}}}"), v);
    }
    json_text = json_text.replace("<aws.scheduler.schedule-arn>", schedule_arn);
    serde_json::from_str(&json_text).with_context(|| format!("{SCHEDULES}: {logical_id}'s Input"))
}

pub async fn run(cloud: &Arc<LocalCloud>) -> anyhow::Result<bool> {
    let wall = Instant::now();
    println!("\n━━ Act 2: fleet runbooks (EventBridge Scheduler → the runbook runner) ━━");
    let health = HealthEndpoint::start(vec![500, 200], std::time::Duration::ZERO).await?;
    let options = Options {
        role_name: "opsflow-member".into(),
        external_id: EXTERNAL_ID.into(),
        connections: vec![Connection::api_key("healthz", "x-api-key", "demo-key-kept-in-the-connection")],
        endpoints: [("healthz".to_string(), health.url.clone())].into_iter().collect(),
        http_time_limit: None,
    };
    let runbooks = LocalRunbooks::new(cloud.clone(), options).await?;
    // The fleet's agents have long been online (act 1 made new agents wait 40 s).
    cloud.control("config", json!({"online_delay_seconds": 0})).await?;

    println!("member accounts (each with the member role, trusted with ExternalId {EXTERNAL_ID}):");
    let mut failing = Vec::new();
    let mut count = 0;
    let mut members = Vec::new();
    for account in ACCOUNTS {
        let member = MemberAccount::seed(cloud, account, EXTERNAL_ID).await?;
        for region in REGIONS {
            let mut ids = Vec::new();
            for n in 1..=5 {
                let name = format!("dev-{}-{n}", &region[3..]);
                ids.push(member.instance(region, &name, &[("Env", "dev"), OPT_IN], false).await?);
            }
            count += ids.len();
            if account == ACCOUNTS[0] && region == REGIONS[0] {
                failing.extend(ids.iter().take(3).cloned());
            }
            println!(
                "  {account} {region}: {} dev instances, opted in ({}={})",
                ids.len(),
                OPT_IN.0,
                OPT_IN.1
            );
        }
        let other = member.instance(REGIONS[1], "dev-not-opted-in", &[("Env", "dev")], false).await?;
        println!("  {account} {}: {other} is Env=dev but has not opted in: never touched", REGIONS[1]);
        members.push(member);
    }
    let journal = "Vacuuming done, freed 1.2G of archived journals from /var/log/journal.\nFilesystem      Size  Used Avail Use% Mounted on\n/dev/nvme0n1p1  8.0G  3.1G  4.9G  39% /\n";
    let mut rules = vec![json!({"document": "AWS-RunShellScript", "match": "journalctl", "duration_seconds": 40, "stdout": journal})];
    for id in &failing {
        rules.push(
            json!({"document": "AWS-RunShellScript", "match": "journalctl", "instance_id": id, "duration_seconds": 25, "exit_code": 1,
            "stdout": "Vacuuming done, freed 0B.\n", "stderr": "find: cannot delete '/var/tmp/build-cache': Read-only file system\n"}),
        );
    }
    cloud.control("commands", json!({ "rules": rules })).await?;
    println!(
        "  scenario: the image of {} in {} mounts /var/tmp read-only: its cleanup fails",
        ACCOUNTS[0], REGIONS[0]
    );

    let (queue, queue_arn) = fixtures::queue(&runbooks.clients, "ops-team").await?;
    fixtures::subscribe(&runbooks.clients, &runbooks.topic_arn, &queue_arn).await?;
    println!("  the ops team's queue is subscribed to the RunbookResults topic");

    let schedule_arn = "arn:aws:scheduler:us-east-1:123456789012:schedule/default/opsflow-weekly-disk-cleanup";
    let input = schedule_input(
        "WeeklyDiskCleanup",
        &[("DevAccountA", ACCOUNTS[0]), ("DevAccountB", ACCOUNTS[1])],
        schedule_arn,
    )?;
    println!("\nSunday 03:00 Europe/Helsinki: schedule WeeklyDiskCleanup ({SCHEDULES}) fires; StartExecution with its Input:");
    println!("  {input}");
    let t0 = std::sync::Mutex::new(None::<i64>);
    let out = runbooks
        .run(input, "weekly-disk-cleanup-20261206T010000Z", move |p| {
            let at = |ms: i64| {
                let mut t = t0.lock().expect("t0");
                (ms - *t.get_or_insert(ms)) as f64 / 1000.0
            };
            match p {
                Progress::Started { at_ms, target } => println!("  {:>7.1}s  ▶ {target}", at(at_ms)),
                Progress::NotStarted { at_ms, target } => println!("  {:>7.1}s  ⏹ not started (MaxErrors): {target}", at(at_ms)),
                Progress::Finished { at_ms, target, status } => {
                    println!(
                        "  {:>7.1}s  {} {status}: {target}",
                        at(at_ms),
                        if status == "Succeeded" { "✓" } else { "✗" }
                    )
                }
            }
        })
        .await?;
    let summary = out
        .summary
        .clone()
        .ok_or_else(|| anyhow!("the runner wrote no summary: {:?} {:?}", out.execution.error, out.execution.cause))?;
    let c = summary.counts;
    let ended = match (&out.execution.error, &out.execution.cause) {
        (Some(e), Some(c)) => format!("{} ({e}: {c})", out.execution.status.as_str()),
        _ => out.execution.status.as_str().to_string(),
    };
    println!(
        "\nrun {}: {ended}\n  {} targets: {} succeeded, {} failed, {} not started; {} excluded; at most {} at once (MaxConcurrency 10%)",
        out.execution_arn,
        c.targets,
        c.succeeded,
        c.failed,
        c.not_started,
        summary.excluded_count,
        runbooks.in_flight().max()
    );
    println!(
        "  engine time {:.0} s (virtual), transitions {} in the runner, {} child executions",
        out.execution.engine_ms as f64 / 1000.0,
        out.execution.transitions,
        count_children(&out.execution)
    );

    let got = runbooks
        .clients
        .sqs
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .send()
        .await?;
    println!("\nWhat the ops team's queue received (SNS → SQS):");
    for m in got.messages() {
        let envelope: Value = serde_json::from_str(m.body().unwrap_or("{}"))?;
        println!("  Subject: {}", envelope["Subject"].as_str().unwrap_or_default());
        let attributes: Vec<String> = envelope["MessageAttributes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v["Value"].as_str().unwrap_or_default()))
            .collect();
        println!("  Attributes: {}", attributes.join(", "));
        let body: Value = serde_json::from_str(envelope["Message"].as_str().unwrap_or("{}"))?;
        for f in body["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["status"] == "Failed")
            .take(2)
        {
            println!(
                "  ✗ {} ({}) {} {} exit {}: last lines:",
                f["instanceId"].as_str().unwrap_or_default(),
                f["name"].as_str().unwrap_or_default(),
                f["account"].as_str().unwrap_or_default(),
                f["region"].as_str().unwrap_or_default(),
                f["exitCode"]
            );
            for line in f["outputTail"].as_str().unwrap_or_default().lines() {
                println!("      | {line}");
            }
            println!("      full output: {}", f["outputUrl"].as_str().unwrap_or_default());
        }
        println!(
            "  … and {} more failures / not started in the message (email subscribers get the same as text)",
            body["failures"].as_array().map_or(0, |a| a.len().saturating_sub(2))
        );
    }

    let rows = runbooks.log.targets(&out.execution_arn).await.map_err(|e| anyhow!("{e}"))?;
    println!("\nThe audit trail (`opsflow runs`): {} rows for this run, e.g.", rows.len());
    for r in rows
        .iter()
        .filter(|r| r.status != TargetStatus::NotStarted)
        .take(3)
        .chain(rows.iter().filter(|r| r.status == TargetStatus::NotStarted).take(1))
    {
        println!(
            "  {} {:<10} {}/{}/{} exit {} by {}",
            r.started_at,
            r.status.as_str(),
            r.account,
            r.region,
            r.instance_id,
            r.exit_code.map_or("-".into(), |c| c.to_string()),
            r.started_by
        );
    }

    println!("\nEvery 15 minutes: schedule HealthzEvery15Minutes fires the http-check procedure (HTTP Task through the");
    println!("EventBridge connection \"healthz\", which holds the API key); the local endpoint answers 500, then 200");
    let input = schedule_input(
        "HealthzEvery15Minutes",
        &[],
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/opsflow-healthz",
    )?;
    let check = runbooks.run(input, "healthz-20261206T091500Z", |_| {}).await?;
    for (line, headers) in health.requests() {
        let key = headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == "demo-key-kept-in-the-connection");
        println!(
            "  endpoint got {line} (x-api-key from the connection: {})",
            if key { "yes" } else { "no" }
        );
    }
    let check_summary = check.summary.clone().ok_or_else(|| anyhow!("no healthz summary"))?;
    println!(
        "  healthz run: {} — {} (one retry of the 500; no notification: Notify OnFailure)",
        check.execution.status.as_str(),
        check_summary.targets.first().map_or("", |t| t.status.as_str())
    );
    let patched = patch_tuesday(cloud, &runbooks, &members[0]).await?;
    let captured = scale_in_forensics(cloud, &runbooks, &members[0]).await?;
    println!("\nAct 2 wall time {:.1} s", wall.elapsed().as_secs_f64());
    let ok = patched
        && captured
        && c.failed == 3
        && c.not_started > 0
        && c.succeeded + c.failed + c.not_started == count
        && runbooks.in_flight().max() <= 2
        && check.execution.status == opsflow_asl::Status::Succeeded
        && health.requests().len() == 2
        && !got.messages().is_empty();
    Ok(ok)
}

/// Patch Tuesday: the patch procedure on two web servers, one at a time; the second one's patch
/// breaks nginx, and it is rolled back to its pre-patch root volume.
async fn patch_tuesday(cloud: &Arc<LocalCloud>, runbooks: &LocalRunbooks, member: &MemberAccount) -> anyhow::Result<bool> {
    println!("\nPatch Tuesday: the patch procedure on the two web servers, one at a time. For each: a consistent");
    println!("snapshot (nested: pre-snapshot hooks, freeze with an on-instance watchdog, CreateSnapshots, thaw),");
    println!("AWS-RunPatchBaselineWithHooks with its reboot, the health check; on failure the root volume goes back to");
    println!("the pre-patch snapshot (EC2 replace-root-volume task: no stop, same instance) and is checked again.");
    let mut web = Vec::new();
    for n in 1..=2 {
        web.push(
            member
                .instance(REGIONS[0], &format!("web-{n}"), &[("Env", "web"), OPT_IN], false)
                .await?,
        );
    }
    cloud
        .control(
            "config",
            json!({"snapshot_seconds": 60, "replace_root_seconds": 60, "reboot_seconds": 45}),
        )
        .await?;
    let rules = json!([
        {"document": "opsflow-Freeze", "duration_seconds": 1, "stdout": "pre-hook /etc/opsflow/pre-snapshot.d/10-flush-redis\nWATCHDOG armed: thaws in 30s\nFROZEN /data\n"},
        {"document": "opsflow-Thaw", "duration_seconds": 1, "stdout": "THAWED /data\nfrozen for 2.3 s\n"},
        {"document": "AWS-RunPatchBaselineWithHooks", "runs": [
            {"exit_code": 194, "duration_seconds": 90, "stdout": "Installing 7 packages"},
            {"exit_code": 0, "duration_seconds": 20, "stdout": "Installed 7 packages: kernel, openssl, nginx, ...\n"}]},
        {"document": "opsflow-HealthCheck", "duration_seconds": 2, "stdout": "PASS unit:nginx: active\nPASS port:443: open\n0 check(s) failed\n"},
        {"document": "opsflow-HealthCheck", "instance_id": web[1], "count": 1, "exit_code": 1, "duration_seconds": 2,
         "stdout": "FAIL unit:nginx: failed (nginx: [emerg] unknown directive \"ssl_reject_handshake\")\nFAIL port:443: refused\n2 check(s) failed\n"}
    ]);
    cloud.control("commands", json!({ "rules": rules })).await?;
    println!(
        "  scenario: the new nginx of the patch does not start on {} (its config uses a removed directive)",
        web[1]
    );
    let input = json!({"Procedure": "patch", "Targets": {"Tags": [{"Key": "Env", "Values": ["web"]}]},
        "Accounts": [ACCOUNTS[0]], "Regions": [REGIONS[0]], "Parameters": {"FreezeMounts": "/data", "Units": "nginx", "Ports": "443"},
        "MaxConcurrency": "1", "MaxErrors": "1", "StartedBy": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/opsflow-patch-tuesday"});
    let t0 = std::sync::Mutex::new(None::<i64>);
    let out = runbooks
        .run(input, "patch-tuesday-20261208T000000Z", move |p| {
            let at = |ms: i64| {
                let mut t = t0.lock().expect("t0");
                (ms - *t.get_or_insert(ms)) as f64 / 1000.0
            };
            match p {
                Progress::Started { at_ms, target } => println!("  {:>7.1}s  ▶ {target}", at(at_ms)),
                Progress::NotStarted { at_ms, target } => println!("  {:>7.1}s  ⏹ not started: {target}", at(at_ms)),
                Progress::Finished { at_ms, target, status } => println!(
                    "  {:>7.1}s  {} {status}: {target}",
                    at(at_ms),
                    if status == "Succeeded" { "✓" } else { "✗" }
                ),
            }
        })
        .await?;
    let summary = out.summary.clone().ok_or_else(|| anyhow!("the patch run wrote no summary"))?;
    let frozen = cloud.get("frozen").await?;
    for t in &summary.targets {
        println!("  {} {}: {}", t.instance_id, t.status.as_str(), t.reason);
        if let Some(e) = frozen["instances"][&t.instance_id].as_array().and_then(|e| e.first()) {
            let ms = e["thawed_at"].as_i64().unwrap_or(0) - e["frozen_at"].as_i64().unwrap_or(0);
            println!(
                "      /data frozen {:.1} s (virtual), thawed by the {}; snapshots taken inside the window: {}",
                ms as f64 / 1000.0,
                e["thawed_by"].as_str().unwrap_or("?"),
                e["snapshots"].as_array().map_or(0, |s| s.len())
            );
        }
    }
    println!(
        "  run: {}, engine time {:.0} s (virtual), {} child executions (per target: the Map's child, its patch, the nested snapshot)",
        out.execution.status.as_str(),
        out.execution.engine_ms as f64 / 1000.0,
        count_children(&out.execution)
    );
    let ok = summary.counts.succeeded == 1
        && summary
            .targets
            .iter()
            .any(|t| t.instance_id == web[1] && t.reason.contains("healthy again"));
    Ok(ok)
}

/// A scale-in of the api group, whose termination hook `opsflow-forensics` holds the leaving
/// instance while forensic-capture takes its evidence, then lets it go.
async fn scale_in_forensics(cloud: &Arc<LocalCloud>, runbooks: &LocalRunbooks, member: &MemberAccount) -> anyhow::Result<bool> {
    println!("\nScale-in forensics: the api group (2 instances) has a termination hook opsflow-forensics (heartbeat");
    println!("timeout 300 s, default CONTINUE). Scaled in to 1, the leaving instance waits in Terminating:Wait while");
    println!("forensic-capture collects its logs, processes, sockets and disks into an archive with a manifest, verifies");
    println!("the upload part by part, snapshots its volumes and tags them with the case, then completes the hook.");
    let group = "api";
    member
        .scaling_group(REGIONS[0], group, 2, &[(OPT_IN.0, "forensic-capture")], "opsflow-forensics", 300)
        .await?;
    cloud
        .control(
            "commands",
            json!({"rules": [{"document": "opsflow-ForensicCollect", "duration_seconds": 140}]}),
        )
        .await?;
    cloud.delete("events").await?;
    let c = member.clients(REGIONS[0]).await?;
    opsflow_aws::aws_sdk_autoscaling::Client::new(&c.sdk_config)
        .set_desired_capacity()
        .auto_scaling_group_name(group)
        .desired_capacity(1)
        .send()
        .await
        .context("SetDesiredCapacity")?;
    let events = cloud.get("events").await?;
    let event = events["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["detail-type"] == "EC2 Instance-terminate Lifecycle Action"))
        .cloned()
        .ok_or_else(|| anyhow!("no lifecycle action event"))?;
    let d = &event["detail"];
    let id = d["EC2InstanceId"].as_str().unwrap_or_default().to_string();
    println!(
        "  event: EC2 Instance-terminate Lifecycle Action for {id} (group {group}, hook {})",
        d["LifecycleHookName"].as_str().unwrap_or("?")
    );
    // What RunbookForensicCaptureRule's input transformer makes of it (tests/runbook.rs runs the
    // template's own pattern and transformer).
    let input = json!({"Procedure": "forensic-capture", "Targets": {"InstanceIds": [id]},
        "Accounts": [event["account"]], "Regions": [event["region"]],
        "LifecycleAction": {"AutoScalingGroupName": d["AutoScalingGroupName"], "LifecycleHookName": d["LifecycleHookName"],
            "LifecycleActionToken": d["LifecycleActionToken"], "EC2InstanceId": id},
        "MaxConcurrency": "1", "Notify": "Always",
        "StartedBy": format!("EventBridge: Auto Scaling group {group} is terminating {id}")});
    let case = "scale-in-api-20261208T0412Z";
    let out = runbooks.run(input, case, |_| {}).await?;
    let summary = out.summary.clone().ok_or_else(|| anyhow!("the capture wrote no summary"))?;
    let t = summary.targets.first().ok_or_else(|| anyhow!("no target"))?;
    println!("  {} {}: {}", t.instance_id, t.status.as_str(), t.reason);
    let actions = cloud.get("lifecycle_actions").await?;
    let action = actions["lifecycle_actions"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["instance_id"] == json!(id)))
        .cloned()
        .unwrap_or_default();
    println!(
        "  lifecycle action: {} heartbeats, completed {} by {} ({} CompleteLifecycleAction call); the instance then goes",
        action["heartbeats"].as_array().map_or(0, |h| h.len()),
        action["result"].as_str().unwrap_or("?"),
        action["completed_by"].as_str().unwrap_or("?"),
        action["complete_calls"]
    );
    println!(
        "  run: {}, engine time {:.0} s (virtual)",
        out.execution.status.as_str(),
        out.execution.engine_ms as f64 / 1000.0
    );
    Ok(t.status == TargetStatus::Succeeded && action["complete_calls"] == json!(1) && action["result"] == "CONTINUE")
}

fn count_children(r: &opsflow_asl::ExecutionResult) -> usize {
    r.children.iter().map(|c| 1 + count_children(&c.result)).sum()
}
