//! `opsflow demo`: one CloudFormation Create request through the whole pipeline, shown live.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use opsflow::fixtures;
use opsflow::local::{cfn_request, LocalCloud, LocalPipeline, ResponseStore};
use opsflow_asl::HistoryEvent;
use opsflow_core::steps::{Admission, Settings};
use opsflow_core::AllowList;
use serde_json::Value;

pub async fn run(bootstrap_exit: i32) -> anyhow::Result<ExitCode> {
    let wall = Instant::now();
    println!("opsflow demo: Custom::OpsflowInstanceSetup on the local engine against the local cloud");
    println!("starting the local cloud (moto + opsflow extension on 127.0.0.1)...");
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await??);
    println!("  local cloud at {}", cloud.endpoint);
    let settings = Settings::new(AllowList::parse(fixtures::ALLOW_LIST).map_err(|e| anyhow::anyhow!("{e}"))?);
    let pipeline = LocalPipeline::new(cloud.clone(), settings).await?;
    let responses = ResponseStore::create(&pipeline.clients).await?;

    let profile_arn = fixtures::instance_profile(&pipeline.clients, "dev-ide-profile", "/opsflow/").await?;
    let instance_id = fixtures::instance(&pipeline.clients, "dev-ide-7").await?;
    fixtures::realistic_cloud(&cloud, bootstrap_exit).await?;
    cloud.control("calls", Value::Null).await.ok();
    let _ = reqwest::Client::new()
        .delete(format!("{}/_opsflow/calls", cloud.endpoint))
        .send()
        .await;
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
    Ok(if ok || bootstrap_exit != 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
