//! Who may have opsflow do what: the rules that keep `Custom::OpsflowInstanceSetup` from being a
//! confused deputy. Anyone who may create a stack may invoke the ServiceToken, and opsflow's
//! roles may change instances that person could never touch; so a request acts only on what the
//! requesting stack owns, and every input that reaches AWS or the network is checked first.
//!
//! - **Ownership** ([`check_owner`]): an instance belongs to the stack whose id its
//!   `aws:cloudformation:stack-id` tag holds (CloudFormation tags the instances a stack creates,
//!   and nobody can write `aws:` tags), or that its opt-in tag `opsflow:setup-stack` names (by
//!   stack id, or by stack name) for instances created elsewhere. Checked by the request handler
//!   and again by every step that changes the instance, since a step can be invoked directly.
//! - **Instance state** ([`check_instance_state`]): a terminated or shutting-down instance can
//!   never be set up.
//! - **ResponseURL** ([`check_response_url`]): https to an S3 host of the stack's partition, as
//!   CloudFormation presigns it; `http://127.0.0.1` only for the local cloud, when the deployment
//!   says so. The sink follows no redirects.
//! - **Documents** ([`check_document`]): a bootstrap document given by ARN must be AWS-owned
//!   (an ARN with no account) or this account's; another account's shared document is refused.
//! - **A live request** ([`check_live_request`]): anyone who may invoke the ServiceToken may send
//!   it any event, naming any stack. A request is acted on only if CloudFormation really has it
//!   under way: the stack exists with an operation in progress and holds the resource, of the
//!   request's type, in the status the request type implies.
//! - **Volume size** ([`check_volume_size`]): no IAM condition bounds ModifyVolume's size, so
//!   the deployment's `MaxVolumeSizeGiB` does, here.

use url::{Host, Url};

use crate::error::CoreError;
use crate::facts::{InstanceFacts, InstanceState, StackResource};
use crate::provision::cfn::{CfnRequest, RequestType};

/// CloudFormation's own tag on the instances a stack creates: the stack's id (ARN).
pub const STACK_ID_TAG: &str = "aws:cloudformation:stack-id";
/// The opt-in tag: an instance created elsewhere may be set up by the stack it names (the
/// stack's id, or its name).
pub const OPT_IN_TAG: &str = "opsflow:setup-stack";

/// The parts of a CloudFormation stack id:
/// `arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRef<'a> {
    pub id: &'a str,
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub name: &'a str,
}

