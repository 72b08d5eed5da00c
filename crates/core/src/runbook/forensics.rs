//! forensic-capture: evidence from an instance before it goes, or on demand.
//!
//! Entered by an Auto Scaling termination lifecycle hook (its EventBridge event starts the
//! runner with a [`LifecycleAction`]) or by any run. The member stack's collection document
//! gathers the journal and logs, core dumps, processes, sockets, memory and disk figures (event
//! logs on Windows), packs them as one gzip'd tar and uploads it with a manifest (SHA-256 and
//! size of each part) to the evidence bucket, with S3's SHA-256 checksum and `If-None-Match: *`
//! (nothing is overwritten). [`verify`] reads both back and checks every part, the archive's
//! digest and S3's stored checksum; [`preserve`] takes CreateSnapshots of every volume and tags
//! them and the instance with the case id, whatever the collection did. A lifecycle action is
//! kept alive with heartbeats while the capture runs ([`begin`], [`heartbeat`]) and completed
//! with CONTINUE exactly once at the end, on every path ([`complete`]); the hook's own timeout
//! and default result are the backstop, so a capture never holds a scale-in forever.

use std::collections::BTreeMap;
use std::io::Read;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalogue::{Catalogue, Kind, Os, CASE_ID};
use super::input::LifecycleAction;
use super::instance::procedure_of;
use super::results::TargetStatus;
use super::snapshot::{self, StepError, TAG_CONSISTENCY, TAG_EXECUTION, TAG_INSTANCE, TAG_KIND, TAG_PROCEDURE, TAG_RUN};
use super::steps::{home_of, CommandProgress, ProcedureResult, Run, Settings};
use super::targets::Target;
use crate::alert::render::clip_chars;
use crate::error::CoreError;
use crate::ports::{Clock, Fleet, Member, Objects, SnapshotRequest};
use crate::time::format_utc;

/// The member stack's collection documents (`infra/member-account.yaml`).
pub const COLLECT_DOCUMENT: &str = "opsflow-ForensicCollect";
pub const COLLECT_DOCUMENT_WINDOWS: &str = "opsflow-ForensicCollectWindows";
/// What the collection uploads under its key prefix.
pub const ARCHIVE: &str = "collection.tar.gz";
pub const MANIFEST: &str = "manifest.json";
/// The tags of the case on the instance and its snapshots.
pub const TAG_CASE: &str = "opsflow:case";
pub const TAG_FORENSICS: &str = "opsflow:forensics";
/// The Auto Scaling lifecycle state of an instance a termination hook holds.
pub const TERMINATING_WAIT: &str = "Terminating:Wait";
/// A `NextHeartbeatAt` that never comes (no lifecycle action to keep alive).
pub const NEVER: &str = "9999-12-31T23:59:59Z";
/// Heartbeat timeouts shorter than this may run out between two heartbeats: a CheckCommand
/// watches up to a minute and the poll waits up to 30 s.
pub const SHORT_HEARTBEAT_S: i64 = 180;

/// The collection document of a platform.
pub fn collect_document(os: Os) -> &'static str {
    match os {
        Os::Linux => COLLECT_DOCUMENT,
        Os::Windows => COLLECT_DOCUMENT_WINDOWS,
    }
}

/// The case the evidence is filed under: `CaseId`, or the run's name when it is empty.
pub fn case_id(run: &Run) -> String {
    run.parameters
        .get(CASE_ID)
        .filter(|c| !c.is_empty())
        .cloned()
        .unwrap_or_else(|| run.name.clone())
}

/// Where one instance's evidence of a case goes: `forensics/<case>/<instance>/`.
pub fn key_prefix(case: &str, instance_id: &str) -> String {
    format!("forensics/{case}/{instance_id}/")
}

/// The collection document's parameters that say where to upload: the evidence bucket (in the
/// runner's region) and this instance's key prefix of the case.
pub fn upload(run: &Run, target: &Target, settings: &Settings) -> Result<BTreeMap<String, String>, CoreError> {
    let bucket = settings
        .forensics_bucket
        .clone()
        .ok_or_else(|| CoreError::unsupported("forensic-capture", "this deployment has no evidence bucket (FORENSICS_BUCKET)"))?;
    let case = case_id(run);
    Ok(BTreeMap::from([
        ("Bucket".to_string(), bucket),
        ("KeyPrefix".to_string(), key_prefix(&case, &target.instance_id)),
        ("CaseId".to_string(), case),
        ("BucketRegion".to_string(), home_of(&run.id)?.region),
    ]))
}

