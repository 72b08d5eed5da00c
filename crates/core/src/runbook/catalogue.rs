//! The catalogue of pre-approved procedures: the boundary of what an operator can run.
//!
//! One JSON file per procedure in `catalogue/` at the repository root, compiled into the
//! binaries (so the deployed stack carries exactly the reviewed files, and nobody changes them
//! without a deployment). A procedure names:
//! - the state machine that runs it on one target (`statemachines/procedures/<Kind>.asl.json`):
//!   `run-command` (an SSM command) or `http-check` (an HTTP call through an EventBridge
//!   connection);
//! - for `run-command`, either fixed `Commands` per platform (sent with AWS-RunShellScript or
//!   AWS-RunPowerShellScript, and then taking no parameters: nothing is ever spliced into a
//!   command line) or an SSM `Document` whose typed parameters SSM itself substitutes;
//! - typed `Parameters` (String, Integer, Boolean) with allowed values, a pattern or bounds;
//! - which instances it may touch: platforms, the opt-in tag (`opsflow:runbooks` by default;
//!   its value must be one of `TagValues`), at most how many;
//! - caps on `MaxConcurrency` and `MaxErrors`, their defaults, and the SSM timeouts.
//!
//! A catalogue file with an unknown field, a bad value or a contradiction is refused when the
//! catalogue loads (a test loads the repository's catalogue), naming the file and the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rate::Rate;
use crate::error::CoreError;

/// The tag an instance carries to opt in to runbooks, unless a procedure names another.
pub const DEFAULT_OPT_IN_TAG: &str = "opsflow:runbooks";
/// SSM's bounds of the delivery timeout (`TimeoutSeconds`) and of `executionTimeout`.
pub const MIN_TIMEOUT_SECONDS: u32 = 30;
pub const MAX_DELIVERY_TIMEOUT_SECONDS: u32 = 2_592_000;
pub const MAX_EXECUTION_TIMEOUT_SECONDS: u32 = 172_800;
/// The longest a parameter value may be.
pub const MAX_PARAMETER_LENGTH: usize = 4_096;

/// The repository's catalogue, as compiled in: (file name, text).
pub const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));

/// The state machine that runs a procedure on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "run-command")]
    RunCommand,
    #[serde(rename = "http-check")]
    HttpCheck,
    /// StartInstances, wait until ready (running, status checks passed, SSM Online), then the
    /// procedure's command as the health check.
    #[serde(rename = "start-and-check")]
    StartAndCheck,
    /// The procedure's command as the pre-stop script, then StopInstances and wait `stopped`;
    /// the `OnPreStopFailure` parameter decides what a failed pre-stop does.
    #[serde(rename = "clean-stop")]
    CleanStop,
    /// The pre-snapshot hooks and a freeze of the data file systems (the member stack's
    /// `opsflow-Freeze`, which arms an on-instance watchdog first), CreateSnapshots of every
    /// volume, then the thaw and post-snapshot hooks (`opsflow-Thaw`) on every path.
    #[serde(rename = "consistent-snapshot")]
    ConsistentSnapshot,
    /// consistent-snapshot first (a nested execution), then AWS-RunPatchBaselineWithHooks
    /// (Install, a reboot carried through), then the health check; on failure, optionally the
    /// root volume replaced from the pre-patch snapshot and the health check again.
    #[serde(rename = "patch")]
    Patch,
    /// Evidence before an instance goes (an Auto Scaling termination lifecycle hook) or on
    /// demand: the member stack's collection document uploads an archive and its manifest,
    /// which are verified; CreateSnapshots of every volume and tags, all under a case id; the
    /// lifecycle action completed once.
    #[serde(rename = "forensic-capture")]
    ForensicCapture,
}

impl Kind {
    /// Every kind: one state machine each, `statemachines/procedures/<kind>.asl.json`.
    pub const ALL: [Kind; 7] = [
        Kind::RunCommand,
        Kind::HttpCheck,
        Kind::StartAndCheck,
        Kind::CleanStop,
        Kind::ConsistentSnapshot,
        Kind::Patch,
        Kind::ForensicCapture,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RunCommand => "run-command",
            Kind::HttpCheck => "http-check",
            Kind::StartAndCheck => "start-and-check",
            Kind::CleanStop => "clean-stop",
            Kind::ConsistentSnapshot => "consistent-snapshot",
            Kind::Patch => "patch",
            Kind::ForensicCapture => "forensic-capture",
        }
    }

    /// The placeholder of this kind's state machine ARN in the state machine files that start
    /// it (`${RunbookConsistentSnapshotStateMachineArn}`, …).
    pub fn arn_placeholder(self) -> String {
        let pascal: String = self.as_str().split('-').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
        format!("${{Runbook{pascal}StateMachineArn}}")
    }

    /// The environment variable that gives the deployed functions this kind's state machine
    /// ARN: `RUN_COMMAND_STATE_MACHINE_ARN`, …
    pub fn arn_variable(self) -> String {
        format!("{}_STATE_MACHINE_ARN", self.as_str().replace('-', "_").to_uppercase())
    }

    /// Whether the procedure runs on instances (and so takes `Targets`).
    pub fn on_instances(self) -> bool {
        self != Kind::HttpCheck
    }

    /// Whether the procedure sends an SSM command (its `Commands` or `Document`).
    pub fn sends_command(self) -> bool {
        self != Kind::HttpCheck
    }
}

