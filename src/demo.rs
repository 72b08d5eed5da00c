//! `opsflow demo`: one CloudFormation Create request through the whole pipeline, shown live.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use opsflow::fixtures;
use opsflow::local::alerts::{cpu_alarm, LocalAlerts, SAMPLE_DIAGNOSE_OUTPUT};
use opsflow::local::provision::{cfn_request, LocalPipeline, ResponseStore};
use opsflow::local::LocalCloud;
use opsflow_asl::HistoryEvent;
use opsflow_aws::Clients;
use opsflow_core::alert::{publication, AlertSettings, Enriched};
use opsflow_core::provision::request::Admission;
use opsflow_core::provision::steps::Settings;
use opsflow_core::AllowList;
use serde_json::Value;

pub async fn run(bootstrap_exit: i32) -> anyhow::Result<ExitCode> {
    let wall = Instant::now();
    println!("opsflow demo: Custom::OpsflowInstanceSetup on the local engine against the local cloud");
    println!("starting the local cloud (moto + opsflow extension on 127.0.0.1)...");
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await??);
    println!("  local cloud at {}", cloud.endpoint);
    let mut settings = Settings::new(AllowList::parse(fixtures::ALLOW_LIST).map_err(|e| anyhow::anyhow!("{e}"))?);
    // The demo writes the request CloudFormation would send; no local stack sent it.
    settings.verify_stack = false;
    let pipeline = LocalPipeline::new(cloud.clone(), settings).await?;
    let responses = ResponseStore::create(&pipeline.clients).await?;

    let profile_arn = fixtures::instance_profile(&pipeline.clients, "dev-ide-profile", "/opsflow/").await?;
    let instance_id = fixtures::instance(&pipeline.clients, "dev-ide-7").await?;
    fixtures::realistic_cloud(&cloud, bootstrap_exit).await?;
    cloud.reset_calls().await?;
    println!("  instance {instance_id} (t3.small, 8 GiB gp3 root volume, tags Name=dev-ide-7 Team=platform)");
    println!("  instance profile {profile_arn} (allow-list: {})", fixtures::ALLOW_LIST);
    if bootstrap_exit != 0 {
        println!("  scenario: the bootstrap command exits {bootstrap_exit}");
    }

    let request_id = "5e1f6a2c-9d3b-4c8e-a7f0-2b6d8c4e1a93";
    let response_url = responses.url_for(request_id).await?;
    println!("  response URL (presigned PUT, local S3): {}", shorten(&response_url));
    let request = cfn_request(
        "Create",
        request_id,
        &response_url,
        fixtures::demo_properties(&instance_id, "dev-ide-profile"),
        Value::Null,
    );
    println!("\nCloudFormation → Create request {request_id} → request handler");
    let mut first: Option<i64> = None;
    let mut entered: Option<(String, i64)> = None;
    let submission = pipeline
        .submit(request, |ev: &HistoryEvent| {
            let t0 = *first.get_or_insert(ev.timestamp_ms);
            let at = (ev.timestamp_ms - t0) as f64 / 1000.0;
            match ev.event_type {
                "ExecutionStarted" => println!("  {at:>7.1}s  execution started (state machine provision-instance)"),
                t if t.ends_with("StateEntered") => entered = Some((ev.state_name().unwrap_or_default().to_string(), ev.timestamp_ms)),
                t if t.ends_with("StateExited") || t == "FailStateEntered" => {
                    let name = ev.state_name().unwrap_or_default();
                    let took = entered
                        .as_ref()
                        .filter(|(n, _)| n == name)
                        .map_or(0.0, |(_, s)| (ev.timestamp_ms - s) as f64 / 1000.0);
                    if !name.ends_with('?') {
                        println!(
                            "  {at:>7.1}s  {name:<22} {}",
                            if took > 0.0 { format!("{took:.1}s") } else { String::new() }
                        );
                    }
                }
                "LambdaFunctionFailed" | "TaskFailed" => {
                    println!("  {at:>7.1}s    ✗ {}", ev.error().unwrap_or_default());
                }
                "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted" => {
                    println!("  {at:>7.1}s  {}", ev.event_type)
                }
                _ => {}
            }
        })
        .await?;
    if let Admission::Answered(r) = &submission.admission {
        println!(
            "  answered at once by the request handler: {:?} {}",
            r.status,
            r.reason.clone().unwrap_or_default()
        );
    }

    // The pipeline's calls, before the demo's own reads of the answer.
    let calls = cloud.calls().await?;
    println!(
        "\nThe answer CloudFormation reads back from S3 (s3://{}/…{request_id}):",
        ResponseStore::BUCKET
    );
    let answers = responses.answers(request_id).await?;
    for a in &answers {
        println!("{}", serde_json::to_string_pretty(a)?);
    }
    let total: u64 = calls.values().sum();
    println!("\nSummary");
    println!("  wall time          {:.2} s", wall.elapsed().as_secs_f64());
    if let Some(e) = &submission.execution {
        println!(
            "  engine time        {:.1} s (virtual: waits take no real time)",
            e.engine_ms as f64 / 1000.0
        );
        println!("  state transitions  {}", e.transitions);
        println!("  execution status   {}", e.status.as_str());
    }
    println!("  Lambda invocations {} (request handler included)", pipeline.lambda_invocations());
    let mut by_op: Vec<_> = calls.iter().collect();
    by_op.sort();
    println!(
        "  AWS calls          {total}: {}",
        by_op.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    );
    println!("  answers PUT        {}", answers.len());
    let ok = answers.len() == 1 && answers[0]["Status"] == "SUCCESS";

    let refused = another_stack(&cloud, &pipeline, &responses, &instance_id).await?;

    let alert_ok = alert(&cloud, &pipeline.clients, &instance_id).await?;
    let runbooks_ok = crate::demo_runbook::run(&cloud).await?;
    let audit_ok = crate::demo_audit::run(&cloud).await?;
    Ok(if alert_ok && runbooks_ok && audit_ok && refused && (ok || bootstrap_exit != 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Someone whose stack does not own the instance names it anyway, with a bootstrap that would
/// read the instance role's credentials: the request handler refuses before anything changes.
async fn another_stack(cloud: &LocalCloud, pipeline: &LocalPipeline, responses: &ResponseStore, instance_id: &str) -> anyhow::Result<bool> {
    let other = "arn:aws:cloudformation:us-east-1:123456789012:stack/someone-else/7c1d9e52-0b3a-4f6e-9d28-5a4b3c2d1e0f";
    println!("\nAnother stack names {instance_id} (a bootstrap that reads the instance role's credentials)");
    let request_id = "9a7c3e10-55d2-4b8e-8f61-0c2b4d6e8a13";
    let properties = serde_json::json!({"InstanceId": instance_id, "InstanceProfile": "dev-ide-profile",
        "Bootstrap": {"Commands": ["curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/"]}});
    let request = cfn_request(
        "Create",
        request_id,
        &responses.url_for(request_id).await?,
        properties,
        serde_json::json!({"StackId": other}),
    );
    cloud.reset_calls().await?;
    let submission = pipeline.submit(request, |_| {}).await?;
    let changes: u64 = cloud
        .calls()
        .await?
        .iter()
        .filter(|(op, _)| !op.contains(":Describe") && !op.contains(":Get") && !op.starts_with("dynamodb:") && !op.starts_with("s3:"))
        .map(|(_, n)| n)
        .sum();
    let answer = responses.answers(request_id).await?;
    let reason = answer.first().and_then(|a| a["Reason"].as_str()).unwrap_or_default().to_string();
    let status = answer.first().and_then(|a| a["Status"].as_str()).unwrap_or("no answer");
    println!("  answered at once: {status}: {reason}");
    println!(
        "  executions started: {}, AWS calls that change something: {changes}",
        submission.execution.iter().count()
    );
    Ok(submission.execution.is_none() && changes == 0 && reason.contains("Forbidden"))
}

/// The URL up to its query, and the query's parameter names: the signature is noise here.
fn shorten(url: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) => {
            let names: Vec<&str> = query.split('&').filter_map(|kv| kv.split('=').next()).collect();
            format!("{base}?{}", names.iter().map(|n| format!("{n}=…")).collect::<Vec<_>>().join("&"))
        }
        None => url.to_string(),
    }
}

