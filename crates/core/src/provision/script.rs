//! What runs on the instance through SSM Run Command: the file system grow scripts and the
//! bootstrap command.
//!
//! Scripts are returned as command lines for the `commands` parameter of AWS-RunShellScript
//! (Linux, bash) or AWS-RunPowerShellScript (Windows); SSM writes them, one per line, into a
//! script file. Both scripts are idempotent: run again, they change nothing and succeed. They
//! end by printing one machine-readable line, `OPSFLOW_FS_SIZE_BYTES=<n>`, read back with
//! [`parse_fs_size`].
//!
//! The Linux script exits with 3 for an unsupported disk layout or file system, 4 when a tool
//! is missing and 5 when a resize step fails (see [`fs_script_exit_reason`]); it checks the
//! file system type and the tools before changing anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{shell_document, CommandSpec};
use crate::error::CoreError;
use crate::facts::Platform;
use crate::provision::plan::ChosenVolume;
use crate::provision::props::{is_ec2_device_name, Bootstrap, BootstrapAction};

/// The prefix of the line the grow scripts print last.
pub const FS_SIZE_MARKER: &str = "OPSFLOW_FS_SIZE_BYTES=";
/// Execution and delivery timeout of the grow script.
pub const FS_GROW_TIMEOUT_SECONDS: u32 = 600;

/// The SendCommand call for `Bootstrap`.
///
/// `Commands` go into the `commands` parameter of the platform's shell document as a list,
/// with `executionTimeout` set from `TimeoutSeconds`. A `DocumentName` gets exactly the given
/// `Parameters`: an `executionTimeout` the document does not declare would make SendCommand
/// fail with `InvalidParameters`. `TimeoutSeconds` is also the SendCommand delivery timeout.
pub fn bootstrap_command(bootstrap: &Bootstrap, platform: Platform) -> CommandSpec {
    let (document_name, parameters) = match &bootstrap.action {
        BootstrapAction::Commands { lines } => (
            shell_document(platform).to_string(),
            BTreeMap::from([
                ("commands".to_string(), lines.clone()),
                ("executionTimeout".to_string(), vec![bootstrap.timeout_seconds.to_string()]),
            ]),
        ),
        BootstrapAction::Document { name, parameters } => (name.clone(), parameters.clone()),
    };
    CommandSpec {
        document_name,
        parameters,
        timeout_seconds: bootstrap.timeout_seconds,
        output_s3_bucket: bootstrap.output_s3_bucket.clone(),
        output_s3_prefix: bootstrap.output_s3_prefix.clone(),
        cloudwatch_log_group: bootstrap.cloudwatch_log_group.clone(),
        comment: None,
    }
}

/// Which file system to grow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsTarget {
    /// Linux: the file system mounted there (`/` for the root volume).
    MountPoint(String),
    /// Windows: the partition of that drive (`C` for the root volume).
    DriveLetter(char),
    /// A non-root EBS volume, found on the instance by its NVMe serial number (the volume ID
    /// without its dash) or, on Linux Xen instances, by its EC2 device name.
    Volume { volume_id: String, device_name: String },
}

impl FsTarget {
    /// The root file system (`/` or `C:`) for the root volume, else the volume itself.
    pub fn for_volume(platform: Platform, volume: &ChosenVolume) -> FsTarget {
        match (volume.is_root, platform) {
            (true, Platform::Linux) => FsTarget::MountPoint("/".to_string()),
            (true, Platform::Windows) => FsTarget::DriveLetter('C'),
            (false, _) => FsTarget::Volume {
                volume_id: volume.volume_id.clone(),
                device_name: volume.device_name.clone(),
            },
        }
    }
}