/// The collection's manifest (`manifest.json`), as the collection document writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub case_id: String,
    pub instance_id: String,
    pub platform: String,
    pub collected_at: String,
    pub archive: Part,
    pub parts: Vec<Part>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

/// One file: the archive (its `Key` under the prefix) or a part inside it (its `Name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Part {
    #[serde(alias = "Key")]
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What the collection looked for and did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// What reading an archive found: its size and digest, and each regular file's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub bytes: u64,
    pub sha256: String,
    pub files: Vec<Part>,
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts and hashes every byte read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads a gzip'd tar from start to end: the digest of the whole stream and of each regular
/// file in it (directories and links carry no bytes and are not parts).
pub fn inspect(archive: &mut dyn Read) -> Result<Inspection, CoreError> {
    let bad = |e: std::io::Error| CoreError::conflict(ARCHIVE, format!("is not a readable gzip'd tar: {e}"));
    let mut hashing = Hashing {
        inner: archive,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut files = Vec::new();
    {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&mut hashing));
        for entry in tar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry.path().map_err(bad)?.to_string_lossy().trim_start_matches("./").to_string();
            let mut part = Hashing {
                inner: &mut entry,
                hasher: Sha256::new(),
                bytes: 0,
            };
            std::io::copy(&mut part, &mut std::io::sink()).map_err(bad)?;
            files.push(Part {
                name,
                bytes: part.bytes,
                sha256: hex(&part.hasher.finalize()),
            });
        }
    }
    // The gzip trailer and the tar's padding are part of the object too.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(bad)?;
    Ok(Inspection {
        bytes: hashing.bytes,
        sha256: hex(&hashing.hasher.finalize()),
        files,
    })
}

/// Every way the archive differs from its manifest and from S3's stored checksum (base64 of
/// the SHA-256, as `ChecksumSHA256`); empty when they agree.
pub fn compare(manifest: &Manifest, found: &Inspection, stored_sha256: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if manifest.archive.sha256 != found.sha256 || manifest.archive.bytes != found.bytes {
        problems.push(format!(
            "the archive is {} bytes with SHA-256 {}, the manifest says {} bytes with {}",
            found.bytes, found.sha256, manifest.archive.bytes, manifest.archive.sha256
        ));
    }
    let stored = stored_sha256.map(|b64| BASE64.decode(b64).ok().map(|digest| hex(&digest)));
    match stored {
        None => problems.push("S3 holds no SHA-256 checksum of the archive (it was not uploaded by the collection document)".to_string()),
        Some(Some(stored)) if stored == found.sha256 => {}
        Some(stored) => problems.push(format!(
            "S3's stored checksum {} is not the archive's SHA-256 {}",
            stored.unwrap_or_else(|| "(unreadable)".to_string()),
            found.sha256
        )),
    }
    let in_archive: BTreeMap<&str, &Part> = found.files.iter().map(|p| (p.name.as_str(), p)).collect();
    let listed: BTreeMap<&str, &Part> = manifest.parts.iter().map(|p| (p.name.as_str(), p)).collect();
    for (name, want) in &listed {
        match in_archive.get(name) {
            None => problems.push(format!("part {name} is in the manifest but not in the archive")),
            Some(got) if got.sha256 != want.sha256 || got.bytes != want.bytes => problems.push(format!(
                "part {name} is {} bytes with SHA-256 {}, the manifest says {} bytes with {}",
                got.bytes, got.sha256, want.bytes, want.sha256
            )),
            Some(_) => {}
        }
    }
    for name in in_archive.keys().filter(|n| !listed.contains_key(*n)) {
        problems.push(format!("{name} is in the archive but not in the manifest"));
    }
    problems
}

