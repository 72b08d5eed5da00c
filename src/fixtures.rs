//! What the demo and the end-to-end tests create in the local cloud, through the AWS SDK: an
//! allow-listed instance profile and a realistic instance (8 GiB root volume, tags), and the
//! local cloud's behaviour (agent online delay, volume modification and command durations).

use anyhow::Context;
use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, ResourceType, Tag, TagSpecification, VolumeType};
use opsflow_aws::aws_sdk_ec2;
use opsflow_aws::aws_sdk_sqs::types::QueueAttributeName;
use opsflow_aws::Clients;
use serde_json::{json, Value};

use crate::local::LocalCloud;
use opsflow_core::provision::guard::STACK_ID_TAG;

/// An Amazon Linux AMI that moto knows.
pub const LINUX_AMI: &str = "ami-1e749f67";
/// The allow-list the demo deploys with: the profile `dev-ide-profile`, and any profile under `/opsflow/` given by ARN.
pub const ALLOW_LIST: &str = "dev-ide-profile,/opsflow/";

/// A role and an instance profile holding it, named `name` under `path`; returns the profile ARN.
pub async fn instance_profile(clients: &Clients, name: &str, path: &str) -> anyhow::Result<String> {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    clients
        .iam
        .create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document(trust)
        .send()
        .await
        .context("CreateRole")?;
    clients
        .iam
        .attach_role_policy()
        .role_name(name)
        .policy_arn("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
        .send()
        .await
        .context("AttachRolePolicy")?;
    let created = clients
        .iam
        .create_instance_profile()
        .instance_profile_name(name)
        .path(path)
        .send()
        .await
        .context("CreateInstanceProfile")?;
    clients
        .iam
        .add_role_to_instance_profile()
        .instance_profile_name(name)
        .role_name(name)
        .send()
        .await
        .context("AddRoleToInstanceProfile")?;
    Ok(created.instance_profile().map(|p| p.arn().to_string()).unwrap_or_default())
}

/// A t3.small instance with an 8 GiB gp3 root volume and Name/Team tags, created by the local
/// consumer stack ([`crate::local::provision::stack_id`]): it carries CloudFormation's
/// `aws:cloudformation:stack-id` tag naming that stack, as on AWS. Returns its id.
pub async fn instance(clients: &Clients, name: &str) -> anyhow::Result<String> {
    instance_tagged(clients, name, &[(STACK_ID_TAG, &crate::local::provision::stack_id())]).await
}

/// The same instance with `tags` instead of the stack's (none: an instance created by hand;
/// another stack's id; an opt-in tag). On AWS nobody but CloudFormation can write `aws:` tags;
/// moto lets a test do it, to stand in for another stack's instance.
pub async fn instance_tagged(clients: &Clients, name: &str, tags: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut spec = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key("Team").value("platform").build());
    for (key, value) in tags {
        spec = spec.tags(Tag::builder().key(*key).value(*value).build());
    }
    let tags = spec.build();
    // The root volume's device name is the AMI's (no /dev/xvda assumption).
    let image = clients
        .ec2
        .describe_images()
        .image_ids(LINUX_AMI)
        .send()
        .await
        .context("DescribeImages")?;
    let root_device = image
        .images()
        .first()
        .and_then(|i| i.root_device_name())
        .unwrap_or("/dev/xvda")
        .to_string();
    let root = BlockDeviceMapping::builder()
        .device_name(root_device)
        .ebs(
            EbsBlockDevice::builder()
                .volume_size(8)
                .volume_type(VolumeType::Gp3)
                .delete_on_termination(true)
                .build(),
        )
        .build();
    let out = clients
        .ec2
        .run_instances()
        .image_id(LINUX_AMI)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .block_device_mappings(root)
        .tag_specifications(tags)
        .send()
        .await
        .context("RunInstances")?;
    Ok(out
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .context("RunInstances returned no instance")?
        .to_string())
}

