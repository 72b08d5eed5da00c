//! End to end: CloudFormation requests through the request handler and the real
//! `statemachines/provision-instance.asl.json` on the local engine, the real handlers, AWS calls
//! to the local cloud. Every scenario asserts exactly one answer PUT to the response URL.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use opsflow::fixtures;
use opsflow::local::provision::{cfn_request, LocalPipeline, ResponseStore};
use opsflow::local::LocalCloud;
use opsflow_asl::Status;
use opsflow_core::ports::SteppedClock;
use opsflow_core::provision::guard::{OPT_IN_TAG, STACK_ID_TAG};
use opsflow_core::provision::handlers::{invoke, Ports};
use opsflow_core::provision::request::dead_letter;
use opsflow_core::provision::request::Admission;
use opsflow_core::provision::steps::Settings;
use opsflow_core::AllowList;
use opsflow_core::{CfnStatus, CoreError};
use serde_json::{json, Value};

/// Scenarios share the machine's two cores: one local cloud at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

struct World {
    _serial: MutexGuard<'static, ()>,
    cloud: Arc<LocalCloud>,
    pipeline: LocalPipeline,
    responses: ResponseStore,
    instance_id: String,
}

async fn world(settings: impl FnOnce(&mut Settings)) -> World {
    let serial = SERIAL.lock().await;
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await.unwrap().expect("local cloud"));
    let mut s = Settings::new(AllowList::parse(fixtures::ALLOW_LIST).unwrap());
    // These requests are written by the tests, not sent by a stack: the check that a request
    // belongs to a stack operation under way is tested with real stacks in tests/stacks.rs.
    s.verify_stack = false;
    settings(&mut s);
    let pipeline = LocalPipeline::new(cloud.clone(), s).await.unwrap();
    let responses = ResponseStore::create(&pipeline.clients).await.unwrap();
    fixtures::instance_profile(&pipeline.clients, "dev-ide-profile", "/opsflow/")
        .await
        .unwrap();
    let instance_id = fixtures::instance(&pipeline.clients, "dev-ide-7").await.unwrap();
    World {
        _serial: serial,
        cloud,
        pipeline,
        responses,
        instance_id,
    }
}

impl World {
    async fn send(&self, kind: &str, id: &str, props: Value, extra: Value) -> (opsflow::local::provision::Submission, Value) {
        let request = cfn_request(kind, id, &self.responses.url_for(id).await.unwrap(), props, extra);
        let submission = self.pipeline.submit(request, |_| {}).await.unwrap();
        let answers = self.responses.answers(id).await.unwrap();
        assert_eq!(answers.len(), 1, "exactly one answer PUT for {id}: {answers:?}");
        (submission, answers[0].clone())
    }

    async fn calls(&self, op: &str) -> u64 {
        self.cloud.calls().await.unwrap().get(op).copied().unwrap_or(0)
    }

    async fn mutations(&self) -> u64 {
        self.cloud.mutations().await.unwrap()
    }

    async fn reset_calls(&self) {
        self.cloud.reset_calls().await.unwrap();
    }
}

fn props(instance_id: &str) -> Value {
    fixtures::demo_properties(instance_id, "dev-ide-profile")
}

fn reason(answer: &Value) -> &str {
    answer["Reason"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sets_up_the_instance_and_answers_success_with_data() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    let (sub, answer) = w.send("Create", "req-happy", props(&w.instance_id), Value::Null).await;
    let exec = sub.execution.expect("an execution");
    assert_eq!(exec.status, Status::Succeeded);
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["PhysicalResourceId"], format!("opsflow-setup-{}", w.instance_id));
    assert_eq!(answer["Data"]["VolumeSizeGiB"], "32");
    assert_eq!(answer["Data"]["FilesystemSizeGiB"], "32.0");
    assert_eq!(answer["Data"]["CommandStatus"], "Success");
    assert!(answer["Data"]["AssociationId"].as_str().unwrap().starts_with("iip-assoc-"));
    // The instance really has the profile and the bigger volume.
    assert!(profile_of(&w, &w.instance_id).await.unwrap().ends_with("/opsflow/dev-ide-profile"));
    let vols = w
        .pipeline
        .clients
        .ec2
        .describe_volumes()
        .filters(aws_filter("attachment.instance-id", &w.instance_id))
        .send()
        .await
        .unwrap();
    assert_eq!(vols.volumes()[0].size(), Some(32));
    // Each wait is watched inside its step: no Wait loop turns, one pass through the states.
    assert_eq!(exec.transitions, 19, "{} transitions", exec.transitions);
    assert!(!sub.safety_net_answered);

    // A second identical run (an Update with the same properties) changes nothing.
    w.reset_calls().await;
    let old = props(&w.instance_id);
    let (sub, answer) = w
        .send(
            "Update",
            "req-again",
            props(&w.instance_id),
            json!({"PhysicalResourceId": format!("opsflow-setup-{}", w.instance_id), "OldResourceProperties": old}),
        )
        .await;
    assert_eq!(sub.execution.unwrap().status, Status::Succeeded);
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["PhysicalResourceId"], format!("opsflow-setup-{}", w.instance_id));
    assert_eq!(
        w.mutations().await,
        0,
        "an unchanged update must not change anything: {:?}",
        w.cloud.calls().await.unwrap()
    );

    // Delete (OnDelete defaults to Retain) answers SUCCESS at once and changes nothing.
    let (sub, answer) = w
        .send(
            "Delete",
            "req-delete",
            props(&w.instance_id),
            json!({"PhysicalResourceId": format!("opsflow-setup-{}", w.instance_id)}),
        )
        .await;
    assert!(matches!(sub.admission, Admission::Answered(_)));
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(w.mutations().await, 0);
}