/// The evidence verified: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Evidence {
    pub case_id: String,
    /// `s3://<bucket>/<prefix>collection.tar.gz`.
    pub archive: String,
    pub manifest: String,
    pub bytes: u64,
    pub sha256: String,
    pub parts: Vec<String>,
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// Verify: reads the manifest and streams the archive back from the evidence bucket; every
/// part's size and SHA-256, the archive's digest and S3's stored checksum must agree.
pub async fn verify(run: &Run, target: &Target, settings: &Settings, objects: &impl Objects) -> Result<Evidence, CoreError> {
    let upload = upload(run, target, settings)?;
    let (bucket, prefix, case) = (&upload["Bucket"], &upload["KeyPrefix"], &upload["CaseId"]);
    let manifest_key = format!("{prefix}{MANIFEST}");
    let text = objects.get(bucket, &manifest_key).await.map_err(|e| match e {
        CoreError::NotFound { .. } => CoreError::conflict(
            format!("s3://{bucket}/{manifest_key}"),
            "was not uploaded: the collection did not finish",
        ),
        e => e,
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        CoreError::conflict(
            format!("s3://{bucket}/{manifest_key}"),
            format!("is not a collection manifest: {e}"),
        )
    })?;
    if manifest.case_id != *case || manifest.instance_id != target.instance_id || manifest.archive.name != ARCHIVE {
        return Err(CoreError::conflict(
            format!("s3://{bucket}/{manifest_key}"),
            format!(
                "names case {:?}, instance {:?} and archive {:?}, not {case:?}, {:?} and {ARCHIVE:?}",
                manifest.case_id, manifest.instance_id, manifest.archive.name, target.instance_id
            ),
        ));
    }
    let archive_key = format!("{prefix}{ARCHIVE}");
    let (found, stored) = objects.read(bucket, &archive_key, |r| inspect(r)).await?;
    let problems = compare(&manifest, &found?, stored.as_deref());
    if !problems.is_empty() {
        return Err(CoreError::conflict(
            format!("s3://{bucket}/{archive_key}"),
            clip_chars(&problems.join("; "), 2_000),
        ));
    }
    Ok(Evidence {
        case_id: case.clone(),
        archive: format!("s3://{bucket}/{archive_key}"),
        manifest: format!("s3://{bucket}/{manifest_key}"),
        bytes: manifest.archive.bytes,
        sha256: manifest.archive.sha256,
        parts: manifest.parts.into_iter().map(|p| p.name).collect(),
        skipped: manifest.skipped.into_iter().map(|s| format!("{}: {}", s.name, s.reason)).collect(),
    })
}

/// What preserve did: the case's snapshots, and when the instance was tagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Preserved {
    pub case_id: String,
    pub snapshot_ids: Vec<String>,
    pub volume_ids: Vec<String>,
    pub tagged_at: String,
}

/// Preserve: CreateSnapshots of every volume (crash-consistent across them; once per
/// execution), tagged with the case at creation, then the case's tags on the instance.
#[allow(clippy::too_many_arguments)]
pub async fn preserve<F: Fleet>(
    run: &Run,
    target: &Target,
    execution: &str,
    attempt: u32,
    fleet: &F,
    catalogue: &Catalogue,
    clock: &impl Clock,
) -> Result<Preserved, CoreError> {
    let procedure = procedure_of(run, &[Kind::ForensicCapture], catalogue)?;
    let now_s = clock.now_ms().div_euclid(1000);
    let id = &target.instance_id;
    let case = case_id(run);
    let tags = [
        (TAG_KIND, Kind::ForensicCapture.as_str()),
        (TAG_PROCEDURE, procedure.name.as_str()),
        (TAG_INSTANCE, id.as_str()),
        (TAG_RUN, run.name.as_str()),
        (TAG_EXECUTION, execution),
        (TAG_CONSISTENCY, snapshot::Consistency::CrashConsistent.as_str()),
        (TAG_CASE, case.as_str()),
    ];
    let request = SnapshotRequest {
        instance_id: id.clone(),
        description: clip_chars(
            &format!(
                "opsflow forensic-capture of {id}, case {case}: run {} started {} by {}",
                run.name, run.started_at, run.started_by
            ),
            255,
        ),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let mut snapshots = snapshot::create_once(target, execution, procedure, &request, attempt, fleet, clock).await?;
    snapshots.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    let tagged_at = format_utc(now_s);
    let member = fleet.member(&target.account, &target.region).await?;
    member
        .tag_instance(
            id,
            &[
                (TAG_CASE.to_string(), case.clone()),
                (TAG_FORENSICS.to_string(), format!("captured {tagged_at} by run {}", run.name)),
            ],
        )
        .await?;
    Ok(Preserved {
        case_id: case,
        snapshot_ids: snapshots.iter().map(|s| s.snapshot_id.clone()).collect(),
        volume_ids: snapshots.iter().map(|s| s.volume_id.clone()).collect(),
        tagged_at,
    })
}

/// The isolation parameters, each its own step and record (all off by default).
pub const ISOLATE_NETWORK: &str = "IsolateNetwork";
pub const DETACH_FROM_TARGET_GROUPS: &str = "DetachFromTargetGroups";
pub const REVOKE_ROLE_SESSIONS: &str = "RevokeRoleSessions";
/// The security group isolation moves the instance's interfaces to, one per VPC.
pub const QUARANTINE_GROUP: &str = "opsflow-quarantine";
/// A role whose sessions opsflow may revoke carries this tag with the value `allowed`.
pub const TAG_QUARANTINE: &str = "opsflow:quarantine";

/// One isolation step: done, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Isolated {
    pub step: String,
    pub done: bool,
    pub detail: String,
}

