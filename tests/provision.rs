//! End to end: CloudFormation requests through the request handler and the real
//! `statemachines/provision-instance.asl.json` on the local engine, the real handlers, AWS calls
//! to the local cloud. Every scenario asserts exactly one answer PUT to the response URL.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use opsflow::fixtures;
use opsflow::local::{cfn_request, LocalCloud, LocalPipeline, ResponseStore};
use opsflow_asl::Status;
use opsflow_core::provision::request::Admission;
use opsflow_core::provision::steps::Settings;
use opsflow_core::AllowList;
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
    async fn send(&self, kind: &str, id: &str, props: Value, extra: Value) -> (opsflow::local::Submission, Value) {
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
        let calls = self.cloud.calls().await.unwrap();
        [
            "ec2:AssociateIamInstanceProfile",
            "ec2:ReplaceIamInstanceProfileAssociation",
            "ec2:ModifyVolume",
            "ssm:SendCommand",
            "ec2:CreateTags",
        ]
        .iter()
        .map(|op| calls.get(*op).copied().unwrap_or(0))
        .sum()
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
    assert!(current_profile(&w).await.unwrap().ends_with("/opsflow/dev-ide-profile"));
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
    let old = opsflow_aws::aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
        .arn(&old_arn)
        .build();
    w.pipeline
        .clients
        .ec2
        .associate_iam_instance_profile()
        .instance_id(&w.instance_id)
        .iam_instance_profile(old)
        .send()
        .await
        .unwrap();
    let p = json!({"InstanceId": w.instance_id, "InstanceProfile": "dev-ide-profile", "OnDelete": "Revert"});
    let (_, answer) = w.send("Create", "req-revert-create", p.clone(), Value::Null).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["Data"]["PreviousInstanceProfileArn"], old_arn.as_str());
    assert!(current_profile(&w).await.unwrap().ends_with("/dev-ide-profile"));

    let physical = json!({"PhysicalResourceId": format!("opsflow-setup-{}", w.instance_id)});
    let (sub, answer) = w.send("Delete", "req-revert-delete", p, physical).await;
    assert!(matches!(sub.admission, Admission::Started { .. }));
    assert_eq!(sub.execution.unwrap().status, Status::Succeeded);
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(current_profile(&w).await.as_deref(), Some(old_arn.as_str()));
}

/// The ARN of the instance's associated profile.
async fn current_profile(w: &World) -> Option<String> {
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
        .find(|a| a.instance_id() == Some(w.instance_id.as_str()) && a.state().map(|s| s.as_str()) == Some("associated"))
        .and_then(|a| a.iam_instance_profile()?.arn().map(String::from))
}