/// The SendCommand call that grows the file system of `target`.
pub fn fs_grow_command(platform: Platform, target: &FsTarget) -> Result<CommandSpec, CoreError> {
    let lines = match platform {
        Platform::Linux => linux_fs_grow_script(target)?,
        Platform::Windows => windows_fs_grow_script(target)?,
    };
    Ok(CommandSpec {
        document_name: shell_document(platform).to_string(),
        parameters: BTreeMap::from([
            ("commands".to_string(), lines),
            ("executionTimeout".to_string(), vec![FS_GROW_TIMEOUT_SECONDS.to_string()]),
        ]),
        timeout_seconds: FS_GROW_TIMEOUT_SECONDS,
        output_s3_bucket: None,
        output_s3_prefix: None,
        cloudwatch_log_group: None,
        comment: None,
    })
}

const LINUX_HEAD: &[&str] = &[
    "#!/bin/bash",
    "# opsflow: grow the partition and file system behind a mount point to fill its (already enlarged) EBS volume.",
    "# Safe to run again. Exit codes: 3 unsupported layout or file system, 4 missing tool, 5 a resize step failed.",
    r#"[ -n "${BASH_VERSION:-}" ] || { echo 'opsflow: error: bash is required' >&2; exit 3; }"#,
    "set -euo pipefail",
    "export LC_ALL=C",
    r#"export PATH="${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin""#,
    r#"log() { echo "opsflow: $*"; }"#,
    r#"die() { local code="$1"; shift; echo "opsflow: error: $*" >&2; exit "$code"; }"#,
    r#"need() { command -v "$1" >/dev/null 2>&1 || die 4 "$1 is not installed (package: $2)"; }"#,
    "need findmnt util-linux",
    "need lsblk util-linux",
];