/// The inline policy that makes the instance's role sessions useless: every action denied to
/// credentials the instance got from its profile (`ec2:SourceInstanceARN`, which EC2 sets on
/// them), and to no other holder of the role.
pub fn deny_sessions_policy(instance_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OpsflowForensicQuarantine",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"ArnEquals": {"ec2:SourceInstanceARN": instance_arn}}
        }]
    })
    .to_string()
}

/// Isolate: the steps the run's parameters ask for, each on its own: the instance's network
/// interfaces moved to the VPC's quarantine group (no rule in or out), the instance taken out
/// of every target group, its role's sessions from this instance denied everything. A step that
/// AWS refuses is recorded and the others still run; throttling and transient errors retry the
/// whole (every step is idempotent).
pub async fn isolate<F: Fleet>(run: &Run, target: &Target, fleet: &F, catalogue: &Catalogue) -> Result<Vec<Isolated>, CoreError> {
    let procedure = procedure_of(run, &[Kind::ForensicCapture], catalogue)?;
    let asked = |p: &str| run.parameters.get(p).map(String::as_str) == Some("true");
    let id = &target.instance_id;
    let member = fleet.member(&target.account, &target.region).await?;
    let facts = member.describe_instance(id).await?;
    super::targets::check_opt_in(id, &facts.tags, procedure)?;
    let mut steps = Vec::new();
    let mut record = |step: &str, outcome: Result<String, CoreError>| -> Result<(), CoreError> {
        match outcome {
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => steps.push(Isolated {
                step: step.to_string(),
                done: false,
                detail: e.to_string(),
            }),
            Ok(detail) => steps.push(Isolated {
                step: step.to_string(),
                done: true,
                detail,
            }),
        }
        Ok(())
    };
    if asked(ISOLATE_NETWORK) {
        let outcome = async {
            let interfaces = member.network_interfaces(id).await?;
            if interfaces.is_empty() {
                return Err(CoreError::conflict(format!("instance {id}"), "has no network interface"));
            }
            let tags = [(TAG_KIND.to_string(), Kind::ForensicCapture.as_str().to_string())];
            let mut moved = Vec::new();
            for eni in &interfaces {
                let group = member.quarantine_group(&eni.vpc_id, QUARANTINE_GROUP, &tags).await?;
                if eni.groups == [group.clone()] {
                    moved.push(format!("{}: already in {group}", eni.interface_id));
                    continue;
                }
                member.set_interface_groups(&eni.interface_id, std::slice::from_ref(&group)).await?;
                moved.push(format!("{}: {} -> {group}", eni.interface_id, eni.groups.join(" ")));
            }
            Ok(format!(
                "network interfaces moved to {QUARANTINE_GROUP} (nothing in or out; connections already open stay tracked until they end): {}",
                moved.join("; ")
            ))
        }
        .await;
        record(ISOLATE_NETWORK, outcome)?;
    }
    if asked(DETACH_FROM_TARGET_GROUPS) {
        let outcome = async {
            let groups = member.target_groups_of(id).await?;
            for (arn, port) in &groups {
                member.deregister_target(arn, id, *port).await?;
            }
            Ok(match groups.is_empty() {
                true => "registered in no target group".to_string(),
                false => format!(
                    "deregistered from {} target group{} (connections drain for each group's deregistration delay): {}",
                    groups.len(),
                    if groups.len() == 1 { "" } else { "s" },
                    groups.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>().join(", ")
                ),
            })
        }
        .await;
        record(DETACH_FROM_TARGET_GROUPS, outcome)?;
    }
    if asked(REVOKE_ROLE_SESSIONS) {
        let outcome = async {
            let Some(association) = &facts.iam_association else {
                return Ok("no instance profile: no role sessions to revoke".to_string());
            };
            let Some((role, tags)) = member.profile_role(&association.profile_arn).await? else {
                return Ok(format!("profile {} has no role: no sessions to revoke", association.profile_arn));
            };
            if tags.get(TAG_QUARANTINE).map(String::as_str) != Some("allowed") {
                return Err(CoreError::forbidden(
                    format!("role {role}"),
                    format!("is not tagged {TAG_QUARANTINE}=allowed, so its sessions were left alone (its owner opts in with that tag)"),
                ));
            }
            let arn = format!(
                "arn:{}:ec2:{}:{}:instance/{id}",
                crate::facts::partition(&target.region),
                target.region,
                target.account
            );
            let name = format!("opsflow-quarantine-{id}");
            member.put_role_policy(&role, &name, &deny_sessions_policy(&arn)).await?;
            Ok(format!(
                "role {role}: inline policy {name} denies everything to the sessions of {id} (ec2:SourceInstanceARN); other holders of the role are unaffected"
            ))
        }
        .await;
        record(REVOKE_ROLE_SESSIONS, outcome)?;
    }
    Ok(steps)
}

