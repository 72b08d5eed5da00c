//! The CloudFormation custom resource protocol: the request CloudFormation sends, the answer
//! opsflow puts to the presigned `ResponseURL`, the physical resource ID and what an Update
//! changes.
//!
//! Field names are exactly those of the "Custom resource request objects" and "Custom resource
//! response objects" pages of the CloudFormation User Guide; the answer body may not exceed
//! 4096 bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CoreError;
use crate::provision::props::is_instance_id;

/// The largest response body CloudFormation accepts.
pub const MAX_BODY_BYTES: usize = 4096;
/// Physical resource IDs are `opsflow-setup-<instance id>`.
pub const PHYSICAL_ID_PREFIX: &str = "opsflow-setup-";
/// A Create whose properties have no valid instance ID gets `opsflow-setup-invalid-<RequestId>`:
/// nothing was done, so the Delete that follows has nothing to undo.
pub const INVALID_PHYSICAL_ID_PREFIX: &str = "opsflow-setup-invalid-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The most of each identifier an answer repeats, measured as JSON text (escapes included, so
/// 1,024 control characters are 6,144 bytes): together they stay well within
/// [`MAX_BODY_BYTES`] whatever else the answer says. CloudFormation sends far shorter ones.
pub const MAX_STACK_ID_BYTES: usize = 1024;
pub const MAX_REQUEST_ID_BYTES: usize = 256;
pub const MAX_LOGICAL_ID_BYTES: usize = 256;
pub const MAX_PHYSICAL_ID_BYTES: usize = 1024;

/// The length of `s` as a JSON string, without its quotes.
fn json_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(usize::MAX, |json| json.len() - 2)
}

/// A request from CloudFormation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CfnRequest {
    #[serde(rename = "RequestType")]
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    #[serde(rename = "StackId")]
    pub stack_id: String,
    #[serde(rename = "RequestId")]
    pub request_id: String,
    #[serde(rename = "ResourceType")]
    pub resource_type: String,
    #[serde(rename = "LogicalResourceId")]
    pub logical_resource_id: String,
    /// Sent with Update and Delete.
    #[serde(rename = "PhysicalResourceId", default, skip_serializing_if = "Option::is_none")]
    pub physical_resource_id: Option<String>,
    #[serde(rename = "ResourceProperties", default)]
    pub resource_properties: Value,
    /// Sent with Update: the properties before the update.
    #[serde(rename = "OldResourceProperties", default, skip_serializing_if = "Option::is_none")]
    pub old_resource_properties: Option<Value>,
}

impl CfnRequest {
    /// Deserializes and checks the fields each request type must carry.
    pub fn from_value(value: Value) -> Result<CfnRequest, CoreError> {
        if let Some(kind) = value
            .get("RequestType")
            .filter(|t| !matches!(t.as_str(), Some("Create" | "Update" | "Delete")))
        {
            return Err(CoreError::invalid(
                "RequestType",
                format!("must be Create, Update or Delete, got {}", crate::provision::props::show(kind)),
            ));
        }
        let request: CfnRequest = serde_json::from_value(value)
            .map_err(|e| CoreError::invalid("request", format!("is not a CloudFormation custom resource request: {e}")))?;
        if !is_request_id(&request.request_id) {
            return Err(CoreError::invalid(
                "RequestId",
                "must be 1 to 80 letters, digits, - and _ (CloudFormation sends a UUID)",
            ));
        }
        for (field, id, max) in [
            ("StackId", Some(&request.stack_id), MAX_STACK_ID_BYTES),
            ("LogicalResourceId", Some(&request.logical_resource_id), MAX_LOGICAL_ID_BYTES),
            ("PhysicalResourceId", request.physical_resource_id.as_ref(), MAX_PHYSICAL_ID_BYTES),
        ] {
            if let Some(n) = id.map(|id| json_len(id)).filter(|n| *n > max) {
                return Err(CoreError::invalid(
                    field,
                    format!("is {n} bytes as JSON, over {max}: the answer repeats it and may not exceed {MAX_BODY_BYTES} bytes"),
                ));
            }
        }
        if !request.resource_properties.is_object() {
            return Err(CoreError::invalid("ResourceProperties", "is required and must be a map"));
        }
        if matches!(request.request_type, RequestType::Update | RequestType::Delete)
            && request.physical_resource_id.as_deref().is_none_or(str::is_empty)
        {
            return Err(CoreError::invalid(
                "PhysicalResourceId",
                format!("is required in {:?} requests", request.request_type),
            ));
        }
        if request.request_type == RequestType::Update && !request.old_resource_properties.as_ref().is_some_and(Value::is_object) {
            return Err(CoreError::invalid(
                "OldResourceProperties",
                "is required in an Update request and must be a map",
            ));
        }
        Ok(request)
    }