const LINUX_BODY: &[&str] = &[
    r#"findmnt -M "$MOUNTPOINT" >/dev/null || die 3 "$MOUNTPOINT is not a mount point""#,
    r#"# With mounts stacked on the mount point, the last one listed is the visible one."#,
    r#"SOURCE="$(findmnt -nro SOURCE -M "$MOUNTPOINT" | tail -n 1)""#,
    r#"SOURCE="${SOURCE%%\[*}"  # btrfs shows a subvolume as /dev/xxx[/subvolume]"#,
    r#"FSTYPE="$(findmnt -nro FSTYPE -M "$MOUNTPOINT" | tail -n 1)""#,
    r#"if [ ! -b "$SOURCE" ]; then"#,
    r#"  # e.g. /dev/root: find the device by its major:minor numbers"#,
    r#"  MAJMIN="$(findmnt -nro MAJ:MIN -M "$MOUNTPOINT" | tail -n 1)""#,
    r#"  if [ -e "/dev/block/$MAJMIN" ]; then SOURCE="$(readlink -f "/dev/block/$MAJMIN")"; fi"#,
    "fi",
    r#"[ -b "$SOURCE" ] || die 3 "$MOUNTPOINT is on $SOURCE, which is not a block device""#,
    r#"log "$MOUNTPOINT: $FSTYPE file system on $SOURCE""#,
    r#"case "$FSTYPE" in"#,
    "  xfs) need xfs_growfs xfsprogs ;;",
    "  ext2|ext3|ext4) need resize2fs e2fsprogs ;;",
    "  btrfs) need btrfs btrfs-progs ;;",
    r#"  *) die 3 "file system type $FSTYPE of $MOUNTPOINT is not supported (xfs, ext2, ext3, ext4 and btrfs are)" ;;"#,
    "esac",
    "",
    "# Grows the partition $1 to the end of its disk (a whole disk needs nothing).",
    "grow_partition() {",
    "  local dev name part disk out rc",
    r#"  dev="$(readlink -f "$1")""#,
    r#"  name="${dev##*/}""#,
    r#"  if [ ! -e "/sys/class/block/$name/partition" ]; then"#,
    r#"    log "$dev is a whole disk: no partition to grow""#,
    "    return 0",
    "  fi",
    r#"  part="$(cat "/sys/class/block/$name/partition")""#,
    r#"  disk="/dev/$(basename "$(readlink -f "/sys/class/block/$name/..")")""#,
    r#"  need growpart "cloud-utils-growpart or cloud-guest-utils""#,
    "  rc=0",
    r#"  out="$(growpart "$disk" "$part" 2>&1)" || rc=$?"#,
    r#"  echo "$out""#,
    r#"  if [ "$rc" -eq 0 ]; then"#,
    r#"    log "grew partition $part of $disk""#,
    r#"  elif [ "$rc" -eq 1 ] && grep -q NOCHANGE <<<"$out"; then"#,
    r#"    log "partition $part of $disk already fills the disk""#,
    "  else",
    r#"    die 5 "growpart $disk $part failed (exit code $rc)""#,
    "  fi",
    "}",
    "",
    r#"TYPE="$(lsblk -dno TYPE "$SOURCE")""#,
    r#"case "$TYPE" in"#,
    r#"  part|disk) grow_partition "$SOURCE" ;;"#,
    "  lvm)",
    "    for tool in lvs pvs vgs pvresize lvextend; do need \"$tool\" lvm2; done",
    r#"    VG="$(lvs --noheadings -o vg_name "$SOURCE" | tr -d '[:space:]')""#,
    r#"    [ -n "$VG" ] || die 3 "no volume group found for $SOURCE""#,
    r#"    for pv in $(pvs --noheadings -o pv_name,vg_name | awk -v vg="$VG" '$2 == vg { print $1 }'); do"#,
    r#"      grow_partition "$pv""#,
    r#"      pvresize "$pv" || die 5 "pvresize $pv failed""#,
    "    done",
    r#"    FREE="$(vgs --noheadings -o vg_free_count "$VG" | tr -d '[:space:]')""#,
    r#"    if [ "${FREE:-0}" -gt 0 ] && [ "$FSTYPE" = btrfs ]; then"#,
    r#"      lvextend -l +100%FREE "$SOURCE" || die 5 "lvextend $SOURCE failed""#,
    r#"    elif [ "${FREE:-0}" -gt 0 ]; then"#,
    r#"      lvextend -r -l +100%FREE "$SOURCE" || die 5 "lvextend $SOURCE failed""#,
    "    else",
    r#"      log "volume group $VG has no free extents: $SOURCE already uses all of it""#,
    "    fi",
    "    ;;",
    r#"  *) die 3 "$MOUNTPOINT is on a $TYPE device ($SOURCE); partitions, whole disks and LVM logical volumes are supported" ;;"#,
    "esac",
    "",
    r#"case "$FSTYPE" in"#,
    r#"  xfs) xfs_growfs -d "$MOUNTPOINT" || die 5 "xfs_growfs $MOUNTPOINT failed" ;;"#,
    r#"  ext2|ext3|ext4) resize2fs "$SOURCE" || die 5 "resize2fs $SOURCE failed" ;;"#,
    r#"  btrfs) btrfs filesystem resize max "$MOUNTPOINT" || die 5 "btrfs filesystem resize max $MOUNTPOINT failed" ;;"#,
    "esac",
    r#"SIZE="$(df -B1 --output=size "$MOUNTPOINT" | tail -n 1 | tr -d '[:space:]')""#,
    r#"echo "OPSFLOW_FS_SIZE_BYTES=$SIZE""#,
];