/// The lifecycle action a capture keeps alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Hold {
    /// Whether a lifecycle action waits on this capture.
    pub held: bool,
    #[serde(default)]
    pub heartbeat_timeout_s: i64,
    #[serde(default)]
    pub default_result: String,
    /// When the next heartbeat is due: the state machine compares `$$.State.EnteredTime` with it.
    pub next_heartbeat_at: String,
    #[serde(default)]
    pub heartbeats: u32,
    #[serde(default)]
    pub note: String,
}

impl Hold {
    fn none(note: impl Into<String>) -> Hold {
        Hold {
            held: false,
            heartbeat_timeout_s: 0,
            default_result: String::new(),
            next_heartbeat_at: NEVER.to_string(),
            heartbeats: 0,
            note: note.into(),
        }
    }
}

/// A third of the heartbeat timeout (at least 10 s): two heartbeats may be missed.
fn heartbeat_every_s(timeout_s: i64) -> i64 {
    (timeout_s / 3).max(10)
}

/// The run's lifecycle action, if it holds this target.
fn action_of<'r>(run: &'r Run, target: &Target) -> Result<Option<&'r LifecycleAction>, CoreError> {
    match &run.lifecycle_action {
        Some(a) if a.instance_id != target.instance_id => Err(CoreError::invalid(
            "Run.LifecycleAction.EC2InstanceId",
            format!("is {}, not the target {}", a.instance_id, target.instance_id),
        )),
        a => Ok(a.as_ref()),
    }
}

/// Whether the lifecycle action still waits: the instance is in `Terminating:Wait` of the group.
async fn waiting(member: &impl Member, action: &LifecycleAction) -> Result<Result<(), String>, CoreError> {
    Ok(match member.lifecycle_state(&action.instance_id).await? {
        Some((group, state)) if group == action.auto_scaling_group_name && state == TERMINATING_WAIT => Ok(()),
        Some((group, state)) => Err(format!("{} is {state} in group {group}", action.instance_id)),
        None => Err(format!("{} is in no Auto Scaling group any more", action.instance_id)),
    })
}

/// Begin: reads the hook (its heartbeat timeout and default result) and sends the first
/// heartbeat; a capture without a lifecycle action, or whose action no longer waits, holds
/// nothing (and says why).
pub async fn begin<F: Fleet>(run: &Run, target: &Target, fleet: &F, now_s: i64) -> Result<Hold, CoreError> {
    let Some(action) = action_of(run, target)? else {
        return Ok(Hold::none("no lifecycle action holds the instance (an on-demand capture)"));
    };
    let member = fleet.member(&target.account, &target.region).await?;
    if let Err(why) = waiting(&member, action).await? {
        return Ok(Hold::none(format!(
            "the lifecycle action no longer waits ({why}): the instance may be going while it is captured"
        )));
    }
    let hook = member
        .lifecycle_hook(&action.auto_scaling_group_name, &action.lifecycle_hook_name)
        .await?;
    member.lifecycle_heartbeat(action).await?;
    let note = if hook.heartbeat_timeout_s < SHORT_HEARTBEAT_S {
        format!(
            "the hook's heartbeat timeout ({} s) is under {SHORT_HEARTBEAT_S} s: it may run out between heartbeats, and then {} applies",
            hook.heartbeat_timeout_s, hook.default_result
        )
    } else {
        String::new()
    };
    Ok(Hold {
        held: true,
        heartbeat_timeout_s: hook.heartbeat_timeout_s,
        default_result: hook.default_result,
        next_heartbeat_at: format_utc(now_s + heartbeat_every_s(hook.heartbeat_timeout_s)),
        heartbeats: 1,
        note,
    })
}

/// Heartbeat: RecordLifecycleActionHeartbeat while the action still waits (each restarts the
/// hook's timeout); one that has ended is no longer held, and the hold says why.
pub async fn heartbeat<F: Fleet>(run: &Run, target: &Target, hold: &Hold, fleet: &F, now_s: i64) -> Result<Hold, CoreError> {
    let Some(action) = action_of(run, target)?.filter(|_| hold.held) else {
        return Ok(hold.clone());
    };
    let member = fleet.member(&target.account, &target.region).await?;
    if let Err(why) = waiting(&member, action).await? {
        return Ok(Hold {
            held: false,
            next_heartbeat_at: NEVER.to_string(),
            note: format!("the lifecycle action ended before the capture did ({why}): its timeout passed, or someone completed it"),
            ..hold.clone()
        });
    }
    member.lifecycle_heartbeat(action).await?;
    Ok(Hold {
        heartbeats: hold.heartbeats + 1,
        next_heartbeat_at: format_utc(now_s + heartbeat_every_s(hold.heartbeat_timeout_s)),
        ..hold.clone()
    })
}

