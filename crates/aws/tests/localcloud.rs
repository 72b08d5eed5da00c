//! The adapters against the local cloud (moto 5.2.6 + the opsflow extension, started by
//! `infra/localcloud/localcloud.sh`). Fixtures are made through the SDK itself; time-driven
//! behaviour is driven with the local cloud's manual clock (`/_opsflow/clock`).

mod common;

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use common::{block_on, local_cloud, unique, CloudTest};
use opsflow_aws::{aws_error_parts, Clients};
use opsflow_core::command::CommandSpec;
use opsflow_core::command::{command_outcome, invocation_lookup_error, CommandOutcome, InvocationLookup, INVOCATION_GRACE_S};
use opsflow_core::facts::{
    Association, AssociationState, BlockDevice, CheckStatus, InstanceFacts, InstanceState, Modification, ModificationState, PingStatus,
    Platform, ProfileRef, StatusChecks, VolumeFacts,
};
use opsflow_core::ports::{Ec2, Iam, Ssm};
use opsflow_core::CoreError;
use serde_json::json;

/// Fixed AMIs moto ships: Amazon Linux and Windows.
const LINUX_AMI: &str = "ami-1e749f67";
const WINDOWS_AMI: &str = "ami-03cf127a";
const ACCOUNT: &str = "123456789012";
const UNKNOWN_INSTANCE: &str = "i-0123456789abcdef0";

struct Launched {
    instance_id: String,
    root_volume_id: String,
    launch_time_epoch_s: i64,
}

async fn launch(clients: &Clients, ami: &str, name: &str) -> Launched {
    let out = clients
        .ec2
        .run_instances()
        .image_id(ami)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("Name").value(name).build())
                .build(),
        )
        .send()
        .await
        .expect("RunInstances");
    let instance = &out.instances()[0];
    Launched {
        instance_id: instance.instance_id().unwrap().to_string(),
        root_volume_id: instance.block_device_mappings()[0].ebs().unwrap().volume_id().unwrap().to_string(),
        launch_time_epoch_s: instance.launch_time().unwrap().secs(),
    }
}

