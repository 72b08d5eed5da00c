//! S3, for the local pipeline: the presigned ResponseURL CloudFormation hands a custom resource
//! (a PUT URL to a bucket it owns), and reading the answers back from it.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use opsflow_core::CoreError;

use crate::error::from_sdk_error;

/// A bucket that receives custom resource answers.
#[derive(Clone, Debug)]
pub struct ResponseBucket {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl ResponseBucket {
    /// Creates the bucket (an existing one of ours is fine) with versioning on, so that every
    /// PUT to a key is kept and can be counted.
    pub async fn create(client: aws_sdk_s3::Client, bucket: &str) -> Result<Self, CoreError> {
        match client.create_bucket().bucket(bucket).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e) => return Err(from_sdk_error("CreateBucket", &e)),
        }
        let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        client
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(enabled)
            .send()
            .await
            .map_err(|e| from_sdk_error("PutBucketVersioning", &e))?;
        Ok(ResponseBucket {
            client,
            bucket: bucket.to_string(),
        })
    }

    /// A presigned PUT URL for `key`, as CloudFormation generates it (valid for two hours).
    pub async fn presigned_put_url(&self, key: &str) -> Result<String, CoreError> {
        let config =
            PresigningConfig::expires_in(Duration::from_secs(7200)).map_err(|e| CoreError::invalid("presigning", e.to_string()))?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| from_sdk_error("PutObject", &e))?;
        Ok(req.uri().to_string())
    }

    /// Every version PUT at `key`, oldest first, as text (empty when nothing was PUT there).
    pub async fn read_all(&self, key: &str) -> Result<Vec<String>, CoreError> {
        let listed = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await
            .map_err(|e| from_sdk_error("ListObjectVersions", &e))?;
        // S3 lists a key's versions newest first.
        let mut versions: Vec<_> = listed.versions().iter().filter(|v| v.key() == Some(key)).collect();
        versions.reverse();
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .set_version_id(v.version_id().map(String::from))
                .send()
                .await
                .map_err(|e| from_sdk_error("GetObject", &e))?;
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|e| CoreError::transient("GetObject", e.to_string()))?
                .into_bytes();
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(out)
    }
}