/// The clean-stop parameter that decides what a failed pre-stop script does.
pub const ON_PRE_STOP_FAILURE: &str = "OnPreStopFailure";

/// The consistent-snapshot parameter that decides what a failed freeze does: `fail`, or
/// `crash-consistent` (snapshot anyway, and say so).
pub const ON_FREEZE_FAILURE: &str = "OnFreezeFailure";

/// The forensic-capture parameter that names the case (empty: the run's name).
pub const CASE_ID: &str = "CaseId";

/// A parameter a kind with fixed documents knows: its type, who reads it, the values it may
/// allow, and whether the catalogue must declare it.
struct FixedParameter {
    name: &'static str,
    kind: ParameterType,
    used_by: ParameterUse,
    values: &'static [&'static str],
    required: bool,
    rule: &'static str,
}

const fn fixed(
    name: &'static str,
    kind: ParameterType,
    used_by: ParameterUse,
    values: &'static [&'static str],
    required: bool,
    rule: &'static str,
) -> FixedParameter {
    FixedParameter {
        name,
        kind,
        used_by,
        values,
        required,
        rule,
    }
}

use ParameterType::{Boolean, Integer, String as Text};
use ParameterUse::{Command as Cmd, Procedure as Proc};

// The freeze's parameters, shared by consistent-snapshot and patch (its nested snapshot).
const WATCHDOG: FixedParameter = fixed(
    "WatchdogSeconds",
    Integer,
    Cmd,
    &[],
    true,
    "WatchdogSeconds (Integer): when the on-instance watchdog thaws",
);
const ON_FREEZE_FAILURE_PARAMETER: FixedParameter = fixed(
    ON_FREEZE_FAILURE,
    Text,
    Proc,
    &["fail", "crash-consistent"],
    true,
    "OnFreezeFailure: a String with \"Use\": \"Procedure\" and AllowedValues among fail, crash-consistent",
);
const CONSISTENT_SNAPSHOT: &[FixedParameter] = &[
    fixed("Mounts", Text, Cmd, &[], true, "Mounts (String): the data file systems to freeze"),
    WATCHDOG,
    ON_FREEZE_FAILURE_PARAMETER,
    fixed(
        "WaitForCompletion",
        Boolean,
        Proc,
        &[],
        true,
        "WaitForCompletion (Boolean, \"Use\": \"Procedure\")",
    ),
    fixed(
        "RetentionDays",
        Integer,
        Proc,
        &[],
        true,
        "RetentionDays (Integer, \"Use\": \"Procedure\"; 0 keeps every snapshot)",
    ),
];
const PATCH: &[FixedParameter] = &[
    fixed(
        "FreezeMounts",
        Text,
        Cmd,
        &[],
        true,
        "FreezeMounts (String): the data file systems the pre-patch snapshot freezes",
    ),
    WATCHDOG,
    ON_FREEZE_FAILURE_PARAMETER,
    fixed(
        "RebootOption",
        Text,
        Cmd,
        &["RebootIfNeeded", "NoReboot"],
        true,
        "RebootOption: a String with AllowedValues among RebootIfNeeded, NoReboot (AWS-RunPatchBaselineWithHooks)",
    ),
    fixed(
        "Rollback",
        Boolean,
        Proc,
        &[],
        true,
        "Rollback (Boolean, \"Use\": \"Procedure\"): replace the root volume from the pre-patch snapshot on failure",
    ),
    fixed(
        "PreInstallHookDocName",
        Text,
        Cmd,
        &[],
        false,
        "PreInstallHookDocName (String): an SSM document name",
    ),
    fixed(
        "PostInstallHookDocName",
        Text,
        Cmd,
        &[],
        false,
        "PostInstallHookDocName (String): an SSM document name",
    ),
    fixed(
        "OnExitHookDocName",
        Text,
        Cmd,
        &[],
        false,
        "OnExitHookDocName (String): an SSM document name",
    ),
    fixed("Mounts", Text, Cmd, &[], false, "Mounts (String): the health check's mount points"),
    fixed(
        "MinFreePercent",
        Integer,
        Cmd,
        &[],
        false,
        "MinFreePercent (Integer): the health check's free space",
    ),
    fixed("Units", Text, Cmd, &[], false, "Units (String): the health check's units"),
    fixed("Ports", Text, Cmd, &[], false, "Ports (String): the health check's ports"),
    fixed("Urls", Text, Cmd, &[], false, "Urls (String): the health check's URLs"),
    fixed(
        "Processes",
        Text,
        Cmd,
        &[],
        false,
        "Processes (String): the health check's processes",
    ),
];

