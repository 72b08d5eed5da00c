//! End to end with real CloudFormation stacks (the local cloud's): a stack creates an instance
//! and a `Custom::OpsflowInstanceSetup` on it, CloudFormation's request goes through the request
//! handler — which checks with CloudFormation that the request belongs to a stack operation
//! under way — and the real state machine, and the answer completes (or rolls back) the stack.
//! Anyone who may invoke the ServiceToken may send it any event: a request naming a stack that
//! has no such operation under way changes nothing.

use std::sync::Arc;
use std::time::Duration;

use opsflow::fixtures;
use opsflow::local::provision::{LocalPipeline, ResponseStore};
use opsflow::local::{function_arn, LocalCloud};
use opsflow_asl::Status;
use opsflow_core::provision::request::Admission;
use opsflow_core::provision::steps::Settings;
use opsflow_core::AllowList;
use serde_json::{json, Value};
use tokio::sync::{Mutex, MutexGuard};

/// One local cloud at a time (the machine has two cores).
static SERIAL: Mutex<()> = Mutex::const_new(());

struct World {
    _serial: MutexGuard<'static, ()>,
    cloud: Arc<LocalCloud>,
    pipeline: LocalPipeline,
}

async fn world() -> World {
    let serial = SERIAL.lock().await;
    let cloud = Arc::new(tokio::task::spawn_blocking(LocalCloud::start).await.unwrap().expect("local cloud"));
    let settings = Settings::new(AllowList::parse(fixtures::ALLOW_LIST).unwrap());
    assert!(settings.verify_stack, "a deployment checks every request with CloudFormation");
    let pipeline = LocalPipeline::new(cloud.clone(), settings).await.unwrap();
    fixtures::instance_profile(&pipeline.clients, "dev-ide-profile", "/opsflow/")
        .await
        .unwrap();
    World {
        _serial: serial,
        cloud,
        pipeline,
    }
}

/// An instance and opsflow's custom resource on it, as a consumer stack writes them.
fn template(bootstrap: &str) -> String {
    format!(
        r#"
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Instance:
    Type: AWS::EC2::Instance
    Properties:
      ImageId: {ami}
      InstanceType: t3.small
  Setup:
    Type: Custom::OpsflowInstanceSetup
    Properties:
      ServiceToken: {token}
      InstanceId: !Ref Instance
      InstanceProfile: dev-ide-profile
      Bootstrap:
        Commands: ["{bootstrap}"]
Outputs:
  CommandStatus:
    Value: !GetAtt Setup.CommandStatus
"#,
        ami = fixtures::LINUX_AMI,
        token = function_arn("Request"),
    )
}

impl World {
    async fn create_stack(&self, name: &str, bootstrap: &str) -> String {
        let out = self
            .pipeline
            .clients
            .cloudformation
            .create_stack()
            .stack_name(name)
            .template_body(template(bootstrap))
            .send()
            .await
            .unwrap();
        out.stack_id().unwrap().to_string()
    }

