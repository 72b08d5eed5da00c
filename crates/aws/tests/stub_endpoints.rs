//! What the adapters send and how they classify answers that only a hand-made server gives:
//! HTML error pages, other code-less errors, hanging or refused connections, and the exact
//! wire form of SendCommand and of the CloudFormation response PUT. Servers bind 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use common::{block_on, Reply, StubServer};
use opsflow_aws::aws_config::retry::RetryConfig;
use opsflow_aws::aws_config::timeout::TimeoutConfig;
use opsflow_aws::aws_config::{BehaviorVersion, Region};
use opsflow_aws::aws_sdk_ec2::config::Credentials;
use opsflow_aws::{Clients, RESPONSE_PUT_TIMEOUT};
use opsflow_core::command::CommandSpec;
use opsflow_core::ports::{Ec2, ResponseSink, Ssm};
use opsflow_core::CoreError;
use serde_json::{json, Value};

/// What moto's server (werkzeug) answers for an operation it does not implement.
const WERKZEUG_500: &str = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n\
<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n";

/// Clients for `endpoint` with one attempt per call and a short attempt timeout.
async fn single_attempt_clients(endpoint: &str, attempt_timeout: Duration) -> Clients {
    let config = opsflow_aws::aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::from_static("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(attempt_timeout).build())
        .load()
        .await;
    Clients::from_sdk_config(&config).unwrap()
}

#[test]
fn html_500_means_the_operation_is_not_implemented() {
    let server = StubServer::start(Reply::new(500, "text/html; charset=utf-8", WERKZEUG_500));
    block_on(async {
        let clients = Clients::for_endpoint(&server.url()).await.unwrap();
        let detail = "the endpoint answered HTTP 500 with an HTML page (500 Internal Server Error) instead of an AWS error: it does \
                      not implement this operation or failed inside it (moto answers both this way; its server.log has the traceback)";
        assert_eq!(
            clients
                .ec2_adapter()
                .describe_volume_modification("vol-0123456789abcdef0")
                .await
                .unwrap_err(),
            CoreError::unsupported("DescribeVolumesModifications", detail)
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 3, "the SDK retries a 500 (3 attempts)");
        assert!(requests.iter().all(|r| r.method == "POST" && r.target == "/"));
        assert!(
            requests[0].body_text().contains("Action=DescribeVolumesModifications"),
            "{}",
            requests[0].body_text()
        );
        assert!(
            requests[0].body_text().contains("VolumeId.1=vol-0123456789abcdef0"),
            "{}",
            requests[0].body_text()
        );

        // Same for the JSON protocol (SSM).
        assert_eq!(
            clients.ssm_adapter().ping_status("i-0123456789abcdef0").await.unwrap_err(),
            CoreError::unsupported("DescribeInstanceInformation", detail)
        );
        let ssm = server.requests();
        assert_eq!(ssm.len(), 3);
        assert_eq!(ssm[0].header("x-amz-target"), Some("AmazonSSM.DescribeInstanceInformation"));
        assert_eq!(
            serde_json::from_slice::<Value>(&ssm[0].body).unwrap(),
            json!({"Filters": [{"Key": "InstanceIds", "Values": ["i-0123456789abcdef0"]}]})
        );
    });
}

#[test]
fn other_answers_without_an_aws_code_are_transient() {
    let server = StubServer::start(Reply::new(502, "text/plain", "bad gateway\n"));
    block_on(async {
        let clients = single_attempt_clients(&server.url(), Duration::from_secs(10)).await;
        assert_eq!(
            clients.ec2_adapter().describe_instance("i-0123456789abcdef0").await.unwrap_err(),
            CoreError::transient("DescribeInstances", "HTTP 502 without an AWS error code (text/plain): bad gateway")
        );
        assert_eq!(server.requests().len(), 1);
    });
}

#[test]
fn an_aws_error_document_keeps_its_code() {
    let body = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this \
                operation.</Message></Error></Errors><RequestID>r-1</RequestID></Response>";
    let server = StubServer::start(Reply::new(403, "text/xml", body));
    block_on(async {
        let clients = Clients::for_endpoint(&server.url()).await.unwrap();
        assert_eq!(
            clients.ec2_adapter().reboot_instance("i-0123456789abcdef0").await.unwrap_err(),
            CoreError::access_denied(
                "RebootInstances",
                "UnauthorizedOperation: You are not authorized to perform this operation."
            )
        );
        assert_eq!(server.requests().len(), 1, "a 403 is not retried");
    });
}

#[test]
fn an_endpoint_that_never_answers_times_out_as_transient() {
    let server = StubServer::start(Reply::Hang);
    block_on(async {
        let clients = single_attempt_clients(&server.url(), Duration::from_millis(300)).await;
        assert_eq!(
            clients.ec2_adapter().describe_instance("i-0123456789abcdef0").await.unwrap_err(),
            CoreError::transient("DescribeInstances", "timed out before AWS answered")
        );
    });
}

#[test]
fn a_refused_connection_is_transient() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    block_on(async {
        let clients = single_attempt_clients(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).await;
        let err = clients.ec2_adapter().describe_instance("i-0123456789abcdef0").await.unwrap_err();
        match &err {
            CoreError::Transient { operation, detail } => {
                assert_eq!(operation, "DescribeInstances");
                assert!(
                    detail.starts_with("the request could not be sent (connection failed): "),
                    "{detail}"
                );
            }
            other => panic!("expected Transient, got {other:?}"),
        }
    });
}