impl<'a> StackRef<'a> {
    /// Parses `StackId`; the error names the field and the rule.
    pub fn parse(stack_id: &'a str) -> Result<StackRef<'a>, CoreError> {
        let bad = || {
            CoreError::invalid(
                "StackId",
                format!(
                    "must be a CloudFormation stack ARN (arn:<partition>:cloudformation:<region>:<account>:stack/<name>/<id>), got {}",
                    shown(stack_id)
                ),
            )
        };
        let mut parts = stack_id.splitn(6, ':');
        let (arn, partition, service, region, account, resource) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        let mut res = resource.splitn(3, '/');
        let (kind, name, uuid) = (res.next().unwrap_or(""), res.next().unwrap_or(""), res.next().unwrap_or(""));
        let ok = arn == "arn"
            && partition.starts_with("aws")
            && service == "cloudformation"
            && !region.is_empty()
            && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && kind == "stack"
            && is_stack_name(name)
            && !uuid.is_empty()
            && uuid.len() <= 64
            && uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && stack_id.len() <= 256;
        if !ok {
            return Err(bad());
        }
        Ok(StackRef {
            id: stack_id,
            partition,
            region,
            account,
            name,
        })
    }
}

/// CloudFormation's stack name rule: a letter, then letters, digits and hyphens, at most 128.
fn is_stack_name(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.as_bytes()[0].is_ascii_alphabetic() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The instance belongs to the stack: its `aws:cloudformation:stack-id` is the stack's id, or its
/// `opsflow:setup-stack` names the stack (id or name). Otherwise `Forbidden`, naming the
/// instance, the stack and the rule (but not another stack's id).
pub fn check_owner(instance: &InstanceFacts, stack: &StackRef) -> Result<(), CoreError> {
    let created_by = instance.tags.get(STACK_ID_TAG).map(String::as_str);
    let opted_in = instance.tags.get(OPT_IN_TAG).map(|v| v.trim());
    if created_by == Some(stack.id) || opted_in.is_some_and(|v| v == stack.id || v == stack.name) {
        return Ok(());
    }
    let carries = match (created_by, opted_in) {
        (None, None) => "it carries neither tag".to_string(),
        (Some(_), None) => format!("its {STACK_ID_TAG} names another stack"),
        (None, Some(_)) => format!("its {OPT_IN_TAG} names another stack"),
        (Some(_), Some(_)) => "both tags name other stacks".to_string(),
    };
    Err(CoreError::forbidden(
        format!("instance {}", instance.instance_id),
        format!(
            "does not belong to stack {}: opsflow sets up only an instance tagged {STACK_ID_TAG} = the stack's id \
             (CloudFormation tags the instances a stack creates) or {OPT_IN_TAG} = the stack's id or name \
             (an opt-in for instances created elsewhere); {carries}",
            stack.id
        ),
    ))
}

/// The request is one CloudFormation has under way: its stack exists with an operation in
/// progress, and holds the resource with the request's type, `CREATE_IN_PROGRESS` for a Create
/// and `UPDATE_IN_PROGRESS` for an Update. A Delete comes with the resource `DELETE_IN_PROGRESS`,
/// or while the stack cleans up after an update or rolls back (the resource then shows the
/// status of its replacement or its failure). Otherwise `Forbidden`: opsflow acts on nothing.
pub fn check_live_request(request: &CfnRequest, found: Option<&StackResource>) -> Result<(), CoreError> {
    let subject = || format!("request {}", request.request_id);
    let Some(found) = found else {
        return Err(CoreError::forbidden(
            subject(),
            format!(
                "stack {} has no resource {}: CloudFormation did not send this request",
                request.stack_id, request.logical_resource_id
            ),
        ));
    };
    if found.resource_type != request.resource_type {
        return Err(CoreError::forbidden(
            subject(),
            format!(
                "resource {} of stack {} is a {}, not a {}: CloudFormation did not send this request",
                request.logical_resource_id, request.stack_id, found.resource_type, request.resource_type
            ),
        ));
    }
    let stack = found.stack_status.as_str();
    let resource = found.resource_status.as_str();
    let live = stack.ends_with("_IN_PROGRESS")
        && match request.request_type {
            RequestType::Create => resource == "CREATE_IN_PROGRESS",
            RequestType::Update => resource == "UPDATE_IN_PROGRESS",
            RequestType::Delete => {
                resource == "DELETE_IN_PROGRESS"
                    || stack.ends_with("CLEANUP_IN_PROGRESS")
                    || stack.ends_with("ROLLBACK_IN_PROGRESS")
                    || stack == "DELETE_IN_PROGRESS"
            }
        };
    if !live {
        return Err(CoreError::forbidden(
            subject(),
            format!(
                "stack {} is {stack} with {} {resource}: no {:?} of it is under way, so CloudFormation did not send this request",
                request.stack_id, request.logical_resource_id, request.request_type
            ),
        ));
    }
    Ok(())
}

/// A terminated or shutting-down instance can never be set up (and a stopped one is waited on
/// by the readiness step, so it is not refused here).
pub fn check_instance_state(instance: &InstanceFacts) -> Result<(), CoreError> {
    match instance.state {
        InstanceState::ShuttingDown | InstanceState::Terminated => Err(CoreError::conflict(
            format!("instance {}", instance.instance_id),
            format!("is {}: a terminated instance cannot be set up", instance.state),
        )),
        _ => Ok(()),
    }
}

/// The DNS suffix of a partition's service endpoints.
fn partition_dns_suffix(partition: &str) -> Option<&'static str> {
    Some(match partition {
        "aws" | "aws-us-gov" => "amazonaws.com",
        "aws-cn" => "amazonaws.com.cn",
        "aws-iso" => "c2s.ic.gov",
        "aws-iso-b" => "sc2s.sgov.gov",
        "aws-iso-e" => "cloud.adc-e.uk",
        "aws-iso-f" => "csp.hci.ic.gov",
        "aws-eusc" => "amazonaws.eu",
        _ => return None,
    })
}

/// The ResponseURL CloudFormation sends is a presigned S3 URL: `https`, on an S3 host of the
/// stack's partition (`<bucket>.s3.amazonaws.com`, `<bucket>.s3.<region>.amazonaws.com`,
/// `<bucket>.s3-<region>.amazonaws.com`, `s3.<region>.amazonaws.com.cn`, …), no user info, the
/// default port. With `allow_local` (the local cloud: `OPSFLOW_LOCAL_RESPONSE_URLS=1`), also
/// `http://127.0.0.1:<port>`. Checked before anything starts, and again before every PUT.
pub fn check_response_url(url: &str, partition: &str, allow_local: bool) -> Result<(), CoreError> {
    let refuse = |why: &str| {
        CoreError::invalid(
            "ResponseURL",
            format!(
                "{why}: opsflow answers only to the presigned https S3 URL CloudFormation sends, got {}",
                shown(redacted(url))
            ),
        )
    };
    let parsed = Url::parse(url).map_err(|e| refuse(&format!("is not a URL ({e})")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse("must not carry user information"));
    }
    let host = parsed.host().ok_or_else(|| refuse("has no host"))?;
    if allow_local && parsed.scheme() == "http" && matches!(host, Host::Ipv4(ip) if ip == std::net::Ipv4Addr::LOCALHOST) {
        return Ok(());
    }
    if parsed.scheme() != "https" {
        return Err(refuse("must use https"));
    }
    if parsed.port().is_some_and(|p| p != 443) {
        return Err(refuse("must use the default https port"));
    }
    let Host::Domain(domain) = host else {
        return Err(refuse("must name an S3 host, not an IP address"));
    };
    let suffix = partition_dns_suffix(partition).ok_or_else(|| refuse(&format!("the stack's partition {partition} is unknown")))?;
    let labels = domain
        .strip_suffix(suffix)
        .and_then(|rest| rest.strip_suffix('.'))
        .ok_or_else(|| refuse(&format!("must be an S3 host under {suffix} (the stack's partition {partition})")))?;
    let is_s3_label = |l: &&str| *l == "s3" || l.starts_with("s3-");
    if !labels.split('.').any(|l| is_s3_label(&l)) {
        return Err(refuse(&format!("must be an S3 host under {suffix}")));
    }
    Ok(())
}

/// The URL without its query and fragment (the presigned signature never goes into a message).
pub fn redacted(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or("")
}

/// `Bootstrap.DocumentName` given as an ARN: AWS-owned (`arn:<partition>:ssm:<region>::document/<name>`)
/// or this account's; a shared document of another account is refused. A plain name is SSM's
/// lookup (this account's document, else AWS's), so it needs no check.
pub fn check_document(name: &str, account: &str) -> Result<(), CoreError> {
    if !name.starts_with("arn:") {
        return Ok(());
    }
    let owner = name.split(':').nth(4).unwrap_or_default();
    let is_document = name.split(':').nth(2) == Some("ssm") && name.split(':').nth(5).is_some_and(|r| r.starts_with("document/"));
    if !is_document {
        return Err(CoreError::invalid(
            "Bootstrap.DocumentName",
            format!("must be a document name or an SSM document ARN, got {}", shown(name)),
        ));
    }
    if owner.is_empty() || owner == account {
        return Ok(());
    }
    Err(CoreError::invalid(
        "Bootstrap.DocumentName",
        format!(
            "names a document of account {owner}: only AWS-owned documents and this account's ({account}) may run, \
             a document shared by another account is refused"
        ),
    ))
}

/// `VolumeSizeGiB` within the deployment's `MaxVolumeSizeGiB`.
pub fn check_volume_size(size_gib: u32, max_gib: u32) -> Result<(), CoreError> {
    if size_gib > max_gib {
        return Err(CoreError::invalid(
            "VolumeSizeGiB",
            format!("must be at most {max_gib} (the deployment's MaxVolumeSizeGiB), got {size_gib}"),
        ));
    }
    Ok(())
}

/// A value for a message: quoted, at most 80 characters.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        format!("{:?}… ({} characters)", cut, s.chars().count())
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Platform;
    use std::collections::BTreeMap;

