//! End to end: the fleet audit (the real `statemachines/fleet-audit.asl.json`) on the local
//! engine, the real audit function, two member accounts of the local cloud read through their
//! member audit role with the ExternalId.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use opsflow::local::audit::LocalAudits;
use opsflow::local::runbook::MemberAccount;
use opsflow::local::LocalCloud;
use opsflow_asl::Status;
use opsflow_core::audit::{Report, Severity};
use serde_json::{json, Value};

/// Scenarios share the machine's two cores: one local cloud at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

const EXTERNAL_ID: &str = "opsflow-test-5f2c";
const A: &str = "111111111111";
const B: &str = "222222222222";
const REGION: &str = "eu-west-1";
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

struct World {
    _serial: MutexGuard<'static, ()>,
    cloud: Arc<LocalCloud>,
    audits: LocalAudits,
    a: MemberAccount,
    b: MemberAccount,
}

async fn world() -> World {
    let serial = SERIAL.lock().await;
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await.unwrap().expect("local cloud"));
    let a = MemberAccount::seed(&cloud, A, EXTERNAL_ID).await.unwrap();
    let b = MemberAccount::seed(&cloud, B, EXTERNAL_ID).await.unwrap();
    let audits = LocalAudits::new(cloud.clone(), EXTERNAL_ID).await.unwrap();
    World {
        _serial: serial,
        cloud,
        audits,
        a,
        b,
    }
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

/// An instance with no profile at all.
async fn bare_instance(m: &MemberAccount, name: &str) -> String {
    opsflow::fixtures::instance_tagged(&m.clients(REGION).await.unwrap(), name, &[])
        .await
        .unwrap()
}

/// An inline policy on `role`.
async fn put_policy(m: &MemberAccount, role: &str, name: &str, doc: Value) {
    m.clients(REGION)
        .await
        .unwrap()
        .iam
        .put_role_policy()
        .role_name(role)
        .policy_name(name)
        .policy_document(doc.to_string())
        .send()
        .await
        .unwrap();
}

fn keys(r: &Report) -> Vec<String> {
    r.findings.iter().map(|f| f.key.clone()).collect()
}

/// The audit topic's messages since the last call, as a subscribed queue receives them (the
/// JSON body of each, with the subject).
async fn summaries(w: &World, queue: &str) -> Vec<Value> {
    let got = w
        .audits
        .clients
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    for m in got.messages() {
        // Taken: a later call sees only what came since.
        w.audits
            .clients
            .sqs
            .delete_message()
            .queue_url(queue)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
    got.messages()
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let mut body: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            body["subject"] = envelope["Subject"].clone();
            body
        })
        .collect()
}