/// The bash lines that grow a Linux file system: finds the block device behind the mount
/// point (`findmnt`, `lsblk`), grows its partition with `growpart` (NVMe `/dev/nvme0n1p1` is
/// partition 1 of `/dev/nvme0n1`, `/dev/xvda1` partition 1 of `/dev/xvda`; a file system on a
/// whole disk has none), handles LVM (`pvresize`, then `lvextend -r -l +100%FREE`), then grows
/// the file system by type: `xfs_growfs`, `resize2fs` or `btrfs filesystem resize max`.
pub fn linux_fs_grow_script(target: &FsTarget) -> Result<Vec<String>, CoreError> {
    let mut lines: Vec<String> = LINUX_HEAD.iter().map(|l| l.to_string()).collect();
    match target {
        FsTarget::MountPoint(mount_point) => {
            check_mount_point(mount_point)?;
            lines.push(format!("MOUNTPOINT='{mount_point}'"));
        }
        FsTarget::Volume { volume_id, device_name } => {
            check_volume(volume_id, device_name)?;
            let device = if device_name.starts_with("/dev/") {
                device_name.clone()
            } else {
                format!("/dev/{device_name}")
            };
            let mut candidates = vec![format!("'{device}'")];
            if let Some(rest) = device.strip_prefix("/dev/sd") {
                candidates.push(format!("'/dev/xvd{rest}'"));
            }
            lines.extend([
                format!("VOLUME_ID='{volume_id}'"),
                "# Nitro instances show EBS volumes as NVMe disks whose serial number is the volume ID without its dash;".to_string(),
                "# Xen instances show /dev/sdX as /dev/xvdX.".to_string(),
                "DISK=''".to_string(),
                "for name in $(lsblk -dno NAME); do".to_string(),
                r#"  serial="$(lsblk -dno SERIAL "/dev/$name" 2>/dev/null | tr -d '[:space:]' || true)""#.to_string(),
                r#"  if [ "$serial" = "${VOLUME_ID//-/}" ]; then DISK="/dev/$name"; break; fi"#.to_string(),
                "done".to_string(),
                r#"if [ -z "$DISK" ]; then"#.to_string(),
                format!("  for candidate in {}; do", candidates.join(" ")),
                r#"    if [ -b "$candidate" ]; then DISK="$(readlink -f "$candidate")"; break; fi"#.to_string(),
                "  done".to_string(),
                "fi".to_string(),
                format!(r#"[ -n "$DISK" ] || die 3 "no disk found for $VOLUME_ID ({device})""#),
                r#"MOUNTPOINTS="$(lsblk -nro MOUNTPOINT "$DISK" | grep '^/' || true)""#.to_string(),
                r#"[ -n "$MOUNTPOINTS" ] || die 3 "no file system of $DISK ($VOLUME_ID) is mounted""#.to_string(),
                r#"[ "$(wc -l <<<"$MOUNTPOINTS")" -eq 1 ] || die 3 "$DISK ($VOLUME_ID) holds several mounted file systems:" $MOUNTPOINTS"#
                    .to_string(),
                r#"MOUNTPOINT="$MOUNTPOINTS""#.to_string(),
                r#"log "$VOLUME_ID is $DISK, mounted on $MOUNTPOINT""#.to_string(),
            ]);
        }
        FsTarget::DriveLetter(_) => {
            return Err(CoreError::unsupported(
                "file system target",
                "a drive letter only exists on Windows",
            ))
        }
    }
    lines.extend(LINUX_BODY.iter().map(|l| l.to_string()));
    Ok(lines)
}

const WINDOWS_HEAD: &[&str] = &[
    "# opsflow: extend a drive's partition to fill its (already enlarged) EBS volume. Safe to run again.",
    "$ErrorActionPreference = 'Stop'",
    "$ProgressPreference = 'SilentlyContinue'",
    "Update-HostStorageCache",
];

const WINDOWS_BODY: &[&str] = &[
    "$partition = Get-Partition -DriveLetter $DriveLetter",
    "$supported = Get-PartitionSupportedSize -DriveLetter $DriveLetter",
    "# Resize-Partition cannot grow by less than 1 MB: a smaller gap means the partition already fills the disk.",
    "if ($supported.SizeMax - $partition.Size -ge 1MB) {",
    "    Resize-Partition -DriveLetter $DriveLetter -Size $supported.SizeMax",
    r#"    Write-Output "opsflow: grew drive ${DriveLetter}: from $($partition.Size) to $($supported.SizeMax) bytes""#,
    "} else {",
    r#"    Write-Output "opsflow: drive ${DriveLetter}: already fills its disk""#,
    "}",
    "$volume = Get-Volume -DriveLetter $DriveLetter",
    r#"Write-Output "OPSFLOW_FS_SIZE_BYTES=$($volume.Size)""#,
];

/// The PowerShell lines that extend a Windows partition: `Update-HostStorageCache`, the
/// partition of the drive, `Get-PartitionSupportedSize`, `Resize-Partition -Size $max` when
/// the partition is smaller.
pub fn windows_fs_grow_script(target: &FsTarget) -> Result<Vec<String>, CoreError> {
    let mut lines: Vec<String> = WINDOWS_HEAD.iter().map(|l| l.to_string()).collect();
    match target {
        FsTarget::DriveLetter(letter) => {
            if !letter.is_ascii_alphabetic() {
                return Err(CoreError::invalid(
                    "drive letter",
                    format!("must be a letter from A to Z, got {letter:?}"),
                ));
            }
            lines.push(format!("$DriveLetter = '{}'", letter.to_ascii_uppercase()));
        }
        FsTarget::Volume { volume_id, device_name } => {
            check_volume(volume_id, device_name)?;
            lines.extend(
                [
                    format!("$VolumeId = '{volume_id}'"),
                    "# On Nitro instances the disk's serial number starts with the volume ID without its dash.".to_string(),
                    "$serial = $VolumeId -replace '-', ''".to_string(),
                    "$disk = Get-Disk | Where-Object { $_.SerialNumber -and $_.SerialNumber.Trim() -like \"$serial*\" } | Select-Object -First 1"
                        .to_string(),
                    "if (-not $disk) { [Console]::Error.WriteLine(\"opsflow: error: no disk with serial number $serial (volume $VolumeId)\"); exit 3 }"
                        .to_string(),
                    "$withLetter = Get-Partition -DiskNumber $disk.Number | Where-Object { $_.DriveLetter } | Sort-Object Size -Descending"
                        .to_string(),
                    "if (-not $withLetter) { [Console]::Error.WriteLine(\"opsflow: error: no partition of volume $VolumeId has a drive letter\"); exit 3 }"
                        .to_string(),
                    "$DriveLetter = @($withLetter)[0].DriveLetter".to_string(),
                ],
            );
        }
        FsTarget::MountPoint(_) => return Err(CoreError::unsupported("file system target", "a mount point only exists on Linux")),
    }
    lines.extend(WINDOWS_BODY.iter().map(|l| l.to_string()));
    Ok(lines)
}

/// The size printed by a grow script (its last `OPSFLOW_FS_SIZE_BYTES=` line).
pub fn parse_fs_size(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(FS_SIZE_MARKER))
        .and_then(|n| n.parse::<u64>().ok())
}