/// What Complete did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Completed {
    /// Whether this capture called CompleteLifecycleAction (CONTINUE).
    pub completed: bool,
    pub note: String,
}

/// Complete: CompleteLifecycleAction CONTINUE if the action still waits, so the scale-in goes
/// on; never twice (a retry finds the action no longer waiting), and nothing to do without one.
pub async fn complete<F: Fleet>(run: &Run, target: &Target, fleet: &F) -> Result<Completed, CoreError> {
    let Some(action) = action_of(run, target)? else {
        return Ok(Completed {
            completed: false,
            note: "no lifecycle action to complete".to_string(),
        });
    };
    let member = fleet.member(&target.account, &target.region).await?;
    if let Err(why) = waiting(&member, action).await? {
        return Ok(Completed {
            completed: false,
            note: format!("the lifecycle action had already ended ({why}): nothing to complete"),
        });
    }
    let completed = member.complete_lifecycle_action(action, "CONTINUE").await?;
    Ok(Completed {
        completed,
        note: match completed {
            true => format!("lifecycle action {} completed with CONTINUE", action.lifecycle_hook_name),
            false => "the lifecycle action ended as it was being completed".to_string(),
        },
    })
}

/// Everything the procedure's state holds at its end.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Conclusion {
    pub run: Run,
    #[serde(default)]
    pub hold: Option<Hold>,
    #[serde(default)]
    pub hold_error: Option<StepError>,
    #[serde(default)]
    pub collect: Option<CommandProgress>,
    #[serde(default)]
    pub collect_error: Option<StepError>,
    #[serde(default)]
    pub evidence: Option<Evidence>,
    #[serde(default)]
    pub evidence_error: Option<StepError>,
    #[serde(default)]
    pub preserved: Option<Preserved>,
    #[serde(default)]
    pub preserve_error: Option<StepError>,
    #[serde(default)]
    pub isolation: Option<Vec<Isolated>>,
    #[serde(default)]
    pub isolation_error: Option<StepError>,
    #[serde(default)]
    pub completed: Option<Completed>,
    #[serde(default)]
    pub complete_error: Option<StepError>,
}