#[test]
fn two_accounts_admin_escalation_missing_profile_and_ssm_are_found_then_the_changes_lead_the_next_report() {
    block_on(async {
        let w = world().await;
        let (queue, queue_arn) = opsflow::fixtures::queue(&w.audits.clients, "audit-summaries").await.unwrap();
        opsflow::fixtures::subscribe(&w.audits.clients, &w.audits.topic_arn, &queue_arn)
            .await
            .unwrap();
        let (ca, cb) = (w.a.clients(REGION).await.unwrap(), w.b.clients(REGION).await.unwrap());
        // A: a clean SSM role, an admin role, an instance without a profile.
        let clean = opsflow::fixtures::managed_instance(&ca, "web-1", "web", false).await.unwrap();
        let admin = opsflow::fixtures::managed_instance(&ca, "ops-box", "ops-admin", true)
            .await
            .unwrap();
        let bare = bare_instance(&w.a, "forgotten").await;
        // B: a build role that can pass any role to an instance it launches; a role without SSM.
        let builder = opsflow::fixtures::managed_instance(&cb, "ci-runner", "builder", false)
            .await
            .unwrap();
        put_policy(
            &w.b,
            "builder",
            "launch",
            json!({"Version": "2012-10-17", "Statement": [{"Sid": "Launch", "Effect": "Allow", "Action": ["ec2:RunInstances", "iam:PassRole"], "Resource": "*"}]}),
        )
        .await;
        let quiet = opsflow::fixtures::managed_instance(&cb, "batch-1", "batch", false).await.unwrap();
        cb.iam
            .detach_role_policy()
            .role_name("batch")
            .policy_arn("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
            .send()
            .await
            .unwrap();

        let input = json!({"Check": "roles", "Accounts": [A, B], "Regions": [REGION]});
        let first = w.audits.run(input.clone(), "daily-1").await.unwrap();
        assert_eq!(first.execution.status, Status::Succeeded, "{:?}", first.execution.cause);
        let r1 = first.report.unwrap();
        let k = keys(&r1);
        for expected in [
            format!("{A}/{REGION}/admin/ops-admin"),
            format!("{A}/{REGION}/no-profile/{bare}"),
            format!("{B}/{REGION}/escalation/builder/iam-pass-role-any"),
            format!("{B}/{REGION}/escalation/builder/iam-pass-role-ec2-run-instances"),
            format!("{B}/{REGION}/no-ssm/batch"),
        ] {
            assert!(k.contains(&expected), "{expected} in {k:#?}");
        }
        assert_eq!(k.len(), 5, "nothing else, the clean role nothing: {k:#?}");
        let admin_finding = r1.findings.iter().find(|f| f.kind == "admin").unwrap();
        assert_eq!(admin_finding.severity, Severity::Critical);
        assert_eq!(admin_finding.instances[0].id, admin);
        assert_eq!(admin_finding.instances[0].name.as_deref(), Some("ops-box"));
        assert!(admin_finding.evidence[0].contains("AdministratorAccess is attached"));
        let pass = r1.findings.iter().find(|f| f.key.ends_with("/iam-pass-role-any")).unwrap();
        assert_eq!(pass.instances[0].id, builder);
        assert!(
            pass.evidence.iter().any(|e| e == "inline launch (Sid Launch) on *"),
            "{:?}",
            pass.evidence
        );
        assert!(pass.source.as_deref().unwrap().contains("https://"));
        let no_ssm = r1.findings.iter().find(|f| f.kind == "no-ssm").unwrap();
        assert_eq!(no_ssm.instances[0].id, quiet);
        assert!(
            r1.findings.iter().all(|f| f.instances.iter().all(|i| i.id != clean)),
            "web-1 is clean"
        );
        assert_eq!(r1.scopes.len(), 2);
        assert!(r1.scopes.iter().all(|s| s.status == "scanned"));
        assert_eq!(r1.changes.previous_run, None);
        let text = first.text.unwrap();
        assert!(text.starts_with("Instance-role audit — run daily-1"), "{text}");
        assert!(text.contains("First report"));

        // A day later: the admin grant is gone, web's role can now write its own policies, and
        // another instance took the builder profile.
        ca.iam
            .detach_role_policy()
            .role_name("ops-admin")
            .policy_arn(ADMIN)
            .send()
            .await
            .unwrap();
        put_policy(
            &w.a,
            "web",
            "self-service",
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": "arn:aws:iam::111111111111:role/web"}}),
        )
        .await;
        let second_builder = opsflow::fixtures::instance(&cb, "ci-runner-2").await.unwrap();
        cb.ec2
            .associate_iam_instance_profile()
            .instance_id(&second_builder)
            .iam_instance_profile(
                opsflow_aws::aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                    .name("builder")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let second = w.audits.run(input, "daily-2").await.unwrap();
        assert_eq!(second.execution.status, Status::Succeeded, "{:?}", second.execution.cause);
        let r2 = second.report.unwrap();
        let c = &r2.changes;
        assert_eq!(c.previous_run.as_deref(), Some("daily-1"));
        assert_eq!(c.new, [format!("{A}/{REGION}/escalation/web/iam-put-role-policy")]);
        assert_eq!(c.resolved.len(), 1);
        assert_eq!(c.resolved[0].key, format!("{A}/{REGION}/admin/ops-admin"));
        let changed: Vec<&str> = c.changed.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(
            changed,
            [
                format!("{B}/{REGION}/escalation/builder/iam-pass-role-any"),
                format!("{B}/{REGION}/escalation/builder/iam-pass-role-ec2-run-instances")
            ]
        );
        assert!(c.changed.iter().all(|x| x.added.len() == 1 && x.added[0].id == second_builder));
        let text = second.text.unwrap();
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s:?} in\n{text}"));
        assert!(at("1 new, 1 resolved, 2 changed") < at("\nFindings:"), "the changes lead:\n{text}");
        assert!(at("RESOLVED  critical") < at("\n[high]"));
        assert!(text.contains("now also on"));

        let got = summaries(&w, &queue).await;
        assert_eq!(got.len(), 2, "one summary per report");
        let last = got.iter().find(|b| b["run"] == "daily-2").unwrap();
        assert_eq!(last["new"], json!([format!("{A}/{REGION}/escalation/web/iam-put-role-policy")]));
        assert!(last["report"].as_str().unwrap().ends_with("audit/roles/runs/daily-2/report.txt"));
        assert!(
            last["subject"]
                .as_str()
                .unwrap()
                .starts_with("opsflow roles: 1 new, 1 resolved, 2 changed"),
            "{last}"
        );
    });
}

#[test]
fn an_account_that_cannot_be_read_is_named_and_resolves_nothing_while_the_others_are_audited() {
    block_on(async {
        let w = world().await;
        let ca = w.a.clients(REGION).await.unwrap();
        opsflow::fixtures::managed_instance(&ca, "ops-box", "ops-admin", true)
            .await
            .unwrap();
        let cb = w.b.clients(REGION).await.unwrap();
        opsflow::fixtures::managed_instance(&cb, "db-1", "db-admin", true).await.unwrap();
        let input = json!({"Check": "roles", "Accounts": [A, B], "Regions": [REGION]});
        let first = w.audits.run(input.clone(), "before").await.unwrap();
        assert_eq!(first.report.unwrap().findings.len(), 2);

        // B's audit role is gone (its stack was deleted, or never deployed there).
        // (The next day's function starts without yesterday's session.)
        cb.iam.delete_role().role_name("opsflow-member-audit").send().await.unwrap();
        let audits = LocalAudits::new(w.cloud.clone(), EXTERNAL_ID).await.unwrap();
        let out = audits.run(input, "after").await.unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "one scope does not stop the audit");
        let r = out.report.unwrap();
        let failed: Vec<_> = r.scopes.iter().filter(|s| s.status == "failed").collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].account, B);
        let error = failed[0].error.as_deref().unwrap();
        assert!(
            error.starts_with("AccessDenied:") && error.contains(&format!("arn:aws:iam::{B}:role/opsflow-member-audit")),
            "{error}"
        );
        assert_eq!(r.findings.len(), 1, "A's finding");
        assert!(r.changes.resolved.is_empty(), "B's admin finding is not resolved: B was not read");
        assert_eq!(r.changes.not_rechecked, 1);
        assert!(out.text.unwrap().contains(&format!("{B} {REGION}: FAILED: AccessDenied")));
    });
}

