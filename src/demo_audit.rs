//! The demo's third act: watching the fleet. The daily instance-role audit (its schedule's
//! input, as the template's RolesAuditSchedule builds it) over act 2's two member accounts and
//! two regions, its report as the ops team reads it; then someone attaches AdministratorAccess
//! to a web server's role, CloudTrail's event reaches the drift function, and the alert says
//! who, when, before and after; an hour later SSM fleet health says which instances SSM cannot
//! manage, why, and what to do.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use opsflow::fixtures;
use opsflow::local::audit::LocalAudits;
use opsflow::local::runbook::MemberAccount;
use opsflow::local::LocalCloud;
use opsflow_core::audit::drift::RiskView;
use serde_json::{json, Value};

const EXTERNAL_ID: &str = "opsflow-demo-7d41";
const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
const REGIONS: [&str; 2] = ["eu-north-1", "eu-west-1"];
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

/// The text of the first message on `queue` (and takes it off).
async fn next_message(audits: &LocalAudits, queue: &str) -> anyhow::Result<Option<(String, String)>> {
    let got = audits.clients.sqs.receive_message().queue_url(queue).send().await?;
    let Some(m) = got.messages().first() else { return Ok(None) };
    if let Some(h) = m.receipt_handle() {
        audits
            .clients
            .sqs
            .delete_message()
            .queue_url(queue)
            .receipt_handle(h)
            .send()
            .await?;
    }
    let envelope: Value = serde_json::from_str(m.body().unwrap_or("{}"))?;
    Ok(Some((
        envelope["Subject"].as_str().unwrap_or_default().to_string(),
        envelope["Message"].as_str().unwrap_or_default().to_string(),
    )))
}

fn indent(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = lines.iter().take(max_lines).map(|l| format!("  │ {l}")).collect();
    if lines.len() > max_lines {
        out.push(format!("  │ … ({} more lines in the report)", lines.len() - max_lines));
    }
    out.join("\n")
}