/// The alert enrichment on the demo instance: a CPU alarm fires, CloudWatch's notification goes
/// to the alarms topic, the handler enriches it, a queue subscribed to the enriched topic gets it.
async fn alert(cloud: &LocalCloud, clients: &Clients, instance_id: &str) -> anyhow::Result<bool> {
    println!("\nAlert enrichment: a CloudWatch alarm on {instance_id}");
    // Dev IDE roles often carry admin rights: the alert should say so.
    clients
        .iam
        .attach_role_policy()
        .role_name("dev-ide-profile")
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await?;
    println!("  role dev-ide-profile: AdministratorAccess attached (as dev IDE roles often are)");
    let alerts = LocalAlerts::setup(clients, AlertSettings::default()).await?;
    // The local cloud's time (the provisioning moved it on), which its ping times follow. The
    // provisioning engine drove that clock in virtual time; the alert handler waits for its
    // diagnostics in real time, so the clock runs again from here.
    let at = cloud.now_ms().await?;
    cloud
        .control("clock", serde_json::json!({"advance_ms": 0, "running": true}))
        .await?;
    let name = format!("cpu-high-{instance_id}");
    let values = [12.0, 15.0, 97.0, 98.0, 99.0, 99.0];
    cpu_alarm(clients, &name, instance_id, &alerts.alarms_topic, &values, at).await?;
    println!("  alarm {name}: AWS/EC2 CPUUtilization Average > 90 over 5 minutes; last datapoints {values:?}");
    // The instance opts in to diagnostics; the local cloud runs no script, so a command rule
    // plays the instance: opsflow-Diagnose takes 1.5 s and prints what a busy box would.
    clients
        .ec2
        .create_tags()
        .resources(instance_id)
        .tags(
            opsflow_aws::aws_sdk_ec2::types::Tag::builder()
                .key(opsflow_core::alert::diagnose::TAG.0)
                .value(opsflow_core::alert::diagnose::TAG.1)
                .build(),
        )
        .send()
        .await?;
    cloud
        .control(
            "commands",
            serde_json::json!({"rules": [{"document": opsflow_core::alert::diagnose::LINUX_DOCUMENT, "count": 1,
                "duration_seconds": 1.5, "stdout": SAMPLE_DIAGNOSE_OUTPUT}]}),
        )
        .await?;
    println!(
        "  {instance_id} tagged {}={}: the alert runs the read-only {} on it (here the local cloud's \
         command rule answers for the instance: 1.5 s, a sample of the script's output; the alert waits \
         up to 8 s for it, a slower command's output would follow in a second message)",
        opsflow_core::alert::diagnose::TAG.0,
        opsflow_core::alert::diagnose::TAG.1,
        opsflow_core::alert::diagnose::LINUX_DOCUMENT
    );
    cloud.reset_calls().await?;
    alerts
        .raise(
            &name,
            "Threshold Crossed: 1 out of the last 1 datapoints [99.0] was greater than the threshold (90.0) \
             (minimum 1 datapoint for OK -> ALARM transition).",
            at,
        )
        .await?;
    println!("  CloudWatch's ALARM notification published to {}", alerts.alarms_topic);
    let deliveries = alerts.deliver().await?;
    for d in &deliveries {
        match &d.result {
            Ok(ids) => println!(
                "  enrich-alert handler: {:.0} ms, published {}",
                d.took.as_secs_f64() * 1000.0,
                ids.join(", ")
            ),
            Err(e) => println!("  enrich-alert handler failed after {:.0} ms: {e}", d.took.as_secs_f64() * 1000.0),
        }
    }
    let calls = cloud.calls().await?;
    let inbox = alerts.inbox().await?;
    println!(
        "\nThe enriched alert as delivered to the queue subscribed to {}:",
        alerts.enriched_topic
    );
    for delivered in &inbox {
        println!("  Subject: {}", delivered["Subject"].as_str().unwrap_or_default());
        if let Some(attrs) = delivered["MessageAttributes"].as_object() {
            let list: Vec<String> = attrs
                .iter()
                .map(|(k, v)| format!("{k}={}", v["Value"].as_str().unwrap_or_default()))
                .collect();
            println!("  Attributes: {}", list.join(", "));
        }
        let body: Value = serde_json::from_str(delivered["Message"].as_str().unwrap_or("null"))?;
        // The text that email subscribers get, rendered from the delivered JSON body.
        if let Ok(enriched) = serde_json::from_value::<Enriched>(body.clone()) {
            let message: Value = serde_json::from_str(&publication(&enriched).message)?;
            println!("  Text (email):");
            for line in message["email"].as_str().unwrap_or_default().lines() {
                println!("    {line}");
            }
        }
        println!(
            "  JSON body (sqs, lambda, http): {} bytes, schema {}",
            delivered["Message"].as_str().map_or(0, str::len),
            body["schema"]
        );
    }
    let lookups: Vec<String> = [
        "ec2:DescribeInstances",
        "ssm:DescribeInstanceInformation",
        "iam:GetAccountAuthorizationDetails",
        "cloudwatch:GetMetricData",
        "ssm:SendCommand",
        "ssm:GetCommandInvocation",
    ]
    .iter()
    .filter_map(|op| calls.get(*op).map(|n| format!("{op} {n}")))
    .collect();
    let published = calls.get("sns:Publish").copied().unwrap_or(0).saturating_sub(1);
    println!("  AWS calls for the alert: {}, sns:Publish {published}", lookups.join(", "));
    Ok(inbox.len() == 1 && deliveries.iter().all(|d| d.result.is_ok()))
}