#[test]
fn send_command_puts_every_spec_field_on_the_wire() {
    let server = StubServer::start(Reply::new(
        200,
        "application/x-amz-json-1.1",
        r#"{"Command":{"CommandId":"0b5c6a4e-0000-4000-8000-000000000001","Status":"Pending"}}"#,
    ));
    block_on(async {
        let ssm = Clients::for_endpoint(&server.url()).await.unwrap().ssm_adapter();
        let full = CommandSpec {
            document_name: "AWS-RunShellScript".into(),
            parameters: BTreeMap::from([
                ("commands".to_string(), vec!["echo 'a; b'".to_string(), "exit 0".to_string()]),
                ("executionTimeout".to_string(), vec!["600".to_string()]),
            ]),
            timeout_seconds: 600,
            output_s3_bucket: Some("opsflow-output".into()),
            output_s3_prefix: Some("bootstrap/".into()),
            cloudwatch_log_group: Some("/opsflow/bootstrap".into()),
            comment: Some("opsflow alert: cpu-high".into()),
        };
        assert_eq!(
            ssm.send_command(&full, "i-0123456789abcdef0").await.unwrap(),
            "0b5c6a4e-0000-4000-8000-000000000001"
        );
        let bare = CommandSpec {
            document_name: "Custom-Doc".into(),
            parameters: BTreeMap::new(),
            timeout_seconds: 30,
            output_s3_bucket: None,
            output_s3_prefix: None,
            cloudwatch_log_group: None,
            comment: None,
        };
        ssm.send_command(&bare, "i-0123456789abcdef0").await.unwrap();

        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].header("x-amz-target"), Some("AmazonSSM.SendCommand"));
        assert_eq!(
            serde_json::from_slice::<Value>(&requests[0].body).unwrap(),
            json!({
                "InstanceIds": ["i-0123456789abcdef0"],
                "DocumentName": "AWS-RunShellScript",
                "TimeoutSeconds": 600,
                "Parameters": {"commands": ["echo 'a; b'", "exit 0"], "executionTimeout": ["600"]},
                "OutputS3BucketName": "opsflow-output",
                "OutputS3KeyPrefix": "bootstrap/",
                "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "/opsflow/bootstrap", "CloudWatchOutputEnabled": true},
                "Comment": "opsflow alert: cpu-high"
            })
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&requests[1].body).unwrap(),
            json!({"InstanceIds": ["i-0123456789abcdef0"], "DocumentName": "Custom-Doc", "TimeoutSeconds": 30})
        );
    });
}

const RESPONSE_BODY: &str = r#"{"Status":"SUCCESS","Reason":"done","PhysicalResourceId":"opsflow-i-1","StackId":"arn:aws:cloudformation:us-east-1:123456789012:stack/s/1","RequestId":"r-1","LogicalResourceId":"Setup","Data":{}}"#;

#[test]
fn response_sink_puts_the_body_with_an_empty_content_type() {
    let server = StubServer::start(Reply::new(200, "text/plain", ""));
    block_on(async {
        let clients = Clients::for_endpoint("http://127.0.0.1:9").await.unwrap();
        let sink = clients.response_sink();
        assert_eq!(sink.timeout(), RESPONSE_PUT_TIMEOUT);
        assert_eq!(RESPONSE_PUT_TIMEOUT, Duration::from_secs(10));
        let url = format!(
            "{}/cfn-response/arn%3Aaws%3Acloudformation/r-1?X-Amz-Expires=7200&X-Amz-Signature=c2VjcmV0",
            server.url()
        );
        sink.put(&url, RESPONSE_BODY).await.unwrap();

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let put = &requests[0];
        assert_eq!(put.method, "PUT");
        assert_eq!(
            put.target,
            "/cfn-response/arn%3Aaws%3Acloudformation/r-1?X-Amz-Expires=7200&X-Amz-Signature=c2VjcmV0"
        );
        assert_eq!(put.header("content-type"), Some(""));
        assert_eq!(put.header("content-length"), Some(RESPONSE_BODY.len().to_string().as_str()));
        assert_eq!(put.body_text(), RESPONSE_BODY);
        let names: Vec<&str> = put.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names.iter().filter(|n| **n == "content-type").count(), 1, "{names:?}");
    });
}

#[test]
fn response_sink_failures_are_transient_and_hide_the_signature() {
    let denied = StubServer::start(Reply::new(
        403,
        "application/xml",
        "<?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match.</Message></Error>",
    ));
    let hanging = StubServer::start(Reply::Hang);
    block_on(async {
        let clients = Clients::for_endpoint("http://127.0.0.1:9").await.unwrap();
        let sink = clients.response_sink();
        let err = sink
            .put(&format!("{}/r?X-Amz-Signature=c2VjcmV0", denied.url()), RESPONSE_BODY)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            CoreError::transient(
                "PUT ResponseURL",
                format!(
                    "{}/r: HTTP 403 Forbidden: <?xml version=\"1.0\"?> <Error><Code>SignatureDoesNotMatch</Code><Message>The request \
                     signature we calculated does not match.</Message></Error>",
                    denied.url()
                )
            )
        );

        let quick = sink.clone().with_timeout(Duration::from_millis(300));
        let err = quick
            .put(&format!("{}/r?X-Amz-Signature=c2VjcmV0", hanging.url()), RESPONSE_BODY)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            CoreError::transient("PUT ResponseURL", format!("{}/r: no answer within 0.3 s", hanging.url()))
        );

        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = sink
            .put(&format!("http://127.0.0.1:{port}/r?X-Amz-Signature=c2VjcmV0"), "{}")
            .await
            .unwrap_err();
        assert_eq!(err.name(), "Transient");
        assert!(
            err.to_string()
                .starts_with(&format!("Transient: PUT ResponseURL: http://127.0.0.1:{port}/r: ")),
            "{err}"
        );
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");

        assert_eq!(
            sink.put("not a url", "{}").await.unwrap_err().name(),
            "InvalidInput",
            "a malformed ResponseURL is an input problem"
        );
    });
}