pub async fn run(cloud: &Arc<LocalCloud>) -> anyhow::Result<bool> {
    let wall = Instant::now();
    println!("\n━━ Act 3: watching the fleet (a daily schedule → the instance-role audit; CloudTrail → drift alerts) ━━");
    let audits = LocalAudits::new(cloud.clone(), EXTERNAL_ID).await?;
    let a = MemberAccount::seed(cloud, ACCOUNTS[0], EXTERNAL_ID).await?;
    let b = MemberAccount::seed(cloud, ACCOUNTS[1], EXTERNAL_ID).await?;
    let (ca, cb) = (a.clients(REGIONS[1]).await?, b.clients(REGIONS[0]).await?);
    let ops = fixtures::managed_instance(&ca, "ops-box", "ops-admin", true).await?;
    let web = fixtures::managed_instance(&ca, "web-1", "web", false).await?;
    let ci = fixtures::managed_instance(&cb, "ci-runner", "builder", false).await?;
    cb.iam
        .put_role_policy()
        .role_name("builder")
        .policy_name("launch")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": {"Sid": "Launch", "Effect": "Allow", "Action": ["ec2:RunInstances", "iam:PassRole"], "Resource": "*"}})
                .to_string(),
        )
        .send()
        .await?;
    let bare = fixtures::instance_tagged(&ca, "forgotten", &[]).await?;
    println!("besides act 2's fleet (the fleet-ssm role: AmazonSSMManagedInstanceCore only):");
    println!(
        "  {} {}: {ops} ops-box carries ops-admin (AdministratorAccess)",
        ACCOUNTS[0], REGIONS[1]
    );
    println!(
        "  {} {}: {web} web-1 carries web (SSM only); {bare} has no profile",
        ACCOUNTS[0], REGIONS[1]
    );
    println!(
        "  {} {}: {ci} ci-runner carries builder (iam:PassRole + ec2:RunInstances on *)",
        ACCOUNTS[1], REGIONS[0]
    );
    let (queue, queue_arn) = fixtures::queue(&audits.clients, "security-team").await?;
    fixtures::subscribe(&audits.clients, &audits.topic_arn, &queue_arn).await?;
    println!("  the security team's queue is subscribed to the audit topic");

    let input = json!({"Check": "roles", "Accounts": ACCOUNTS, "Regions": REGIONS});
    println!("\n06:00 UTC: RolesAuditSchedule fires; StartExecution of the fleet audit with {input}");
    let out = audits.run(input, "roles-20261207T060000Z").await?;
    let report = out
        .report
        .ok_or_else(|| anyhow!("the audit wrote no report: {:?}", out.execution.cause))?;
    println!(
        "  {} in {:.0} s of engine time; report s3://opsflow-audit-local/audit/roles/runs/roles-20261207T060000Z/report.txt:",
        out.execution.status.as_str(),
        out.execution.engine_ms as f64 / 1000.0
    );
    println!("{}", indent(out.text.as_deref().unwrap_or_default(), 40));
    if let Some((subject, _)) = next_message(&audits, &queue).await? {
        println!("  summary on the audit topic: {subject}");
    }

    println!(
        "\n10:14 UTC: someone in {} attaches AdministratorAccess to role web (\"just to debug\")",
        ACCOUNTS[0]
    );
    cloud.delete("events").await?;
    ca.iam.attach_role_policy().role_name("web").policy_arn(ADMIN).send().await?;
    let events = cloud.get("events").await?;
    let event = events["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["detail"]["eventName"] == "AttachRolePolicy"))
        .cloned()
        .context("no CloudTrail event")?;
    println!(
        "  CloudTrail → EventBridge (us-east-1, the member stack forwards it to the central bus): AttachRolePolicy, event {}",
        event["detail"]["eventID"].as_str().unwrap_or("?")
    );
    let t = Instant::now();
    let drift = audits.drift(&event, &REGIONS).await?;
    let alerted = drift["Alerted"].is_string();
    println!(
        "  drift function: {} instance(s) re-evaluated and changed, {:.2} s",
        drift["Instances"],
        t.elapsed().as_secs_f64()
    );
    if let Some((subject, message)) = next_message(&audits, &queue).await? {
        // The queue gets the alert's JSON body; people get its text (email, chat): the same facts.
        let m: Value = serde_json::from_str(&message).unwrap_or(Value::Null);
        let mut text = format!(
            "{subject}\nWho:  {} ({})\nWhen: {}\nWhat: {}\n",
            m["who"]["arn"].as_str().unwrap_or("?"),
            m["who"]["identityType"].as_str().unwrap_or("?"),
            m["at"].as_str().unwrap_or("?"),
            m["what"].as_str().unwrap_or("?")
        );
        for i in m["instances"].as_array().into_iter().flatten() {
            let side = |k: &str| serde_json::from_value::<RiskView>(i[k].clone()).map_or_else(|_| "no role".to_string(), |v| v.line());
            text += &format!(
                "{} {} ({})\n  before: {}\n  after:  {}\n",
                i["instanceId"].as_str().unwrap_or("?"),
                i["name"].as_str().unwrap_or(""),
                i["region"].as_str().unwrap_or("?"),
                side("before"),
                side("after")
            );
        }
        println!("{}", indent(&text, 20));
    }
    let again = audits.drift(&event, &REGIONS).await?;
    println!(
        "  the same event delivered again: {} (no second alert)",
        again["Note"].as_str().unwrap_or("?")
    );
    // The next morning's audit starts with what changed.
    let next = audits
        .run(
            json!({"Check": "roles", "Accounts": ACCOUNTS, "Regions": REGIONS}),
            "roles-20261208T060000Z",
        )
        .await?;
    let next_report = next.report.ok_or_else(|| anyhow!("no second report: {:?}", next.execution.cause))?;
    println!("\nThe next day's audit report starts with the changes:");
    println!("{}", indent(next.text.as_deref().unwrap_or_default(), 12));
    next_message(&audits, &queue).await?;
    let health_ok = fleet_health(cloud, &audits, &queue, &web).await?;
    println!("\nAct 3 wall time {:.1} s", wall.elapsed().as_secs_f64());
    let kinds: Vec<&str> = report.findings.iter().map(|f| f.kind.as_str()).collect();
    Ok(out.execution.status == opsflow_asl::Status::Succeeded
        && kinds.contains(&"admin")
        && kinds.contains(&"escalation")
        && kinds.contains(&"no-profile")
        && alerted
        && again["Alerted"] == drift["Alerted"]
        && next_report.changes.new.len() == 1
        && health_ok)
}

/// The daily SSM fleet health: web-1's agent has crashed (ConnectionLost), the forgotten
/// instance has no profile; each says why and what to do.
async fn fleet_health(cloud: &Arc<LocalCloud>, audits: &LocalAudits, queue: &str, crashed: &str) -> anyhow::Result<bool> {
    cloud.control("config", json!({"ping_status": {crashed: "ConnectionLost"}})).await?;
    let now = cloud.now_ms().await?;
    cloud.control("clock", json!({"now_ms": now + 3_600_000})).await?;
    let input = json!({"Check": "ssm-health", "Accounts": ACCOUNTS, "Regions": REGIONS, "StaleDays": 14});
    println!("\n07:00 UTC, the next day: SsmHealthSchedule fires (web-1's agent has crashed); StartExecution with {input}");
    let out = audits.run(input, "ssm-health-20261208T070000Z").await?;
    let report = out
        .report
        .ok_or_else(|| anyhow!("no fleet health report: {:?}", out.execution.cause))?;
    println!("{}", indent(out.text.as_deref().unwrap_or_default(), 30));
    if let Some((subject, _)) = next_message(audits, queue).await? {
        println!("  summary on the audit topic: {subject}");
    }
    let kinds: Vec<&str> = report.findings.iter().map(|f| f.kind.as_str()).collect();
    Ok(kinds.contains(&"connection-lost") && kinds.contains(&"unmanaged"))
}