const FORENSIC_CAPTURE: &[FixedParameter] = &[
    fixed(
        CASE_ID,
        Text,
        Proc,
        &[],
        true,
        "CaseId (String, \"Use\": \"Procedure\"): the case the evidence is filed under; empty: the run's name",
    ),
    fixed(
        "MaxLogMiB",
        Integer,
        Cmd,
        &[],
        true,
        "MaxLogMiB (Integer): the most log data the collection copies",
    ),
    fixed(
        "IsolateNetwork",
        Boolean,
        Proc,
        &[],
        true,
        "IsolateNetwork (Boolean, \"Use\": \"Procedure\"): move the network interfaces to a quarantine security group",
    ),
    fixed(
        "DetachFromTargetGroups",
        Boolean,
        Proc,
        &[],
        true,
        "DetachFromTargetGroups (Boolean, \"Use\": \"Procedure\"): deregister the instance from its target groups",
    ),
    fixed(
        "RevokeRoleSessions",
        Boolean,
        Proc,
        &[],
        true,
        "RevokeRoleSessions (Boolean, \"Use\": \"Procedure\"): deny everything to the instance's role sessions",
    ),
];

/// The parameters of a kind whose documents are fixed.
fn fixed_parameters(kind: Kind) -> &'static [FixedParameter] {
    match kind {
        Kind::ConsistentSnapshot => CONSISTENT_SNAPSHOT,
        Kind::Patch => PATCH,
        Kind::ForensicCapture => FORENSIC_CAPTURE,
        _ => &[],
    }
}

/// An operating system, as SSM's `PlatformType` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Os {
    Linux,
    Windows,
}

impl Os {
    pub fn from_platform(p: crate::facts::Platform) -> Os {
        match p {
            crate::facts::Platform::Linux => Os::Linux,
            crate::facts::Platform::Windows => Os::Windows,
        }
    }

    /// EC2's spelling of the platform.
    pub fn platform(self) -> crate::facts::Platform {
        match self {
            Os::Linux => crate::facts::Platform::Linux,
            Os::Windows => crate::facts::Platform::Windows,
        }
    }

    /// The AWS-owned document that runs commands on this OS.
    pub fn shell_document(self) -> &'static str {
        crate::command::shell_document(self.platform())
    }
}

/// A parameter's type and rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ParameterSpec {
    #[serde(rename = "Type")]
    pub kind: ParameterType,
    #[serde(default)]
    pub description: String,
    /// Used when the input leaves the parameter out; without it the parameter is required.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub allowed_values: Vec<String>,
    /// A regular expression the whole value must match.
    #[serde(default)]
    pub allowed_pattern: Option<String>,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// Who reads the parameter: the SSM document (`Command`, the default) or the procedure's
    /// state machine (`Procedure`, e.g. a policy); the latter never reaches the instance.
    #[serde(default, rename = "Use")]
    pub used_by: ParameterUse,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterUse {
    #[default]
    Command,
    Procedure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterType {
    String,
    Integer,
    Boolean,
}

/// An SSM document and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DocumentRef {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// An HTTP check: what is called, through which connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HttpSpec {
    /// `https://…`; the query string may be given here or in `QueryParameters`.
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    /// The EventBridge connection holding the secret (API key header or basic auth), by name:
    /// the deployment maps names to connection ARNs.
    pub connection: String,
    #[serde(default)]
    pub query_parameters: BTreeMap<String, String>,
}

fn get() -> String {
    "GET".to_string()
}

/// Which instances a procedure may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TargetRules {
    #[serde(default = "all_platforms")]
    pub platforms: Vec<Os>,
    #[serde(default = "default_opt_in")]
    pub opt_in_tag: String,
    /// The opt-in tag's values that admit this procedure (e.g. `["enabled", "restart-app"]`).
    #[serde(default = "default_opt_in_values")]
    pub tag_values: Vec<String>,
    #[serde(default = "default_max_targets")]
    pub max_targets: u32,
}

fn all_platforms() -> Vec<Os> {
    vec![Os::Linux, Os::Windows]
}
fn default_opt_in() -> String {
    DEFAULT_OPT_IN_TAG.to_string()
}
fn default_opt_in_values() -> Vec<String> {
    vec!["enabled".to_string()]
}
fn default_max_targets() -> u32 {
    10_000
}

impl Default for TargetRules {
    fn default() -> Self {
        TargetRules {
            platforms: all_platforms(),
            opt_in_tag: default_opt_in(),
            tag_values: default_opt_in_values(),
            max_targets: default_max_targets(),
        }
    }
}