    pub fn from_json(text: &str) -> Result<CfnRequest, CoreError> {
        let value = serde_json::from_str(text).map_err(|e| CoreError::invalid("request", format!("is not JSON: {e}")))?;
        CfnRequest::from_value(value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CfnStatus {
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAILED")]
    Failed,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfnResponse {
    pub status: CfnStatus,
    pub reason: Option<String>,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub no_echo: bool,
    /// Values for `Fn::GetAtt`.
    pub data: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "Status")]
    status: CfnStatus,
    #[serde(rename = "Reason", skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(rename = "PhysicalResourceId")]
    physical_resource_id: &'a str,
    #[serde(rename = "StackId")]
    stack_id: &'a str,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
    #[serde(rename = "LogicalResourceId")]
    logical_resource_id: &'a str,
    #[serde(rename = "NoEcho")]
    no_echo: bool,
    #[serde(rename = "Data", skip_serializing_if = "BTreeMap::is_empty")]
    data: BTreeMap<&'a str, &'a str>,
}

impl CfnResponse {
    fn new(request: &CfnRequest, status: CfnStatus, physical_resource_id: String, reason: Option<String>) -> Self {
        CfnResponse {
            status,
            reason,
            physical_resource_id,
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
            no_echo: false,
            data: BTreeMap::new(),
        }
    }

    pub fn success(request: &CfnRequest, physical_resource_id: impl Into<String>) -> Self {
        Self::new(request, CfnStatus::Success, physical_resource_id.into(), None)
    }

    /// A failure; CloudFormation requires a reason, so an empty one is replaced.
    pub fn failed(request: &CfnRequest, physical_resource_id: impl Into<String>, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let reason = if reason.trim().is_empty() {
            "opsflow failed without giving a reason".to_string()
        } else {
            reason
        };
        Self::new(request, CfnStatus::Failed, physical_resource_id.into(), Some(reason))
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_data(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }

    /// The JSON body, at most [`MAX_BODY_BYTES`]: a too long `Reason` is cut first (its start,
    /// which names the step, is kept and the cut marked with `…`); if that is not enough, `Data`
    /// entries are dropped, largest value first, and the reason is cut again to what fits.
    pub fn to_body(&self) -> String {
        let mut data: BTreeMap<&str, &str> = self.data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        loop {
            if let Some(body) = self.fit_reason(&data) {
                return body;
            }
            let Some(largest) = data.iter().max_by_key(|(k, v)| (v.len(), std::cmp::Reverse(*k))).map(|(k, _)| *k) else {
                // Only the identifiers are left; CloudFormation bounds them well below the limit.
                return self.render(Some("…"), &data);
            };
            data.remove(largest);
        }
    }

    fn render(&self, reason: Option<&str>, data: &BTreeMap<&str, &str>) -> String {
        let body = Body {
            status: self.status,
            reason,
            physical_resource_id: &self.physical_resource_id,
            stack_id: &self.stack_id,
            request_id: &self.request_id,
            logical_resource_id: &self.logical_resource_id,
            no_echo: self.no_echo,
            data: data.clone(),
        };
        serde_json::to_string(&body).expect("a body of strings always serializes")
    }

    /// The body with the whole reason, or with its longest prefix that fits; `None` if even an
    /// empty prefix does not fit.
    fn fit_reason(&self, data: &BTreeMap<&str, &str>) -> Option<String> {
        let full = self.render(self.reason.as_deref(), data);
        if full.len() <= MAX_BODY_BYTES {
            return Some(full);
        }
        let reason = self.reason.as_deref()?;
        let cuts: Vec<usize> = reason.char_indices().map(|(i, _)| i).collect();
        let with_cut = |chars: usize| self.render(Some(&format!("{}…", &reason[..cuts[chars]])), data);
        // The largest number of kept characters whose body fits (the body grows with it).
        let (mut lo, mut hi) = (0usize, cuts.len());
        if with_cut(0).len() > MAX_BODY_BYTES {
            return None;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if with_cut(mid).len() <= MAX_BODY_BYTES {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(with_cut(lo))
    }
}

/// CloudFormation's RequestIds are UUIDs; opsflow names the execution after it, so it must also
/// be a Step Functions execution name: 1 to 80 of `[A-Za-z0-9_-]`.
pub fn is_request_id(s: &str) -> bool {
    (1..=80).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where and how to answer a request that may be malformed, read leniently: CloudFormation
/// waits (up to an hour) for an answer to every request, however broken the rest of it, so
/// whatever carries these fields is answered. Identifiers longer than CloudFormation ever sends
/// make the request unanswerable (the body could not stay within 4096 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
}

impl ReplyTo {
    pub fn from_value(value: &Value) -> Option<ReplyTo> {
        let field = |key: &str, max: usize| {
            value
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && json_len(s) <= max)
                .map(String::from)
        };
        Some(ReplyTo {
            response_url: field("ResponseURL", 8192)?,
            stack_id: field("StackId", MAX_STACK_ID_BYTES)?,
            request_id: field("RequestId", MAX_REQUEST_ID_BYTES)?,
            logical_resource_id: field("LogicalResourceId", MAX_LOGICAL_ID_BYTES)?,
            physical_resource_id: field("PhysicalResourceId", MAX_PHYSICAL_ID_BYTES),
        })
    }

    /// Where to answer a well-formed request.
    pub fn of(request: &CfnRequest) -> ReplyTo {
        ReplyTo {
            response_url: request.response_url.clone(),
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
            physical_resource_id: request.physical_resource_id.clone(),
        }
    }

    /// The stack's partition (`aws`, `aws-cn`, …), from the StackId ARN.
    pub fn partition(&self) -> Option<&str> {
        let mut parts = self.stack_id.split(':');
        (parts.next() == Some("arn")).then_some(())?;
        parts.next().filter(|p| p.starts_with("aws"))
    }

    /// A FAILED answer: with the PhysicalResourceId CloudFormation sent, if any, else a
    /// placeholder built only from a valid RequestId.
    pub fn failed(&self, reason: impl Into<String>) -> CfnResponse {
        let physical = self.physical_resource_id.clone().unwrap_or_else(|| {
            if is_request_id(&self.request_id) {
                format!("{INVALID_PHYSICAL_ID_PREFIX}{}", self.request_id)
            } else {
                INVALID_PHYSICAL_ID_PREFIX.trim_end_matches('-').to_string()
            }
        });
        CfnResponse {
            status: CfnStatus::Failed,
            reason: Some(reason.into()),
            physical_resource_id: physical,
            stack_id: self.stack_id.clone(),
            request_id: self.request_id.clone(),
            logical_resource_id: self.logical_resource_id.clone(),
            no_echo: false,
            data: BTreeMap::new(),
        }
    }
}

/// The physical resource ID to answer with (a SUCCESS, or a FAILED Create).
///
/// Stable: `opsflow-setup-<instance id>` from Create on. An Update that changes `InstanceId`
/// answers with a new ID, so CloudFormation treats it as a replacement and then sends a Delete
/// for the old one; any other Update, and every Delete, keeps the ID it was sent. A Create
/// without a valid instance ID answers `opsflow-setup-invalid-<RequestId>`.
pub fn physical_resource_id(request: &CfnRequest, instance_id: Option<&str>) -> String {
    // Never built from unvalidated input: an instance id that is not one is no instance id.
    let instance_id = instance_id.filter(|id| is_instance_id(id));
    let fresh = |id: &str| format!("{PHYSICAL_ID_PREFIX}{id}");
    let invalid = || format!("{INVALID_PHYSICAL_ID_PREFIX}{}", request.request_id);
    let given = request.physical_resource_id.as_deref().filter(|s| !s.is_empty());
    match request.request_type {
        RequestType::Create => instance_id.map(fresh).unwrap_or_else(invalid),
        RequestType::Delete => given.map(String::from).or_else(|| instance_id.map(fresh)).unwrap_or_else(invalid),
        RequestType::Update => {
            let old_instance = request
                .old_resource_properties
                .as_ref()
                .and_then(|p| p.get("InstanceId"))
                .and_then(Value::as_str);
            match (instance_id, given) {
                (Some(new), Some(existing)) if old_instance == Some(new) => existing.to_string(),
                (Some(new), _) => fresh(new),
                (None, Some(existing)) => existing.to_string(),
                (None, None) => invalid(),
            }
        }
    }
}

/// The physical resource ID of a FAILED answer: an Update or Delete that failed keeps the ID
/// it was sent (a failed Update must not look like a replacement).
pub fn failed_physical_resource_id(request: &CfnRequest, instance_id: Option<&str>) -> String {
    match (
        request.request_type,
        request.physical_resource_id.as_deref().filter(|s| !s.is_empty()),
    ) {
        (RequestType::Update | RequestType::Delete, Some(given)) => given.to_string(),
        _ => physical_resource_id(request, instance_id),
    }
}

/// True for the ID of a Create that did nothing because its properties were invalid.
pub fn is_invalid_placeholder(physical_resource_id: &str) -> bool {
    physical_resource_id.starts_with(INVALID_PHYSICAL_ID_PREFIX)
}

/// Which parts of the setup an Update has to apply again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChangeSet {
    pub profile: bool,
    pub volume: bool,
    pub bootstrap: bool,
}

impl ChangeSet {
    pub const ALL: ChangeSet = ChangeSet {
        profile: true,
        volume: true,
        bootstrap: true,
    };

    pub fn any(&self) -> bool {
        self.profile || self.volume || self.bootstrap
    }
}

/// Compares `OldResourceProperties` with `ResourceProperties`.
///
/// Values compare as CloudFormation means them: `32` equals `"32"`, and `null` or `""` equals
/// absent. A new `InstanceId` changes everything; `RebootFallback` and `OnDelete` alone change
/// nothing to apply.
pub fn changed_fields(old_props: &Value, new_props: &Value) -> ChangeSet {
    let differs = |key: &str| normalized(old_props.get(key)) != normalized(new_props.get(key));
    let instance = differs("InstanceId");
    ChangeSet {
        profile: instance || differs("InstanceProfile"),
        volume: instance || differs("VolumeSizeGiB") || differs("Device"),
        bootstrap: instance || differs("Bootstrap"),
    }
}

fn normalized(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Bool(b) => Some(Value::String(b.to_string())),
        Value::Number(n) => Some(Value::String(n.to_string())),
        Value::String(s) => Some(Value::String(s.clone())),
        Value::Array(items) => Some(Value::Array(
            items.iter().map(|i| normalized(Some(i)).unwrap_or(Value::Null)).collect(),
        )),
        Value::Object(map) => {
            let members: BTreeMap<String, Value> = map
                .iter()
                .filter_map(|(k, v)| normalized(Some(v)).map(|v| (k.clone(), v)))
                .collect();
            Some(Value::Object(members.into_iter().collect()))
        }
    }
}

/// The `Reason` of a FAILED answer: `Step <step> failed: <error>: <message>`.
pub fn failure_reason(step: &str, error_name: &str, message: &str) -> String {
    let message = message.trim();
    let body = if error_name.is_empty() || message.starts_with(&format!("{error_name}:")) {
        message.to_string()
    } else if message.is_empty() {
        error_name.to_string()
    } else {
        format!("{error_name}: {message}")
    };
    format!("Step {step} failed: {body}")
}

/// The message inside a Step Functions `Cause`: a Lambda error's cause is JSON with an
/// `errorMessage`; anything else is used as it is.
pub fn cause_message(cause: &str) -> String {
    match serde_json::from_str::<Value>(cause) {
        Ok(Value::Object(map)) => match map.get("errorMessage") {
            Some(Value::String(message)) => message.clone(),
            _ => cause.to_string(),
        },
        _ => cause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STACK: &str = "arn:aws:cloudformation:eu-west-1:123456789012:stack/dev/5b6a1c20-1a2b-11f0-9f3e-0a1b2c3d4e5f";

    // The request shapes of the CloudFormation User Guide ("Custom resource request objects").
    fn create() -> Value {
        json!({
            "RequestType": "Create",
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:opsflow",
            "ResponseURL": "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/x?sig=1",
            "StackId": STACK,
            "RequestId": "unique-id-for-create",
            "ResourceType": "Custom::OpsflowInstanceSetup",
            "LogicalResourceId": "DevBoxSetup",
            "ResourceProperties": {"ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:opsflow", "InstanceId": "i-0123456789abcdef0"}
        })
    }

    fn with(mut v: Value, key: &str, value: Value) -> Value {
        v[key] = value;
        v
    }

    // Found by the `cfn_request` fuzz target's property: identifiers of control characters, which
    // JSON escapes six bytes each, made a 7,675-byte answer.
    #[test]
    fn identifiers_too_long_as_json_are_refused_and_every_answer_fits_in_4096_bytes() {
        let control = |n: usize| "\u{1}".repeat(n);
        let request = with(create(), "StackId", json!(format!("{STACK}{}", control(900))));
        let request = with(request, "LogicalResourceId", json!(control(250)));
        let e = CfnRequest::from_value(request.clone()).unwrap_err();
        assert!(e.to_string().starts_with("InvalidInput: StackId: is "), "{e}");
        assert!(ReplyTo::from_value(&request).is_none());
        let e = CfnRequest::from_value(with(create(), "LogicalResourceId", json!(control(50)))).unwrap_err();
        assert!(
            e.to_string().starts_with("InvalidInput: LogicalResourceId: is 300 bytes as JSON"),
            "{e}"
        );
        // At the limits, the longest answer still fits.
        let longest = with(create(), "StackId", json!(control(MAX_STACK_ID_BYTES / 6)));
        let longest = with(longest, "LogicalResourceId", json!(control(MAX_LOGICAL_ID_BYTES / 6)));
        let longest = with(longest, "PhysicalResourceId", json!(control(MAX_PHYSICAL_ID_BYTES / 6)));
        let reply = ReplyTo::from_value(&longest).unwrap();
        assert!(reply.failed("x".repeat(10_000)).to_body().len() <= MAX_BODY_BYTES);
        let request = CfnRequest::from_value(longest).unwrap();
        let answer = CfnResponse::failed(&request, control(MAX_PHYSICAL_ID_BYTES / 6), "x".repeat(10_000));
        assert!(answer.with_data("Big", "y".repeat(10_000)).to_body().len() <= MAX_BODY_BYTES);
    }

    fn update(old_instance: &str, new_instance: &str) -> CfnRequest {
        let v = with(create(), "RequestType", json!("Update"));
        let v = with(v, "PhysicalResourceId", json!(format!("opsflow-setup-{old_instance}")));
        let v = with(v, "ResourceProperties", json!({"InstanceId": new_instance}));
        CfnRequest::from_value(with(v, "OldResourceProperties", json!({"InstanceId": old_instance}))).unwrap()
    }

    #[test]
    fn deserializes_a_create_request() {
        let r = CfnRequest::from_value(create()).unwrap();
        assert_eq!(r.request_type, RequestType::Create);
        assert_eq!(
            r.response_url,
            "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/x?sig=1"
        );
        assert_eq!(r.stack_id, STACK);
        assert_eq!(r.request_id, "unique-id-for-create");
        assert_eq!(r.resource_type, "Custom::OpsflowInstanceSetup");
        assert_eq!(r.logical_resource_id, "DevBoxSetup");
        assert_eq!(r.physical_resource_id, None);
        assert_eq!(r.resource_properties["InstanceId"], json!("i-0123456789abcdef0"));
        assert_eq!(r.old_resource_properties, None);
    }

    #[test]
    fn request_round_trips_with_aws_field_names() {
        let r = update("i-0123456789abcdef0", "i-0fedcba9876543210");
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "RequestType",
            "ResponseURL",
            "StackId",
            "RequestId",
            "ResourceType",
            "LogicalResourceId",
            "PhysicalResourceId",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["OldResourceProperties"], json!({"InstanceId": "i-0123456789abcdef0"}));
        assert_eq!(CfnRequest::from_value(v).unwrap(), r);
    }

    #[test]
    fn update_and_delete_need_their_fields() {
        let upd = with(create(), "RequestType", json!("Update"));
        assert_eq!(
            CfnRequest::from_value(upd.clone()),
            Err(CoreError::invalid("PhysicalResourceId", "is required in Update requests"))
        );
        let upd = with(upd, "PhysicalResourceId", json!("opsflow-setup-i-0123456789abcdef0"));
        assert_eq!(
            CfnRequest::from_value(upd.clone()),
            Err(CoreError::invalid(
                "OldResourceProperties",
                "is required in an Update request and must be a map"
            ))
        );
        let ok = CfnRequest::from_value(with(upd, "OldResourceProperties", json!({"InstanceId": "i-0123abcd"}))).unwrap();
        assert_eq!(ok.old_resource_properties, Some(json!({"InstanceId": "i-0123abcd"})));
        let del = with(create(), "RequestType", json!("Delete"));
        assert_eq!(CfnRequest::from_value(del.clone()).unwrap_err().name(), "InvalidInput");
        assert!(CfnRequest::from_value(with(del, "PhysicalResourceId", json!("opsflow-setup-i-0123456789abcdef0"))).is_ok());
    }

    #[test]
    fn malformed_requests_are_invalid_input() {
        assert_eq!(
            CfnRequest::from_value(with(create(), "RequestType", json!("Upsert")))
                .unwrap_err()
                .name(),
            "InvalidInput"
        );
        assert_eq!(
            CfnRequest::from_value(with(create(), "ResourceProperties", json!("x"))),
            Err(CoreError::invalid("ResourceProperties", "is required and must be a map"))
        );
        assert_eq!(CfnRequest::from_json("{not json").unwrap_err().name(), "InvalidInput");
        assert!(CfnRequest::from_json(&create().to_string()).is_ok());
    }

    #[test]
    fn response_body_fields() {
        let r = CfnRequest::from_value(create()).unwrap();
        let body = CfnResponse::success(&r, "opsflow-setup-i-0123456789abcdef0")
            .with_data("VolumeSizeGiB", "32")
            .to_body();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "Status": "SUCCESS",
                "PhysicalResourceId": "opsflow-setup-i-0123456789abcdef0",
                "StackId": STACK,
                "RequestId": "unique-id-for-create",
                "LogicalResourceId": "DevBoxSetup",
                "NoEcho": false,
                "Data": {"VolumeSizeGiB": "32"}
            })
        );
        let failed: Value = serde_json::from_str(&CfnResponse::failed(&r, "id", "Step X failed: boom").to_body()).unwrap();
        assert_eq!(failed["Status"], json!("FAILED"));
        assert_eq!(failed["Reason"], json!("Step X failed: boom"));
        assert!(failed.get("Data").is_none());
        let empty: Value = serde_json::from_str(&CfnResponse::failed(&r, "id", " ").to_body()).unwrap();
        assert_eq!(empty["Reason"], json!("opsflow failed without giving a reason"));
    }

    #[test]
    fn long_reason_is_cut_keeping_its_start() {
        let r = CfnRequest::from_value(create()).unwrap();
        let reason = format!("Step GrowFileSystem failed: Transient: {}", "é\"x".repeat(3000));
        let body = CfnResponse::failed(&r, "opsflow-setup-i-0123456789abcdef0", reason.clone()).to_body();
        assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
        let v: Value = serde_json::from_str(&body).unwrap();
        let cut = v["Reason"].as_str().unwrap();
        assert!(cut.starts_with("Step GrowFileSystem failed: Transient: é\"x"));
        assert!(cut.ends_with('…'));
        assert!(reason.starts_with(cut.trim_end_matches('…')));
        // as long as possible: one more character would not fit
        let kept = cut.trim_end_matches('…').chars().count();
        let longer: String = reason.chars().take(kept + 1).collect::<String>() + "…";
        let over = CfnResponse::failed(&r, "opsflow-setup-i-0123456789abcdef0", longer);
        assert!(over.render(over.reason.as_deref(), &BTreeMap::new()).len() > MAX_BODY_BYTES);
    }

    #[test]
    fn short_bodies_are_untouched() {
        let r = CfnRequest::from_value(create()).unwrap();
        let resp = CfnResponse::failed(&r, "id", "short").with_data("A", "1");
        assert_eq!(resp.to_body(), resp.render(Some("short"), &BTreeMap::from([("A", "1")])));
    }

    #[test]
    fn data_is_dropped_largest_first_when_the_reason_is_not_enough() {
        let r = CfnRequest::from_value(create()).unwrap();
        let resp = CfnResponse::success(&r, "id")
            .with_reason("Step Done: ok")
            .with_data("Big", "b".repeat(3000))
            .with_data("Huge", "h".repeat(3500))
            .with_data("Small", "s");
        let body = resp.to_body();
        assert!(body.len() <= MAX_BODY_BYTES);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Data"], json!({"Big": "b".repeat(3000), "Small": "s"}));
        assert_eq!(v["Reason"], json!("Step Done: ok"));
    }

    #[test]
    fn physical_id_on_create_update_delete() {
        let c = CfnRequest::from_value(create()).unwrap();
        assert_eq!(
            physical_resource_id(&c, Some("i-0123456789abcdef0")),
            "opsflow-setup-i-0123456789abcdef0"
        );
        assert_eq!(physical_resource_id(&c, None), "opsflow-setup-invalid-unique-id-for-create");
        assert!(is_invalid_placeholder(&physical_resource_id(&c, None)));
        assert!(!is_invalid_placeholder("opsflow-setup-i-0123456789abcdef0"));

        let same = update("i-0123456789abcdef0", "i-0123456789abcdef0");
        assert_eq!(
            physical_resource_id(&same, Some("i-0123456789abcdef0")),
            "opsflow-setup-i-0123456789abcdef0"
        );
        let moved = update("i-0123456789abcdef0", "i-0fedcba9876543210");
        assert_eq!(
            physical_resource_id(&moved, Some("i-0fedcba9876543210")),
            "opsflow-setup-i-0fedcba9876543210"
        );
        assert_eq!(
            failed_physical_resource_id(&moved, Some("i-0fedcba9876543210")),
            "opsflow-setup-i-0123456789abcdef0"
        );
        assert_eq!(physical_resource_id(&moved, None), "opsflow-setup-i-0123456789abcdef0");

        let del = CfnRequest::from_value(with(
            with(create(), "RequestType", json!("Delete")),
            "PhysicalResourceId",
            json!("opsflow-setup-i-0aaa"),
        ))
        .unwrap();
        assert_eq!(physical_resource_id(&del, Some("i-0123456789abcdef0")), "opsflow-setup-i-0aaa");
        assert_eq!(failed_physical_resource_id(&del, None), "opsflow-setup-i-0aaa");
        assert_eq!(
            failed_physical_resource_id(&c, Some("i-0123456789abcdef0")),
            "opsflow-setup-i-0123456789abcdef0"
        );
    }

    #[test]
    fn changed_fields_compare_as_cloudformation_means_them() {
        let old = json!({"ServiceToken": "a", "InstanceId": "i-0123abcd", "InstanceProfile": "p", "VolumeSizeGiB": "32",
            "Bootstrap": {"Commands": ["x"], "TimeoutSeconds": "60"}, "OnDelete": "Retain"});
        assert_eq!(changed_fields(&old, &old), ChangeSet::default());
        assert!(!changed_fields(&old, &old).any());
        let same_meaning = json!({"ServiceToken": "b", "InstanceId": "i-0123abcd", "InstanceProfile": "p", "VolumeSizeGiB": 32,
            "Bootstrap": {"TimeoutSeconds": 60, "Commands": ["x"]}, "OnDelete": "Revert", "RebootFallback": "true", "Device": ""});
        assert_eq!(changed_fields(&old, &same_meaning), ChangeSet::default());

        let mut v = old.clone();
        v["VolumeSizeGiB"] = json!("40");
        assert_eq!(
            changed_fields(&old, &v),
            ChangeSet {
                profile: false,
                volume: true,
                bootstrap: false
            }
        );
        let mut v = old.clone();
        v["InstanceProfile"] = json!("q");
        assert_eq!(
            changed_fields(&old, &v),
            ChangeSet {
                profile: true,
                volume: false,
                bootstrap: false
            }
        );
        let mut v = old.clone();
        v["Bootstrap"]["Commands"] = json!(["x", "y"]);
        assert_eq!(
            changed_fields(&old, &v),
            ChangeSet {
                profile: false,
                volume: false,
                bootstrap: true
            }
        );
        let mut v = old.clone();
        v.as_object_mut().unwrap().remove("InstanceProfile");
        assert_eq!(
            changed_fields(&old, &v),
            ChangeSet {
                profile: true,
                volume: false,
                bootstrap: false
            }
        );
        let mut v = old.clone();
        v["Device"] = json!("/dev/sdf");
        assert_eq!(
            changed_fields(&old, &v),
            ChangeSet {
                profile: false,
                volume: true,
                bootstrap: false
            }
        );
        let mut v = old.clone();
        v["InstanceId"] = json!("i-0fedcba9");
        assert_eq!(changed_fields(&old, &v), ChangeSet::ALL);
    }

    #[test]
    fn failure_reason_names_the_step() {
        assert_eq!(
            failure_reason(
                "AssignProfile",
                "InvalidInput",
                "InvalidInput: InstanceProfile: admin is not allowed"
            ),
            "Step AssignProfile failed: InvalidInput: InstanceProfile: admin is not allowed"
        );
        assert_eq!(
            failure_reason("GrowVolume", "States.Timeout", "Task timed out"),
            "Step GrowVolume failed: States.Timeout: Task timed out"
        );
        assert_eq!(
            failure_reason("GrowVolume", "States.Timeout", ""),
            "Step GrowVolume failed: States.Timeout"
        );
        assert_eq!(failure_reason("Bootstrap", "", "boom"), "Step Bootstrap failed: boom");
    }

    #[test]
    fn cause_message_reads_lambda_errors() {
        assert_eq!(
            cause_message(r#"{"errorMessage":"Conflict: instance i-1: SSM is not available","errorType":"Conflict"}"#),
            "Conflict: instance i-1: SSM is not available"
        );
        assert_eq!(cause_message("plain text"), "plain text");
        assert_eq!(cause_message(r#"{"other":1}"#), r#"{"other":1}"#);
    }
}