    /// The requests CloudFormation sent for the stack, oldest first (with their answers).
    async fn requests(&self, stack_id: &str) -> Vec<Value> {
        let all = self.cloud.get("custom_resources").await.unwrap();
        all["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["request"]["StackId"] == stack_id)
            .cloned()
            .collect()
    }

    async fn stack_status(&self, stack_id: &str) -> String {
        let out = self
            .pipeline
            .clients
            .cloudformation
            .describe_stacks()
            .stack_name(stack_id)
            .send()
            .await
            .unwrap();
        out.stacks()[0].stack_status().unwrap().as_str().to_string()
    }

    async fn instance_of(&self, stack_id: &str) -> String {
        let out = self
            .pipeline
            .clients
            .cloudformation
            .describe_stack_resource()
            .stack_name(stack_id)
            .logical_resource_id("Instance")
            .send()
            .await
            .unwrap();
        out.stack_resource_detail().unwrap().physical_resource_id().unwrap().to_string()
    }

    async fn mutations(&self) -> u64 {
        self.cloud.mutations().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_sets_up_its_own_instance_and_completes() {
    let w = world().await;
    let stack = w.create_stack("dev-ide", "echo ready").await;
    assert_eq!(w.stack_status(&stack).await, "CREATE_IN_PROGRESS");
    let sent = w.requests(&stack).await;
    assert_eq!(sent.len(), 1);
    let sub = w.pipeline.submit(sent[0]["request"].clone(), |_| {}).await.unwrap();
    assert_eq!(sub.execution.unwrap().status, Status::Succeeded);
    let answered = &w.requests(&stack).await[0];
    assert_eq!(answered["answers"].as_array().unwrap().len(), 1, "{answered}");
    assert_eq!(answered["response"]["Status"], "SUCCESS", "{answered}");
    assert_eq!(w.stack_status(&stack).await, "CREATE_COMPLETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_request_naming_another_stack_changes_nothing() {
    let w = world().await;
    // The victim's stack is set up and complete.
    let victim = w.create_stack("billing", "echo ready").await;
    let sent = w.requests(&victim).await;
    w.pipeline.submit(sent[0]["request"].clone(), |_| {}).await.unwrap();
    assert_eq!(w.stack_status(&victim).await, "CREATE_COMPLETE");
    let instance = w.instance_of(&victim).await;
    w.cloud.reset_calls().await.unwrap();

    // The attacker invokes the ServiceToken directly, naming the victim's stack, resource and
    // instance (whose tags name that stack), with a command that steals the role's credentials.
    let responses = ResponseStore::create(&w.pipeline.clients).await.unwrap();
    for (id, logical, kind) in [
        ("forged-create", "Setup", "Create"),
        ("forged-update", "Setup", "Update"),
        ("forged-other-resource", "Instance", "Create"),
        ("forged-no-resource", "Nothing", "Create"),
    ] {
        let forged = json!({
            "RequestType": kind, "ServiceToken": function_arn("Request"), "RequestId": id,
            "ResponseURL": responses.url_for(id).await.unwrap(), "StackId": victim,
            "LogicalResourceId": logical, "ResourceType": "Custom::OpsflowInstanceSetup",
            "PhysicalResourceId": format!("opsflow-setup-{instance}"),
            "ResourceProperties": {"InstanceId": instance, "InstanceProfile": "dev-ide-profile",
                "Bootstrap": {"Commands": ["curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/; exit 1"]}},
            "OldResourceProperties": {"InstanceId": instance}
        });
        let sub = w.pipeline.submit(forged, |_| {}).await.unwrap();
        assert!(matches!(sub.admission, Admission::Answered(_)) && sub.execution.is_none(), "{id}");
        let answers = responses.answers(id).await.unwrap();
        assert_eq!(answers.len(), 1, "{id}");
        let reason = answers[0]["Reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("Step Validate failed: Forbidden: request {id}: ")),
            "{id}: {reason}"
        );
        assert!(reason.ends_with("CloudFormation did not send this request"), "{id}: {reason}");
    }
    assert_eq!(w.mutations().await, 0, "nothing changed on the victim's instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_setup_rolls_the_stack_back_and_the_delete_is_answered() {
    let w = world().await;
    w.cloud
        .control(
            "commands",
            json!({"document": "AWS-RunShellScript", "match": "deploy", "exit_code": 3, "stdout": "deploy failed"}),
        )
        .await
        .unwrap();
    let stack = w.create_stack("dev-broken", "deploy").await;
    let sent = w.requests(&stack).await;
    let sub = w.pipeline.submit(sent[0]["request"].clone(), |_| {}).await.unwrap();
    assert_eq!(sub.execution.unwrap().status, Status::Failed);
    // CloudFormation rolls back and sends a Delete, which the handler accepts: the stack is
    // rolling back, so the Delete is one CloudFormation sent.
    let mut delete = None;
    for _ in 0..50 {
        if let Some(r) = w
            .requests(&stack)
            .await
            .into_iter()
            .find(|r| r["request"]["RequestType"] == "Delete")
        {
            delete = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delete = delete.expect("CloudFormation sends a Delete when it rolls back");
    assert_eq!(w.stack_status(&stack).await, "ROLLBACK_IN_PROGRESS");
    w.pipeline.submit(delete["request"].clone(), |_| {}).await.unwrap();
    assert_eq!(w.stack_status(&stack).await, "ROLLBACK_COMPLETE");
    let reasons: Vec<String> = w
        .requests(&stack)
        .await
        .iter()
        .map(|r| format!("{} {}", r["response"]["Status"], r["response"]["Reason"]))
        .collect();
    assert!(
        reasons[0].starts_with("\"FAILED\" \"Step Bootstrap failed: CommandFailed"),
        "{reasons:?}"
    );
    assert!(reasons[0].contains("undone: instance profile removed, as before"), "{reasons:?}");
    assert!(reasons[1].starts_with("\"SUCCESS\""), "{reasons:?}");
}
