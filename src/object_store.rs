//! The engine's [`ObjectStore`] over S3 (the local cloud's, or AWS's): where a Distributed Map's
//! `ItemReader` reads (`GetObject`, `ListObjectsV2`) and its `ResultWriter` writes (`PutObject`)
//! when a workflow runs in the local pipeline. The engine stays free of the SDK; this adapter
//! lives with the CLI, which already builds the S3 client.

use opsflow_asl::store::{ObjectInfo, ObjectStore, StoreFuture};
use opsflow_aws::aws_sdk_s3;

/// S3 as the engine's object store; errors read `<Operation>: <S3 error code>: <message>`.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> S3Store {
        S3Store { client }
    }
}

fn describe<E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(op: &str, e: &aws_sdk_s3::error::SdkError<E>) -> String {
    match e.as_service_error() {
        Some(s) => format!("{op}: {}: {}", s.code().unwrap_or("Unknown"), s.message().unwrap_or_default()),
        None => format!("{op}: {e:?}"),
    }
}

impl ObjectStore for S3Store {
    fn get_object<'a>(&'a self, bucket: &'a str, key: &'a str) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| describe("GetObject", &e))?;
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| format!("GetObject s3://{bucket}/{key}: {e}"))?;
            Ok(body.into_bytes().to_vec())
        })
    }

    fn list_objects<'a>(&'a self, bucket: &'a str, prefix: &'a str) -> StoreFuture<'a, Vec<ObjectInfo>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| describe("ListObjectsV2", &e))?;
                for o in page.contents() {
                    out.push(ObjectInfo {
                        key: o.key().unwrap_or_default().to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or(0),
                        etag: o.e_tag().unwrap_or_default().to_string(),
                    });
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => return Ok(out),
                }
            }
        })
    }

    fn put_object<'a>(&'a self, bucket: &'a str, key: &'a str, body: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
                .await
                .map_err(|e| describe("PutObject", &e))?;
            Ok(())
        })
    }
}
