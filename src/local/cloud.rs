//! The local cloud: installed and started by `infra/localcloud/localcloud.sh` on a free
//! 127.0.0.1 port, stopped when dropped, steered through its control API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use super::{repo_root, unique};

/// The AWS calls that change an instance.
pub const INSTANCE_MUTATIONS: [&str; 9] = [
    "ec2:AssociateIamInstanceProfile",
    "ec2:ReplaceIamInstanceProfileAssociation",
    "ec2:DisassociateIamInstanceProfile",
    "ec2:ModifyVolume",
    "ec2:RebootInstances",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ssm:SendCommand",
    "ssm:CancelCommand",
];

/// A running local cloud; stopped when dropped.
pub struct LocalCloud {
    pub endpoint: String,
    /// Where the server this value started keeps its state; `None` for one it only attached to.
    state_dir: Option<PathBuf>,
    http: reqwest::Client,
}

fn script() -> PathBuf {
    repo_root().join("infra/localcloud/localcloud.sh")
}

impl LocalCloud {
    /// Installs (once) and starts the local cloud on a free 127.0.0.1 port.
    pub fn start() -> anyhow::Result<LocalCloud> {
        let state_dir = std::env::temp_dir().join(format!("opsflow-localcloud-{}-{}", std::process::id(), unique()));
        let run = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new("bash")
                .arg(script())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .context("running localcloud.sh")?;
            if !out.status.success() {
                bail!("localcloud.sh {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        run(&["install"])?;
        let endpoint = run(&["start", "--state-dir", &state_dir.to_string_lossy()])?;
        let endpoint = endpoint.lines().last().unwrap_or_default().to_string();
        if !endpoint.starts_with("http://127.0.0.1:") {
            bail!("the local cloud did not report an endpoint (got {endpoint:?})");
        }
        Ok(LocalCloud {
            endpoint,
            state_dir: Some(state_dir),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        })
    }

    /// A local cloud that is already running at `endpoint` (started by `localcloud.sh start`):
    /// used, never stopped.
    pub fn attach(endpoint: &str) -> anyhow::Result<LocalCloud> {
        Ok(LocalCloud {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            state_dir: None,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        })
    }

    /// POST a control request (`/_opsflow/<path>`).
    pub async fn control(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}/_opsflow/{path}", self.endpoint))
            .body(body.to_string())
            .header("content-type", "application/json")
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("local cloud control {path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET a control resource (`/_opsflow/<path>`), e.g. `custom_resources`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.http.get(format!("{}/_opsflow/{path}", self.endpoint)).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("local cloud control {path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// The local cloud's clock (epoch ms): ahead of real time once an engine in virtual time drove it.
    pub async fn now_ms(&self) -> anyhow::Result<i64> {
        let v: Value = serde_json::from_str(
            &self
                .http
                .get(format!("{}/_opsflow/clock", self.endpoint))
                .send()
                .await?
                .text()
                .await?,
        )?;
        v["now_ms"].as_i64().with_context(|| format!("no now_ms in {v}"))
    }

    /// Calls since the last reset that change an instance (its profile, volume, tags, or what
    /// runs on it): what a refused request must not have made.
    pub async fn mutations(&self) -> anyhow::Result<u64> {
        let calls = self.calls().await?;
        Ok(INSTANCE_MUTATIONS.iter().map(|op| calls.get(*op).copied().unwrap_or(0)).sum())
    }

    /// DELETE a control resource (`/_opsflow/<path>`), e.g. `commands` (clears the rules).
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/_opsflow/{path}", self.endpoint))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Zeroes the AWS call counts.
    pub async fn reset_calls(&self) -> anyhow::Result<()> {
        self.delete("calls").await
    }

    /// AWS calls by `service:Operation` since the last reset.
    pub async fn calls(&self) -> anyhow::Result<HashMap<String, u64>> {
        let v: Value = serde_json::from_str(
            &self
                .http
                .get(format!("{}/_opsflow/calls", self.endpoint))
                .send()
                .await?
                .text()
                .await?,
        )?;
        let counts = v.get("calls").unwrap_or(&v);
        Ok(counts
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
            .unwrap_or_default())
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let Some(state_dir) = &self.state_dir else { return };
        if std::env::var_os("OPSFLOW_KEEP_LOCALCLOUD_LOG").is_some() {
            let _ = std::fs::copy(
                state_dir.join("server.log"),
                std::env::temp_dir().join("opsflow-localcloud-server.log"),
            );
        }
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", "--state-dir"])
            .arg(state_dir)
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(state_dir);
    }
}
