//! `Clients::from_env` reads the endpoint (`AWS_ENDPOINT_URL`), the region (default us-east-1)
//! and the credentials from the environment. One test in its own binary: it sets process-wide
//! environment variables.

mod common;

use common::{block_on, Reply, StubServer};
use opsflow_aws::Clients;
use opsflow_core::ports::Ec2;
use opsflow_core::CoreError;

const EMPTY_DESCRIBE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId><reservationSet/></DescribeInstancesResponse>"#;

#[test]
fn from_env_honours_aws_endpoint_url_and_defaults_the_region() {
    let server = StubServer::start(Reply::new(200, "text/xml", EMPTY_DESCRIBE));
    let nowhere = std::env::temp_dir().join("opsflow-aws-no-such-aws-config");
    for key in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_EC2",
    ] {
        std::env::remove_var(key);
    }
    std::env::set_var("AWS_CONFIG_FILE", &nowhere);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &nowhere);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDFROMENV");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
    std::env::set_var("AWS_ENDPOINT_URL", server.url());

    block_on(async {
        let clients = Clients::from_env().await.unwrap();
        assert_eq!(
            clients.ec2_adapter().describe_instance("i-0123456789abcdef0").await.unwrap_err(),
            CoreError::not_found("instance i-0123456789abcdef0", "DescribeInstances did not list it")
        );
    });
    std::env::set_var("AWS_REGION", "eu-west-1");
    block_on(async {
        let clients = Clients::from_env().await.unwrap();
        clients.ec2_adapter().describe_instance("i-0123456789abcdef0").await.unwrap_err();
    });

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let scope = |i: usize| {
        let auth = requests[i].header("authorization").unwrap_or("").to_string();
        auth.split("Credential=")
            .nth(1)
            .and_then(|c| c.split(',').next())
            .unwrap_or("")
            .to_string()
    };
    assert!(scope(0).starts_with("AKIDFROMENV/"), "{}", scope(0));
    assert!(scope(0).ends_with("/us-east-1/ec2/aws4_request"), "{}", scope(0));
    assert!(scope(1).ends_with("/eu-west-1/ec2/aws4_request"), "{}", scope(1));
    assert!(
        requests[0].body_text().contains("Action=DescribeInstances"),
        "{}",
        requests[0].body_text()
    );
    assert!(
        requests[0].body_text().contains("InstanceId.1=i-0123456789abcdef0"),
        "{}",
        requests[0].body_text()
    );
}