/// What an exit code of the Linux grow script means.
pub fn fs_script_exit_reason(code: i32) -> Option<&'static str> {
    match code {
        3 => Some("unsupported disk layout or file system"),
        4 => Some("a tool the script needs is not installed"),
        5 => Some("a resize step failed"),
        _ => None,
    }
}

fn check_mount_point(mount_point: &str) -> Result<(), CoreError> {
    let ok = mount_point.starts_with('/')
        && mount_point.len() <= 256
        && !mount_point.split('/').any(|part| part == "..")
        && mount_point.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(
            "mount point",
            format!("must be an absolute path of letters, digits and /._-, got {mount_point:?}"),
        ))
    }
}

fn check_volume(volume_id: &str, device_name: &str) -> Result<(), CoreError> {
    let id_ok = volume_id
        .strip_prefix("vol-")
        .is_some_and(|hex| matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !id_ok {
        return Err(CoreError::invalid(
            "volume ID",
            format!("must be vol- followed by 8 or 17 hexadecimal digits, got {volume_id:?}"),
        ));
    }
    if !is_ec2_device_name(device_name) {
        return Err(CoreError::invalid(
            "device name",
            format!("must be an EC2 device name like /dev/sdf, got {device_name:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    const VOL: &str = "vol-0123456789abcdef0";

    fn text(lines: &[String]) -> String {
        lines.join("\n") + "\n"
    }

    /// `bash -n` on the script; `None` when bash is not installed.
    fn bash_syntax_check(script: &str) -> Option<Result<(), String>> {
        let mut child = Command::new("bash")
            .arg("-n")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        Some(if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        })
    }

    #[test]
    fn bash_check_catches_syntax_errors() {
        // The check itself must be able to fail.
        if let Some(result) = bash_syntax_check("if true; then\n  echo x\n") {
            assert!(result.is_err());
        }
    }

    #[test]
    fn linux_root_script_is_valid_bash() {
        let script = text(&linux_fs_grow_script(&FsTarget::MountPoint("/".into())).unwrap());
        if let Some(result) = bash_syntax_check(&script) {
            assert_eq!(result, Ok(()), "{script}");
        }
    }

    #[test]
    fn linux_volume_script_is_valid_bash() {
        let target = FsTarget::Volume {
            volume_id: VOL.into(),
            device_name: "/dev/sdf".into(),
        };
        let script = text(&linux_fs_grow_script(&target).unwrap());
        if let Some(result) = bash_syntax_check(&script) {
            assert_eq!(result, Ok(()), "{script}");
        }
    }

    #[test]
    fn linux_script_shape() {
        let lines = linux_fs_grow_script(&FsTarget::MountPoint("/".into())).unwrap();
        assert_eq!(lines[0], "#!/bin/bash");
        assert!(lines.contains(&"set -euo pipefail".to_string()));
        assert!(lines.contains(&"MOUNTPOINT='/'".to_string()));
        assert_eq!(lines.last().unwrap(), r#"echo "OPSFLOW_FS_SIZE_BYTES=$SIZE""#);
        // the file system type and tools are checked before the first change
        let pos = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("missing {needle}"))
        };
        assert!(pos("is not supported (xfs, ext2, ext3, ext4 and btrfs are)") < pos(r#"out="$(growpart"#));
        assert!(pos(r#"out="$(growpart"#) < pos("pvresize \"$pv\" ||"));
        assert!(pos("pvresize \"$pv\" ||") < pos("lvextend -r -l +100%FREE"));
        assert!(pos("lvextend -r -l +100%FREE") < pos("xfs_growfs -d"));
        assert!(pos("xfs_growfs -d") < pos("df -B1 --output=size"));
    }

    #[test]
    fn linux_script_key_commands() {
        let script = text(&linux_fs_grow_script(&FsTarget::MountPoint("/".into())).unwrap());
        for needle in [
            r#"findmnt -nro SOURCE -M "$MOUNTPOINT" | tail -n 1"#,
            r#"findmnt -nro FSTYPE -M "$MOUNTPOINT" | tail -n 1"#,
            r#"lsblk -dno TYPE "$SOURCE""#,
            r#"/sys/class/block/$name/partition"#,
            r#"out="$(growpart "$disk" "$part" 2>&1)" || rc=$?"#,
            r#"elif [ "$rc" -eq 1 ] && grep -q NOCHANGE <<<"$out"; then"#,
            r#"pvresize "$pv""#,
            r#"lvextend -r -l +100%FREE "$SOURCE""#,
            r#"xfs_growfs -d "$MOUNTPOINT""#,
            r#"resize2fs "$SOURCE""#,
            r#"btrfs filesystem resize max "$MOUNTPOINT""#,
            r#"df -B1 --output=size "$MOUNTPOINT""#,
            r#"die 3 "file system type $FSTYPE of $MOUNTPOINT is not supported"#,
        ] {
            assert!(script.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn linux_volume_script_finds_the_disk() {
        let target = FsTarget::Volume {
            volume_id: VOL.into(),
            device_name: "/dev/sdf".into(),
        };
        let lines = linux_fs_grow_script(&target).unwrap();
        assert!(lines.contains(&format!("VOLUME_ID='{VOL}'")));
        assert!(lines.contains(&"  for candidate in '/dev/sdf' '/dev/xvdf'; do".to_string()));
        assert!(lines.contains(&r#"  if [ "$serial" = "${VOLUME_ID//-/}" ]; then DISK="/dev/$name"; break; fi"#.to_string()));
        assert!(!lines.iter().any(|l| l.starts_with("MOUNTPOINT='")));
        let xvd = FsTarget::Volume {
            volume_id: VOL.into(),
            device_name: "xvdg".into(),
        };
        assert!(linux_fs_grow_script(&xvd)
            .unwrap()
            .contains(&"  for candidate in '/dev/xvdg'; do".to_string()));
    }

    #[test]
    fn targets_are_validated_before_quoting() {
        for bad in ["relative", "/mnt/it's", "/mnt/$(reboot)", "/mnt/../etc", "/mnt/a b"] {
            assert_eq!(
                linux_fs_grow_script(&FsTarget::MountPoint(bad.into())).unwrap_err().name(),
                "InvalidInput",
                "{bad}"
            );
        }
        assert!(linux_fs_grow_script(&FsTarget::MountPoint("/data/my_vol-1.x".into())).is_ok());
        let bad_vol = FsTarget::Volume {
            volume_id: "vol-'x".into(),
            device_name: "/dev/sdf".into(),
        };
        assert_eq!(linux_fs_grow_script(&bad_vol).unwrap_err().name(), "InvalidInput");
        let bad_dev = FsTarget::Volume {
            volume_id: VOL.into(),
            device_name: "/dev/sdf;reboot".into(),
        };
        assert_eq!(windows_fs_grow_script(&bad_dev).unwrap_err().name(), "InvalidInput");
        assert_eq!(linux_fs_grow_script(&FsTarget::DriveLetter('C')).unwrap_err().name(), "Unsupported");
        assert_eq!(
            windows_fs_grow_script(&FsTarget::MountPoint("/".into())).unwrap_err().name(),
            "Unsupported"
        );
        assert_eq!(
            windows_fs_grow_script(&FsTarget::DriveLetter('1')).unwrap_err().name(),
            "InvalidInput"
        );
    }

    #[test]
    fn windows_script_shape() {
        let lines = windows_fs_grow_script(&FsTarget::DriveLetter('c')).unwrap();
        let script = text(&lines);
        assert_eq!(lines[1], "$ErrorActionPreference = 'Stop'");
        assert!(lines.contains(&"$DriveLetter = 'C'".to_string()));
        let pos = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("missing {needle}"))
        };
        assert!(pos("Update-HostStorageCache") < pos("Get-Partition -DriveLetter $DriveLetter"));
        assert!(
            pos("Get-PartitionSupportedSize -DriveLetter $DriveLetter")
                < pos("Resize-Partition -DriveLetter $DriveLetter -Size $supported.SizeMax")
        );
        assert!(script.contains("if ($supported.SizeMax - $partition.Size -ge 1MB) {"));
        assert_eq!(lines.last().unwrap(), r#"Write-Output "OPSFLOW_FS_SIZE_BYTES=$($volume.Size)""#);
        // "$DriveLetter:" would be read as a scoped variable: the scripts write "${DriveLetter}:".
        assert!(!script.contains("$DriveLetter:"));
        let balance = |open: char, close: char| script.matches(open).count() == script.matches(close).count();
        assert!(balance('{', '}') && balance('(', ')'));
    }

    #[test]
    fn windows_volume_script_finds_the_disk_by_serial() {
        let lines = windows_fs_grow_script(&FsTarget::Volume {
            volume_id: VOL.into(),
            device_name: "xvdf".into(),
        })
        .unwrap();
        assert!(lines.contains(&format!("$VolumeId = '{VOL}'")));
        assert!(lines.iter().any(|l| l.contains(r#"-like "$serial*""#)));
        assert!(lines.contains(&"$DriveLetter = @($withLetter)[0].DriveLetter".to_string()));
        let script = text(&lines);
        assert_eq!(script.matches('{').count(), script.matches('}').count());
    }

    #[test]
    fn target_for_chosen_volume() {
        let root = ChosenVolume {
            device_name: "/dev/xvda".into(),
            volume_id: VOL.into(),
            is_root: true,
        };
        let data = ChosenVolume {
            device_name: "/dev/sdf".into(),
            volume_id: VOL.into(),
            is_root: false,
        };
        assert_eq!(FsTarget::for_volume(Platform::Linux, &root), FsTarget::MountPoint("/".into()));
        assert_eq!(FsTarget::for_volume(Platform::Windows, &root), FsTarget::DriveLetter('C'));
        assert_eq!(
            FsTarget::for_volume(Platform::Linux, &data),
            FsTarget::Volume {
                volume_id: VOL.into(),
                device_name: "/dev/sdf".into()
            }
        );
    }

    #[test]
    fn fs_grow_command_uses_the_platform_document() {
        let spec = fs_grow_command(Platform::Linux, &FsTarget::MountPoint("/".into())).unwrap();
        assert_eq!(spec.document_name, "AWS-RunShellScript");
        assert_eq!(spec.parameters["executionTimeout"], vec!["600".to_string()]);
        assert_eq!(spec.parameters["commands"][0], "#!/bin/bash");
        assert_eq!(spec.timeout_seconds, 600);
        let win = fs_grow_command(Platform::Windows, &FsTarget::DriveLetter('C')).unwrap();
        assert_eq!(win.document_name, "AWS-RunPowerShellScript");
    }

    #[test]
    fn parse_fs_size_reads_the_last_marker() {
        assert_eq!(
            parse_fs_size("opsflow: grew\nOPSFLOW_FS_SIZE_BYTES=34347155456\n"),
            Some(34_347_155_456)
        );
        assert_eq!(parse_fs_size("OPSFLOW_FS_SIZE_BYTES=1\r\nOPSFLOW_FS_SIZE_BYTES=2\r\n"), Some(2));
        assert_eq!(parse_fs_size("  OPSFLOW_FS_SIZE_BYTES=42  "), Some(42));
        assert_eq!(parse_fs_size("OPSFLOW_FS_SIZE_BYTES=\n"), None);
        assert_eq!(parse_fs_size("OPSFLOW_FS_SIZE_BYTES=-5"), None);
        assert_eq!(parse_fs_size("OPSFLOW_FS_SIZE_BYTES=12 GiB"), None);
        assert_eq!(parse_fs_size("no marker"), None);
    }

    #[test]
    fn exit_codes_are_explained() {
        assert_eq!(fs_script_exit_reason(3), Some("unsupported disk layout or file system"));
        assert_eq!(fs_script_exit_reason(4), Some("a tool the script needs is not installed"));
        assert_eq!(fs_script_exit_reason(5), Some("a resize step failed"));
        assert_eq!(fs_script_exit_reason(1), None);
    }

    fn bootstrap(action: BootstrapAction) -> Bootstrap {
        Bootstrap {
            action,
            timeout_seconds: 1800,
            output_s3_bucket: Some("bucket".into()),
            output_s3_prefix: Some("prefix".into()),
            cloudwatch_log_group: Some("/opsflow/x".into()),
        }
    }

    #[test]
    fn bootstrap_commands_stay_a_list() {
        let lines = vec!["yum install -y git".to_string(), "echo 'a; b' && echo done".to_string()];
        let spec = bootstrap_command(&bootstrap(BootstrapAction::Commands { lines: lines.clone() }), Platform::Linux);
        assert_eq!(
            spec,
            CommandSpec {
                document_name: "AWS-RunShellScript".into(),
                parameters: BTreeMap::from([
                    ("commands".to_string(), lines.clone()),
                    ("executionTimeout".to_string(), vec!["1800".to_string()])
                ]),
                timeout_seconds: 1800,
                output_s3_bucket: Some("bucket".into()),
                output_s3_prefix: Some("prefix".into()),
                cloudwatch_log_group: Some("/opsflow/x".into()),
                comment: None,
            }
        );
        let win = bootstrap_command(&bootstrap(BootstrapAction::Commands { lines }), Platform::Windows);
        assert_eq!(win.document_name, "AWS-RunPowerShellScript");
    }

    #[test]
    fn bootstrap_document_gets_only_its_parameters() {
        let parameters = BTreeMap::from([("key".to_string(), vec!["value".to_string()])]);
        let spec = bootstrap_command(
            &bootstrap(BootstrapAction::Document {
                name: "My-Doc".into(),
                parameters: parameters.clone(),
            }),
            Platform::Linux,
        );
        assert_eq!(spec.document_name, "My-Doc");
        assert_eq!(spec.parameters, parameters);
        assert_eq!(spec.timeout_seconds, 1800);
    }
}