#[test]
fn bad_input_is_refused_naming_the_field_before_any_account_is_read() {
    block_on(async {
        let w = world().await;
        for (input, needle) in [
            (json!({}), "Check: is required"),
            (json!({"Check": "roles", "Accounts": ["1234"]}), "is not a 12-digit AWS account id"),
        ] {
            let out = w.audits.run(input.clone(), "refused").await.unwrap();
            assert_eq!(out.execution.status, Status::Failed, "{input}");
            assert_eq!(out.execution.error.as_deref(), Some("InvalidInput"));
            assert!(
                out.execution.cause.as_deref().unwrap().contains(needle),
                "{:?}",
                out.execution.cause
            );
            assert!(out.report.is_none());
        }
    });
}

/// The CloudTrail events the local cloud sent since its event list was cleared, each checked against
/// the member stack's forwarding rule and the central drift rule (the deployed patterns).
async fn trail_events(w: &World) -> Vec<Value> {
    let events = w.cloud.get("events").await.unwrap()["events"].as_array().cloned().unwrap();
    let trail: Vec<Value> = events
        .into_iter()
        .filter(|e| e["detail-type"] == "AWS API Call via CloudTrail")
        .collect();
    for e in &trail {
        assert!(
            opsflow::fixtures::pattern_matches(
                "infra/member-account.yaml",
                &["Resources", "RoleDriftForwardRule", "Properties", "EventPattern"],
                e
            ),
            "the member stack forwards {e}"
        );
        assert!(
            opsflow::fixtures::pattern_matches(
                "infra/template.yaml",
                &[
                    "Resources",
                    "AuditDriftFunction",
                    "Properties",
                    "Events",
                    "Drift",
                    "Properties",
                    "Pattern"
                ],
                e
            ),
            "the central rule takes {e}"
        );
    }
    trail
}