/// Caps and defaults of the rate controls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RateRules {
    #[serde(default = "default_concurrency")]
    pub max_concurrency: Rate,
    #[serde(default = "default_errors")]
    pub max_errors: Rate,
}

fn default_concurrency() -> Rate {
    Rate::Percent(10)
}
fn default_errors() -> Rate {
    Rate::Count(0)
}

impl Default for RateRules {
    fn default() -> Self {
        RateRules {
            max_concurrency: default_concurrency(),
            max_errors: default_errors(),
        }
    }
}

/// SSM's two timeouts: how long a command may wait for delivery, how long it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "default_delivery")]
    pub delivery_seconds: u32,
    #[serde(default = "default_execution")]
    pub execution_seconds: u32,
    /// start-and-check: how long a started instance has to become ready.
    #[serde(default = "default_ready")]
    pub ready_seconds: u32,
    /// clean-stop: how long StopInstances has to reach `stopped`.
    #[serde(default = "default_stop")]
    pub stop_seconds: u32,
    /// consistent-snapshot: how long the snapshots have to reach `completed`, when waited for.
    #[serde(default = "default_snapshot")]
    pub snapshot_seconds: u32,
}

fn default_ready() -> u32 {
    900
}
fn default_stop() -> u32 {
    900
}
fn default_snapshot() -> u32 {
    7_200
}

fn default_delivery() -> u32 {
    600
}
fn default_execution() -> u32 {
    3_600
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            delivery_seconds: default_delivery(),
            execution_seconds: default_execution(),
            ready_seconds: default_ready(),
            stop_seconds: default_stop(),
            snapshot_seconds: default_snapshot(),
        }
    }
}

/// One pre-approved procedure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Procedure {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    /// Fixed commands per platform (run-command).
    #[serde(default)]
    pub commands: BTreeMap<Os, Vec<String>>,
    /// An SSM document (run-command), instead of `Commands`.
    #[serde(default)]
    pub document: Option<DocumentRef>,
    #[serde(default)]
    pub http: Option<HttpSpec>,
    #[serde(default)]
    pub parameters: BTreeMap<String, ParameterSpec>,
    #[serde(default)]
    pub targets: TargetRules,
    /// The most an input may ask for.
    #[serde(default)]
    pub limits: RateRules,
    /// What an input that says nothing gets.
    #[serde(default)]
    pub defaults: RateRules,
    #[serde(default)]
    pub timeouts: Timeouts,
}

