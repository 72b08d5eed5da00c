//! [`Iam`] with `aws-sdk-iam`.

use opsflow_core::facts::ProfileRef;
use opsflow_core::ports::Iam;
use opsflow_core::CoreError;

use crate::error::{from_sdk_error, unexpected};

/// The IAM port on an `aws_sdk_iam::Client`.
#[derive(Clone, Debug)]
pub struct IamAdapter {
    client: aws_sdk_iam::Client,
}

impl IamAdapter {
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        IamAdapter { client }
    }

    pub fn client(&self) -> &aws_sdk_iam::Client {
        &self.client
    }
}

impl Iam for IamAdapter {
    async fn get_instance_profile(&self, name: &str) -> Result<ProfileRef, CoreError> {
        const OP: &str = "GetInstanceProfile";
        let out = self
            .client
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| from_sdk_error(OP, &e))?;
        let profile = out.instance_profile().ok_or_else(|| unexpected(OP, "no InstanceProfile"))?;
        Ok(ProfileRef {
            name: profile.instance_profile_name().to_string(),
            path: profile.path().to_string(),
            arn: profile.arn().to_string(),
            roles: profile.roles().iter().map(|r| r.role_name().to_string()).collect(),
        })
    }
}