fn drift_alerts(got: &[Value]) -> Vec<&Value> {
    got.iter().filter(|b| b["schema"] == "opsflow.role-drift/1").collect()
}

#[test]
fn admin_attached_to_an_instance_role_is_one_drift_alert_naming_who_before_and_after_and_a_swapped_profile_another() {
    block_on(async {
        let w = world().await;
        let (queue, queue_arn) = opsflow::fixtures::queue(&w.audits.clients, "drift-alerts").await.unwrap();
        opsflow::fixtures::subscribe(&w.audits.clients, &w.audits.topic_arn, &queue_arn)
            .await
            .unwrap();
        let cb = w.b.clients(REGION).await.unwrap();
        let web = opsflow::fixtures::managed_instance(&cb, "web-1", "web", false).await.unwrap();
        opsflow::fixtures::instance_profile(&cb, "lonely", "/").await.unwrap();
        opsflow::fixtures::instance_profile(&cb, "plain", "/").await.unwrap();
        // Yesterday's audit: what drift compares with.
        let audit = w
            .audits
            .run(json!({"Check": "roles", "Accounts": [A, B], "Regions": [REGION]}), "daily")
            .await
            .unwrap();
        assert!(audit.report.unwrap().findings.is_empty());
        summaries(&w, &queue).await;
        w.cloud.delete("events").await.unwrap();

        // Someone in B makes the web role admin, and also an unrelated role no instance carries.
        cb.iam.attach_role_policy().role_name("web").policy_arn(ADMIN).send().await.unwrap();
        cb.iam
            .attach_role_policy()
            .role_name("lonely")
            .policy_arn(ADMIN)
            .send()
            .await
            .unwrap();
        let events = trail_events(&w).await;
        assert_eq!(events.len(), 2, "{events:#?}");
        assert!(
            events.iter().all(|e| e["region"] == "us-east-1" && e["account"] == B),
            "IAM's events are in us-east-1"
        );
        let on = |role: &str| {
            events
                .iter()
                .find(|e| e["detail"]["requestParameters"]["roleName"] == role)
                .unwrap()
        };
        let out = w.audits.drift(on("web"), &[REGION]).await.unwrap();
        assert_eq!(out["Instances"], 1, "{out}");
        let message_id = out["Alerted"].as_str().unwrap().to_string();
        let unrelated = w.audits.drift(on("lonely"), &[REGION]).await.unwrap();
        assert_eq!(unrelated["Alerted"], Value::Null, "{unrelated}");
        let unrelated_again = w.audits.drift(on("lonely"), &[REGION]).await.unwrap();
        assert_eq!(unrelated_again["Alerted"], Value::Null, "{unrelated_again}");
        assert_eq!(unrelated_again["Note"], "already handled (a repeated delivery)");
        // EventBridge delivers at least once: the same event again publishes nothing.
        let again = w.audits.drift(on("web"), &[REGION]).await.unwrap();
        assert_eq!(again["Alerted"], json!(message_id), "{again}");

        let got = summaries(&w, &queue).await;
        let alerts = drift_alerts(&got);
        assert_eq!(alerts.len(), 1, "{got:#?}");
        let a = alerts[0];
        assert_eq!(a["account"], B);
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["event"], "AttachRolePolicy");
        assert_eq!(a["who"]["arn"], format!("arn:aws:iam::{B}:user/opsflow-admin"));
        assert_eq!(a["who"]["identityType"], "IAMUser");
        assert_eq!(a["at"], events[0]["detail"]["eventTime"]);
        assert_eq!(a["instances"][0]["instanceId"], web.as_str());
        assert_eq!(a["instances"][0]["before"]["admin"], Value::Null);
        assert_eq!(
            a["instances"][0]["after"]["admin"],
            "arn:aws:iam::aws:policy/AdministratorAccess is attached"
        );
        assert!(
            a["subject"]
                .as_str()
                .unwrap()
                .starts_with("opsflow drift [critical]: 1 instance now ADMIN (AttachRolePolicy by opsflow-admin)"),
            "{a}"
        );

        // Then the profile of web-1 is swapped for a plain one: another alert, risk lowered.
        w.cloud.delete("events").await.unwrap();
        let assoc = cb
            .ec2
            .describe_iam_instance_profile_associations()
            .filters(
                opsflow_aws::aws_sdk_ec2::types::Filter::builder()
                    .name("instance-id")
                    .values(&web)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let id = assoc.iam_instance_profile_associations()[0].association_id().unwrap().to_string();
        cb.ec2
            .replace_iam_instance_profile_association()
            .association_id(id)
            .iam_instance_profile(
                opsflow_aws::aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                    .name("plain")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let events = trail_events(&w).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["region"], REGION, "EC2's events are in their region");
        let out = w.audits.drift(&events[0], &[REGION]).await.unwrap();
        assert_eq!(out["Instances"], 1, "{out}");
        let got = summaries(&w, &queue).await;
        let alerts = drift_alerts(&got);
        assert_eq!(alerts.len(), 1);
        let a = alerts[0];
        assert_eq!(a["event"], "ReplaceIamInstanceProfileAssociation");
        assert_eq!(a["severity"], "low", "less power than before");
        assert_eq!(a["instances"][0]["before"]["role"], format!("arn:aws:iam::{B}:role/web"));
        assert_eq!(a["instances"][0]["after"]["role"], format!("arn:aws:iam::{B}:role/plain"));
        assert_eq!(a["instances"][0]["after"]["admin"], Value::Null);
    });
}