impl Procedure {
    /// Checks a catalogue entry's own consistency; `file` names it in errors.
    fn check(&self, file: &str) -> Result<(), CoreError> {
        let bad = |field: &str, rule: &str| Err(CoreError::invalid(format!("{file}: {field}"), rule));
        let stem = file.strip_suffix(".json").unwrap_or(file);
        if self.name != stem {
            return bad("Name", &format!("must equal the file name without .json ({stem:?})"));
        }
        if !valid_name(&self.name) {
            return bad(
                "Name",
                "must be 1 to 64 lowercase letters, digits and dashes, starting with a letter",
            );
        }
        if self.description.trim().is_empty() {
            return bad("Description", "must say what the procedure does");
        }
        let command_parameters = self.parameters.values().any(|p| p.used_by == ParameterUse::Command);
        match self.kind {
            Kind::RunCommand | Kind::StartAndCheck | Kind::CleanStop => {
                match (&self.document, self.commands.is_empty()) {
                    (Some(_), false) => return bad("Commands", "give either Commands or Document, not both"),
                    (None, true) => {
                        return bad(
                            "Commands",
                            &format!("a {} procedure needs Commands or a Document", self.kind.as_str()),
                        )
                    }
                    (None, false) if command_parameters => {
                        return bad(
                            "Parameters",
                            "fixed Commands take no parameters (nothing is spliced into a command line): use an SSM Document with typed parameters",
                        )
                    }
                    _ => {}
                }
                if self.http.is_some() {
                    return bad("Http", "only an http-check procedure has Http");
                }
                for (os, lines) in &self.commands {
                    if lines.is_empty() || lines.iter().any(|l| l.trim().is_empty()) {
                        return bad(&format!("Commands.{os:?}"), "must be a non-empty list of non-empty lines");
                    }
                    if !self.targets.platforms.contains(os) {
                        return bad(
                            &format!("Commands.{os:?}"),
                            "has commands for a platform Targets.Platforms leaves out",
                        );
                    }
                }
                if self.document.is_none() {
                    if let Some(os) = self.targets.platforms.iter().find(|os| !self.commands.contains_key(os)) {
                        return bad("Targets.Platforms", &format!("includes {os:?} but Commands has none for it"));
                    }
                }
            }
            Kind::ConsistentSnapshot | Kind::Patch | Kind::ForensicCapture => {
                let kind = self.kind.as_str();
                if self.document.is_some() || !self.commands.is_empty() || self.http.is_some() {
                    return bad(
                        "Document",
                        &format!("a {kind} procedure runs fixed documents (the member stack's opsflow-Freeze, opsflow-Thaw, opsflow-ForensicCollect, AWS's patch and opsflow-HealthCheck): give no Document, Commands or Http"),
                    );
                }
                let table = fixed_parameters(self.kind);
                for p in table.iter().filter(|p| p.required) {
                    if !self.parameters.contains_key(p.name) {
                        return bad(
                            &format!("Parameters.{}", p.name),
                            &format!("a {kind} procedure needs it: {}", p.rule),
                        );
                    }
                }
                for (name, spec) in &self.parameters {
                    let Some(p) = table.iter().find(|p| p.name == name) else {
                        let known: Vec<&str> = table.iter().map(|p| p.name).collect();
                        return bad(
                            &format!("Parameters.{name}"),
                            &format!("a {kind} procedure takes only {}", known.join(", ")),
                        );
                    };
                    let values_ok = p.values.is_empty()
                        || !spec.allowed_values.is_empty() && spec.allowed_values.iter().all(|v| p.values.contains(&v.as_str()));
                    if spec.kind != p.kind || spec.used_by != p.used_by || !values_ok {
                        return bad(&format!("Parameters.{name}"), p.rule);
                    }
                }
                if self.kind == Kind::Patch && self.targets.platforms != [Os::Linux] {
                    return bad(
                        "Targets.Platforms",
                        &format!("a {kind} procedure runs on Linux only (its snapshot's fsfreeze and rollback's health check)"),
                    );
                }
            }
            Kind::HttpCheck => {
                if self.parameters.values().any(|p| p.used_by == ParameterUse::Procedure) {
                    return bad("Parameters", "an http-check procedure reads no procedure parameters");
                }
                let Some(http) = &self.http else {
                    return bad("Http", "an http-check procedure needs Http (Url, Connection)");
                };
                if self.document.is_some() || !self.commands.is_empty() {
                    return bad("Commands", "an http-check procedure runs no commands");
                }
                if !http.url.starts_with("https://") && !http.url.starts_with("http://") {
                    return bad("Http.Url", "must be an http(s) URL");
                }
                if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].contains(&http.method.as_str()) {
                    return bad("Http.Method", "must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS");
                }
                if http.connection.trim().is_empty() {
                    return bad("Http.Connection", "must name the EventBridge connection that holds the secret");
                }
            }
        }
        if self.kind == Kind::CleanStop {
            let policy = self.parameters.get(ON_PRE_STOP_FAILURE);
            let ok = policy.is_some_and(|p| {
                p.used_by == ParameterUse::Procedure
                    && p.kind == ParameterType::String
                    && !p.allowed_values.is_empty()
                    && p.allowed_values.iter().all(|v| v == "abort" || v == "stop")
            });
            if !ok {
                return bad(
                    &format!("Parameters.{ON_PRE_STOP_FAILURE}"),
                    "a clean-stop procedure needs this String parameter with \"Use\": \"Procedure\" and AllowedValues among abort, stop",
                );
            }
        }
        if self.targets.platforms.is_empty() {
            return bad("Targets.Platforms", "must list at least one platform");
        }
        if self.targets.tag_values.is_empty() || self.targets.opt_in_tag.trim().is_empty() {
            return bad("Targets.OptInTag", "an opt-in tag key and at least one value are required");
        }
        if self.targets.max_targets == 0 {
            return bad("Targets.MaxTargets", "must be at least 1");
        }
        let t = self.timeouts;
        if !(MIN_TIMEOUT_SECONDS..=MAX_DELIVERY_TIMEOUT_SECONDS).contains(&t.delivery_seconds) {
            return bad("Timeouts.DeliverySeconds", "must be 30 to 2592000 (SendCommand's TimeoutSeconds)");
        }
        if !(MIN_TIMEOUT_SECONDS..=MAX_EXECUTION_TIMEOUT_SECONDS).contains(&t.execution_seconds) {
            return bad(
                "Timeouts.ExecutionSeconds",
                "must be 30 to 172800 (the documents' executionTimeout)",
            );
        }
        for (field, v) in [
            ("Timeouts.ReadySeconds", t.ready_seconds),
            ("Timeouts.StopSeconds", t.stop_seconds),
            ("Timeouts.SnapshotSeconds", t.snapshot_seconds),
        ] {
            if !(60..=86_400).contains(&v) {
                return bad(field, "must be 60 to 86400");
            }
        }
        for (field, asked, cap) in [
            (
                "Defaults.MaxConcurrency",
                self.defaults.max_concurrency,
                self.limits.max_concurrency,
            ),
            ("Defaults.MaxErrors", self.defaults.max_errors, self.limits.max_errors),
        ] {
            if asked.exceeds(cap, self.targets.max_targets) {
                return bad(field, &format!("{asked} is above the procedure's own limit {cap}"));
            }
        }
        for (name, spec) in &self.parameters {
            let field = format!("Parameters.{name}");
            if !name.chars().all(|c| c.is_ascii_alphanumeric()) || name.is_empty() {
                return bad(&field, "parameter names are letters and digits");
            }
            if let Some(p) = &spec.allowed_pattern {
                if let Err(e) = regex::Regex::new(&format!("^(?:{p})$")) {
                    return bad(&format!("{field}.AllowedPattern"), &format!("is not a regular expression: {e}"));
                }
            }
            if let Some(d) = &spec.default {
                check_value(&format!("{file}: {field}.Default"), spec, d)?;
            }
            for v in &spec.allowed_values {
                check_value(
                    &format!("{file}: {field}.AllowedValues"),
                    &ParameterSpec {
                        allowed_values: vec![],
                        ..spec.clone()
                    },
                    v,
                )?;
            }
        }
        Ok(())
    }

    /// Validates and completes input parameters: unknown names are refused, defaults filled in,
    /// every value checked against its type and rules, and returned as SSM wants them (strings).
    pub fn parameters(&self, input: Option<&serde_json::Value>) -> Result<BTreeMap<String, String>, CoreError> {
        let empty = serde_json::Map::new();
        let given = match input {
            None | Some(serde_json::Value::Null) => &empty,
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => return Err(CoreError::invalid("Parameters", "must be an object of parameter names to values")),
        };
        if let Some(unknown) = given.keys().find(|k| !self.parameters.contains_key(*k)) {
            let known: Vec<&str> = self.parameters.keys().map(String::as_str).collect();
            let rule = if known.is_empty() {
                format!("procedure {} takes no parameters", self.name)
            } else {
                format!("is not a parameter of procedure {} (it takes {})", self.name, known.join(", "))
            };
            return Err(CoreError::invalid(format!("Parameters.{unknown}"), rule));
        }
        let mut out = BTreeMap::new();
        for (name, spec) in &self.parameters {
            let field = format!("Parameters.{name}");
            let value = match given.get(name) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) if spec.kind == ParameterType::Integer => n.to_string(),
                Some(serde_json::Value::Bool(b)) if spec.kind == ParameterType::Boolean => b.to_string(),
                Some(serde_json::Value::Null) | None => match &spec.default {
                    Some(d) => d.clone(),
                    None => return Err(CoreError::invalid(field, "is required")),
                },
                Some(_) => return Err(CoreError::invalid(field, format!("must be a {:?}", spec.kind))),
            };
            check_value(&field, spec, &value)?;
            // A whole number in its plain form ("030" → "30", "+5" → "5"): what the documents
            // and the state machines (States.StringToJson) read.
            let value = match spec.kind {
                ParameterType::Integer => value.parse::<i64>().map(|n| n.to_string()).unwrap_or(value),
                _ => value,
            };
            out.insert(name.clone(), value);
        }
        Ok(out)
    }
}