/// Conclude: the first failure in the order things happen (collection, verification,
/// snapshots and tags, isolation, the lifecycle action) names the error; everything done is in the reason
/// on every path, so a failed capture still says which evidence exists.
pub fn conclude(c: &Conclusion) -> snapshot::End {
    let collect = c.collect.as_ref().and_then(|p| p.result.clone());
    let mut failures: Vec<(&str, String)> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    match (&collect, &c.collect_error) {
        (_, Some(e)) => failures.push(("CollectionFailed", format!("the collection failed: {}: {}", e.error, e.cause))),
        (Some(r), None) if r.status == TargetStatus::Succeeded => {}
        (Some(r), None) => failures.push(("CollectionFailed", format!("the collection did not succeed: {}", r.reason))),
        (None, None) => failures.push(("CollectionFailed", "the collection never ended".to_string())),
    }
    match (&c.evidence, &c.evidence_error) {
        (Some(e), _) => done.push(format!(
            "archive {} ({} bytes, SHA-256 {}, {} parts verified against {}{})",
            e.archive,
            e.bytes,
            e.sha256,
            e.parts.len(),
            e.manifest,
            match e.skipped.is_empty() {
                true => String::new(),
                false => format!("; skipped {}", e.skipped.join(", ")),
            }
        )),
        (None, Some(e)) => failures.push((
            "EvidenceMismatch",
            format!("the uploaded evidence does not verify: {}: {}", e.error, e.cause),
        )),
        (None, None) => {}
    }
    match (&c.preserved, &c.preserve_error) {
        (Some(p), _) => done.push(format!(
            "{} snapshot{} of case {}: {}; instance tagged {TAG_CASE}={}",
            p.snapshot_ids.len(),
            if p.snapshot_ids.len() == 1 { "" } else { "s" },
            p.case_id,
            p.snapshot_ids
                .iter()
                .zip(&p.volume_ids)
                .map(|(s, v)| format!("{s} ({v})"))
                .collect::<Vec<_>>()
                .join(", "),
            p.case_id
        )),
        (None, Some(e)) => failures.push(("SnapshotFailed", format!("the snapshots or tags failed: {}: {}", e.error, e.cause))),
        (None, None) => failures.push(("SnapshotFailed", "no snapshot was taken".to_string())),
    }
    for step in c.isolation.iter().flatten() {
        match step.done {
            true => done.push(format!("{}: {}", step.step, step.detail)),
            false => failures.push(("IsolationFailed", format!("{} failed: {}", step.step, step.detail))),
        }
    }
    if let Some(e) = &c.isolation_error {
        failures.push((
            "IsolationFailed",
            format!("isolating the instance failed: {}: {}", e.error, e.cause),
        ));
    }
    if let Some(e) = &c.hold_error {
        failures.push((
            "LifecycleFailed",
            format!("holding the lifecycle action failed: {}: {}", e.error, e.cause),
        ));
    }
    if let Some(h) = c.hold.as_ref().filter(|h| !h.note.is_empty()) {
        done.push(h.note.clone());
    }
    match (&c.completed, &c.complete_error) {
        (_, Some(e)) => failures.push((
            "LifecycleFailed",
            format!(
                "completing the lifecycle action failed ({}: {}); the hook's timeout and default result end it",
                e.error, e.cause
            ),
        )),
        (Some(d), None) => done.push(match c.hold.as_ref().filter(|h| h.heartbeats > 0) {
            Some(h) => format!(
                "{} after {} heartbeat{}",
                d.note,
                h.heartbeats,
                if h.heartbeats == 1 { "" } else { "s" }
            ),
            None => d.note.clone(),
        }),
        (None, None) => {}
    }
    let mut r = ProcedureResult::new(TargetStatus::Succeeded, "");
    if let Some(col) = &collect {
        r.exit_code = col.exit_code;
        r.output_tail = col.output_tail.clone();
        r.output_url = col.output_url.clone();
        r.command_id = col.command_id.clone();
    }
    r.snapshots = c.preserved.as_ref().map(|p| p.snapshot_ids.clone()).unwrap_or_default();
    let Some((error, _)) = failures.first() else {
        r.reason = clip_chars(&done.join("; "), 1_024);
        return snapshot::End {
            ok: true,
            result: Some(r),
            error: None,
            cause: None,
        };
    };
    r.status = TargetStatus::Failed;
    let all: Vec<String> = failures.iter().map(|(_, why)| why.clone()).chain(done).collect();
    r.reason = clip_chars(&all.join("; "), 1_024);
    snapshot::End {
        ok: false,
        error: Some(error.to_string()),
        cause: Some(serde_json::to_string(&r).expect("a result serializes")),
        result: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A gzip'd tar of `files`, as the collection packs it (`tar -C dir -czf … .`).
    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
        for (name, body) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            tar.append_data(&mut header, format!("./{name}"), *body).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    fn manifest_of(bytes: &[u8], files: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            version: 1,
            case_id: "c-1".into(),
            instance_id: "i-0123456789abcdef0".into(),
            platform: "Linux".into(),
            collected_at: "2026-12-06T17:00:00Z".into(),
            archive: Part {
                name: ARCHIVE.into(),
                bytes: bytes.len() as u64,
                sha256: sha(bytes),
            },
            parts: files
                .iter()
                .map(|(n, b)| Part {
                    name: n.to_string(),
                    bytes: b.len() as u64,
                    sha256: sha(b),
                })
                .collect(),
            skipped: vec![],
        }
    }

    /// S3's ChecksumSHA256: base64 of the digest.
    fn b64(hex_digest: &str) -> String {
        let bytes: Vec<u8> = (0..hex_digest.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex_digest[i..i + 2], 16).unwrap())
            .collect();
        BASE64.encode(bytes)
    }

    const FILES: &[(&str, &[u8])] = &[
        ("system.txt", b"instance: i-0123456789abcdef0\n"),
        ("var-log/messages", b"kernel: oops\n"),
    ];

    #[test]
    fn an_archive_that_matches_its_manifest_and_s3s_checksum_has_no_problem() {
        let bytes = archive(FILES);
        let found = inspect(&mut bytes.as_slice()).unwrap();
        assert_eq!((found.bytes, found.sha256.clone()), (bytes.len() as u64, sha(&bytes)));
        assert_eq!(
            found.files.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["system.txt", "var-log/messages"]
        );
        let m = manifest_of(&bytes, FILES);
        assert_eq!(compare(&m, &found, Some(&b64(&sha(&bytes)))), Vec::<String>::new());
    }

    #[test]
    fn every_difference_is_named() {
        let bytes = archive(FILES);
        let found = inspect(&mut bytes.as_slice()).unwrap();
        let mut m = manifest_of(&bytes, FILES);
        m.parts[0].sha256 = sha(b"something else");
        m.parts.remove(1);
        m.parts.push(Part {
            name: "sockets.txt".into(),
            bytes: 1,
            sha256: sha(b"x"),
        });
        let problems = compare(&m, &found, None);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("S3 holds no SHA-256 checksum"), "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("part sockets.txt is in the manifest but not in the archive")));
        assert!(problems.iter().any(|p| p.starts_with("part system.txt is 30 bytes with SHA-256")));
        assert!(problems
            .iter()
            .any(|p| p == "var-log/messages is in the archive but not in the manifest"));
        let other = compare(&manifest_of(&bytes, FILES), &found, Some(&b64(&sha(b"another upload"))));
        assert!(other[0].starts_with("S3's stored checksum"), "{other:?}");
        let mut truncated = manifest_of(&bytes, FILES);
        truncated.archive.bytes += 1;
        assert!(compare(&truncated, &found, Some(&b64(&sha(&bytes))))[0].starts_with("the archive is"));
    }

    #[test]
    fn a_damaged_archive_is_an_error_not_a_panic() {
        let bytes = archive(FILES);
        for cut in [0, 10, bytes.len() / 2] {
            assert!(inspect(&mut &bytes[..cut]).is_err() || cut == 0, "cut at {cut}");
        }
        assert!(inspect(&mut &b"not gzip at all"[..]).is_err());
    }

    #[test]
    fn an_unreadable_stored_checksum_is_named() {
        let bytes = archive(FILES);
        let found = inspect(&mut bytes.as_slice()).unwrap();
        let problems = compare(&manifest_of(&bytes, FILES), &found, Some("not base64!"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("S3's stored checksum (unreadable) is not the archive's SHA-256"),
            "{problems:?}"
        );
        assert_eq!(b64("000102ff"), "AAEC/w==");
    }

    fn run(lifecycle: Option<serde_json::Value>) -> Run {
        serde_json::from_value(json!({
            "Id": "arn:aws:states:eu-west-1:123456789012:execution:opsflow-run-runbook:r-1", "Name": "r-1",
            "StartedAt": "2026-12-06T17:00:00Z", "Procedure": "forensic-capture", "Kind": "forensic-capture",
            "Parameters": {"CaseId": "", "MaxLogMiB": "256"}, "MaxConcurrency": "1", "MaxErrors": "0",
            "Notify": "OnFailure", "DryRun": false, "StartedBy": "ann", "ProcedureArn": "arn:sm",
            "LifecycleAction": lifecycle,
        }))
        .unwrap()
    }

    #[test]
    fn the_case_is_the_run_when_none_is_given_and_the_upload_goes_under_it() {
        let mut settings = Settings::new("runs");
        let target: Target = serde_json::from_value(
            json!({"Account": "111111111111", "Region": "eu-north-1", "InstanceId": "i-0123456789abcdef0", "Platform": "Linux"}),
        )
        .unwrap();
        assert!(matches!(upload(&run(None), &target, &settings), Err(CoreError::Unsupported { .. })));
        settings.forensics_bucket = Some("evidence".into());
        let u = upload(&run(None), &target, &settings).unwrap();
        assert_eq!(u["KeyPrefix"], "forensics/r-1/i-0123456789abcdef0/");
        assert_eq!(
            (u["Bucket"].as_str(), u["BucketRegion"].as_str()),
            ("evidence", "eu-west-1"),
            "the runner's region"
        );
        let mut r = run(None);
        r.parameters.insert(CASE_ID.into(), "IR-7".into());
        assert_eq!(upload(&r, &target, &settings).unwrap()["CaseId"], "IR-7");
    }

    #[test]
    fn conclude_names_the_first_failure_and_keeps_what_was_done() {
        let end = conclude(
            &serde_json::from_value(json!({
                "Run": run(None),
                "Collect": {"CommandId": "c", "SentAtEpochS": 0, "Poll": {"Attempt": 0, "DelaySeconds": 1, "DeadlineEpochS": 9},
                            "Done": true, "Result": {"Status": "Failed", "ExitCode": 8, "Reason": "exit 8"}},
                "Preserved": {"CaseId": "r-1", "SnapshotIds": ["snap-1"], "VolumeIds": ["vol-1"], "TaggedAt": "t"},
                "CompleteError": {"Error": "Throttled", "Cause": "slow down"},
            }))
            .unwrap(),
        );
        assert_eq!(end.error.as_deref(), Some("CollectionFailed"));
        let cause = end.cause.unwrap();
        assert!(
            cause.contains("snap-1 (vol-1)") && cause.contains("the hook's timeout and default result end it"),
            "{cause}"
        );
    }
}
