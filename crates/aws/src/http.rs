//! [`ResponseSink`]: the CloudFormation custom resource answer, PUT to the presigned ResponseURL.

use std::time::Duration;

use opsflow_core::ports::ResponseSink;
use opsflow_core::CoreError;
use reqwest::header::{HeaderValue, CONTENT_TYPE};

/// How long the PUT may take.
pub const RESPONSE_PUT_TIMEOUT: Duration = Duration::from_secs(10);
/// The operation named in errors.
const OP: &str = "PUT ResponseURL";
/// Bytes of an error response body quoted in the error.
const BODY_QUOTE_BYTES: usize = 300;

/// PUTs the response document with reqwest.
///
/// The presigned S3 URL is signed for an empty `Content-Type`, so the request sends
/// `Content-Type:` with an empty value (as the CloudFormation documentation's examples do); any
/// other value fails the signature. The URL's query (the signature) never appears in errors or logs.
#[derive(Clone, Debug)]
pub struct HttpResponseSink {
    client: reqwest::Client,
    timeout: Duration,
}

/// The reqwest client of the response sink, with [`RESPONSE_PUT_TIMEOUT`]. It follows no
/// redirect: the answer goes to the presigned URL that was checked, and nowhere else.
pub fn response_http_client() -> Result<reqwest::Client, CoreError> {
    reqwest::Client::builder()
        .timeout(RESPONSE_PUT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| CoreError::transient("build the HTTP client", e.to_string()))
}

impl HttpResponseSink {
    /// With its own client: all a function needs that answers CloudFormation (no AWS SDK).
    pub fn build() -> Result<Self, CoreError> {
        Ok(Self::new(response_http_client()?))
    }

    /// With [`RESPONSE_PUT_TIMEOUT`].
    pub fn new(client: reqwest::Client) -> Self {
        HttpResponseSink {
            client,
            timeout: RESPONSE_PUT_TIMEOUT,
        }
    }

    pub fn with_timeout(self, timeout: Duration) -> Self {
        HttpResponseSink { timeout, ..self }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The URL without its query and fragment (which hold the presigned signature).
pub fn redact_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or("")
}

impl ResponseSink for HttpResponseSink {
    async fn put(&self, url: &str, body: &str) -> Result<(), CoreError> {
        let target = redact_url(url);
        let response = self
            .client
            .put(url)
            .header(CONTENT_TYPE, HeaderValue::from_static(""))
            .body(body.to_string())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                let e = e.without_url();
                if e.is_builder() {
                    CoreError::invalid("ResponseURL", format!("cannot PUT to {target}: {e}"))
                } else if e.is_timeout() {
                    CoreError::transient(OP, format!("{target}: no answer within {} s", self.timeout.as_secs_f64()))
                } else {
                    let source = std::error::Error::source(&e).map(|s| format!(" ({s})")).unwrap_or_default();
                    CoreError::transient(OP, format!("{target}: {e}{source}"))
                }
            })?;
        let status = response.status();
        if status.is_success() {
            tracing::info!(
                url = target,
                status = status.as_u16(),
                bytes = body.len(),
                "CloudFormation response sent"
            );
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(CoreError::transient(
            OP,
            format!("{target}: HTTP {status}: {}", crate::error::quote_bytes(&text, BODY_QUOTE_BYTES)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_query_and_fragment() {
        assert_eq!(
            redact_url("https://b.s3.amazonaws.com/arn%3A/x?X-Amz-Signature=abc&X-Amz-Credential=k"),
            "https://b.s3.amazonaws.com/arn%3A/x"
        );
        assert_eq!(redact_url("http://h/p#frag"), "http://h/p");
        assert_eq!(redact_url("http://h/p"), "http://h/p");
    }
}