fn check_value(field: &str, spec: &ParameterSpec, value: &str) -> Result<(), CoreError> {
    if value.len() > MAX_PARAMETER_LENGTH {
        return Err(CoreError::invalid(field, format!("is longer than {MAX_PARAMETER_LENGTH} bytes")));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(CoreError::invalid(field, "must not contain control characters"));
    }
    match spec.kind {
        ParameterType::String => {}
        ParameterType::Integer => {
            let n: i64 = value.parse().map_err(|_| CoreError::invalid(field, "must be a whole number"))?;
            if spec.min.is_some_and(|m| n < m) || spec.max.is_some_and(|m| n > m) {
                let (lo, hi) = (
                    spec.min.map_or("-∞".into(), |m| m.to_string()),
                    spec.max.map_or("∞".into(), |m| m.to_string()),
                );
                return Err(CoreError::invalid(field, format!("must be from {lo} to {hi}")));
            }
        }
        ParameterType::Boolean => {
            if value != "true" && value != "false" {
                return Err(CoreError::invalid(field, "must be true or false"));
            }
        }
    }
    if !spec.allowed_values.is_empty() && !spec.allowed_values.iter().any(|v| v == value) {
        return Err(CoreError::invalid(
            field,
            format!("must be one of {}", spec.allowed_values.join(", ")),
        ));
    }
    if let Some(p) = &spec.allowed_pattern {
        let re = regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| CoreError::invalid(field, format!("bad AllowedPattern: {e}")))?;
        if !re.is_match(value) {
            return Err(CoreError::invalid(field, format!("must match {p}")));
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The procedures an operator may run.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    procedures: BTreeMap<String, Procedure>,
}

impl Catalogue {
    /// Loads catalogue files, each checked; any bad file refuses the whole catalogue.
    pub fn load(files: &[(&str, &str)]) -> Result<Catalogue, CoreError> {
        let mut procedures = BTreeMap::new();
        for (file, text) in files {
            let p: Procedure = serde_json::from_str(text).map_err(|e| CoreError::invalid(*file, e.to_string()))?;
            p.check(file)?;
            procedures.insert(p.name.clone(), p);
        }
        Ok(Catalogue { procedures })
    }

    /// The repository's catalogue, compiled in.
    pub fn builtin() -> Catalogue {
        Catalogue::load(BUILTIN).expect("the repository's catalogue is checked by its tests")
    }

    /// A procedure by name; anything else is refused, naming what exists.
    pub fn get(&self, name: &str) -> Result<&Procedure, CoreError> {
        self.procedures.get(name).ok_or_else(|| {
            CoreError::invalid(
                "Procedure",
                format!(
                    "{name:?} is not in the catalogue of pre-approved procedures ({})",
                    self.procedures.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    pub fn procedures(&self) -> impl Iterator<Item = &Procedure> {
        self.procedures.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn proc(v: serde_json::Value) -> Result<Catalogue, CoreError> {
        let name = v["Name"].as_str().unwrap_or("x").to_string();
        let text = v.to_string();
        Catalogue::load(&[(&format!("{name}.json"), &text)])
    }

    #[test]
    fn every_kind_has_its_state_machine_file_and_arn_variable() {
        for kind in Kind::ALL {
            let file = format!(
                "{}/../../statemachines/procedures/{}.asl.json",
                env!("CARGO_MANIFEST_DIR"),
                kind.as_str()
            );
            assert!(std::path::Path::new(&file).is_file(), "{file}");
        }
        assert_eq!(Kind::StartAndCheck.arn_variable(), "START_AND_CHECK_STATE_MACHINE_ARN");
    }

    fn restart() -> serde_json::Value {
        json!({
            "Name": "restart-service", "Description": "Restarts a service.", "Kind": "run-command",
            "Document": {"Name": "opsflow-RestartService"},
            "Parameters": {
                "Service": {"Type": "String", "AllowedValues": ["app", "billing-api"]},
                "GraceSeconds": {"Type": "Integer", "Default": "10", "Min": 0, "Max": 300},
                "Unit": {"Type": "String", "Default": "app.service", "AllowedPattern": "[a-z-]+\\.service"}
            },
            "Targets": {"Platforms": ["Linux"]}
        })
    }

    #[test]
    fn the_repository_catalogue_loads() {
        let c = Catalogue::builtin();
        assert!(c.procedures().count() >= 2, "{c:?}");
        assert!(c.procedures().all(|p| !p.description.is_empty()));
    }

    #[test]
    fn a_clean_stop_needs_its_failure_policy_as_a_procedure_parameter() {
        let stop = |params: serde_json::Value| {
            proc(json!({
                "Name": "clean-stop", "Description": "Stops cleanly.", "Kind": "clean-stop",
                "Commands": {"Linux": ["systemctl stop app"]}, "Parameters": params,
                "Targets": {"Platforms": ["Linux"]}
            }))
        };
        let rule = "clean-stop.json: Parameters.OnPreStopFailure: a clean-stop procedure needs this String parameter";
        for (params, rule) in [
            (json!({}), rule),
            (
                json!({"OnPreStopFailure": {"Type": "String", "Use": "Procedure", "AllowedValues": ["abort", "reboot"]}}),
                rule,
            ),
            // Without "Use": "Procedure" it would be a document parameter, which fixed Commands refuse.
            (
                json!({"OnPreStopFailure": {"Type": "String", "AllowedValues": ["abort", "stop"]}}),
                "clean-stop.json: Parameters: fixed Commands take no parameters",
            ),
        ] {
            let e = stop(params.clone()).unwrap_err().to_string();
            assert!(e.contains(rule), "{params}: {e}");
        }
        // A procedure parameter may stand beside fixed Commands: it never reaches the instance.
        let c = stop(
            json!({"OnPreStopFailure": {"Type": "String", "Use": "Procedure", "Default": "abort", "AllowedValues": ["abort", "stop"]}}),
        )
        .unwrap();
        let p = c.get("clean-stop").unwrap();
        assert_eq!(
            p.parameters(Some(&json!({"OnPreStopFailure": "stop"}))).unwrap()["OnPreStopFailure"],
            "stop"
        );
        assert!(p.parameters(Some(&json!({"OnPreStopFailure": "later"}))).is_err());
    }

    #[test]
    fn whole_numbers_are_kept_in_their_plain_form() {
        let c = Catalogue::builtin();
        let p = c.get("consistent-snapshot").unwrap();
        let got = p.parameters(Some(&json!({"WatchdogSeconds": "030"}))).unwrap();
        assert_eq!(got["WatchdogSeconds"], "30");
    }

    #[test]
    fn fixed_document_kinds_take_only_their_own_parameters() {
        let repo: serde_json::Value = serde_json::from_str(
            BUILTIN
                .iter()
                .find(|(f, _)| *f == "consistent-snapshot.json")
                .map(|(_, t)| *t)
                .unwrap(),
        )
        .unwrap();
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = repo.clone();
            edit(&mut v);
            proc(v).map(|_| ()).map_err(|e| e.to_string())
        };
        assert_eq!(with(&|_| {}), Ok(()));
        let e = with(&|v| {
            v["Parameters"].as_object_mut().unwrap().remove("OnFreezeFailure");
        })
        .unwrap_err();
        assert!(
            e.contains("Parameters.OnFreezeFailure: a consistent-snapshot procedure needs it"),
            "{e}"
        );
        let e = with(&|v| v["Parameters"]["OnFreezeFailure"]["AllowedValues"] = json!(["fail", "ignore"])).unwrap_err();
        assert!(e.contains("AllowedValues among fail, crash-consistent"), "{e}");
        let e = with(&|v| v["Parameters"]["Script"] = json!({"Type": "String"})).unwrap_err();
        assert!(
            e.contains("Parameters.Script: a consistent-snapshot procedure takes only Mounts"),
            "{e}"
        );
        let e = with(&|v| v["Document"] = json!({"Name": "opsflow-Anything"})).unwrap_err();
        assert!(e.contains("give no Document, Commands or Http"), "{e}");
        // Windows through AWS's VSS document.
        assert_eq!(with(&|v| v["Targets"]["Platforms"] = json!(["Linux", "Windows"])), Ok(()));
    }

    #[test]
    fn parameters_are_typed_defaulted_and_checked() {
        let c = proc(restart()).unwrap();
        let p = c.get("restart-service").unwrap();
        let got = p.parameters(Some(&json!({"Service": "app", "GraceSeconds": 30}))).unwrap();
        assert_eq!(got["Service"], "app");
        assert_eq!(got["GraceSeconds"], "30");
        assert_eq!(got["Unit"], "app.service");
        for (input, field) in [
            (json!({}), "Parameters.Service: is required"),
            (json!({"Service": "db"}), "Parameters.Service: must be one of app, billing-api"),
            (
                json!({"Service": "app", "GraceSeconds": 301}),
                "Parameters.GraceSeconds: must be from 0 to 300",
            ),
            (
                json!({"Service": "app", "GraceSeconds": "ten"}),
                "Parameters.GraceSeconds: must be a whole number",
            ),
            (json!({"Service": "app", "Unit": "x; rm -rf /"}), "Parameters.Unit: must match"),
            (
                json!({"Service": "app", "Script": "id"}),
                "Parameters.Script: is not a parameter of procedure restart-service",
            ),
            (
                json!({"Service": "app\nid"}),
                "Parameters.Service: must not contain control characters",
            ),
        ] {
            let e = p.parameters(Some(&input)).unwrap_err().to_string();
            assert!(e.contains(field), "{input}: {e}");
        }
    }

    #[test]
    fn an_unknown_procedure_is_refused_naming_the_known_ones() {
        let c = proc(restart()).unwrap();
        let e = c.get("rm-rf").unwrap_err().to_string();
        assert!(e.starts_with("InvalidInput: Procedure: \"rm-rf\" is not in the catalogue"), "{e}");
        assert!(e.contains("restart-service"), "{e}");
    }

    #[test]
    fn contradictory_entries_are_refused_naming_file_and_field() {
        let mut fixed_with_params = restart();
        fixed_with_params.as_object_mut().unwrap().remove("Document");
        fixed_with_params["Commands"] = json!({"Linux": ["systemctl restart app"]});
        let mut unknown = restart();
        unknown["Sudo"] = json!(true);
        let mut bad_pattern = restart();
        bad_pattern["Parameters"]["Unit"]["AllowedPattern"] = json!("(");
        let mut default_outside = restart();
        default_outside["Parameters"]["GraceSeconds"]["Default"] = json!("900");
        let mut wrong_name = restart();
        wrong_name["Name"] = json!("Restart");
        for (v, expected) in [
            (
                fixed_with_params,
                "restart-service.json: Parameters: fixed Commands take no parameters",
            ),
            (unknown, "unknown field `Sudo`"),
            (bad_pattern, "Parameters.Unit.AllowedPattern: is not a regular expression"),
            (
                default_outside,
                "InvalidInput: restart-service.json: Parameters.GraceSeconds.Default: must be from 0 to 300",
            ),
            (wrong_name, "Name: must be 1 to 64 lowercase"),
        ] {
            let e = proc(v).unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }

    #[test]
    fn fixed_commands_must_cover_every_platform() {
        let e = proc(json!({
            "Name": "x", "Description": "d", "Kind": "run-command",
            "Commands": {"Linux": ["true"]}
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("Targets.Platforms: includes Windows but Commands has none"), "{e}");
    }
}