/// A Linux instance in `subnet` (None: the default subnet) with the instance profile `profile`.
async fn instance_in(m: &MemberAccount, name: &str, subnet: Option<&str>, profile: Option<&str>) -> String {
    use opsflow_aws::aws_sdk_ec2::types::{IamInstanceProfileSpecification, InstanceType, ResourceType, Tag, TagSpecification};
    let c = m.clients(REGION).await.unwrap();
    let mut run = c
        .ec2
        .run_instances()
        .image_id(opsflow::fixtures::LINUX_AMI)
        .instance_type(InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("Name").value(name).build())
                .build(),
        );
    if let Some(s) = subnet {
        run = run.subnet_id(s);
    }
    if let Some(p) = profile {
        run = run.iam_instance_profile(IamInstanceProfileSpecification::builder().name(p).build());
    }
    let out = run.send().await.unwrap();
    out.instances()[0].instance_id().unwrap().to_string()
}

#[test]
fn ssm_fleet_health_names_each_unmanaged_state_with_its_cause_and_fix() {
    block_on(async {
        let w = world().await;
        let cloud = &w.cloud;
        let ca = w.a.clients(REGION).await.unwrap();
        cloud
            .control("config", json!({"online_delay_seconds": 0, "network_checks": true}))
            .await
            .unwrap();
        opsflow::fixtures::instance_profile(&ca, "ssm", "/").await.unwrap();
        // A role with no SSM permissions, in its own profile.
        opsflow::fixtures::instance_profile(&ca, "bare", "/").await.unwrap();
        ca.iam
            .detach_role_policy()
            .role_name("bare")
            .policy_arn("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
            .send()
            .await
            .unwrap();
        // A private subnet of the default VPC: its own route table, no route out, no endpoints.
        let vpc = ca
            .ec2
            .describe_vpcs()
            .filters(
                opsflow_aws::aws_sdk_ec2::types::Filter::builder()
                    .name("is-default")
                    .values("true")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .vpcs()[0]
            .vpc_id()
            .unwrap()
            .to_string();
        let subnet = ca
            .ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("172.31.200.0/24")
            .send()
            .await
            .unwrap();
        let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_string();
        let table = ca.ec2.create_route_table().vpc_id(&vpc).send().await.unwrap();
        let table = table.route_table().unwrap().route_table_id().unwrap().to_string();
        ca.ec2
            .associate_route_table()
            .route_table_id(table)
            .subnet_id(&subnet)
            .send()
            .await
            .unwrap();

        let healthy = instance_in(&w.a, "web-1", None, Some("ssm")).await;
        let old_agent = instance_in(&w.a, "web-2", None, Some("ssm")).await;
        let no_profile = instance_in(&w.a, "forgotten", None, None).await;
        let bare = instance_in(&w.a, "bare-1", None, Some("bare")).await;
        let private = instance_in(&w.a, "db-1", Some(&subnet), Some("ssm")).await;
        let lost = instance_in(&w.a, "batch-1", None, Some("ssm")).await;
        let clone = instance_in(&w.a, "golden-copy", None, Some("ssm")).await;
        cloud
            .control(
                "config",
                json!({"agent_versions": {&old_agent: "3.2.582.0"}, "ping_status": {&lost: "ConnectionLost"},
                       "registered_as": {&clone: "mi-0123456789abcdef0"}}),
            )
            .await
            .unwrap();
        let now = cloud.now_ms().await.unwrap();
        cloud
            .control(
                "managed_nodes",
                json!({"account_id": A, "region": REGION, "nodes": [{"computer_name": "old-laptop.corp", "ip_address": "192.168.1.20",
                       "ping_status": "ConnectionLost", "last_ping_ms": now - 40 * 86_400_000, "registration_date_ms": now - 400 * 86_400_000,
                       "instance_id": "mi-0fedcba98765432a0"}]}),
            )
            .await
            .unwrap();
        // Past the ten minutes a new instance gets to register.
        cloud.control("clock", json!({"now_ms": now + 15 * 60_000})).await.unwrap();

        let out = w
            .audits
            .run(
                json!({"Check": "ssm-health", "Accounts": [A], "Regions": [REGION], "StaleDays": 30}),
                "health-1",
            )
            .await
            .unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "{:?}", out.execution.cause);
        let r = out.report.unwrap();
        let got: Vec<(String, String)> = r.findings.iter().map(|f| (f.kind.clone(), f.subject.clone())).collect();
        let has = |kind: &str, subject: &str| {
            r.findings
                .iter()
                .find(|f| f.kind == kind && f.subject == subject)
                .unwrap_or_else(|| panic!("{kind} {subject} in {got:#?}"))
        };
        let cause = |kind: &str, subject: &str| has(kind, subject).cause.clone().unwrap_or_default();
        assert!(cause("unmanaged", &no_profile).contains("no instance profile, and Default Host Management Configuration is off"));
        assert!(cause("unmanaged", &bare).contains("role bare does not allow ssm:UpdateInstanceInformation"));
        let p = cause("unmanaged", &private);
        assert!(
            p.contains(&format!("subnet {subnet} has no route out")) && p.contains("com.amazonaws.<region>.ssm,"),
            "{p}"
        );
        assert!(has("unmanaged", &private)
            .fix
            .as_deref()
            .unwrap()
            .contains("create the interface endpoints ssm, ssmmessages, ec2messages"));
        assert_eq!(has("connection-lost", &lost).severity, Severity::High);
        let c = has("registered-as-mi", &clone);
        assert!(c.title.contains("mi-0123456789abcdef0"), "{}", c.title);
        assert!(c.fix.as_deref().unwrap().contains("/var/lib/amazon/ssm/registration"));
        assert!(has("stale-registration", "mi-0fedcba98765432a0")
            .title
            .contains("not seen for 40 days"));
        assert!(has("old-agent", &old_agent).title.contains("3.2.582.0"));
        assert_eq!(has("dhmc-off", "default-host-management").instances[0].id, no_profile);
        assert!(
            r.findings.iter().all(|f| f.instances.iter().all(|i| i.id != healthy)),
            "web-1 is healthy: {got:#?}"
        );
        assert_eq!(r.findings.len(), 8, "{got:#?}");
        assert!(r.findings.iter().all(|f| f.fix.is_some()));
        assert!(r.findings.iter().all(|f| f.fixed.is_none()), "the automatic fix is off by default");
        assert_eq!(r.scopes[0].counted["managed and online"], 2, "web-1 and web-2");
        let text = out.text.unwrap();
        assert!(text.starts_with("SSM fleet health — run health-1"), "{text}");
        assert!(text.contains("likely cause: ") && text.contains("fix: "));
    });
}

#[test]
fn the_optional_fix_gives_an_instance_without_a_profile_the_default_ssm_profile_where_the_account_allows_it() {
    use opsflow::local::runbook::SSM_DEFAULT_PROFILE;
    block_on(async {
        let w = world().await;
        w.cloud.control("config", json!({"online_delay_seconds": 0})).await.unwrap();
        // Account A's member stack has SsmProfileFix Enabled; B's does not.
        w.a.allow_ssm_fix(EXTERNAL_ID).await.unwrap();
        let (ca, cb) = (w.a.clients(REGION).await.unwrap(), w.b.clients(REGION).await.unwrap());
        opsflow::fixtures::instance_profile(&ca, "web", "/").await.unwrap();
        let forgotten = instance_in(&w.a, "forgotten", None, None).await;
        let managed = instance_in(&w.a, "web-1", None, Some("web")).await;
        let elsewhere = instance_in(&w.b, "forgotten-b", None, None).await;
        // Its owner keeps it out of the fix.
        let kept_out = instance_in(&w.a, "no-ssm-please", None, None).await;
        ca.ec2
            .create_tags()
            .resources(&kept_out)
            .tags(
                opsflow_aws::aws_sdk_ec2::types::Tag::builder()
                    .key("opsflow:ssm-fix")
                    .value("off")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let now = w.cloud.now_ms().await.unwrap();
        w.cloud.control("clock", json!({"now_ms": now + 15 * 60_000})).await.unwrap();
        let audits = LocalAudits::fixing(w.cloud.clone(), EXTERNAL_ID, Some(SSM_DEFAULT_PROFILE))
            .await
            .unwrap();
        let input = json!({"Check": "ssm-health", "Accounts": [A, B], "Regions": [REGION]});

        let out = audits.run(input.clone(), "health-fix-1").await.unwrap();
        assert_eq!(out.execution.status, Status::Succeeded, "{:?}", out.execution.cause);
        let r = out.report.unwrap();
        let fixed = |id: &str| {
            r.findings
                .iter()
                .find(|f| f.kind == "unmanaged" && f.subject == id)
                .and_then(|f| f.fixed.clone())
                .unwrap_or_default()
        };
        assert!(
            fixed(&forgotten).starts_with(&format!("associated instance profile {SSM_DEFAULT_PROFILE} (iip-assoc-")),
            "{}",
            fixed(&forgotten)
        );
        assert!(
            fixed(&elsewhere).starts_with("not fixed: the member account's fix role could not be used"),
            "{}",
            fixed(&elsewhere)
        );
        assert!(r.findings.iter().all(|f| f.subject != managed), "web-1 is managed");
        assert_eq!(fixed(&kept_out), "", "opsflow:ssm-fix=off");
        assert!(out.text.unwrap().contains("fixed by opsflow: associated instance profile"));
        let profile_of = |c: &opsflow_aws::Clients, id: &str| {
            let (c, id) = (c.clone(), id.to_string());
            async move {
                let out = c.ec2.describe_instances().instance_ids(id).send().await.unwrap();
                out.reservations()[0].instances()[0]
                    .iam_instance_profile()
                    .and_then(|p| p.arn())
                    .map(String::from)
            }
        };
        assert_eq!(
            profile_of(&ca, &forgotten).await,
            Some(format!("arn:aws:iam::{A}:instance-profile/{SSM_DEFAULT_PROFILE}"))
        );
        assert_eq!(profile_of(&cb, &elsewhere).await, None, "B did not allow the fix");
        assert_eq!(profile_of(&ca, &kept_out).await, None);

        // The next run: SSM manages the fixed instance, its finding is resolved; B's remains.
        let now = w.cloud.now_ms().await.unwrap();
        w.cloud.control("clock", json!({"now_ms": now + 86_400_000})).await.unwrap();
        let r = audits.run(input, "health-fix-2").await.unwrap().report.unwrap();
        let key = |account: &str, id: &str| format!("{account}/{REGION}/unmanaged/{id}");
        assert!(r.changes.resolved.iter().any(|f| f.key == key(A, &forgotten)), "{:?}", r.changes);
        assert!(r.findings.iter().any(|f| f.key == key(B, &elsewhere)));
    });
}