fn aws_filter(name: &str, value: &str) -> opsflow_aws::aws_sdk_ec2::types::Filter {
    opsflow_aws::aws_sdk_ec2::types::Filter::builder().name(name).values(value).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_answered_failed_at_once_without_an_execution() {
    let w = world(|_| {}).await;
    // Unknown instance.
    let mut p = props("i-0123456789abcdef0");
    let (sub, answer) = w.send("Create", "req-unknown", p.clone(), Value::Null).await;
    assert!(matches!(sub.admission, Admission::Answered(_)) && sub.execution.is_none());
    assert_eq!(answer["Status"], "FAILED");
    assert!(reason(&answer).starts_with("Step Validate failed: NotFound"), "{}", reason(&answer));
    // Profile not on the allow-list: nothing changed.
    p = props(&w.instance_id);
    p["InstanceProfile"] = json!("admin-profile");
    let (sub, answer) = w.send("Create", "req-notallowed", p, Value::Null).await;
    assert!(sub.execution.is_none());
    assert!(reason(&answer).contains("InstanceProfile"), "{}", reason(&answer));
    // A bad property names the field and the rule.
    p = props(&w.instance_id);
    p["VolumeSizeGiB"] = json!("lots");
    let (_, answer) = w.send("Create", "req-badsize", p, Value::Null).await;
    assert!(reason(&answer).contains("VolumeSizeGiB"), "{}", reason(&answer));
    assert_eq!(w.mutations().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_the_volume_fails_naming_the_plan_step() {
    let w = world(|_| {}).await;
    let mut p = props(&w.instance_id);
    p["VolumeSizeGiB"] = json!(4);
    let (sub, answer) = w.send("Create", "req-shrink", p, Value::Null).await;
    assert_eq!(sub.execution.unwrap().status, Status::Failed);
    assert_eq!(answer["Status"], "FAILED");
    assert!(
        reason(&answer).starts_with("Step Plan failed: InvalidInput: VolumeSizeGiB"),
        "{}",
        reason(&answer)
    );
    assert_eq!(w.calls("ec2:ModifyVolume").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_eventual_consistency_is_retried_until_the_profile_is_visible() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    w.cloud
        .control(
            "faults",
            json!({"operation": "ec2:AssociateIamInstanceProfile", "count": 2, "code": "InvalidParameterValue", "http_status": 400,
                   "message": "Value (dev-ide-profile) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"}),
        )
        .await
        .unwrap();
    let (sub, answer) = w.send("Create", "req-iam", props(&w.instance_id), Value::Null).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(w.calls("ec2:AssociateIamInstanceProfile").await, 3);
    let exec = sub.execution.unwrap();
    let failed: Vec<_> = exec
        .events
        .iter()
        .filter(|e| e.event_type == "LambdaFunctionFailed")
        .map(|e| e.error().unwrap_or_default().to_string())
        .collect();
    assert_eq!(failed, ["Transient", "Transient"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modification_already_in_progress_is_waited_on() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    let instance = w
        .pipeline
        .clients
        .ec2
        .describe_instances()
        .instance_ids(&w.instance_id)
        .send()
        .await
        .unwrap();
    let vol = instance.reservations()[0].instances()[0].block_device_mappings()[0]
        .ebs()
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    w.pipeline
        .clients
        .ec2
        .modify_volume()
        .volume_id(&vol)
        .size(32)
        .send()
        .await
        .unwrap();
    let (sub, answer) = w.send("Create", "req-inprogress", props(&w.instance_id), Value::Null).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(w.calls("ec2:ModifyVolume").await, 1, "only the modification started before");
    assert_eq!(sub.execution.unwrap().status, Status::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bootstrap_fails_with_the_output_tail() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 1).await.unwrap();
    let (sub, answer) = w.send("Create", "req-boot1", props(&w.instance_id), Value::Null).await;
    assert_eq!(sub.execution.unwrap().status, Status::Failed);
    let r = reason(&answer);
    assert!(r.starts_with("Step Bootstrap failed: CommandFailed"), "{r}");
    assert!(r.contains("exit code 1"), "{r}");
    assert!(r.contains("repository 'https://git.example.internal/app.git/' not found"), "{r}");
    assert!(!sub.safety_net_answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_that_runs_too_long_times_out() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    w.cloud
        .control(
            "commands",
            json!({"document": "AWS-RunShellScript", "match": "git", "duration_seconds": 5000}),
        )
        .await
        .unwrap();
    let mut p = props(&w.instance_id);
    p["Bootstrap"]["TimeoutSeconds"] = json!("60");
    let (_, answer) = w.send("Create", "req-timeout", p, Value::Null).await;
    let r = reason(&answer);
    assert!(r.starts_with("Step Bootstrap failed: CommandFailed"), "{r}");
    assert!(r.contains("TimedOut"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_comes_online_fails_at_the_deadline() {
    let w = world(|s| s.readiness_timeout_s = 120).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    w.cloud
        .control("config", json!({"ping_status": {w.instance_id.clone(): "ConnectionLost"}}))
        .await
        .unwrap();
    let (sub, answer) = w.send("Create", "req-offline", props(&w.instance_id), Value::Null).await;
    let r = reason(&answer);
    assert!(
        r.starts_with("Step CheckReadiness failed: DeadlineExceeded") || r.starts_with("Step WaitForReadiness failed: DeadlineExceeded"),
        "{r}"
    );
    assert!(r.contains("ConnectionLost"), "{r}");
    assert!(r.contains("set RebootFallback to true"), "{r}");
    let exec = sub.execution.unwrap();
    assert!(exec.engine_ms >= 120_000, "gave up after {} ms", exec.engine_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reboot_fallback_brings_an_agent_that_needs_a_reboot_online() {
    let w = world(|s| s.readiness_timeout_s = 120).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    w.cloud.control("config", json!({"agent_needs_reboot": true})).await.unwrap();
    let mut p = props(&w.instance_id);
    p["RebootFallback"] = json!("true");
    let (sub, answer) = w.send("Create", "req-reboot", p, Value::Null).await;
    assert_eq!(sub.execution.unwrap().status, Status::Succeeded, "{answer}");
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(answer["Data"]["Rebooted"], "true");
    // After the reboot the agent is online: the file system is grown (and verified) over SSM,
    // then the bootstrap runs.
    assert_eq!(answer["Data"]["FilesystemSizeGiB"], "32.0");
    assert_eq!(answer["Data"]["CommandStatus"], "Success");
    assert_eq!(w.calls("ec2:RebootInstances").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ssm_the_reboot_fallback_grows_the_root_only_when_nothing_else_needs_ssm() {
    let w = world(|s| {
        s.readiness_timeout_s = 120;
        s.reboot_timeout_s = 180;
    })
    .await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    let other = fixtures::instance(&w.pipeline.clients, "dev-ide-8").await.unwrap();
    w.cloud
        .control(
            "config",
            json!({"ping_status": {w.instance_id.clone(): "ConnectionLost", other.clone(): "ConnectionLost"}}),
        )
        .await
        .unwrap();

    // No bootstrap: the reboot lets cloud-init grow the root partition; SUCCESS says it is not verified.
    let mut p = props(&w.instance_id);
    p["RebootFallback"] = json!(true);
    p.as_object_mut().unwrap().remove("Bootstrap");
    let (sub, answer) = w.send("Create", "req-nossm", p, Value::Null).await;
    let exec = sub.execution.unwrap();
    assert_eq!(exec.status, Status::Succeeded, "{answer}");
    assert_eq!(answer["Data"]["Rebooted"], "true");
    assert_eq!(answer["Data"]["VolumeSizeGiB"], "32");
    assert!(answer["Data"].get("FilesystemSizeGiB").is_none(), "{answer}");
    let r = reason(&answer);
    assert!(
        r.contains("cloud-init grew the root partition at boot") && r.contains("not verified"),
        "{r}"
    );
    assert!(
        exec.engine_ms >= 300_000,
        "waited {} ms (readiness, then after the reboot)",
        exec.engine_ms
    );
    assert_eq!(w.calls("ec2:RebootInstances").await, 1);
    assert_eq!(w.calls("ssm:SendCommand").await, 0);

    // A bootstrap needs SSM: still unavailable after the reboot → FAILED naming the wait.
    let mut p = props(&other);
    p["RebootFallback"] = json!(true);
    let (sub, answer) = w.send("Create", "req-nossm-boot", p, Value::Null).await;
    assert_eq!(sub.execution.unwrap().status, Status::Failed);
    let r = reason(&answer);
    assert!(
        r.starts_with("Step WaitForReadiness failed: DeadlineExceeded: WaitAfterReboot"),
        "{r}"
    );
    assert!(
        r.contains("the bootstrap needs SSM, which is still not available after the reboot"),
        "{r}"
    );
    assert_eq!(w.calls("ec2:RebootInstances").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reboot_fallback_is_refused_for_a_data_volume_before_anything_changes() {
    let w = world(|_| {}).await;
    let ec2 = &w.pipeline.clients.ec2;
    let instance = ec2.describe_instances().instance_ids(&w.instance_id).send().await.unwrap();
    let az = instance.reservations()[0].instances()[0]
        .placement()
        .unwrap()
        .availability_zone()
        .unwrap()
        .to_string();
    let volume = ec2.create_volume().availability_zone(az).size(8).send().await.unwrap();
    ec2.attach_volume()
        .device("/dev/sdf")
        .instance_id(&w.instance_id)
        .volume_id(volume.volume_id().unwrap())
        .send()
        .await
        .unwrap();
    let mut p = props(&w.instance_id);
    p["RebootFallback"] = json!(true);
    p["Device"] = json!("/dev/sdf");
    let (_, answer) = w.send("Create", "req-reboot-data", p, Value::Null).await;
    assert_eq!(answer["Status"], "FAILED");
    assert_eq!(w.mutations().await, 0);
    let r = reason(&answer);
    assert!(
        r.starts_with("Step Plan failed: Unsupported: RebootFallback: cloud-init grows only the root partition at boot, not /dev/sdf"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_execution_is_answered_by_the_safety_net() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    // An operator stops the execution while it runs (as soon as it enters its first task).
    let id = "req-abort";
    let request = cfn_request(
        "Create",
        id,
        &w.responses.url_for(id).await.unwrap(),
        props(&w.instance_id),
        Value::Null,
    );
    let machine = w.pipeline.machine();
    let mut running = w.pipeline.engine().start(
        machine,
        request.clone(),
        opsflow_asl::StartOptions {
            name: id.into(),
            state_machine_name: "provision-instance".into(),
            record_history: true,
        },
    );
    while let Some(ev) = running.events.recv().await {
        if ev.event_type == "TaskStateEntered" {
            running.handle.stop(Some("Operator"), Some("stopped from the console"));
            break;
        }
    }
    let result = running.result.await.unwrap();
    assert_eq!(result.status, Status::Aborted);
    w.pipeline.record_history(id, result.events.clone());
    assert!(w.pipeline.run_safety_net(id, "ABORTED", &request).await.unwrap());
    let answers = w.responses.answers(id).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["Status"], "FAILED");
    assert!(
        reason(&answers[0]).starts_with("Step Workflow failed: ExecutionAborted"),
        "{}",
        reason(&answers[0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_with_on_delete_revert_restores_the_previous_profile() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    // The instance starts with another allow-listed profile; the stack replaces it.
    let old_arn = fixtures::instance_profile(&w.pipeline.clients, "old-profile", "/opsflow/")
        .await
        .unwrap();
    associate(&w, &w.instance_id, &old_arn).await;
    let p = json!({"InstanceId": w.instance_id, "InstanceProfile": "dev-ide-profile", "OnDelete": "Revert"});
    let (_, answer) = w.send("Create", "req-revert-create", p.clone(), Value::Null).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["Data"]["PreviousInstanceProfileArn"], old_arn.as_str());
    assert!(profile_of(&w, &w.instance_id).await.unwrap().ends_with("/dev-ide-profile"));

    let physical = json!({"PhysicalResourceId": format!("opsflow-setup-{}", w.instance_id)});
    let (sub, answer) = w.send("Delete", "req-revert-delete", p, physical).await;
    assert!(matches!(sub.admission, Admission::Started { .. }));
    assert_eq!(sub.execution.unwrap().status, Status::Succeeded);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(profile_of(&w, &w.instance_id).await.as_deref(), Some(old_arn.as_str()));
}

// ---------------------------------------------------------------------------------------------
// Hardening: opsflow acts only on what the requesting stack owns, and answers every request.

const OTHER_STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/billing/00000000-4b5a-6978-8a9b-0c1d2e3f4a5b";

/// An instance with exactly these owner tags (besides Name and Team).
async fn instance_tagged(w: &World, tags: &[(&str, &str)]) -> String {
    fixtures::instance_tagged(&w.pipeline.clients, "someone-elses", tags).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_the_stack_does_not_own_is_refused_before_anything_changes() {
    let w = world(|_| {}).await;
    for (case, tags) in [
        ("another-stack", vec![(STACK_ID_TAG, OTHER_STACK)]),
        ("untagged", vec![]),
        ("opt-in-for-another-stack", vec![(OPT_IN_TAG, "billing")]),
        ("opt-in-for-another-stack-id", vec![(OPT_IN_TAG, OTHER_STACK)]),
    ] {
        let foreign = instance_tagged(&w, &tags).await;
        w.reset_calls().await;
        // The attack: a bootstrap that reads the instance role's credentials, a profile swap,
        // a volume grown to the maximum.
        let p = json!({"InstanceId": foreign, "InstanceProfile": "dev-ide-profile", "VolumeSizeGiB": 2048,
            "Bootstrap": {"Commands": ["curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/; exit 1"]}});
        let (sub, answer) = w.send("Create", &format!("req-{case}"), p, Value::Null).await;
        assert!(sub.execution.is_none(), "{case}: no execution");
        assert_eq!(answer["Status"], "FAILED", "{case}");
        let r = reason(&answer);
        assert!(
            r.starts_with(&format!(
                "Step Validate failed: Forbidden: instance {foreign}: does not belong to stack {}",
                opsflow::local::provision::stack_id()
            )),
            "{case}: {r}"
        );
        assert!(
            r.contains("aws:cloudformation:stack-id") && r.contains("opsflow:setup-stack"),
            "{case}: {r}"
        );
        assert!(!r.contains("billing"), "{case}: another stack is not named: {r}");
        assert_eq!(w.mutations().await, 0, "{case}: nothing changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_created_elsewhere_that_opts_in_by_stack_name_is_set_up() {
    let w = world(|_| {}).await;
    let opted_in = instance_tagged(&w, &[(OPT_IN_TAG, "dev-ide")]).await;
    let p = json!({"InstanceId": opted_in, "InstanceProfile": "dev-ide-profile"});
    let (sub, answer) = w.send("Create", "req-opt-in", p, Value::Null).await;
    assert_eq!(sub.execution.unwrap().status, Status::Succeeded);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_invoked_directly_for_a_foreign_instance_changes_nothing() {
    let w = world(|_| {}).await;
    let foreign = instance_tagged(&w, &[(STACK_ID_TAG, OTHER_STACK)]).await;
    let c = &w.pipeline.clients;
    let ports = Ports {
        ec2: c.ec2_adapter(),
        iam: c.iam_adapter(),
        ssm: c.ssm_adapter(),
        sink: c.response_sink(),
        store: c.setup_store(opsflow::local::provision::SETUP_TABLE),
    };
    let clock = SteppedClock::starting_at(w.cloud.now_ms().await.unwrap());
    let settings = &w.pipeline.settings;
    // A plan made for the stack's own instance, then pointed at another stack's.
    let request = cfn_request(
        "Create",
        "req-direct",
        &w.responses.url_for("req-direct").await.unwrap(),
        props(&w.instance_id),
        Value::Null,
    );
    let mut plan = invoke(&ports, settings, &clock, "Plan", json!({"request": request})).await.unwrap();
    let own_volume = plan["volume"]["volume_id"].as_str().unwrap().to_string();
    plan["instanceId"] = json!(foreign);
    w.reset_calls().await;
    for (function, payload) in [
        ("AssignProfile", json!({"op": "assign", "plan": plan})),
        ("ModifyVolume", json!({"op": "modify", "plan": plan})),
        ("GrowFilesystem", json!({"request": request, "plan": plan})),
        ("SendCommand", json!({"request": request, "plan": plan})),
    ] {
        let e = invoke(&ports, settings, &clock, function, payload).await.unwrap_err();
        assert_eq!(e.name(), "Forbidden", "{function}: {e}");
        assert!(
            e.to_string().contains(&format!("instance {foreign}: does not belong to stack")),
            "{function}: {e}"
        );
    }
    // The stack's own instance, but another instance's volume.
    let foreign_volume = c
        .ec2
        .describe_volumes()
        .filters(aws_filter("attachment.instance-id", &foreign))
        .send()
        .await
        .unwrap()
        .volumes()[0]
        .volume_id()
        .unwrap()
        .to_string();
    plan["instanceId"] = json!(w.instance_id);
    plan["volume"]["volume_id"] = json!(foreign_volume);
    let e = invoke(&ports, settings, &clock, "ModifyVolume", json!({"op": "modify", "plan": plan}))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Forbidden: volume {foreign_volume}: is not attached to instance {}: opsflow grows only the instance's own volumes",
            w.instance_id
        )
    );
    assert_ne!(own_volume, foreign_volume);
    assert_eq!(w.mutations().await, 0, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_with_a_usable_response_url_are_answered_failed_naming_what_is_wrong() {
    let w = world(|_| {}).await;
    let physical = json!({"PhysicalResourceId": format!("opsflow-setup-{}", w.instance_id)});
    for (id, kind, p, extra, field) in [
        ("req-props-string", "Create", json!("x"), Value::Null, "ResourceProperties"),
        ("req-props-list", "Create", json!([1, 2]), Value::Null, "ResourceProperties"),
        (
            "req-update-no-old",
            "Update",
            props(&w.instance_id),
            physical.clone(),
            "OldResourceProperties",
        ),
        (
            "req-update-no-physical",
            "Update",
            props(&w.instance_id),
            json!({"OldResourceProperties": {}}),
            "PhysicalResourceId",
        ),
        (
            "req-upsert",
            "Create",
            props(&w.instance_id),
            json!({"RequestType": "Upsert"}),
            "RequestType",
        ),
    ] {
        let (sub, answer) = w.send(kind, id, p, extra).await;
        assert!(matches!(sub.admission, Admission::Answered(_)) && sub.execution.is_none(), "{id}");
        assert_eq!(answer["Status"], "FAILED", "{id}: {answer}");
        assert_eq!(answer["RequestId"], id);
        let r = reason(&answer);
        assert!(r.starts_with(&format!("Step Validate failed: InvalidInput: {field}")), "{id}: {r}");
    }
    assert_eq!(w.mutations().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_when_it_outlasts_the_retries_answered_failed() {
    let w = world(|_| {}).await;
    let throttle = |count: u32| {
        json!({"operation": "ec2:DescribeInstances", "count": count, "code": "RequestLimitExceeded",
               "message": "Request limit exceeded.", "http_status": 503})
    };
    // Two throttled calls: retried, then the execution starts.
    w.cloud.control("faults", throttle(2)).await.unwrap();
    let (sub, _) = w
        .send("Create", "req-throttled-briefly", json!({"InstanceId": w.instance_id}), Value::Null)
        .await;
    assert!(matches!(sub.admission, Admission::Started { .. }));
    // Throttled for longer than the handler retries: FAILED, saying so, nothing started.
    w.cloud.control("faults", throttle(1000)).await.unwrap();
    let (sub, answer) = w.send("Create", "req-throttled", props(&w.instance_id), Value::Null).await;
    assert!(sub.execution.is_none());
    let r = reason(&answer);
    assert!(r.starts_with("Step Validate failed: Throttled: DescribeInstances"), "{r}");
    assert!(r.contains("(still failing after 17 s of retries)"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_execution_error_is_answered_failed() {
    let w = world(|_| {}).await;
    w.pipeline.fail_next_start(CoreError::from_aws_error(
        "StartExecution",
        "AccessDeniedException",
        "User is not authorized to perform: states:StartExecution",
    ));
    let (sub, answer) = w.send("Create", "req-start-fails", props(&w.instance_id), Value::Null).await;
    assert!(sub.execution.is_none());
    assert_eq!(answer["Status"], "FAILED");
    assert!(
        reason(&answer).starts_with("Step Start failed: AccessDenied: StartExecution"),
        "{}",
        reason(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_size_cap_is_answered_failed_naming_the_size() {
    let w = world(|_| {}).await;
    let mut p = props(&w.instance_id);
    p["Bootstrap"]["Commands"] = json!(vec!["echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; 1200]);
    let (sub, answer) = w.send("Create", "req-huge", p, Value::Null).await;
    assert!(sub.execution.is_none());
    let r = reason(&answer);
    assert!(
        r.starts_with("Step Validate failed: InvalidInput: ResourceProperties: make the request "),
        "{r}"
    );
    assert!(r.contains("at most 65536"), "{r}");
    assert_eq!(w.mutations().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5000_character_instance_id_gets_a_small_answer_and_a_physical_id_not_built_from_it() {
    let w = world(|_| {}).await;
    let long = format!("i-{}", "0".repeat(4998));
    let (sub, answer) = w.send("Create", "req-long-id", json!({"InstanceId": long}), Value::Null).await;
    assert!(sub.execution.is_none());
    assert!(answer.to_string().len() <= 4096, "{} bytes", answer.to_string().len());
    assert_eq!(answer["PhysicalResourceId"], "opsflow-setup-invalid-req-long-id");
    assert!(
        reason(&answer).starts_with("Step Validate failed: InvalidInput: InstanceId"),
        "{}",
        reason(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_url_cloudformation_would_not_send_starts_nothing_and_is_never_called() {
    let w = world(|_| {}).await;
    for url in [
        "ftp://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x",
        "https://attacker.example.com/collect",
        "not a url",
    ] {
        let request = cfn_request("Create", "req-bad-url", url, props(&w.instance_id), Value::Null);
        let e = w.pipeline.submit(request, |_| {}).await.err().expect("the request handler fails");
        assert!(e.to_string().contains("InvalidInput: ResponseURL"), "{url}: {e}");
    }
    assert_eq!(w.mutations().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_instance_is_refused() {
    let w = world(|_| {}).await;
    w.pipeline
        .clients
        .ec2
        .terminate_instances()
        .instance_ids(&w.instance_id)
        .send()
        .await
        .unwrap();
    let (sub, answer) = w.send("Create", "req-terminated", props(&w.instance_id), Value::Null).await;
    assert!(sub.execution.is_none());
    let r = reason(&answer);
    assert!(
        r.starts_with(&format!(
            "Step Validate failed: Conflict: instance {}: is terminated",
            w.instance_id
        )),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_shared_by_another_account_is_refused() {
    let w = world(|_| {}).await;
    let p = json!({"InstanceId": w.instance_id,
        "Bootstrap": {"DocumentName": "arn:aws:ssm:us-east-1:999999999999:document/AWS-RunShellScript",
                      "Parameters": {"commands": ["id"]}}});
    let (sub, answer) = w.send("Create", "req-foreign-doc", p, Value::Null).await;
    assert!(sub.execution.is_none());
    let r = reason(&answer);
    assert!(
        r.starts_with("Step Validate failed: InvalidInput: Bootstrap.DocumentName: names a document of account 999999999999"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_longer_than_an_execution_can_honour_is_refused() {
    let w = world(|_| {}).await;
    let mut p = props(&w.instance_id);
    p["Bootstrap"]["TimeoutSeconds"] = json!("3600");
    let (_, answer) = w.send("Create", "req-boot-3600", p.clone(), Value::Null).await;
    assert!(
        reason(&answer)
            .starts_with("Step Validate failed: InvalidInput: Bootstrap.TimeoutSeconds: must be a whole number of seconds from 30 to 3120"),
        "{}",
        reason(&answer)
    );
    p["Bootstrap"]["TimeoutSeconds"] = json!("500");
    p["ServiceTimeout"] = json!("600");
    let (_, answer) = w.send("Create", "req-boot-service-timeout", p, Value::Null).await;
    assert!(
        reason(&answer).contains("must leave 180 s of the ServiceTimeout (600 s)"),
        "{}",
        reason(&answer)
    );
    assert_eq!(w.mutations().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_timeout_bounds_every_wait_so_the_answer_comes_first() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    // The agent never comes online; readiness alone would wait 900 s.
    w.cloud
        .control("config", json!({"ping_status": {w.instance_id.clone(): "ConnectionLost"}}))
        .await
        .unwrap();
    let mut p = props(&w.instance_id);
    p["ServiceTimeout"] = json!(300);
    p["Bootstrap"]["TimeoutSeconds"] = json!(60);
    let (sub, answer) = w.send("Create", "req-service-timeout", p, Value::Null).await;
    let exec = sub.execution.unwrap();
    let took_s = (exec.events.last().unwrap().timestamp_ms - exec.events[0].timestamp_ms) / 1000;
    assert!(took_s < 300, "answered after {took_s} s, past CloudFormation's ServiceTimeout");
    let r = reason(&answer);
    assert!(r.starts_with("Step WaitForReadiness failed: DeadlineExceeded"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_terminated_during_the_bootstrap_fails_at_once_and_the_command_is_cancelled() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    w.cloud
        .control(
            "commands",
            json!({"document": "AWS-RunShellScript", "match": "git", "duration_seconds": 1500}),
        )
        .await
        .unwrap();
    // The instance goes away two minutes in: during the bootstrap (the agent is online at 40 s).
    w.cloud
        .control(
            "schedule",
            json!({"instance_id": w.instance_id, "action": "terminate", "after_seconds": 120}),
        )
        .await
        .unwrap();
    let (sub, answer) = w.send("Create", "req-terminated-midway", props(&w.instance_id), Value::Null).await;
    let exec = sub.execution.unwrap();
    let took_s = (exec.events.last().unwrap().timestamp_ms - exec.events[0].timestamp_ms) / 1000;
    assert!(took_s < 200, "noticed after {took_s} s, not when the command times out");
    let r = reason(&answer);
    assert!(
        r.starts_with(&format!("Step Bootstrap failed: Conflict: instance {}: is ", w.instance_id)),
        "{r}"
    );
    assert!(r.contains("cannot finish") && r.contains("was cancelled"), "{r}");
    assert_eq!(w.calls("ssm:CancelCommand").await, 1);
}

// ---------------------------------------------------------------------------------------------
// opsflow's own state: what a resource changed and must undo, and which requests were answered.

/// Gives `instance` the profile `arn`, as someone did before the stack.
async fn associate(w: &World, instance: &str, arn: &str) {
    let spec = opsflow_aws::aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
        .arn(arn)
        .build();
    w.pipeline
        .clients
        .ec2
        .associate_iam_instance_profile()
        .instance_id(instance)
        .iam_instance_profile(spec)
        .send()
        .await
        .unwrap();
}

/// The ARN of `instance`'s associated profile.
async fn profile_of(w: &World, instance: &str) -> Option<String> {
    let out = w
        .pipeline
        .clients
        .ec2
        .describe_iam_instance_profile_associations()
        .send()
        .await
        .unwrap();
    out.iam_instance_profile_associations()
        .iter()
        .find(|a| a.instance_id() == Some(instance) && a.state().map(|s| s.as_str()) == Some("associated"))
        .and_then(|a| a.iam_instance_profile()?.arn().map(String::from))
}

fn revert_props(instance: &str) -> Value {
    json!({"InstanceId": instance, "InstanceProfile": "dev-ide-profile", "OnDelete": "Revert"})
}

fn physical(instance: &str) -> Value {
    json!({"PhysicalResourceId": format!("opsflow-setup-{instance}")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_restores_what_opsflow_recorded_not_what_a_tag_says() {
    let w = world(|_| {}).await;
    let old = fixtures::instance_profile(&w.pipeline.clients, "old-profile", "/opsflow/")
        .await
        .unwrap();
    let admin = fixtures::instance_profile(&w.pipeline.clients, "admin-profile", "/opsflow/")
        .await
        .unwrap();
    associate(&w, &w.instance_id, &old).await;
    let (_, answer) = w
        .send("Create", "req-tamper-create", revert_props(&w.instance_id), Value::Null)
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    // Someone who may tag the instance writes the tag the old design trusted.
    w.pipeline
        .clients
        .ec2
        .create_tags()
        .resources(&w.instance_id)
        .tags(
            opsflow_aws::aws_sdk_ec2::types::Tag::builder()
                .key("opsflow:previous-instance-profile")
                .value(&admin)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (_, answer) = w
        .send(
            "Delete",
            "req-tamper-delete",
            revert_props(&w.instance_id),
            physical(&w.instance_id),
        )
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(profile_of(&w, &w.instance_id).await.as_deref(), Some(old.as_str()));
    assert_eq!(w.calls("ec2:CreateTags").await, 1, "only the test's own tag: opsflow writes none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_still_restores_after_the_profile_left_the_allow_list() {
    let w = world(|_| {}).await;
    let old = fixtures::instance_profile(&w.pipeline.clients, "old-profile", "/legacy/")
        .await
        .unwrap();
    associate(&w, &w.instance_id, &old).await;
    let (_, answer) = w
        .send("Create", "req-allow-create", revert_props(&w.instance_id), Value::Null)
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    // The deployment's allow-list changes: dev-ide-profile is no longer on it.
    let mut narrowed = Settings::new(AllowList::parse("/other/").unwrap());
    narrowed.verify_stack = false;
    let narrowed = LocalPipeline::new(w.cloud.clone(), narrowed).await.unwrap();
    let id = "req-allow-delete";
    let request = cfn_request(
        "Delete",
        id,
        &w.responses.url_for(id).await.unwrap(),
        revert_props(&w.instance_id),
        physical(&w.instance_id),
    );
    let sub = narrowed.submit(request, |_| {}).await.unwrap();
    assert_eq!(sub.execution.unwrap().status, Status::Succeeded);
    let answers = w.responses.answers(id).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["Status"], "SUCCESS", "{}", answers[0]);
    assert_eq!(profile_of(&w, &w.instance_id).await.as_deref(), Some(old.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lifecycle_on_an_instance_restores_its_own_previous_profile() {
    let w = world(|_| {}).await;
    let first = fixtures::instance_profile(&w.pipeline.clients, "first-profile", "/opsflow/")
        .await
        .unwrap();
    let second = fixtures::instance_profile(&w.pipeline.clients, "second-profile", "/opsflow/")
        .await
        .unwrap();
    associate(&w, &w.instance_id, &first).await;
    w.send("Create", "req-life1-create", revert_props(&w.instance_id), Value::Null)
        .await;
    w.send("Delete", "req-life1-delete", revert_props(&w.instance_id), physical(&w.instance_id))
        .await;
    assert_eq!(profile_of(&w, &w.instance_id).await.as_deref(), Some(first.as_str()));
    // Someone moves the instance to another profile; a new stack lifecycle starts afresh.
    let assoc = w
        .pipeline
        .clients
        .ec2
        .describe_iam_instance_profile_associations()
        .send()
        .await
        .unwrap();
    let id = assoc
        .iam_instance_profile_associations()
        .iter()
        .find(|a| a.instance_id() == Some(w.instance_id.as_str()) && a.state().map(|s| s.as_str()) == Some("associated"))
        .and_then(|a| a.association_id())
        .unwrap()
        .to_string();
    let spec = opsflow_aws::aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
        .arn(&second)
        .build();
    w.pipeline
        .clients
        .ec2
        .replace_iam_instance_profile_association()
        .association_id(id)
        .iam_instance_profile(spec)
        .send()
        .await
        .unwrap();
    w.send("Create", "req-life2-create", revert_props(&w.instance_id), Value::Null)
        .await;
    let (_, answer) = w
        .send("Delete", "req-life2-delete", revert_props(&w.instance_id), physical(&w.instance_id))
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(
        profile_of(&w, &w.instance_id).await.as_deref(),
        Some(second.as_str()),
        "not the first lifecycle's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_puts_the_profile_back_and_says_what_it_left() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 1).await.unwrap();
    let old = fixtures::instance_profile(&w.pipeline.clients, "old-profile", "/opsflow/")
        .await
        .unwrap();
    associate(&w, &w.instance_id, &old).await;
    let (sub, answer) = w.send("Create", "req-undo-create", props(&w.instance_id), Value::Null).await;
    assert_eq!(sub.execution.unwrap().status, Status::Failed);
    let r = reason(&answer);
    assert!(r.starts_with("Step Bootstrap failed: CommandFailed"), "{r}");
    assert!(r.contains("undone: instance profile back to old-profile"), "{r}");
    assert!(r.contains("at 32 GiB if it grew (EBS volumes cannot shrink)"), "{r}");
    assert_eq!(profile_of(&w, &w.instance_id).await.as_deref(), Some(old.as_str()));
    // CloudFormation's rollback then deletes the resource: nothing is left to revert.
    let (_, answer) = w
        .send("Delete", "req-undo-delete", props(&w.instance_id), physical(&w.instance_id))
        .await;
    assert_eq!(answer["Status"], "SUCCESS");
    assert_eq!(profile_of(&w, &w.instance_id).await.as_deref(), Some(old.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_that_moved_to_another_instance_puts_its_profile_back() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    let (_, answer) = w
        .send(
            "Create",
            "req-move-create",
            json!({"InstanceId": w.instance_id, "InstanceProfile": "dev-ide-profile"}),
            Value::Null,
        )
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let b = fixtures::instance(&w.pipeline.clients, "dev-ide-8").await.unwrap();
    // The move to instance B fails in its bootstrap, after B got the profile.
    w.cloud
        .control(
            "commands",
            json!({"document": "AWS-RunShellScript", "match": "deploy", "exit_code": 2, "stdout": "deploy failed"}),
        )
        .await
        .unwrap();
    let new = json!({"InstanceId": b, "InstanceProfile": "dev-ide-profile", "Bootstrap": {"Commands": ["deploy"]}});
    let extra = json!({"PhysicalResourceId": format!("opsflow-setup-{}", w.instance_id),
                       "OldResourceProperties": {"InstanceId": w.instance_id, "InstanceProfile": "dev-ide-profile"}});
    let (_, answer) = w.send("Update", "req-move-update", new, extra).await;
    assert_eq!(answer["Status"], "FAILED");
    assert_eq!(
        answer["PhysicalResourceId"],
        format!("opsflow-setup-{}", w.instance_id),
        "not a replacement"
    );
    assert!(
        reason(&answer).contains("undone: instance profile removed, as before"),
        "{}",
        reason(&answer)
    );
    assert_eq!(profile_of(&w, &b).await, None, "B is as it was");
    assert!(
        profile_of(&w, &w.instance_id).await.unwrap().ends_with("/dev-ide-profile"),
        "A keeps the stack's profile"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_request_is_answered_once() {
    let w = world(|_| {}).await;
    let bad = json!({"InstanceId": w.instance_id, "VolumeSizeGiB": "lots"});
    // World::send asserts exactly one answer for the RequestId, after each delivery.
    let (first, _) = w.send("Create", "req-twice-invalid", bad.clone(), Value::Null).await;
    let (second, _) = w.send("Create", "req-twice-invalid", bad, Value::Null).await;
    assert!(matches!(first.admission, Admission::Answered(_)) && matches!(second.admission, Admission::Answered(_)));
    let minimal = json!({"InstanceId": w.instance_id});
    let (first, _) = w.send("Create", "req-twice-valid", minimal.clone(), Value::Null).await;
    let (second, _) = w.send("Create", "req-twice-valid", minimal, Value::Null).await;
    assert!(
        first.execution.is_some() && second.execution.is_none(),
        "one execution per RequestId"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_answered_failed_once() {
    let w = world(|_| {}).await;
    let c = &w.pipeline.clients;
    let (sink, store) = (c.response_sink(), c.setup_store(opsflow::local::provision::SETUP_TABLE));
    let now_s = w.cloud.now_ms().await.unwrap() / 1000;
    // The request function's dead letter: the CloudFormation request itself.
    let id = "req-dead-letter";
    let request = cfn_request(
        "Create",
        id,
        &w.responses.url_for(id).await.unwrap(),
        props(&w.instance_id),
        Value::Null,
    );
    let answered = dead_letter(&sink, &store, &w.pipeline.settings, &request, now_s).await.unwrap();
    assert_eq!(answered.map(|r| r.status), Some(CfnStatus::Failed));
    assert!(dead_letter(&sink, &store, &w.pipeline.settings, &request, now_s)
        .await
        .unwrap()
        .is_none());
    let answers = w.responses.answers(id).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert!(
        reason(&answers[0]).starts_with("Step Workflow failed: opsflow could not handle the request: the request handler failed"),
        "{}",
        answers[0]
    );
    // The safety net's dead letter: an execution status change carrying the request.
    let id = "req-dead-safety-net";
    let request = cfn_request(
        "Delete",
        id,
        &w.responses.url_for(id).await.unwrap(),
        props(&w.instance_id),
        physical(&w.instance_id),
    );
    let event = json!({"detail-type": "Step Functions Execution Status Change", "source": "aws.states",
        "detail": {"status": "TIMED_OUT", "input": request.to_string()}});
    dead_letter(&sink, &store, &w.pipeline.settings, &event, now_s).await.unwrap();
    let answers = w.responses.answers(id).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["Status"], "SUCCESS", "a Delete never blocks: {}", answers[0]);
    assert!(
        reason(&answers[0]).contains("the execution ended TIMED_OUT and the safety net failed to answer"),
        "{}",
        answers[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_while_the_create_still_runs_stops_it_and_undoes_it_first() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    // A long bootstrap, and every check of it takes real time: the Create is still running when
    // CloudFormation (having given up on it) sends the Delete.
    w.cloud
        .control(
            "commands",
            json!({"document": "AWS-RunShellScript", "match": "migrate", "duration_seconds": 3000}),
        )
        .await
        .unwrap();
    // Each check costs a real second, so the command's 3000 virtual seconds outlast a loaded
    // machine's slowest Delete by far.
    w.cloud
        .control("config", json!({"latency_ms": {"ssm:GetCommandInvocation": 1000}}))
        .await
        .unwrap();
    let p = json!({"InstanceId": w.instance_id, "InstanceProfile": "dev-ide-profile",
                   "Bootstrap": {"Commands": ["migrate"], "TimeoutSeconds": "3100"}});
    let create = cfn_request(
        "Create",
        "req-slow-create",
        &w.responses.url_for("req-slow-create").await.unwrap(),
        p.clone(),
        Value::Null,
    );
    let delete = cfn_request(
        "Delete",
        "req-early-delete",
        &w.responses.url_for("req-early-delete").await.unwrap(),
        p,
        physical(&w.instance_id),
    );
    let deleting = async {
        // Once the command is being watched, the send step has recorded it (the record follows
        // SendCommand's answer: a Delete between the two would find no command to cancel).
        while w.calls("ssm:GetCommandInvocation").await == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        w.pipeline.submit(delete, |_| {}).await.unwrap()
    };
    let (created, deleted) = tokio::join!(w.pipeline.submit(create, |_| {}), deleting);
    let created = created.unwrap();
    assert_eq!(created.execution.unwrap().status, Status::Aborted);
    assert!(deleted.execution.is_none(), "OnDelete: Retain has nothing to revert");
    let create_answers = w.responses.answers("req-slow-create").await.unwrap();
    assert_eq!(create_answers.len(), 1, "{create_answers:?}");
    assert_eq!(create_answers[0]["Status"], "FAILED");
    assert!(
        reason(&create_answers[0]).starts_with("Step Workflow failed: ExecutionAborted"),
        "{}",
        create_answers[0]
    );
    let delete_answers = w.responses.answers("req-early-delete").await.unwrap();
    assert_eq!(delete_answers.len(), 1);
    assert_eq!(delete_answers[0]["Status"], "SUCCESS");
    let r = reason(&delete_answers[0]);
    assert!(
        r.starts_with("stopped the execution of Create request req-slow-create (undone: command "),
        "{r}"
    );
    assert!(r.contains("instance profile removed, as before"), "{r}");
    // What the Create did is undone: the profile it attached is gone, its command cancelled.
    assert_eq!(profile_of(&w, &w.instance_id).await, None);
    assert!(w.calls("ssm:CancelCommand").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_after_a_long_one_starts_where_the_local_cloud_clock_is() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    // A 40-minute bootstrap in virtual time drives the local cloud's clock 40 minutes ahead.
    w.cloud
        .control(
            "commands",
            json!({"document": "AWS-RunShellScript", "match": "yum", "duration_seconds": 2400, "count": 1}),
        )
        .await
        .unwrap();
    let mut p = props(&w.instance_id);
    p["Bootstrap"]["TimeoutSeconds"] = json!(3000);
    let (first, answer) = w.send("Create", "req-long-run", p, Value::Null).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let first_end = first.execution.unwrap().events.last().unwrap().timestamp_ms;
    // The next execution starts at that clock, not at real time 40 minutes behind it, so the
    // volume it grows is not seen as modified long ago (nor its wait as past its deadline).
    let other = fixtures::instance(&w.pipeline.clients, "dev-ide-8").await.unwrap();
    let (second, answer) = w.send("Create", "req-next-run", props(&other), Value::Null).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let second_start = second.execution.unwrap().events[0].timestamp_ms;
    assert!(second_start >= first_end, "{second_start} < {first_end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_modification_that_fails_is_answered_failed_naming_the_volume() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    w.cloud.control("volume_failures", json!({"fail_after_seconds": 30})).await.unwrap();
    let (sub, answer) = w.send("Create", "req-volume-fails", props(&w.instance_id), Value::Null).await;
    assert_eq!(sub.execution.unwrap().status, Status::Failed);
    let r = reason(&answer);
    assert!(r.starts_with("Step ModifyVolume failed: Conflict: volume vol-"), "{r}");
    assert!(r.contains("the modification to 32 GiB failed"), "{r}");
    assert!(r.contains("undone: instance profile removed, as before"), "{r}");
    assert_eq!(w.calls("ssm:SendCommand").await, 0, "no command after a failed volume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_bootstrap_is_answered_failed_with_ssms_reason() {
    let w = world(|_| {}).await;
    fixtures::realistic_cloud(&w.cloud, 0).await.unwrap();
    w.cloud
        .control(
            "commands",
            json!({"document": "AWS-RunShellScript", "match": "git clone", "undeliverable": true, "pending_seconds": 5}),
        )
        .await
        .unwrap();
    let (sub, answer) = w.send("Create", "req-undeliverable", props(&w.instance_id), Value::Null).await;
    assert_eq!(sub.execution.unwrap().status, Status::Failed);
    let r = reason(&answer);
    assert!(r.starts_with("Step Bootstrap failed: CommandFailed"), "{r}");
    assert!(r.contains("Failed: the command could not be delivered"), "{r}");
}
