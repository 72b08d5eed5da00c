//! Fleet audits, offline: `statemachines/fleet-audit.asl.json` on the local engine, the audit
//! function in-process with the real adapters, the local cloud's accounts read through their
//! member audit role (checked with its ExternalId by the local cloud's STS).

use std::sync::Arc;

use anyhow::{anyhow, Context};
use opsflow_asl::{Clock as EngineClock, Engine, ExecutionResult, StartOptions, StateMachine, StatesError, TaskRequest};
use opsflow_aws::{AuditFleet, AwsConfig, Clients, DynamoAlertLedger, S3Objects, SnsPublisher, SystemClock};
use opsflow_core::audit::handlers::{drift, invoke, FUNCTION_PLACEHOLDER};
use opsflow_core::audit::{AuditPorts, AuditSettings, Check, DriftSettings, Report};
use opsflow_core::ports::Clock;
use serde_json::{json, Value};

use super::runbook::{AUDIT_ROLE, SSM_FIX_ROLE};
use super::{function_arn, load_machine, LocalClock, LocalCloud, ACCOUNT, REGION};

/// The local audit bucket (the template's AuditBucket).
pub const AUDIT_BUCKET: &str = "opsflow-audit-local";
/// The local audit topic (the template's AuditTopic).
pub const AUDIT_TOPIC: &str = "opsflow-audit";
/// The audit state machine's name.
pub const FLEET_AUDIT: &str = "opsflow-fleet-audit";

type Ports = AuditPorts<AuditFleet, S3Objects, SnsPublisher>;

/// The fleet audit on the local engine.
pub struct LocalAudits {
    pub cloud: Arc<LocalCloud>,
    /// The central account's clients.
    pub clients: Clients,
    pub topic_arn: String,
    engine: Engine,
    machine: Arc<StateMachine>,
    ports: Arc<Ports>,
    ledger: DynamoAlertLedger,
}

/// An audit's end: the execution and the report it wrote.
#[derive(Debug)]
pub struct AuditOutcome {
    pub execution: ExecutionResult,
    pub report: Option<Report>,
    /// The text report.
    pub text: Option<String>,
}

impl LocalAudits {
    pub async fn new(cloud: Arc<LocalCloud>, external_id: &str) -> anyhow::Result<LocalAudits> {
        LocalAudits::fixing(cloud, external_id, None).await
    }

    /// The audits with fleet health's automatic fix on (`fix_profile`: the member accounts'
    /// default SSM profile, `SSM_FIX_PROFILE`), or off (None).
    pub async fn fixing(cloud: Arc<LocalCloud>, external_id: &str, fix_profile: Option<&str>) -> anyhow::Result<LocalAudits> {
        let clients = Clients::for_endpoint(&cloud.endpoint).await.map_err(|e| anyhow!("{e}"))?;
        match clients.s3.create_bucket().bucket(AUDIT_BUCKET).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e) => return Err(anyhow!("creating bucket {AUDIT_BUCKET}: {e:?}")),
        }
        let topic_arn = crate::fixtures::topic(&clients, AUDIT_TOPIC).await?;
        let base = AwsConfig::for_endpoint(&cloud.endpoint).await;
        let ports = Arc::new(Ports {
            auditors: AuditFleet::new(base.sdk_config(), AUDIT_ROLE, external_id).with_fix_role(SSM_FIX_ROLE),
            objects: S3Objects::new(clients.s3.clone()),
            publisher: clients.sns_publisher(&topic_arn),
        });
        let settings = Arc::new(AuditSettings {
            bucket: AUDIT_BUCKET.to_string(),
            fix_profile: fix_profile.map(String::from),
        });
        let ledger = clients.alert_ledger(super::alerts::LEDGER_TABLE);
        ledger.create_table().await.context("the alert ledger table")?;
        let function = "opsflow-audit";
        let (c, p) = (cloud.clone(), ports.clone());
        let engine = Engine::builder()
            .clock(EngineClock::Virtual)
            .region(REGION)
            .account(ACCOUNT)
            .lambda(function, move |req: TaskRequest| {
                let (ports, settings, cloud) = (p.clone(), settings.clone(), c.clone());
                async move {
                    cloud
                        .control("clock", json!({"now_ms": req.now_ms}))
                        .await
                        .map_err(|e| StatesError::new("Lambda.Unknown", e.to_string()))?;
                    let clock = LocalClock { task: req.clock, cloud };
                    invoke(&*ports, &settings, req.payload, &clock)
                        .await
                        .map_err(|e| StatesError::new(e.name(), e.to_string()))
                }
            })
            .build();
        let machine = load_machine(
            "statemachines/fleet-audit.asl.json",
            &[(FUNCTION_PLACEHOLDER.to_string(), function_arn("audit"))],
        )?;
        Ok(LocalAudits {
            cloud,
            clients,
            topic_arn,
            engine,
            machine,
            ports,
            ledger,
        })
    }

    /// The drift function on one EventBridge event (as the template's RoleDriftRule delivers
    /// it), re-evaluating `regions` for IAM changes.
    pub async fn drift(&self, event: &Value, regions: &[&str]) -> anyhow::Result<Value> {
        let settings = DriftSettings {
            bucket: AUDIT_BUCKET.to_string(),
            regions: regions.iter().map(|r| r.to_string()).collect(),
        };
        let now = SystemClock.now_ms().max(self.cloud.now_ms().await?);
        drift(&self.ports, &self.ledger, &settings, event, now)
            .await
            .map_err(|e| anyhow!("{}: {e}", e.name()))
    }

    /// Runs the audit on `input` (as its schedule would start it) under the execution `name`,
    /// and reads the report it wrote.
    pub async fn run(&self, input: Value, name: &str) -> anyhow::Result<AuditOutcome> {
        let start = SystemClock.now_ms().max(self.cloud.now_ms().await?);
        let opts = StartOptions {
            name: name.to_string(),
            state_machine_name: FLEET_AUDIT.to_string(),
            record_history: true,
        };
        let execution = self
            .engine
            .start_at(self.machine.clone(), input, opts, Some(start))
            .result
            .await
            .context("the audit's execution")?;
        let check = execution
            .output
            .as_ref()
            .and_then(|o| o.get("Check"))
            .and_then(|c| serde_json::from_value::<Check>(c.clone()).ok());
        let (report, text) = match (check, execution.output.as_ref().and_then(|o| o["Report"].as_str())) {
            (Some(check), Some(_)) => {
                let key = format!("audit/{}/runs/{name}/report.json", check.as_str());
                let report = self.read(&key).await?;
                let text = self.read(&key.replace(".json", ".txt")).await?;
                (Some(serde_json::from_str(&report).context("parsing the report")?), Some(text))
            }
            _ => (None, None),
        };
        Ok(AuditOutcome { execution, report, text })
    }

    async fn read(&self, key: &str) -> anyhow::Result<String> {
        let out = self
            .clients
            .s3
            .get_object()
            .bucket(AUDIT_BUCKET)
            .key(key)
            .send()
            .await
            .with_context(|| format!("GetObject {key}"))?;
        let bytes = out.body.collect().await.context("reading")?.into_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
