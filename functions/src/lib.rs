//! What every opsflow Lambda shares: settings from the environment, the clients it uses built
//! once in `main` (and no others), JSON logs, and errors as `Diagnostic`s whose `errorType` is
//! the stable [`CoreError`] name that the state machine's Retry and Catch match.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use opsflow_aws::SystemClock;
use opsflow_core::alert::AlertSettings;
use opsflow_core::ports::SetupStore;
use opsflow_core::provision::handlers::{invoke, Ports};
use opsflow_core::provision::steps::Settings;
use opsflow_core::runbook::handlers::RunbookPorts;
use opsflow_core::runbook::{Catalogue, Kind};
use opsflow_core::{AllowList, CoreError, Ec2, Iam, ResponseSink, Ssm};
use serde_json::Value;

/// A [`CoreError`] on its way out of a handler.
#[derive(Debug)]
pub struct FnError(pub CoreError);

impl From<FnError> for Diagnostic {
    fn from(e: FnError) -> Diagnostic {
        Diagnostic {
            error_type: e.0.name().to_string(),
            error_message: e.0.to_string(),
        }
    }
}

impl From<CoreError> for FnError {
    fn from(e: CoreError) -> FnError {
        FnError(e)
    }
}

fn env_i64(name: &str, default: i64) -> Result<i64, CoreError> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| CoreError::invalid(name, format!("must be a whole number of seconds, not {v:?}"))),
        Err(_) => Ok(default),
    }
}

/// `INSTANCE_PROFILE_ALLOW_LIST` (required), `ASSOCIATION_TIMEOUT_SECONDS` (300),
/// `VOLUME_TIMEOUT_SECONDS` (1800), `READINESS_TIMEOUT_SECONDS` (900), `REBOOT_TIMEOUT_SECONDS` (600),
/// `WATCH_SECONDS` (120: how long one invocation watches a wait; keep the Lambda timeout longer),
/// `MAX_VOLUME_SIZE_GIB` (2048), `ACCOUNT_ID` (this account; unset: the requesting stack's),
/// `REQUEST_RETRY_SECONDS` (20: how long the request handler retries throttling before it
/// answers FAILED), `OPSFLOW_LOCAL_RESPONSE_URLS` (`1` allows http://127.0.0.1 answers: the
/// local cloud only).
pub fn settings_from_env() -> Result<Settings, CoreError> {
    let allow = std::env::var("INSTANCE_PROFILE_ALLOW_LIST").unwrap_or_default();
    let mut s = Settings::new(AllowList::parse(&allow)?);
    s.association_timeout_s = env_i64("ASSOCIATION_TIMEOUT_SECONDS", s.association_timeout_s)?;
    s.volume_timeout_s = env_i64("VOLUME_TIMEOUT_SECONDS", s.volume_timeout_s)?;
    s.readiness_timeout_s = env_i64("READINESS_TIMEOUT_SECONDS", s.readiness_timeout_s)?;
    s.reboot_timeout_s = env_i64("REBOOT_TIMEOUT_SECONDS", s.reboot_timeout_s)?;
    s.watch_s = env_i64("WATCH_SECONDS", s.watch_s)?;
    s.request_retry_s = env_i64("REQUEST_RETRY_SECONDS", s.request_retry_s)?;
    let max = env_i64("MAX_VOLUME_SIZE_GIB", i64::from(s.max_volume_size_gib))?;
    s.max_volume_size_gib = u32::try_from(max)
        .ok()
        .filter(|m| (1..=opsflow_core::provision::props::MAX_VOLUME_SIZE_GIB).contains(m))
        .ok_or_else(|| CoreError::invalid("MAX_VOLUME_SIZE_GIB", format!("must be 1..=65536, not {max}")))?;
    s.account_id = std::env::var("ACCOUNT_ID").ok().filter(|a| !a.is_empty());
    s.local_response_urls = std::env::var("OPSFLOW_LOCAL_RESPONSE_URLS").is_ok_and(|v| v == "1");
    if !(0..=600).contains(&s.watch_s) {
        return Err(CoreError::invalid("WATCH_SECONDS", format!("must be 0..=600, not {}", s.watch_s)));
    }
    Ok(s)
}