/// Realistic timings: the agent comes online 40 s after the profile is associated, the volume
/// is `modifying` for 45 s then `optimizing` for 5 min, the file system command takes 6 s, the
/// bootstrap 35 s (ending with `bootstrap_exit`).
pub async fn realistic_cloud(cloud: &LocalCloud, bootstrap_exit: i32) -> anyhow::Result<()> {
    cloud
        .control(
            "config",
            json!({"online_delay_seconds": 40, "volume_modifying_seconds": 45, "volume_optimizing_seconds": 300,
                   "invocation_does_not_exist_seconds": 1, "command_pending_seconds": 1}),
        )
        .await?;
    let bootstrap_out = if bootstrap_exit == 0 {
        "Installed: git-2.40.1\nCloning into '/opt/app'...\nbootstrap complete\n"
    } else {
        "Installed: git-2.40.1\nCloning into '/opt/app'...\nfatal: repository 'https://git.example.internal/app.git/' not found\n"
    };
    cloud
        .control(
            "commands",
            json!({"rules": [
                {"document": "AWS-RunShellScript", "match": "OPSFLOW_FS_SIZE_BYTES", "duration_seconds": 6,
                 "stdout": "CHANGED: partition=1 start=4096 old: size=16773087 end=16777183 new: size=67104735 end=67108831\nmeta-data=/dev/nvme0n1p1 isize=512\ndata blocks changed from 2096635 to 8388091\nOPSFLOW_FS_SIZE_BYTES=34346127360\n"},
                {"document": "AWS-RunShellScript", "match": "git", "duration_seconds": 35, "exit_code": bootstrap_exit, "stdout": bootstrap_out}
            ]}),
        )
        .await?;
    Ok(())
}

/// The demo's resource properties.
pub fn demo_properties(instance_id: &str, profile: &str) -> Value {
    json!({
        "ServiceToken": crate::local::function_arn("Request"),
        "InstanceId": instance_id,
        "InstanceProfile": profile,
        "VolumeSizeGiB": "32",
        "Bootstrap": {
            "Commands": ["yum install -y git", "git clone https://git.example.internal/app.git /opt/app"],
            "TimeoutSeconds": "1800"
        }
    })
}

/// An instance named `name` with the profile and role `role` associated, the role's
/// AdministratorAccess attached when `admin`: what an alert is about. Returns the instance id.
pub async fn managed_instance(clients: &Clients, name: &str, role: &str, admin: bool) -> anyhow::Result<String> {
    let profile = instance_profile(clients, role, "/").await?;
    if admin {
        clients
            .iam
            .attach_role_policy()
            .role_name(role)
            .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
            .send()
            .await
            .context("AttachRolePolicy")?;
    }
    let instance_id = instance(clients, name).await?;
    clients
        .ec2
        .associate_iam_instance_profile()
        .instance_id(&instance_id)
        .iam_instance_profile(aws_sdk_ec2::types::IamInstanceProfileSpecification::builder().arn(profile).build())
        .send()
        .await
        .context("AssociateIamInstanceProfile")?;
    Ok(instance_id)
}

/// An SQS queue named `name` (an existing one is reused): its URL and ARN.
pub async fn queue(clients: &Clients, name: &str) -> anyhow::Result<(String, String)> {
    let url = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .context("CreateQueue")?
        .queue_url()
        .context("no QueueUrl")?
        .to_string();
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .context("GetQueueAttributes")?;
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .context("no QueueArn")?
        .clone();
    Ok((url, arn))
}

/// An SNS topic named `name` (CreateTopic is idempotent): its ARN.
pub async fn topic(clients: &Clients, name: &str) -> anyhow::Result<String> {
    let out = clients.sns.create_topic().name(name).send().await.context("CreateTopic")?;
    Ok(out.topic_arn().context("no TopicArn")?.to_string())
}

/// Subscribes the queue `queue_arn` to `topic` (SNS envelope, not raw): the subscription ARN.
pub async fn subscribe(clients: &Clients, topic: &str, queue_arn: &str) -> anyhow::Result<String> {
    let out = clients
        .sns
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .return_subscription_arn(true)
        .send()
        .await
        .context("Subscribe")?;
    Ok(out.subscription_arn().context("no SubscriptionArn")?.to_string())
}

/// Whether the EventBridge pattern at `path` of `template` (e.g. `["Resources", "RoleDriftForwardRule",
/// "Properties", "EventPattern"]`) matches `event`, by moto's own matcher (the local cloud's
/// venv): the deployed rule, not a copy of it.
pub fn pattern_matches(template: &str, path: &[&str], event: &serde_json::Value) -> bool {
    use std::io::Write;
    const SCRIPT: &str = r#"
import json, sys, yaml
from moto.events.models import EventPattern
class Loader(yaml.SafeLoader): pass
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
node = yaml.load(open(sys.argv[1]), Loader=Loader)
for key in sys.argv[2:]:
    node = node[key]
event = json.loads(sys.stdin.read())
print(json.dumps(EventPattern.load(json.dumps(node)).matches_event(event)))
"#;
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = std::process::Command::new(format!("{root}/.venv/bin/python"))
        .args(["-c", SCRIPT, &format!("{root}/{template}")])
        .args(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the local cloud's venv python");
    let mut moto_event = event.clone();
    moto_event["ingestion-time"] = serde_json::json!(0);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(moto_event.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("true or false")
}