/// A role with what the SSM agent needs (AmazonSSMManagedInstanceCore: the local cloud, like
/// SSM, lists no instance whose role cannot register) and an instance profile holding it, both
/// named `name`, under `path`.
async fn profile(clients: &Clients, name: &str, path: &str) -> String {
    clients
        .iam
        .create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("CreateRole");
    clients
        .iam
        .attach_role_policy()
        .role_name(name)
        .policy_arn("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
        .send()
        .await
        .expect("AttachRolePolicy");
    let created = clients
        .iam
        .create_instance_profile()
        .instance_profile_name(name)
        .path(path)
        .send()
        .await
        .expect("CreateInstanceProfile");
    clients
        .iam
        .add_role_to_instance_profile()
        .instance_profile_name(name)
        .role_name(name)
        .send()
        .await
        .expect("AddRoleToInstanceProfile");
    created.instance_profile().unwrap().arn().to_string()
}

async fn clients(cloud: &CloudTest) -> Clients {
    Clients::for_endpoint(&cloud.endpoint).await.expect("clients")
}

fn shell_spec(lines: &[&str]) -> CommandSpec {
    CommandSpec {
        document_name: "AWS-RunShellScript".into(),
        parameters: BTreeMap::from([
            ("commands".to_string(), lines.iter().map(|l| l.to_string()).collect()),
            ("executionTimeout".to_string(), vec!["60".to_string()]),
        ]),
        timeout_seconds: 120,
        output_s3_bucket: None,
        output_s3_prefix: None,
        cloudwatch_log_group: None,
        comment: None,
    }
}

#[test]
fn describe_instance_reports_linux_and_windows_facts() {
    let cloud = local_cloud();
    block_on(async {
        let clients = clients(&cloud).await;
        let ec2 = clients.ec2_adapter();
        let linux = launch(&clients, LINUX_AMI, "lin").await;
        let windows = launch(&clients, WINDOWS_AMI, "win").await;

        assert_eq!(
            ec2.describe_instance(&linux.instance_id).await.unwrap(),
            InstanceFacts {
                instance_id: linux.instance_id.clone(),
                state: InstanceState::Running,
                platform: Platform::Linux,
                root_device_name: Some("/dev/sda1".into()),
                block_devices: vec![BlockDevice {
                    device_name: "/dev/sda1".into(),
                    volume_id: linux.root_volume_id.clone(),
                }],
                iam_association: None,
                tags: BTreeMap::from([("Name".to_string(), "lin".to_string())]),
                launch_time_epoch_s: Some(linux.launch_time_epoch_s),
            }
        );
        let win = ec2.describe_instance(&windows.instance_id).await.unwrap();
        assert_eq!(win.platform, Platform::Windows);
        assert_eq!(win.tags, BTreeMap::from([("Name".to_string(), "win".to_string())]));
        assert_eq!(
            win.block_devices,
            vec![BlockDevice {
                device_name: "/dev/sda1".into(),
                volume_id: windows.root_volume_id.clone(),
            }]
        );
        assert_eq!(cloud.control.calls("ec2:DescribeIamInstanceProfileAssociations").await, 2);
    });
}

#[test]
fn describe_instance_of_unknown_id_is_not_found() {
    let cloud = local_cloud();
    block_on(async {
        let ec2 = clients(&cloud).await.ec2_adapter();
        assert_eq!(
            ec2.describe_instance(UNKNOWN_INSTANCE).await.unwrap_err(),
            CoreError::NotFound {
                resource: "DescribeInstances".into(),
                detail: format!("InvalidInstanceID.NotFound: The instance ID '{UNKNOWN_INSTANCE}' does not exist"),
            }
        );
        assert_eq!(
            ec2.instance_status(UNKNOWN_INSTANCE).await.unwrap_err(),
            CoreError::NotFound {
                resource: "DescribeInstanceStatus".into(),
                detail: format!("InvalidInstanceID.NotFound: The instance ID '{UNKNOWN_INSTANCE}' does not exist"),
            }
        );
        assert_eq!(
            ec2.describe_volume("vol-0123456789abcdef0").await.unwrap_err().name(),
            "NotFound",
            "DescribeVolumes answers InvalidVolume.NotFound"
        );
    });
}

#[test]
fn profile_association_lifecycle() {
    let cloud = local_cloud();
    block_on(async {
        let clients = clients(&cloud).await;
        let (ec2, iam) = (clients.ec2_adapter(), clients.iam_adapter());
        let vm = launch(&clients, LINUX_AMI, "assoc").await;
        let (name_a, name_b) = (unique("pa"), unique("pb"));
        let arn_a = profile(&clients, &name_a, "/opsflow/").await;
        let arn_b = profile(&clients, &name_b, "/").await;
        assert_eq!(arn_a, format!("arn:aws:iam::{ACCOUNT}:instance-profile/opsflow/{name_a}"));

        assert_eq!(
            iam.get_instance_profile(&name_a).await.unwrap(),
            ProfileRef {
                name: name_a.clone(),
                path: "/opsflow/".into(),
                arn: arn_a.clone(),
                roles: vec![name_a.clone()],
            }
        );
        assert_eq!(
            iam.get_instance_profile("no-such-profile").await.unwrap_err(),
            CoreError::NotFound {
                resource: "GetInstanceProfile".into(),
                detail: "NoSuchEntity: Instance profile no-such-profile not found".into(),
            }
        );

        assert_eq!(ec2.describe_association(&vm.instance_id).await.unwrap(), None);
        let first = ec2.associate_profile(&vm.instance_id, &name_a).await.unwrap();
        assert!(first.association_id.starts_with("iip-assoc-"), "{first:?}");
        assert_eq!(
            first,
            Association {
                association_id: first.association_id.clone(),
                profile_arn: arn_a.clone(),
                state: AssociationState::Associating,
            }
        );
        let associated = Association {
            state: AssociationState::Associated,
            ..first.clone()
        };
        assert_eq!(ec2.describe_association(&vm.instance_id).await.unwrap(), Some(associated.clone()));
        assert_eq!(
            ec2.describe_instance(&vm.instance_id).await.unwrap().iam_association,
            Some(associated)
        );

        assert_eq!(
            ec2.associate_profile(&vm.instance_id, &arn_b).await.unwrap_err(),
            CoreError::Conflict {
                resource: "AssociateIamInstanceProfile".into(),
                detail: format!("IncorrectState: There is an existing association for instance {}", vm.instance_id),
            }
        );

        // By ARN. moto keeps the association ID on a replacement (AWS issues a new one).
        let replaced = ec2.replace_profile_association(&first.association_id, &arn_b).await.unwrap();
        assert_eq!(replaced.profile_arn, arn_b);
        assert_eq!(replaced.state, AssociationState::Associating);
        assert_eq!(
            ec2.describe_association(&vm.instance_id).await.unwrap(),
            Some(Association {
                association_id: replaced.association_id.clone(),
                profile_arn: arn_b.clone(),
                state: AssociationState::Associated,
            })
        );

        let gone = ec2.disassociate_profile(&replaced.association_id).await.unwrap();
        assert_eq!(
            gone,
            Association {
                association_id: replaced.association_id.clone(),
                profile_arn: arn_b.clone(),
                state: AssociationState::Disassociating,
            }
        );
        assert_eq!(ec2.describe_association(&vm.instance_id).await.unwrap(), None);
        assert_eq!(
            ec2.disassociate_profile(&replaced.association_id).await.unwrap_err(),
            CoreError::NotFound {
                resource: "DisassociateIamInstanceProfile".into(),
                detail: format!(
                    "InvalidAssociationID.NotFound: An invalid association-id of '{}' was given",
                    replaced.association_id
                ),
            }
        );
    });
}

#[test]
fn volume_modification_progresses_with_the_clock() {
    let cloud = local_cloud();
    block_on(async {
        let control = &cloud.control;
        control
            .config(json!({"volume_modifying_seconds": 60, "volume_optimizing_seconds": 30}))
            .await;
        let clients = clients(&cloud).await;
        let ec2 = clients.ec2_adapter();
        let vm = launch(&clients, LINUX_AMI, "vol").await;
        let vol = vm.root_volume_id.as_str();

        assert_eq!(
            ec2.describe_volume(vol).await.unwrap(),
            VolumeFacts {
                volume_id: vol.into(),
                size_gib: 8,
                volume_type: "gp2".into(),
                modification: None,
            }
        );
        assert_eq!(ec2.describe_volume_modification(vol).await.unwrap(), None);

        let t0 = control.freeze_clock().await;
        let started = ec2.modify_volume(vol, 20).await.unwrap();
        let modifying = Modification {
            state: ModificationState::Modifying,
            target_size_gib: 20,
            start_time_epoch_s: t0 / 1000,
            end_time_epoch_s: None,
        };
        assert_eq!(started, modifying);
        assert_eq!(ec2.describe_volume_modification(vol).await.unwrap(), Some(modifying.clone()));

        assert_eq!(
            ec2.modify_volume(vol, 30).await.unwrap_err(),
            CoreError::Conflict {
                resource: "ModifyVolume".into(),
                detail: format!(
                    "IncorrectModificationState: Cannot modify volume {vol}: a modification is already in the 'modifying' state."
                ),
            }
        );

        control.advance(59_999).await;
        assert_eq!(
            ec2.describe_volume_modification(vol).await.unwrap().unwrap().state,
            ModificationState::Modifying
        );
        control.advance(1).await;
        assert_eq!(
            ec2.describe_volume_modification(vol).await.unwrap(),
            Some(Modification {
                state: ModificationState::Optimizing,
                ..modifying.clone()
            })
        );
        control.advance(30_000).await;
        let completed = Modification {
            state: ModificationState::Completed,
            end_time_epoch_s: Some((t0 + 90_000) / 1000),
            ..modifying.clone()
        };
        assert_eq!(
            ec2.describe_volume(vol).await.unwrap(),
            VolumeFacts {
                volume_id: vol.into(),
                size_gib: 20,
                volume_type: "gp2".into(),
                modification: Some(completed),
            }
        );

        let limited = ec2.modify_volume(vol, 30).await.unwrap_err();
        assert_eq!(limited.name(), "LimitExceeded");
        assert_eq!(aws_error_parts(&limited).unwrap().0, "VolumeModificationRateExceeded");

        control.config(json!({"volume_modification_rate_limit": false})).await;
        assert_eq!(
            ec2.modify_volume(vol, 10).await.unwrap_err(),
            CoreError::InvalidInput {
                field: "ModifyVolume".into(),
                rule: "InvalidParameterValue: New size cannot be smaller than existing size (20 GiB).".into(),
            }
        );
    });
}

#[test]
fn ping_status_follows_association_online_delay_and_reboot() {
    let cloud = local_cloud();
    block_on(async {
        let control = &cloud.control;
        control.config(json!({"online_delay_seconds": 120})).await;
        let clients = clients(&cloud).await;
        let (ec2, ssm) = (clients.ec2_adapter(), clients.ssm_adapter());
        let vm = launch(&clients, LINUX_AMI, "ping").await;
        let id = vm.instance_id.as_str();
        let name = unique("ping");
        profile(&clients, &name, "/").await;

        control.freeze_clock().await;
        assert_eq!(ssm.ping_status(id).await.unwrap(), None, "no profile: not a managed node");
        ec2.associate_profile(id, &name).await.unwrap();
        assert_eq!(ssm.ping_status(id).await.unwrap(), None);
        control.advance(119_999).await;
        assert_eq!(ssm.ping_status(id).await.unwrap(), None);
        control.advance(1).await;
        assert_eq!(ssm.ping_status(id).await.unwrap(), Some(PingStatus::Online));
        assert_eq!(ssm.ping_status(UNKNOWN_INSTANCE).await.unwrap(), None);

        control.config(json!({"ping_status": {id: "ConnectionLost"}})).await;
        assert_eq!(ssm.ping_status(id).await.unwrap(), Some(PingStatus::ConnectionLost));
        control.config(json!({"ping_status": {id: null}})).await;
        assert_eq!(ssm.ping_status(id).await.unwrap(), Some(PingStatus::Online));

        // A reboot restarts the agent: offline for the online delay again.
        ec2.reboot_instance(id).await.unwrap();
        assert_eq!(ssm.ping_status(id).await.unwrap(), None);
        control.advance(120_000).await;
        assert_eq!(ssm.ping_status(id).await.unwrap(), Some(PingStatus::Online));
        assert_eq!(control.calls("ssm:DescribeInstanceInformation").await, 9);
    });
}

#[test]
fn instance_status_and_tags() {
    let cloud = local_cloud();
    block_on(async {
        let clients = clients(&cloud).await;
        let ec2 = clients.ec2_adapter();
        let vm = launch(&clients, LINUX_AMI, "status").await;
        let id = vm.instance_id.as_str();
        assert_eq!(
            ec2.instance_status(id).await.unwrap(),
            Some(StatusChecks {
                instance_status: CheckStatus::Ok,
                system_status: CheckStatus::Ok,
            })
        );

        let tags = ec2.describe_instance(id).await.unwrap().tags;
        assert_eq!(tags, BTreeMap::from([("Name".to_string(), "status".to_string())]));

        clients.ec2.stop_instances().instance_ids(id).send().await.expect("StopInstances");
        assert_eq!(ec2.describe_instance(id).await.unwrap().state, InstanceState::Stopped);
        assert_eq!(
            ec2.instance_status(id).await.unwrap(),
            None,
            "EC2 reports no status for a stopped instance"
        );
    });
}

#[test]
fn send_command_and_invocation_follow_the_command_rules() {
    let cloud = local_cloud();
    block_on(async {
        let control = &cloud.control;
        control
            .post(
                "commands",
                json!({"document": "AWS-RunShellScript", "match": "exit 1", "pending_seconds": 2, "duration_seconds": 10,
                       "exit_code": 1, "stdout": "partial\n", "stderr": "boom\n"}),
            )
            .await;
        let clients = clients(&cloud).await;
        let ssm = clients.ssm_adapter();
        let vm = launch(&clients, LINUX_AMI, "cmd").await;
        let id = vm.instance_id.as_str();

        let mut spec = shell_spec(&["echo 'one two'", "exit 1"]);
        spec.output_s3_bucket = Some("opsflow-output".into());
        spec.output_s3_prefix = Some("bootstrap".into());
        spec.cloudwatch_log_group = Some("/opsflow/bootstrap".into());
        control.freeze_clock().await;
        let command_id = ssm.send_command(&spec, id).await.unwrap();
        assert_eq!(command_id.len(), 36, "a UUID: {command_id}");

        // What SSM stored: the parameters as lists, untouched.
        let listed = clients
            .ssm
            .list_commands()
            .command_id(&command_id)
            .send()
            .await
            .expect("ListCommands");
        let command = &listed.commands()[0];
        let stored: BTreeMap<String, Vec<String>> = command.parameters().unwrap().clone().into_iter().collect();
        assert_eq!(stored, spec.parameters);
        assert_eq!(command.document_name(), Some("AWS-RunShellScript"));
        assert_eq!(command.instance_ids(), [id.to_string()]);
        assert_eq!(command.timeout_seconds(), Some(120));
        assert_eq!(command.output_s3_bucket_name(), Some("opsflow-output"));
        assert_eq!(command.output_s3_key_prefix(), Some("bootstrap"));

        let pending = ssm.get_invocation(&command_id, id).await.unwrap();
        assert_eq!(
            (pending.status.as_str(), pending.status_details.as_str(), pending.response_code),
            ("Pending", "Pending", -1)
        );
        assert_eq!(command_outcome(&pending, 1024), CommandOutcome::Running);
        control.advance(2_000).await;
        let running = ssm.get_invocation(&command_id, id).await.unwrap();
        assert_eq!((running.status.as_str(), running.response_code), ("InProgress", -1));
        control.advance(10_000).await;
        let done = ssm.get_invocation(&command_id, id).await.unwrap();
        assert_eq!(
            done,
            opsflow_core::facts::Invocation {
                status: "Failed".into(),
                status_details: "Failed".into(),
                response_code: 1,
                stdout: "partial\n".into(),
                stderr: "boom\n".into(),
                stdout_url: done.stdout_url.clone(),
                stderr_url: done.stderr_url.clone(),
            }
        );
        // With an output bucket, the URLs of the whole output in S3.
        for (url, stream) in [(&done.stdout_url, "stdout"), (&done.stderr_url, "stderr")] {
            assert!(
                url.starts_with("https://s3.us-east-1.amazonaws.com/")
                    && url.ends_with(&format!("/{command_id}/{id}/awsrunShellScript/0.awsrunShellScript/{stream}")),
                "{url}"
            );
        }
        assert_eq!(
            command_outcome(&done, 1024),
            CommandOutcome::Failed {
                status: "Failed".into(),
                exit_code: Some(1),
                tail: "partial\n--- stderr ---\nboom".into(),
                reason: "the command exited with code 1".into(),
            }
        );

        // No rule matches: success at once, empty output.
        let ok_id = ssm.send_command(&shell_spec(&["true"]), id).await.unwrap();
        let ok = ssm.get_invocation(&ok_id, id).await.unwrap();
        assert_eq!((ok.status.as_str(), ok.response_code, ok.stdout.as_str()), ("Success", 0, ""));

        assert_eq!(
            ssm.get_invocation("00000000-0000-0000-0000-000000000000", id).await.unwrap_err(),
            CoreError::NotFound {
                resource: "GetCommandInvocation".into(),
                detail: "InvalidCommandId: Invalid command id.".into(),
            }
        );
    });
}

#[test]
fn invocation_does_not_exist_window() {
    let cloud = local_cloud();
    block_on(async {
        let control = &cloud.control;
        control.config(json!({"invocation_does_not_exist_seconds": 5})).await;
        let clients = clients(&cloud).await;
        let ssm = clients.ssm_adapter();
        let vm = launch(&clients, LINUX_AMI, "window").await;
        let id = vm.instance_id.as_str();

        control.freeze_clock().await;
        let command_id = ssm.send_command(&shell_spec(&["true"]), id).await.unwrap();
        let err = ssm.get_invocation(&command_id, id).await.unwrap_err();
        assert_eq!(
            err,
            CoreError::NotFound {
                resource: "GetCommandInvocation".into(),
                detail: "InvocationDoesNotExist".into(),
            }
        );
        let (code, message) = aws_error_parts(&err).unwrap();
        assert_eq!((code, message), ("InvocationDoesNotExist", ""));
        assert_eq!(
            invocation_lookup_error(code, message, 0, INVOCATION_GRACE_S),
            InvocationLookup::Pending
        );
        assert_eq!(
            invocation_lookup_error(code, message, INVOCATION_GRACE_S + 1, INVOCATION_GRACE_S),
            InvocationLookup::Failed(CoreError::not_found(
                "command invocation",
                "SSM still reports InvocationDoesNotExist 31 s after SendCommand (grace period 30 s)"
            ))
        );

        control.advance(4_999).await;
        assert_eq!(ssm.get_invocation(&command_id, id).await.unwrap_err().name(), "NotFound");
        control.advance(1).await;
        assert_eq!(ssm.get_invocation(&command_id, id).await.unwrap().status, "Success");
    });
}

#[test]
fn send_command_to_an_instance_that_is_not_online_is_a_conflict() {
    let cloud = local_cloud();
    block_on(async {
        cloud.control.config(json!({"send_command_requires_online": true})).await;
        let clients = clients(&cloud).await;
        let vm = launch(&clients, LINUX_AMI, "offline").await;
        assert_eq!(
            clients
                .ssm_adapter()
                .send_command(&shell_spec(&["true"]), &vm.instance_id)
                .await
                .unwrap_err(),
            CoreError::Conflict {
                resource: "SendCommand".into(),
                detail: format!(
                    "InvalidInstanceId: Instances ['{}'] not in a valid state for account {ACCOUNT}",
                    vm.instance_id
                ),
            }
        );
    });
}

#[test]
fn request_limit_exceeded_is_throttled_after_the_sdk_retries() {
    let cloud = local_cloud();
    block_on(async {
        let control = &cloud.control;
        let clients = clients(&cloud).await;
        let ec2 = clients.ec2_adapter();
        let vm = launch(&clients, LINUX_AMI, "throttle").await;
        let fault = |count: u32| {
            json!({"operation": "ec2:DescribeInstances", "count": count, "code": "RequestLimitExceeded",
                   "message": "Request limit exceeded.", "http_status": 503})
        };

        // The SDK makes 3 attempts (standard retry mode): 3 faults exhaust them.
        control.delete("calls").await;
        control.post("faults", fault(3)).await;
        assert_eq!(
            ec2.describe_instance(&vm.instance_id).await.unwrap_err(),
            CoreError::Throttled {
                operation: "DescribeInstances".into(),
                detail: "RequestLimitExceeded: Request limit exceeded.".into(),
            }
        );
        assert_eq!(control.calls("ec2:DescribeInstances").await, 3);

        // One fault is absorbed by the SDK's retry.
        control.delete("calls").await;
        control.post("faults", fault(1)).await;
        assert_eq!(ec2.describe_instance(&vm.instance_id).await.unwrap().instance_id, vm.instance_id);
        assert_eq!(control.calls("ec2:DescribeInstances").await, 2);

        // The JSON (SSM) and query (IAM) protocols carry the code the same way.
        control
            .post(
                "faults",
                json!({"faults": [
                    {"operation": "ssm:DescribeInstanceInformation", "count": 3, "code": "ThrottlingException",
                     "message": "Rate exceeded", "http_status": 400},
                    {"operation": "iam:GetInstanceProfile", "count": 3, "code": "Throttling",
                     "message": "Rate exceeded", "http_status": 400}]}),
            )
            .await;
        assert_eq!(
            clients.ssm_adapter().ping_status(&vm.instance_id).await.unwrap_err(),
            CoreError::throttled("DescribeInstanceInformation", "ThrottlingException: Rate exceeded")
        );
        assert_eq!(
            clients.iam_adapter().get_instance_profile("any").await.unwrap_err(),
            CoreError::throttled("GetInstanceProfile", "Throttling: Rate exceeded")
        );
    });
}

#[test]
fn iam_eventual_consistency_on_associate_is_classified_by_from_aws_error() {
    let cloud = local_cloud();
    block_on(async {
        let control = &cloud.control;
        let clients = clients(&cloud).await;
        let ec2 = clients.ec2_adapter();
        let vm = launch(&clients, LINUX_AMI, "eventual").await;
        let name = unique("fresh");
        profile(&clients, &name, "/").await;
        let message = format!("Value ({name}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name");
        control
            .post(
                "faults",
                json!({"operation": "ec2:AssociateIamInstanceProfile", "count": 1, "code": "InvalidParameterValue",
                       "message": message, "http_status": 400}),
            )
            .await;
        control.delete("calls").await;
        let err = ec2.associate_profile(&vm.instance_id, &name).await.unwrap_err();
        assert_eq!(
            err,
            CoreError::from_aws_error("AssociateIamInstanceProfile", "InvalidParameterValue", &message)
        );
        assert_eq!(
            err,
            CoreError::InvalidInput {
                field: "AssociateIamInstanceProfile".into(),
                rule: format!("InvalidParameterValue: {message}"),
            }
        );
        assert_eq!(
            control.calls("ec2:AssociateIamInstanceProfile").await,
            1,
            "a 400 is not retried by the SDK"
        );
        // Once IAM has caught up the same call goes through.
        assert_eq!(
            ec2.associate_profile(&vm.instance_id, &name).await.unwrap().state,
            AssociationState::Associating
        );
    });
}