/// `ENRICHED_TOPIC_ARN` (required), `RECENTLY_STARTED_SECONDS` (900), `GROUP_INSTANCE_CAP` (5),
/// `ALERT_DIAGNOSE_LIMIT_SECONDS` (30; 0 turns diagnostics off, at most 40) and
/// `ALERT_DIAGNOSE_WAIT_SECONDS` (8, at most the limit).
/// The lookups' and the ledger's own settings are read by `AwsConfig::alert_adapter`
/// (`ACCOUNT_ID`, `ALERT_MEMBER_LOOKUPS`, `ALERT_MEMBER_ROLE_NAME`, `MEMBER_EXTERNAL_ID`) and
/// `AwsConfig::alert_ledger` (`ALERT_LEDGER_TABLE`).
pub fn alert_settings_from_env() -> Result<(String, AlertSettings), CoreError> {
    let topic = std::env::var("ENRICHED_TOPIC_ARN").unwrap_or_default();
    if !topic.starts_with("arn:") {
        return Err(CoreError::invalid(
            "ENRICHED_TOPIC_ARN",
            format!("must be an SNS topic ARN, not {topic:?}"),
        ));
    }
    let mut s = AlertSettings::default();
    s.recent_threshold_s = env_i64("RECENTLY_STARTED_SECONDS", s.recent_threshold_s)?;
    let cap = env_i64("GROUP_INSTANCE_CAP", s.group_cap as i64)?;
    s.group_cap = usize::try_from(cap)
        .ok()
        .filter(|c| (1..=50).contains(c))
        .ok_or_else(|| CoreError::invalid("GROUP_INSTANCE_CAP", format!("must be 1..=50, not {cap}")))?;
    s.diagnose_limit_s = env_i64("ALERT_DIAGNOSE_LIMIT_SECONDS", s.diagnose_limit_s)?;
    s.diagnose_wait_s = env_i64("ALERT_DIAGNOSE_WAIT_SECONDS", s.diagnose_wait_s)?;
    // Within the function's 60 s: the lookups, the limit, two publications (the handler also
    // stops waiting 10 s before Lambda's deadline, whatever this says).
    if !(0..=40).contains(&s.diagnose_limit_s) {
        return Err(CoreError::invalid(
            "ALERT_DIAGNOSE_LIMIT_SECONDS",
            format!("must be 0 (off) to 40, not {}", s.diagnose_limit_s),
        ));
    }
    if s.diagnose_limit_s > 0 && !(0..=s.diagnose_limit_s).contains(&s.diagnose_wait_s) {
        return Err(CoreError::invalid(
            "ALERT_DIAGNOSE_WAIT_SECONDS",
            format!(
                "must be 0 to ALERT_DIAGNOSE_LIMIT_SECONDS ({}), not {}",
                s.diagnose_limit_s, s.diagnose_wait_s
            ),
        ));
    }
    Ok((topic, s))
}

/// The runbook functions' settings: `RUNS_BUCKET` (required), `RUNS_RETENTION_DAYS` (90),
/// `<KIND>_STATE_MACHINE_ARN` per procedure kind ([`Kind::arn_variable`]; Validate),
/// `CONNECTIONS` (Validate: a JSON object of the catalogue's connection names to EventBridge
/// connection ARNs), `OUTPUT_LOG_GROUP` (commands' CloudWatch output, optional),
/// `WATCH_SECONDS` (60: how long one CheckCommand watches; keep the Lambda timeout longer),
/// `FORENSICS_BUCKET` (forensic-capture's evidence; optional).
pub fn runbook_settings_from_env() -> Result<opsflow_core::runbook::steps::Settings, CoreError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let bucket =
        var("RUNS_BUCKET").ok_or_else(|| CoreError::invalid("RUNS_BUCKET", "is required: the bucket of runs and command output"))?;
    let mut s = opsflow_core::runbook::steps::Settings::new(&bucket);
    s.retention_days = env_i64("RUNS_RETENTION_DAYS", s.retention_days)?;
    for kind in Kind::ALL {
        if let Some(arn) = var(&kind.arn_variable()) {
            s.procedure_arns.insert(kind.as_str().to_string(), arn);
        }
    }
    if let Some(json) = var("CONNECTIONS") {
        s.connections = serde_json::from_str(&json)
            .map_err(|e| CoreError::invalid("CONNECTIONS", format!("must be a JSON object of names to connection ARNs: {e}")))?;
    }
    s.output_log_group = var("OUTPUT_LOG_GROUP");
    s.forensics_bucket = var("FORENSICS_BUCKET");
    s.watch_s = env_i64("WATCH_SECONDS", s.watch_s)?;
    if !(0..=600).contains(&s.watch_s) {
        return Err(CoreError::invalid("WATCH_SECONDS", format!("must be 0..=600, not {}", s.watch_s)));
    }
    Ok(s)
}

/// The main of a runbook function, with the ports its step uses ([`opsflow_core::Unused`] for
/// the others), built once; the catalogue is the one compiled in.
pub async fn run_runbook_task<F, O, L, P>(function: &'static str, ports: RunbookPorts<F, O, L, P>) -> Result<(), Error>
where
    F: opsflow_core::ports::Fleet,
    O: opsflow_core::ports::Objects,
    L: opsflow_core::ports::RunLog,
    P: opsflow_core::alert::AlertPublisher,
{
    init_logging();
    let settings = runbook_settings_from_env().map_err(FnError)?;
    let catalogue = Catalogue::builtin();
    let (ports, settings, catalogue) = (&ports, &settings, &catalogue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        opsflow_core::runbook::handlers::invoke(function, ports, settings, catalogue, event.payload, &SystemClock)
            .await
            .map_err(FnError)
    }))
    .await
}

/// JSON logs (Lambda's `AWS_LAMBDA_LOG_FORMAT=JSON`), one span per invocation from the runtime.
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// The main of a task function of the state machine, with the clients its step uses
/// ([`opsflow_core::Unused`] for the others), built once.
pub async fn run_task<E: Ec2, I: Iam, S: Ssm, R: ResponseSink, T: SetupStore>(
    function: &'static str,
    ports: Ports<E, I, S, R, T>,
) -> Result<(), Error> {
    init_logging();
    let settings = settings_from_env().map_err(FnError)?;
    let (ports, settings) = (&ports, &settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        invoke(ports, settings, &SystemClock, function, event.payload)
            .await
            .map_err(FnError)
    }))
    .await
}

impl std::fmt::Display for FnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for FnError {}