    const STACK: &str = "arn:aws:cloudformation:eu-west-1:123456789012:stack/dev-ide/5b6a1c20-1a2b-11f0-9f3e-0a1b2c3d4e5f";
    const OTHER: &str = "arn:aws:cloudformation:eu-west-1:123456789012:stack/billing/00000000-1a2b-11f0-9f3e-0a1b2c3d4e5f";

    fn instance(tags: &[(&str, &str)], state: InstanceState) -> InstanceFacts {
        InstanceFacts {
            instance_id: "i-0123456789abcdef0".into(),
            state,
            platform: Platform::Linux,
            root_device_name: None,
            block_devices: vec![],
            iam_association: None,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            launch_time_epoch_s: None,
        }
    }

    fn stack() -> StackRef<'static> {
        StackRef::parse(STACK).unwrap()
    }

    #[test]
    fn a_stack_id_is_parsed_into_its_parts() {
        let s = stack();
        assert_eq!(
            (s.partition, s.region, s.account, s.name),
            ("aws", "eu-west-1", "123456789012", "dev-ide")
        );
        for bad in [
            "",
            "dev-ide",
            "arn:aws:cloudformation:eu-west-1:123456789012:stack/dev-ide",
            "arn:aws:s3:eu-west-1:123456789012:stack/dev-ide/x",
            "arn:aws:cloudformation:eu-west-1:12345:stack/dev-ide/x",
            "arn:aws:cloudformation:eu-west-1:123456789012:stack/1dev/x",
        ] {
            let e = StackRef::parse(bad).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("InvalidInput: StackId: must be a CloudFormation stack ARN"),
                "{e}"
            );
        }
    }

    #[test]
    fn an_instance_the_stack_created_or_that_opted_in_belongs_to_it() {
        assert!(check_owner(&instance(&[(STACK_ID_TAG, STACK)], InstanceState::Running), &stack()).is_ok());
        assert!(check_owner(&instance(&[(OPT_IN_TAG, STACK)], InstanceState::Running), &stack()).is_ok());
        assert!(check_owner(&instance(&[(OPT_IN_TAG, "dev-ide")], InstanceState::Running), &stack()).is_ok());
        // Created by another stack, opted in to this one.
        assert!(check_owner(
            &instance(&[(STACK_ID_TAG, OTHER), (OPT_IN_TAG, "dev-ide")], InstanceState::Running),
            &stack()
        )
        .is_ok());
    }

    #[test]
    fn any_other_instance_is_forbidden_naming_the_instance_the_stack_and_the_rule() {
        for (tags, carries) in [
            (vec![], "it carries neither tag"),
            (vec![("Name", "dev-ide")], "it carries neither tag"),
            (vec![(STACK_ID_TAG, OTHER)], "its aws:cloudformation:stack-id names another stack"),
            (vec![(OPT_IN_TAG, "billing")], "its opsflow:setup-stack names another stack"),
            (vec![(OPT_IN_TAG, "dev-ide-2")], "its opsflow:setup-stack names another stack"),
            // A tag key in another case is another tag.
            (vec![("Opsflow:Setup-Stack", "dev-ide")], "it carries neither tag"),
        ] {
            let e = check_owner(&instance(&tags, InstanceState::Running), &stack()).unwrap_err();
            assert_eq!(e.name(), "Forbidden");
            let text = e.to_string();
            assert!(text.starts_with("Forbidden: instance i-0123456789abcdef0: does not belong to stack arn:aws:cloudformation:eu-west-1:123456789012:stack/dev-ide/"), "{text}");
            assert!(
                text.contains("aws:cloudformation:stack-id") && text.contains("opsflow:setup-stack"),
                "{text}"
            );
            assert!(text.ends_with(carries), "{text}");
            assert!(!text.contains("billing"), "another stack is not named: {text}");
        }
    }

    fn request(kind: &str) -> CfnRequest {
        CfnRequest::from_value(serde_json::json!({
            "RequestType": kind, "ResponseURL": "https://b.s3.amazonaws.com/x", "StackId": STACK, "RequestId": "r-1",
            "ResourceType": "Custom::OpsflowInstanceSetup", "LogicalResourceId": "Setup", "PhysicalResourceId": "opsflow-setup-i-1",
            "ResourceProperties": {}, "OldResourceProperties": {}
        }))
        .unwrap()
    }

    fn found(stack: &str, resource_type: &str, resource: &str) -> StackResource {
        StackResource {
            stack_status: stack.into(),
            resource_type: resource_type.into(),
            resource_status: resource.into(),
        }
    }

    #[test]
    fn a_request_is_live_only_while_its_stack_operation_is_under_way() {
        const T: &str = "Custom::OpsflowInstanceSetup";
        for (kind, stack, resource) in [
            ("Create", "CREATE_IN_PROGRESS", "CREATE_IN_PROGRESS"),
            ("Create", "UPDATE_IN_PROGRESS", "CREATE_IN_PROGRESS"),
            ("Update", "UPDATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"),
            ("Update", "UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_IN_PROGRESS"),
            ("Delete", "DELETE_IN_PROGRESS", "DELETE_IN_PROGRESS"),
            ("Delete", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE"),
            ("Delete", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE"),
            ("Delete", "ROLLBACK_IN_PROGRESS", "CREATE_FAILED"),
        ] {
            assert!(
                check_live_request(&request(kind), Some(&found(stack, T, resource))).is_ok(),
                "{kind} {stack} {resource}"
            );
        }
        for (kind, stack, resource_type, resource) in [
            ("Create", "CREATE_COMPLETE", T, "CREATE_COMPLETE"),
            ("Create", "UPDATE_IN_PROGRESS", T, "UPDATE_IN_PROGRESS"),
            ("Update", "UPDATE_COMPLETE", T, "UPDATE_COMPLETE"),
            ("Delete", "CREATE_COMPLETE", T, "CREATE_COMPLETE"),
            ("Delete", "UPDATE_IN_PROGRESS", T, "UPDATE_IN_PROGRESS"),
            ("Create", "CREATE_IN_PROGRESS", "AWS::EC2::Instance", "CREATE_IN_PROGRESS"),
        ] {
            let e = check_live_request(&request(kind), Some(&found(stack, resource_type, resource))).unwrap_err();
            assert_eq!(e.name(), "Forbidden", "{kind} {stack} {resource}");
            assert!(e.to_string().contains("CloudFormation did not send this request"), "{e}");
        }
        let e = check_live_request(&request("Create"), None).unwrap_err();
        assert!(e.to_string().contains("has no resource Setup"), "{e}");
    }

    #[test]
    fn terminated_and_shutting_down_instances_are_refused() {
        for state in [InstanceState::Terminated, InstanceState::ShuttingDown] {
            let e = check_instance_state(&instance(&[], state)).unwrap_err();
            assert_eq!(e.name(), "Conflict");
            assert!(e.to_string().contains("a terminated instance cannot be set up"), "{e}");
        }
        for state in [InstanceState::Running, InstanceState::Pending, InstanceState::Stopped] {
            assert!(check_instance_state(&instance(&[], state)).is_ok());
        }
    }

    #[test]
    fn response_urls_are_presigned_s3_urls_of_the_partition() {
        for ok in [
            "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/arn%3Aaws/x?X-Amz-Signature=1",
            "https://cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com/x",
            "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/x",
            "https://s3.eu-west-1.amazonaws.com/cloudformation-custom-resource-response-euwest1/x",
            "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com:443/x",
        ] {
            assert!(check_response_url(ok, "aws", false).is_ok(), "{ok}");
        }
        assert!(check_response_url("https://b.s3.cn-north-1.amazonaws.com.cn/x", "aws-cn", false).is_ok());
        for (bad, why) in [
            ("ftp://b.s3.amazonaws.com/x", "must use https"),
            ("http://b.s3.amazonaws.com/x", "must use https"),
            ("not a url", "is not a URL"),
            ("https://evil.example.com/x", "must be an S3 host under amazonaws.com"),
            (
                "https://b.s3.amazonaws.com.evil.example/x",
                "must be an S3 host under amazonaws.com",
            ),
            ("https://lambda.eu-west-1.amazonaws.com/x", "must be an S3 host under amazonaws.com"),
            ("https://user:pw@b.s3.amazonaws.com/x", "must not carry user information"),
            ("https://b.s3.amazonaws.com:8443/x", "must use the default https port"),
            ("https://52.1.2.3/x", "must name an S3 host"),
            ("http://127.0.0.1:4566/x", "must use https"),
            ("https://b.s3.amazonaws.com/x", "must be an S3 host under amazonaws.com.cn"),
        ] {
            let partition = if bad == "https://b.s3.amazonaws.com/x" { "aws-cn" } else { "aws" };
            let e = check_response_url(bad, partition, false).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("InvalidInput: ResponseURL: {why}")),
                "{bad}: {e}"
            );
        }
        // The local cloud's presigned URLs, only when the deployment allows them.
        assert!(check_response_url("http://127.0.0.1:4566/bucket/key?sig=1", "aws", true).is_ok());
        assert!(check_response_url("http://localhost:4566/bucket/key", "aws", true).is_err());
        assert!(check_response_url("http://10.0.0.1:4566/bucket/key", "aws", true).is_err());
    }

    #[test]
    fn a_refused_url_never_shows_its_signature() {
        let e = check_response_url("ftp://b.s3.amazonaws.com/x?X-Amz-Signature=secret", "aws", false).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn document_arns_must_be_aws_owned_or_this_accounts() {
        assert!(check_document("AWS-RunShellScript", "123456789012").is_ok());
        assert!(check_document("arn:aws:ssm:eu-west-1::document/AWS-RunShellScript", "123456789012").is_ok());
        assert!(check_document("arn:aws:ssm:eu-west-1:123456789012:document/Bootstrap", "123456789012").is_ok());
        let e = check_document("arn:aws:ssm:eu-west-1:999999999999:document/AWS-RunShellScript", "123456789012").unwrap_err();
        assert_eq!(
            e.to_string(),
            "InvalidInput: Bootstrap.DocumentName: names a document of account 999999999999: only AWS-owned documents and this \
             account's (123456789012) may run, a document shared by another account is refused"
        );
        assert!(check_document("arn:aws:s3:::bucket/document", "123456789012").is_err());
    }

    #[test]
    fn volume_sizes_are_bounded_by_the_deployment() {
        assert!(check_volume_size(2048, 2048).is_ok());
        assert_eq!(
            check_volume_size(65_536, 2048).unwrap_err().to_string(),
            "InvalidInput: VolumeSizeGiB: must be at most 2048 (the deployment's MaxVolumeSizeGiB), got 65536"
        );
    }
}
