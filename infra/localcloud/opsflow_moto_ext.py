"""Behaviour opsflow needs and moto 5.x lacks, patched onto moto's own classes.

Installed by ``opsflow_localcloud.py`` before the server starts:

* SSM DescribeInstanceInformation: EC2 instances with an ``associated`` IAM instance
  profile whose role may call ssm:UpdateInstanceInformation are managed instances, ``Online``
  once ``online_delay_seconds`` passed since the association (or the last start/reboot; with
  ``agent_needs_reboot`` only after a (re)boot that follows the association).
* SSM fleet health: per-node agent versions and IsLatestVersion, Default Host Management
  Configuration (Get/Update/ResetServiceSetting; IMDSv2 instances without a profile), hybrid
  (mi-) nodes (POST /_opsflow/managed_nodes, DeregisterManagedInstance), instances cloned from a
  hybrid machine's image listed as its mi- node (``registered_as``), and, with ``network_checks``,
  only agents whose instance can reach SSM; plus the EC2 answers that check reads (SecurityGroups
  of DescribeInstances, the default VPC's internet gateway, ModifyInstanceMetadataOptions).
* SSM command progression: every invocation goes Pending -> InProgress -> final status
  on the localcloud clock, with exit code / output from the command rules (or Failed /
  Undeliverable); plus ListCommandInvocations, CancelCommand, the InvocationDoesNotExist
  window and S3 output. An invocation whose instance stops or terminates under it stays
  where it was until the command expires, then ends DeliveryTimedOut.
* EC2 volume modification progression: modifying -> optimizing -> completed (or, by a
  volume failure rule, modifying -> failed), with the IncorrectModificationState and
  VolumeModificationRateExceeded errors.
* EC2 stop / terminate through stopping / shutting-down on the clock, and scheduled
  (``POST /_opsflow/schedule``) stops and terminations.
* EventBridge events from EC2 (instance state changes) and Auto Scaling (termination lifecycle
  actions), delivered through moto's PutEvents to the default event bus at their clock time
  (GET /_opsflow/events).
* Auto Scaling termination lifecycle hooks: a scale-in puts the instance in Terminating:Wait until
  CompleteLifecycleAction or the heartbeat timeout (RecordLifecycleActionHeartbeat restarts it)
  (GET /_opsflow/lifecycle_actions).
* EBS snapshots pending -> completed (or, by a snapshot failure rule, error) on the clock;
  CopyTagsFromSource.
* EC2 root volume replacement tasks (CreateReplaceRootVolumeTask, DescribeReplaceRootVolumeTasks):
  in-progress while the node reboots, then the root volume swapped (or failing -> failed).
* fsfreeze seen from the opsflow-Freeze / opsflow-Thaw invocations (GET /_opsflow/frozen).
* SSM reboot-and-resume: a rule's ``runs`` whose exit 194 (shell) / 3010 (PowerShell) reboots
  the node (agent ConnectionLost) and runs the script again; output to CloudWatch Logs and to a
  bucket of any account; the invocation log (GET /_opsflow/invocations).
* CloudWatch alarm mute rules (PutAlarmMuteRule, GetAlarmMuteRule, ListAlarmMuteRules,
  DeleteAlarmMuteRule), their status (SCHEDULED / ACTIVE / EXPIRED) on the clock, for one-time
  ``at(…)`` and recurring ``cron(…)`` schedules.
* STS: AssumeRole evaluates the role's trust policy (principal, ExternalId conditions, Deny);
  ``seed_account`` gives an administrator key in any account.
* CloudTrail management events ("AWS API Call via CloudTrail") to EventBridge for the IAM calls that
  change what a role may do (to us-east-1, IAM being global) and the EC2 instance-profile association
  calls (to their region), with the caller's userIdentity; IAM's GetAccountAuthorizationDetails and
  GetPolicyVersion with URL-encoded documents and complete managed-policy details.
* CloudFormation custom resources that wait for an answer to their ResponseURL
  (``opsflow_moto_cfn.py``).
* The forensic collection (opsflow-ForensicCollect / opsflow-ForensicCollectWindows): a successful
  invocation uploads a gzip'd tar of the evidence and its manifest to S3 at its end, as
  ``put-object --if-none-match '*' --checksum-algorithm SHA256`` does (rule field ``forensics``).
* AWS's AWSEC2-CreateVssSnapshot: a successful invocation makes a multi-volume snapshot set of the
  instance's EBS volumes at its end, tagged as the document tags them (Device, AppConsistent,
  AwsVssConfig, Name, the ``tags`` parameter's pairs).

All time comes from ``rt.clock`` (see ``Clock`` in opsflow_localcloud.py); ``rt.cfg``
holds the live configuration, ``rt.pick_command_rule`` the command behaviour rules.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import fnmatch
import gzip
import hashlib
import io
import itertools
import json
import re
import sys
import tarfile
import threading
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any, NamedTuple

from moto.autoscaling.exceptions import ValidationError as AutoScalingValidationError
from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup, TerminateInstanceActivity
from moto.autoscaling.responses import AutoScalingResponse
from moto.cloudwatch.exceptions import InvalidParameterValue, ResourceNotFoundException
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot, Volume, VolumeModification
from moto.ec2.models.iam_instance_profile import (
    IamInstanceProfileAssociation,
    IamInstanceProfileAssociationBackend,
)
from moto.ec2.models.instances import Instance, InstanceBackend, InstanceState
from moto.ec2.responses import EC2Response
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.utils import random_id
from moto.events.models import events_backends
from moto.events.utils import EventTemplateParser
from moto.ssm.exceptions import SSMException, ValidationException
from moto.ssm.models import Command, SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.utilities.utils import get_partition

UTC = _dt.UTC
#: SSM keeps the first 24,000 characters of stdout in GetCommandInvocation's StandardOutputContent
#: and the first 8,000 of stderr in StandardErrorContent (API reference, GetCommandInvocation).
SSM_GET_INVOCATION_OUTPUT_LIMIT = 24000
SSM_GET_INVOCATION_ERROR_LIMIT = 8000
#: ... and the plugin Output of ListCommandInvocations(Details=true) here.
SSM_LIST_INVOCATIONS_OUTPUT_LIMIT = 2500
SSM_DEFAULT_EXECUTION_TIMEOUT = 3600
SSM_DEFAULT_DELIVERY_TIMEOUT = 3600
FINAL_STATUSES = ("Success", "Failed", "TimedOut", "Cancelled")
#: Orders commands and snapshots created in the same clock millisecond (the manual clock stands still).
REQUEST_ORDER = itertools.count()


# --------------------------------------------------------------------------- helpers


# All times are integer epoch milliseconds on the localcloud clock, all durations integer
# milliseconds: exact comparisons, so "60 s later" is exactly 60 s later.


def ms(seconds: Any) -> int:
    return int(round(float(seconds) * 1000))


def to_dt(t_ms: int | None) -> _dt.datetime | None:
    if t_ms is None:
        return None
    return _dt.datetime(1970, 1, 1, tzinfo=UTC) + _dt.timedelta(milliseconds=t_ms)


def iso(t_ms: int | None) -> str:
    """SSM's string timestamps: ISO 8601 with milliseconds and a 'Z' (UTC)."""
    d = to_dt(t_ms)
    if d is None:
        return ""
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def iso_duration(d_ms: int) -> str:
    return f"PT{max(d_ms, 0) / 1000:.3f}S"


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])
    except Exception as exc:  # noqa: BLE001
        raise SSMException("InvalidNextToken", "The specified token is not valid.") from exc


def page(items: list[Any], max_results: int, token: str | None) -> tuple[list[Any], str | None]:
    start = decode_token(token)
    end = start + max_results
    return items[start:end], (encode_token(end) if end < len(items) else None)


def wrap(cls: Any, name: str, make: Any) -> None:
    """Replace cls.name by make(original); keeps the original reachable for debugging."""
    original = getattr(cls, name)
    setattr(cls, f"_opsflow_orig_{name}", original)
    setattr(cls, name, make(original))


class InvocationDoesNotExist(SSMException):
    code = "InvocationDoesNotExist"
    message = ""


class InvalidInstanceId(SSMException):
    code = "InvalidInstanceId"


class InvalidCommandId(SSMException):
    code = "InvalidCommandId"
    message = ""


# --------------------------------------------------------------------------- SSM: the managed-node view (fleet health)
#
# Who SSM lists, and as what, per account and region (DescribeInstanceInformation):
#
# * an EC2 instance whose agent holds credentials SSM accepts, under its i- id: through an instance
#   profile whose role may call ssm:UpdateInstanceInformation (the call the agent registers and pings
#   with; AmazonSSMManagedInstanceCore allows it: SSM user guide, "Configure instance permissions for
#   Systems Manager"), or, without a profile, through Default Host Management Configuration;
# * a hybrid-activated node (POST /_opsflow/managed_nodes), under its mi- id;
# * an EC2 instance launched from an image of a hybrid-registered machine (config `registered_as`,
#   or a node's `source_instance`), under that mi- id instead of its i- id;
# * with `network_checks`, only agents whose instance can reach SSM (security group egress to TCP 443,
#   and a default route to an internet gateway with a public IP or to a NAT gateway, or the VPC's
#   interface endpoints for ssm, ssmmessages and ec2messages), as AWSSupport-TroubleshootManagedInstance
#   checks them (Automation runbook reference: it "reviews the VPC configuration for the instance including
#   security group rules, VPC endpoints, network access control list (ACL) rules, and route tables";
#   "Checks whether the route table allows traffic to the VPC endpoint or public Systems Manager
#   endpoints"; "Checks whether outbound traffic to the VPC endpoint or public Systems Manager endpoints
#   is allowed by the security group associated with the instance"). Network ACLs are not evaluated.

#: The agent registers and reports its health with ssm:UpdateInstanceInformation (the action
#: AmazonSSMManagedInstanceCore grants for it); a role that may not call it never gets its node listed.
SSM_REGISTER_ACTION = "ssm:UpdateInstanceInformation"
#: Default Host Management Configuration (SSM user guide, "Managing EC2 instances automatically with
#: Default Host Management Configuration"): the setting names the role, "$None" when never set (what
#: GetServiceSetting answers in every Region where it was not turned on: turbot/steampipe-plugin-aws#2611).
DHMC_SETTING_ID = "/ssm/managed-instance/default-ec2-instance-management-role"
DHMC_NONE = "$None"
#: "all instances using Instance Metadata Service Version 2 (IMDSv2) ... with SSM Agent version 3.2.582.0
#: or later installed automatically become managed instances. Default Host Management Configuration
#: doesn't support Instance Metadata Service Version 1." (SSM user guide, same page)
DHMC_MIN_AGENT = (3, 2, 582, 0)
#: GetServiceSetting defaults of the settings served here (the others answer ServiceSettingNotFound):
#: DHMC's "$None" (above), and the two the AWS CLI's examples show with Status Default
#: (aws-cli awscli/examples/ssm/get-service-setting.rst).
SERVICE_SETTING_DEFAULTS = {
    DHMC_SETTING_ID: DHMC_NONE,
    "/ssm/managed-instance/activation-tier": "standard",
    "/ssm/parameter-store/high-throughput-enabled": "false",
}
#: The interface endpoints a private subnet needs for the agent: com.amazonaws.<region>.ssm, .ssmmessages and
#: .ec2messages (SSM user guide, setup-create-vpc, "(Optional) Create a VPC endpoint"; nodes "must also allow
#: HTTPS (port 443) outbound traffic" to ec2messages., ssm. and ssmmessages.<region>.amazonaws.com). Agents from
#: 3.3.40.0 fall back to ec2messages only when ssmmessages is not reachable ("Reference: ec2messages,
#: ssmmessages, and other API operations"); all three are required here all the same.
SSM_AGENT_ENDPOINT_SERVICES = ("ssm", "ssmmessages", "ec2messages")
#: A hybrid node's role when its registration does not name one: the example service role name of the
#: SSM user guide ("Create the IAM service role required for Systems Manager in hybrid and multicloud
#: environments"). IamRole of a hybrid node is the role's name, not its ARN, as AWS answers.
HYBRID_DEFAULT_ROLE = "SSMServiceRole"
MI_ID = re.compile(r"^mi-[0-9a-f]{17}$")
AGENT_VERSION = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){2,3}$")  # InstanceInformation.AgentVersion's pattern


def version_tuple(version: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(version or "").split("."))
    except ValueError:
        return ()


def agent_version(rt: Any, node_id: str, default: str | None = None) -> str:
    """The SSM Agent version a node runs: config `agent_versions` for that id, else the node's own
    (a registered hybrid node's), else config `agent_version`."""
    return (rt.cfg("agent_versions") or {}).get(node_id) or default or rt.cfg("agent_version")


def _policy_documents(role: Any) -> list[Any]:
    """The identity policies of a role: the default version of each attached managed policy, then each
    inline policy (moto keeps them as sent: JSON text, maybe URL-encoded)."""
    docs: list[Any] = []
    for policy in list(role.managed_policies.values()):
        for version in getattr(policy, "versions", []):
            if version.version_id == policy.default_version_id:
                docs.append(version.document)
    docs.extend(list(role.policies.values()))
    out = []
    for doc in docs:
        if isinstance(doc, str):
            text = doc.strip()
            if text.startswith("%7B") or text.startswith("%7b"):
                from urllib.parse import unquote

                text = unquote(text)
            try:
                doc = json.loads(text)
            except ValueError:
                continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def _action_like(pattern: Any, action: str) -> bool:
    return isinstance(pattern, str) and _string_like(pattern.lower(), action.lower())


def policies_allow(documents: list[Any], action: str) -> bool:
    """A simple identity-policy evaluation (IAM user guide, "Policy evaluation logic"): an explicit Deny
    wins, else an Allow is needed. A statement applies when its Action (or NotAction) matches, with
    `*` / `?` wildcards; Resource and Condition are not evaluated."""
    allowed = False
    for doc in documents:
        for st in _as_list(doc.get("Statement")):
            if not isinstance(st, dict):
                continue
            if "Action" in st:
                hit = any(_action_like(p, action) for p in _as_list(st["Action"]))
            elif "NotAction" in st:
                hit = not any(_action_like(p, action) for p in _as_list(st["NotAction"]))
            else:
                continue
            if not hit:
                continue
            if st.get("Effect") == "Deny":
                return False
            if st.get("Effect") == "Allow":
                allowed = True
    return allowed


def _setting_state(backend: Any) -> dict[str, Any]:
    """Service settings customized in this account and Region (kept on moto's SSM backend, so moto's
    reset clears them): setting id -> {"value", "modified_ms", "user"}."""
    if not hasattr(backend, "opsflow_settings"):
        backend.opsflow_settings = {}
    return backend.opsflow_settings


def _node_state(backend: Any) -> tuple[dict[str, dict[str, Any]], dict[str, str | None]]:
    """Registered hybrid nodes of this account and Region (mi- id -> record) and the deregistered ids (mi- id
    -> the instance that carried the registration, if any: it stays that mi- node, now hibernating)."""
    if not hasattr(backend, "opsflow_nodes"):
        backend.opsflow_nodes = {}
        backend.opsflow_deregistered = {}
    return backend.opsflow_nodes, backend.opsflow_deregistered


def _ssm_backend(account_id: str, region: str) -> Any:
    from moto.ssm.models import ssm_backends

    return ssm_backends[account_id][region]


def instance_security_groups(instance: Instance) -> list[Any]:
    """The instance's security groups: those it was launched with (or given by ModifyInstanceAttribute),
    else its primary network interface's, which is the VPC's default group when the launch named none
    (RunInstances API reference: "If you don't specify a security group ID, we use the default security
    group for the VPC")."""
    if instance.security_groups:
        return list(instance.security_groups)
    nic = (getattr(instance, "nics", None) or {}).get(0)
    return list(nic.group_set) if nic is not None else []


class FleetView:
    """One DescribeInstanceInformation's look at an account and Region, with what it caches: role
    decisions by role ARN, the DHMC role, routes by subnet, endpoints by VPC."""

    def __init__(self, rt: Any, account_id: str, region: str):
        self.rt, self.account_id, self.region = rt, account_id, region
        self.now = rt.clock.now_ms()
        self._roles: dict[str, bool] = {}
        self._routes: dict[str, str | None] = {}
        self._endpoints: dict[str, bool] = {}
        self._dhmc_looked_up = False
        self._dhmc: int | None = None

    def profile_allows(self, profile: Any) -> bool:
        """Whether the instance profile's role may register the agent (AmazonSSMManagedInstanceCore does)."""
        if not self.rt.cfg("ssm_role_check"):
            return True
        roles = list(getattr(profile, "roles", None) or [])
        if not roles:
            return False  # a profile without a role hands the instance no credentials
        for role in roles:
            if role.arn not in self._roles:
                self._roles[role.arn] = policies_allow(_policy_documents(role), SSM_REGISTER_ACTION)
            if self._roles[role.arn]:
                return True
        return False

    def dhmc_since(self) -> int | None:
        """When DHMC last named a role that exists in the account (epoch ms), else None."""
        if not self._dhmc_looked_up:
            self._dhmc_looked_up = True
            setting = _setting_state(_ssm_backend(self.account_id, self.region)).get(DHMC_SETTING_ID)
            if setting and setting["value"] != DHMC_NONE and find_role_by_name(self.account_id, setting["value"]):
                self._dhmc = setting["modified_ms"]
        return self._dhmc

    def reachable(self, instance: Instance) -> bool:
        """Whether the agent on this instance can reach SSM's endpoints (see the section comment)."""
        if not self.rt.cfg("network_checks"):
            return True
        if not any(_egress_443(group) for group in instance_security_groups(instance)):
            return False
        backend = instance.ec2_backend
        try:
            subnet = backend.get_subnet(instance.subnet_id)
        except Exception:  # noqa: BLE001 - no subnet: nothing to check
            return True
        if self._has_agent_endpoints(backend, subnet.vpc_id):
            return True
        route = self._default_route(backend, subnet.id, subnet.vpc_id)
        return route == "nat" or (route == "igw" and bool(instance.public_ip))

    def _has_agent_endpoints(self, backend: Any, vpc_id: str) -> bool:
        if vpc_id not in self._endpoints:
            names = {ep.service_name for ep in list(backend.vpc_end_points.values())
                     if ep.vpc_id == vpc_id and (ep.vpc_endpoint_type or "").lower() == "interface"
                     and ep.state == "available"}
            self._endpoints[vpc_id] = all(f"com.amazonaws.{self.region}.{s}" in names
                                          for s in SSM_AGENT_ENDPOINT_SERVICES)
        return self._endpoints[vpc_id]

    def _default_route(self, backend: Any, subnet_id: str, vpc_id: str) -> str | None:
        """Where the subnet's route table (the one associated with it, else the VPC's main one) sends
        0.0.0.0/0: "igw", "nat" or None."""
        if subnet_id not in self._routes:
            tables = [t for t in list(backend.route_tables.values()) if t.vpc_id == vpc_id]
            table = next((t for t in tables if subnet_id in t._associations.values()), None) or next(
                (t for t in tables if t.main_association_id is not None), None)
            target = None
            for route in (table.routes if table is not None else []):
                if route.destination_cidr_block != "0.0.0.0/0":
                    continue
                if route.nat_gateway is not None:
                    target = "nat"
                elif (route.gateway_id or "").startswith("igw-"):
                    target = "igw"
            self._routes[subnet_id] = target
        return self._routes[subnet_id]


def _egress_443(group: Any) -> bool:
    """A security group egress rule that lets TCP 443 out to SSM: all traffic or TCP with 443 in its port
    range, to 0.0.0.0/0 (the public endpoints; the runbook reports "allows outbound traffic on port '443' to
    '0.0.0.0/0'") or to a security group or prefix list (an endpoint's)."""
    for rule in list(getattr(group, "egress_rules", [])):
        port = rule.ip_protocol == "-1" or (
            rule.ip_protocol == "tcp" and rule.from_port is not None and rule.from_port <= 443 <= rule.to_port)
        anywhere = (rule.ip_range or {}).get("CidrIp") == "0.0.0.0/0" or bool(rule.source_group) or bool(
            rule.prefix_list_id)
        if port and anywhere:
            return True
    return False


def find_role_by_name(account_id: str, name: str) -> Any:
    """The role a DHMC setting names: "Name" or "path/Name" (the guide's own value is
    "service-role/AWSSystemsManagerDefaultEC2InstanceManagementRole"), in this account, else None."""
    from moto.iam.models import iam_backends

    path, _, role_name = str(name).strip("/").rpartition("/")
    for role in list(iam_backends[account_id][PARTITION].roles.values()):
        if role.name == role_name and (not path or role.path.strip("/") == path):
            return role
    return None


def _imdsv2_required(instance: Instance) -> bool:
    options = getattr(instance, "metadata_options", None)
    return (options is not None and getattr(options, "http_tokens", None) == "required"
            and getattr(options, "http_endpoint", "enabled") != "disabled")


def _agent_registration(view: FleetView, instance: Instance) -> tuple[int, str] | None:
    """When the agent on this EC2 instance got credentials SSM accepts (epoch ms), and how: "profile"
    (an associated instance profile whose role may register) or "dhmc"; None if it has none."""
    rt = view.rt
    assoc = instance.ec2_backend.iam_instance_profile_associations.get(instance.id)
    if assoc is not None and getattr(assoc, "state", "associated") == "associated":
        if not view.profile_allows(assoc.iam_instance_profile):
            return None
        since = getattr(assoc, "opsflow_since", None)
        if since is None:  # created before the patches (cannot happen in server mode)
            since = assoc.opsflow_since = rt.clock.now_ms()
        return since, "profile"
    dhmc = view.dhmc_since()
    if dhmc is None or not _imdsv2_required(instance):
        return None
    if version_tuple(agent_version(rt, instance.id)) < DHMC_MIN_AGENT:
        return None
    # The agent picks DHMC up by itself ("automatically become managed instances"): from its launch,
    # or from when DHMC was turned on, whichever is later.
    launched = getattr(instance, "opsflow_launched", None)
    return (max(dhmc, launched) if launched is not None else dhmc), "dhmc"


def _instance_online_since(rt: Any, instance: Instance, registered: tuple[int, str]) -> int | None:
    """When the SSM agent on this instance could first be online, or None if it never can."""
    since, via = registered
    booted = _last_boot(instance, rt.clock.now_ms())
    if via == "profile" and rt.cfg("agent_needs_reboot") and (booted is None or booted < since):
        return None
    return max(since, booted) if booted is not None else since


def _last_boot(instance: Instance, now: int) -> int | None:
    """When the OS last came up: a start, a RebootInstances, or a root volume replacement that ended."""
    boots = [task.end for task in getattr(instance, "opsflow_root_tasks", ()) if task.end <= now]
    booted = getattr(instance, "opsflow_booted", None)
    return max([*boots, booted] if booted is not None else boots, default=None)


def _rebooting_since(instance: Instance, now: int, online_delay: int) -> int | None:
    for inv in getattr(instance, "opsflow_invocations", ()):
        start = inv.rebooting(now)
        if start is not None:
            return start
    for task in getattr(instance, "opsflow_root_tasks", ()):
        # A root volume replacement reboots the node; its agent pings again online_delay after.
        if task.start <= now < task.end + online_delay:
            return task.start
    return None


def _platform(instance: Instance) -> tuple[str, str, str]:
    windows = (instance.platform or "").lower() == "windows"
    if windows:
        return "Windows", "Microsoft Windows Server 2022 Datacenter", "10.0.20348"
    return "Linux", "Amazon Linux", "2023"


def _agent_fields(rt: Any, node_id: str, default_version: str | None = None) -> dict[str, Any]:
    """AgentVersion and IsLatestVersion: true when the node runs `latest_agent_version` (the API
    reference: "Indicates whether the latest version of SSM Agent is running on your Linux managed node")."""
    version = agent_version(rt, node_id, default_version)
    return {"AgentVersion": version, "IsLatestVersion": version == rt.cfg("latest_agent_version")}


def _ping(rt: Any, instance: Instance, online_at: int, known_since: int | None, now: int,
          override: str | None) -> tuple[str, int] | None:
    """(PingStatus, LastPingDateTime) of the agent on an EC2 instance, or None if SSM does not list it yet."""
    if override:
        return override, min(now, online_at)
    if instance.state != "running":
        if known_since is not None:
            return "ConnectionLost", known_since
        if now < online_at:
            return None
        return "ConnectionLost", online_at
    delay = ms(rt.cfg("online_delay_seconds"))
    if (reboot_start := _rebooting_since(instance, now, delay)) is not None:
        # A script asked for a reboot (exit 194 / 3010), or the root volume is being replaced:
        # the agent is gone until the node is back.
        return "ConnectionLost", reboot_start
    if now >= online_at:
        return "Online", now
    if known_since is not None:
        return "ConnectionLost", known_since
    return None


def managed_instance_info(rt: Any, instance: Instance, view: FleetView | None = None) -> dict[str, Any] | None:
    """The DescribeInstanceInformation entry for one EC2 instance under its i- id, or None if not listed."""
    if instance.state == "terminated":
        return None
    view = view or FleetView(rt, instance.ec2_backend.account_id, instance.ec2_backend.region_name)
    registered = _agent_registration(view, instance)
    if registered is None:
        return None
    since = _instance_online_since(rt, instance, registered)
    if since is None:
        return None
    if not view.reachable(instance):
        return None  # the agent cannot reach SSM: it never registers (kept simple: not listed)
    now = rt.clock.now_ms()
    delay = ms(rt.cfg("online_delay_seconds"))
    online_at = since + delay
    # Registered before the latest StartInstances: SSM keeps listing it (ConnectionLost) while
    # it is down and until its agent pings again after the boot.
    starts = getattr(instance, "opsflow_starts", [])
    known_since = starts[-1] if starts and registered[0] + delay <= starts[-1] else None
    ping = _ping(rt, instance, online_at, known_since, now, (rt.cfg("ping_status") or {}).get(instance.id))
    if ping is None:
        return None
    status, last_ping = ping
    platform_type, platform_name, platform_version = _platform(instance)
    return {
        "InstanceId": instance.id,
        "PingStatus": status,
        "LastPingDateTime": to_dt(last_ping),
        **_agent_fields(rt, instance.id),
        "PlatformType": platform_type,
        "PlatformName": platform_name,
        "PlatformVersion": platform_version,
        "ResourceType": "EC2Instance",
        "IPAddress": instance.private_ip,
        "ComputerName": instance.private_dns_name,
        "SourceId": instance.id,
        "SourceType": "AWS::EC2::Instance",
        "_tags": {t.get("key", t.get("Key")): t.get("value", t.get("Value")) for t in instance.get_tags()},
    }


def _hybrid_info(rt: Any, node: dict[str, Any], status: str, last_ping: int, ip: str | None,
                 computer_name: str | None, platform: tuple[str, str, str]) -> dict[str, Any]:
    """A hybrid-activated node's entry: the fields AWS returns for one (API reference, InstanceInformation;
    captured answers: InstanceId mi-…, ActivationId, IamRole as the role's name, RegistrationDate,
    ResourceType ManagedInstance, Name when the activation had a default instance name, SourceId the mi- id,
    SourceType AWS::SSM::ManagedInstance)."""
    mi = node["instance_id"]
    override = (rt.cfg("ping_status") or {}).get(mi)
    if override:
        status, last_ping = override, min(last_ping, rt.clock.now_ms())
    info: dict[str, Any] = {
        "InstanceId": mi,
        "PingStatus": status,
        "LastPingDateTime": to_dt(last_ping),
        **_agent_fields(rt, mi, node.get("agent_version")),
        "PlatformType": platform[0],
        "PlatformName": platform[1],
        "PlatformVersion": platform[2],
        "ActivationId": node["activation_id"],
        "IamRole": node["iam_role"],
        "RegistrationDate": to_dt(node["registration_date_ms"]),
        "ResourceType": "ManagedInstance",
    }
    if node.get("name"):
        info["Name"] = node["name"]
    info.update({"IPAddress": ip, "ComputerName": computer_name, "SourceId": mi,
                 "SourceType": "AWS::SSM::ManagedInstance", "_tags": dict(node.get("tags") or {})})
    return info


def _clone_node(rt: Any, mi: str, instance: Instance, nodes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The registration an instance launched from a hybrid machine's image carries: the registered node's,
    else one made up for it (the original machine's activation is not known here)."""
    node = nodes.get(mi)
    if node is not None:
        return node
    return {"instance_id": mi, "activation_id": str(uuid.uuid5(uuid.NAMESPACE_URL, mi)),
            "iam_role": HYBRID_DEFAULT_ROLE, "name": None, "tags": {}, "agent_version": None,
            "registration_date_ms": getattr(instance, "opsflow_launched", None) or rt.clock.now_ms()}


def clone_info(view: FleetView, instance: Instance, node: dict[str, Any]) -> dict[str, Any]:
    """An EC2 instance whose agent runs with a hybrid registration copied in its image lists as that mi-
    node: IPAddress / ComputerName its private IP and DNS name, Online while it runs (after the usual online
    delay from its launch or start), ConnectionLost while stopped or unable to reach SSM; a terminated one
    stays ConnectionLost ("Every on-premises server and VM you previously registered remains registered
    ... until you explicitly deregister it", SSM user guide, hybrid activations)."""
    rt, now = view.rt, view.now
    delay = ms(rt.cfg("online_delay_seconds"))
    launched = getattr(instance, "opsflow_launched", None) or node["registration_date_ms"]
    booted = _last_boot(instance, now)
    online_at = (max(launched, booted) if booted is not None else launched) + delay
    down = getattr(instance, "opsflow_downs", None) or []
    if instance.state == "running" and now >= online_at and view.reachable(instance):
        status, last_ping = "Online", now
    else:
        last_ping = max([t for t in down if t <= now], default=node["registration_date_ms"])
        status = "ConnectionLost"
    return _hybrid_info(rt, node, status, last_ping, instance.private_ip, instance.private_dns_name,
                        _platform(instance))


def all_managed_instances(rt: Any, account_id: str, region: str) -> list[dict[str, Any]]:
    """Every node DescribeInstanceInformation lists in this account and Region, sorted by id."""
    view = FleetView(rt, account_id, region)
    backend = ec2_backends[account_id][region]
    nodes, deregistered = _node_state(_ssm_backend(account_id, region))
    nodes = dict(nodes)
    clones = {iid: mi for iid, mi in (rt.cfg("registered_as") or {}).items()}
    clones.update({n["source_instance"]: mi for mi, n in nodes.items() if n.get("source_instance")})
    clones.update({iid: mi for mi, iid in deregistered.items() if iid})
    infos: list[dict[str, Any]] = []
    cloned: set[str] = set()
    for reservation in backend.all_reservations():
        for instance in reservation.instances:
            mi = clones.get(instance.id)
            if mi is not None:
                # The agent found a hybrid registration on disk: it is that mi- node, never its i- id.
                if mi not in deregistered and mi not in cloned:
                    cloned.add(mi)
                    infos.append(clone_info(view, instance, _clone_node(rt, mi, instance, nodes)))
                continue
            info = managed_instance_info(rt, instance, view)
            if info is not None:
                infos.append(info)
    for mi, node in nodes.items():
        if mi in cloned or node.get("source_instance"):
            continue  # a node whose machine is an instance elsewhere, or already listed
        infos.append(_hybrid_info(rt, node, node["ping_status"], node["last_ping_ms"], node["ip_address"],
                                  node["computer_name"], (node["platform_type"], node["platform_name"],
                                                          node["platform_version"])))
    infos.sort(key=lambda i: i["InstanceId"])
    return infos


def known_managed_node_ids(rt: Any, account_id: str, region: str) -> set[str]:
    """The mi- ids DeregisterManagedInstance can remove here: registered nodes, and the registrations
    instances of this Region carry (`registered_as`), not yet deregistered."""
    nodes, deregistered = _node_state(_ssm_backend(account_id, region))
    ids = set(nodes)
    backend = ec2_backends[account_id][region]
    mapped = rt.cfg("registered_as") or {}
    if mapped:
        for reservation in backend.all_reservations():
            for instance in reservation.instances:
                if instance.id in mapped:
                    ids.add(mapped[instance.id])
    return ids - set(deregistered)


def deregister_managed_instance(rt: Any, account_id: str, region: str, instance_id: str | None) -> None:
    """DeregisterManagedInstance: the node leaves the list; an instance carrying that registration is not
    listed under either id any more (the agent "won't be able to refresh its authorization token because
    it's no longer registered. SSM Agent hibernates": SSM user guide, "Deregistering managed nodes in a
    hybrid and multicloud environment"). Unknown ids answer InvalidInstanceId."""
    with NODE_LOCK:
        if not instance_id or instance_id not in known_managed_node_ids(rt, account_id, region):
            # the wording SSM gives for an mi- id it does not have (aws/amazon-ssm-agent#381)
            raise InvalidInstanceId(f"Not existing InstanceId {instance_id}")
        nodes, deregistered = _node_state(_ssm_backend(account_id, region))
        node = nodes.pop(instance_id, None)
        deregistered[instance_id] = (node or {}).get("source_instance")


NODE_LOCK = threading.Lock()
NODE_FIELDS = {"instance_id", "computer_name", "ip_address", "ping_status", "last_ping_ms", "agent_version",
               "platform_type", "platform_name", "platform_version", "registration_date_ms", "activation_id",
               "iam_role", "name", "source_instance", "tags"}
PING_STATUSES = ("Online", "ConnectionLost", "Inactive")


def register_managed_nodes(rt: Any, body: dict[str, Any]) -> dict[str, Any]:
    """POST /_opsflow/managed_nodes: register hybrid-activated nodes in one account and Region.
    Raises ValueError (HTTP 400) for a bad body."""
    if not isinstance(body, dict):
        raise ValueError("body must be an object {account_id, region, nodes:[…]}")
    unknown = sorted(set(body) - {"account_id", "region", "nodes"})
    if unknown:
        raise ValueError(f"unknown keys: {unknown}")
    account_id = str(body.get("account_id") or default_account())
    region = str(body.get("region") or "us-east-1")
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError("account_id must be 12 digits")
    if not isinstance(body.get("nodes"), list) or not body["nodes"]:
        raise ValueError("nodes must be a non-empty list")
    now = rt.clock.now_ms()
    records = []
    for raw in body["nodes"]:
        if not isinstance(raw, dict):
            raise ValueError("each node must be an object")
        bad = sorted(set(raw) - NODE_FIELDS)
        if bad:
            raise ValueError(f"unknown node keys: {bad}; known: {sorted(NODE_FIELDS)}")
        mi = raw.get("instance_id") or "mi-" + uuid.uuid4().hex[:17]
        if not MI_ID.fullmatch(mi):
            raise ValueError(f"instance_id {mi!r} is not mi- and 17 hex digits")
        source = raw.get("source_instance")
        if source is not None:
            try:
                ec2_backends[account_id][region].get_instance(source)
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"source_instance {source!r}: no such instance in {account_id}/{region}") from exc
        elif not raw.get("computer_name") or not raw.get("ip_address"):
            raise ValueError("computer_name and ip_address are required (unless source_instance is given)")
        ping = raw.get("ping_status", "Online")
        if ping not in PING_STATUSES:
            raise ValueError(f"ping_status {ping!r} not one of {PING_STATUSES}")
        version = raw.get("agent_version")
        if version is not None and not AGENT_VERSION.fullmatch(str(version)):
            raise ValueError(f"agent_version {version!r} is not a version like 3.3.987.0")
        platform_type = raw.get("platform_type", "Linux")
        if platform_type not in ("Linux", "Windows", "MacOS"):
            raise ValueError("platform_type must be Linux, Windows or MacOS")
        activation = raw.get("activation_id") or str(uuid.uuid4())
        if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", activation):
            raise ValueError("activation_id must be a lower-case UUID (the API's pattern)")
        tags = raw.get("tags") or {}
        if not isinstance(tags, dict):
            raise ValueError("tags must be an object {key: value}")
        records.append({
            "instance_id": mi,
            "computer_name": raw.get("computer_name"),
            "ip_address": raw.get("ip_address"),
            "ping_status": ping,
            "last_ping_ms": int(raw.get("last_ping_ms", now)),
            "agent_version": version,
            "platform_type": platform_type,
            "platform_name": raw.get("platform_name") or ("Microsoft Windows Server 2022 Datacenter"
                                                          if platform_type == "Windows" else "Amazon Linux"),
            "platform_version": raw.get("platform_version") or ("10.0.20348" if platform_type == "Windows"
                                                                else "2023"),
            "registration_date_ms": int(raw.get("registration_date_ms", now)),
            "activation_id": activation,
            "iam_role": raw.get("iam_role") or HYBRID_DEFAULT_ROLE,
            "name": raw.get("name"),
            "source_instance": source,
            "tags": {str(k): str(v) for k, v in tags.items()},
        })
    with NODE_LOCK:
        nodes, deregistered = _node_state(_ssm_backend(account_id, region))
        for record in records:
            nodes[record["instance_id"]] = record
            deregistered.pop(record["instance_id"], None)  # registered again (a new activation)
    return {"account_id": account_id, "region": region, "nodes": records}


def registered_managed_nodes(account_id: str | None, region: str | None) -> dict[str, Any]:
    """GET /_opsflow/managed_nodes: the registered hybrid nodes (optionally of one account / Region)."""
    from moto.ssm.models import ssm_backends

    out = []
    for acct, regions in list(ssm_backends.items()):
        if account_id and acct != account_id:
            continue
        for reg, backend in list(regions.items()):
            if region and reg != region:
                continue
            for node in list(getattr(backend, "opsflow_nodes", {}).values()):
                out.append({"account_id": acct, "region": reg, **node})
    return {"nodes": out}


def _filter_matches(info: dict[str, Any], key: str, values: list[str]) -> bool:
    k = key.lower()
    if k.startswith("tag:"):
        return info["_tags"].get(key[4:]) in values
    if k == "tag-key":
        return any(v in info["_tags"] for v in values)
    field = {
        "instanceids": "InstanceId",
        "pingstatus": "PingStatus",
        "platformtypes": "PlatformType",
        "resourcetype": "ResourceType",
        "agentversion": "AgentVersion",
        "activationids": "ActivationId",
        "iamrole": "IamRole",
    }.get(k)
    if field is None:
        raise SSMException("InvalidFilterKey", f"The filter key {key} is not valid.")
    return field in info and str(info[field]) in values


def describe_instance_information(rt: Any, account_id: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
    infos = all_managed_instances(rt, account_id, region)
    for f in params.get("InstanceInformationFilterList") or []:
        infos = [i for i in infos if _filter_matches(i, f["key"], f.get("valueSet") or [])]
    for f in params.get("Filters") or []:
        infos = [i for i in infos if _filter_matches(i, f["Key"], f.get("Values") or [])]
    max_results = params.get("MaxResults")
    if max_results is None:
        max_results = 50
    if not 5 <= int(max_results) <= 50:
        raise ValidationException(
            f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy "
            "constraint: Member must have value between 5 and 50"
        )
    items, token = page(infos, int(max_results), params.get("NextToken"))
    items = [{k: v for k, v in i.items() if not k.startswith("_")} for i in items]
    out: dict[str, Any] = {"InstanceInformationList": items}
    if token:
        out["NextToken"] = token
    return out


# --------------------------------------------------------------------------- SSM: service settings (DHMC)


class ServiceSettingNotFound(SSMException):
    code = "ServiceSettingNotFound"


def _setting_id(raw: Any, account_id: str, region: str) -> str:
    """A SettingId as given: the ID ("/ssm/…") or its ARN, "arn:aws:ssm:<region>:<account>:servicesetting/ssm/…"
    (UpdateServiceSetting's API reference: "The Amazon Resource Name (ARN) of the service setting to update.
    For example, arn:aws:ssm:us-east-1:111122223333:servicesetting/ssm/parameter-store/high-throughput-enabled";
    the CLI's get-service-setting examples pass the ARN too). An ARN of another account or Region, or an ID
    not served here, is ServiceSettingNotFound."""
    text = str(raw or "")
    m = re.fullmatch(r"arn:aws[\w-]*:ssm:([\w-]+):(\d{12}):servicesetting(/.+)", text)
    if m:
        if (m.group(1), m.group(2)) != (region, account_id):
            raise ServiceSettingNotFound(f"ServiceSetting {text} is not found.")
        text = m.group(3)
    if text not in SERVICE_SETTING_DEFAULTS:
        raise ServiceSettingNotFound(f"ServiceSetting {raw} is not found.")
    return text


def service_setting_view(rt: Any, backend: Any, setting_id: str) -> dict[str, Any]:
    """The ServiceSetting structure: SettingId (the ID form, whichever form was asked), SettingValue,
    LastModifiedDate, LastModifiedUser, ARN, Status ("Default" until updated, "Customized" after; the API
    reference's ServiceSetting.Status), as the CLI's get-service-setting examples show a default one
    (LastModifiedUser "System", Status "Default")."""
    state = _setting_state(backend)
    if not hasattr(backend, "opsflow_settings_born"):
        backend.opsflow_settings_born = rt.clock.now_ms()
    custom = state.get(setting_id)
    arn = f"arn:{get_partition(backend.region_name)}:ssm:{backend.region_name}:{backend.account_id}:servicesetting{setting_id}"
    if custom is None:
        value, modified, user, status = (SERVICE_SETTING_DEFAULTS[setting_id], backend.opsflow_settings_born,
                                         "System", "Default")
    else:
        value, modified, user, status = custom["value"], custom["modified_ms"], custom["user"], "Customized"
    return {"SettingId": setting_id, "SettingValue": value, "LastModifiedDate": to_dt(modified),
            "LastModifiedUser": user, "ARN": arn, "Status": status}


def _patch_fleet(rt: Any) -> None:
    """EC2 pieces the managed-node view reads, where moto differs from EC2."""
    from moto.ec2.models.vpcs import VPCBackend

    def instance_init(orig: Any) -> Any:
        def __init__(self: Instance, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            self.opsflow_launched = rt.clock.now_ms()  # the agent starts with the OS at launch

        return __init__

    wrap(Instance, "__init__", instance_init)

    # DescribeInstances' SecurityGroups: moto leaves it empty when the launch named no group, though the
    # instance is in the VPC's default group (RunInstances API reference: "If you don't specify a security
    # group ID, we use the default security group for the VPC"); its network interface already says so.
    # moto's serializer reads an attribute named like the API member first.
    Instance.SecurityGroups = property(instance_security_groups)  # type: ignore[attr-defined]

    def modify_metadata(orig: Any) -> Any:
        def method(self: Any, instance_id: str, http_tokens: str | None = None, hop_limit: int | None = None,
                   http_endpoint: str | None = None, dry_run: bool | None = False, http_protocol: str | None = None,
                   metadata_tags: str | None = None) -> Any:
            # ModifyInstanceMetadataOptions keeps what the request leaves out (API reference: "If this
            # parameter is not specified, the existing state is maintained"); moto reset those to null.
            cur = self.get_instance(instance_id).metadata_options
            return orig(self, instance_id, http_tokens=http_tokens or cur.http_tokens,
                        hop_limit=hop_limit if hop_limit is not None else cur.http_put_response_hop_limit,
                        http_endpoint=http_endpoint or cur.http_endpoint, dry_run=dry_run,
                        http_protocol=http_protocol or cur.http_protocol_ipv6,
                        metadata_tags=metadata_tags or cur.instance_metadata_tags)

        return method

    wrap(InstanceBackend, "modify_instance_metadata_options", modify_metadata)

    def create_default_vpc(orig: Any) -> Any:
        def method(self: Any) -> Any:
            vpc = orig(self)
            # The default VPC has an internet gateway and its main route table sends 0.0.0.0/0 to it (Amazon
            # VPC user guide, "Default VPC components": "Create an internet gateway and connect it to your
            # default VPC" / "Add a route to the main route table that points all traffic (0.0.0.0/0) to the
            # internet gateway"); moto made neither.
            igw = self.create_internet_gateway()
            self.attach_internet_gateway(igw.id, vpc.id)
            for table in list(self.route_tables.values()):
                if table.vpc_id == vpc.id and table.main_association_id is not None:
                    self.create_route(table.id, "0.0.0.0/0", gateway_id=igw.id)
            return vpc

        return method

    wrap(VPCBackend, "create_default_vpc", create_default_vpc)

    def create_vpc_endpoint(orig: Any) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            endpoint = orig(self, *args, **kwargs)
            # An interface endpoint created without security groups gets the VPC's default group
            # (CreateVpcEndpoint API reference, SecurityGroupIds: "If this parameter is not specified, we use
            # the default security group for the VPC"); moto listed none.
            if (endpoint.vpc_endpoint_type or "").lower() == "interface" and not endpoint.security_group_ids:
                group = self.get_default_security_group(endpoint.vpc_id)
                if group is not None:
                    endpoint.security_group_ids = [group.id]
            return endpoint

        return method

    wrap(VPCBackend, "create_vpc_endpoint", create_vpc_endpoint)


def _show_profile(assoc: Any) -> None:
    """DescribeInstances' IamInstanceProfile follows the association: {Arn, Id} of the profile (the
    API reference's IamInstanceProfile: "The ID of the instance profile"). moto put the association's
    id there and kept the first profile after a ReplaceIamInstanceProfileAssociation."""
    if assoc.instance is not None:
        profile = assoc.iam_instance_profile
        assoc.instance.iam_instance_profile = {"Arn": profile.arn, "Id": profile.id}


def _patch_ec2_instances(rt: Any) -> None:
    def assoc_init(orig: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            self.opsflow_since = rt.clock.now_ms()
            _show_profile(self)

        return __init__

    wrap(IamInstanceProfileAssociation, "__init__", assoc_init)

    def replace(orig: Any) -> Any:
        def replace_iam_instance_profile_association(self: Any, *args: Any, **kwargs: Any) -> Any:
            assoc = orig(self, *args, **kwargs)
            assoc.opsflow_since = rt.clock.now_ms()  # the agent re-registers with new credentials
            _show_profile(assoc)
            return assoc

        return replace_iam_instance_profile_association

    wrap(IamInstanceProfileAssociationBackend, "replace_iam_instance_profile_association", replace)

    def booted(orig: Any) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = orig(self, *args, **kwargs)
            self.opsflow_booted = rt.clock.now_ms()
            self.opsflow_reboots = [*getattr(self, "opsflow_reboots", []), self.opsflow_booted]
            return result

        return method

    wrap(Instance, "reboot", booted)

    def start(orig: Any) -> Any:
        def method(self: Instance, *args: Any, **kwargs: Any) -> Any:
            if self.state in ("pending", "running"):
                return copy.copy(self._state)  # StartInstances on a started instance changes nothing
            if self.state != "stopped":
                # EC2 answers IncorrectInstanceState for a stopping (or terminated) instance.
                raise EC2ClientError(
                    "IncorrectInstanceState",
                    f"The instance '{self.id}' is not in a state from which it can be started.")
            result = orig(self, *args, **kwargs)
            now = rt.clock.now_ms()
            running_at = now + ms(rt.cfg("instance_pending_seconds"))
            clock_state(rt, self, ("pending", 0), ("running", 16), now, running_at)
            self.opsflow_booted = running_at  # the agent starts with the OS
            self.opsflow_checks_ok_at = running_at + ms(rt.cfg("status_checks_seconds"))
            self.opsflow_starts = [*getattr(self, "opsflow_starts", []), now]
            return result

        return method

    wrap(Instance, "start", start)

    def checks(orig_prop: Any) -> Any:
        def getter(self: Instance) -> dict[str, Any]:
            now = rt.clock.now_ms()
            ok_at = getattr(self, "opsflow_checks_ok_at", None)
            replacing = any(t.start <= now < t.checks_ok_at for t in getattr(self, "opsflow_root_tasks", ()))
            if self.state_code == 16 and (replacing or ok_at is not None and now < ok_at):
                return {"Details": [{"Name": "reachability", "Status": "initializing"}], "Status": "initializing"}
            return orig_prop.fget(self)

        return property(getter)

    Instance.instance_status = checks(Instance.instance_status)
    Instance.system_status = checks(Instance.system_status)


# --------------------------------------------------------------------------- EC2: stop / terminate on the clock

#: (transitional, final) EC2 states of each way down, with their state codes.
DOWN_STATES = {
    "stop": (("stopping", 64), ("stopped", 80)),
    "terminate": (("shutting-down", 32), ("terminated", 48)),
}
DOWN_TRANSITION_CONFIG = {"stop": "instance_stopping_seconds", "terminate": "instance_shutting_down_seconds"}


class ClockedInstanceState(InstanceState):
    """An EC2 instance state that is `during` until `until_ms` on the clock, then `after`.

    moto writes ``state.name`` / ``state.code`` itself (start, reboot): any write ends the
    transition and fixes the written value.
    """

    def __init__(self, clock: Any, during: tuple[str, int], after: tuple[str, int], until_ms: int):
        self._clock = clock
        self._during = during
        self._after = after
        self._until: int | None = until_ms
        self.replaced_at: int | None = None  # when a later transition took over (clock_state)

    def _current(self) -> tuple[str, int]:
        if self._until is not None and self._clock.now_ms() < self._until:
            return self._during
        return self._after

    @property  # type: ignore[override]
    def name(self) -> str:
        return self._current()[0]

    @name.setter
    def name(self, value: str) -> None:
        self._after = (value, self._current()[1])
        self._until = None

    @property  # type: ignore[override]
    def code(self) -> int:
        return self._current()[1]

    @code.setter
    def code(self, value: int) -> None:
        self._after = (self._current()[0], value)
        self._until = None


def clock_state(rt: Any, instance: Instance, during: tuple[str, int], after: tuple[str, int], at: int,
                until: int) -> None:
    """Make the instance `during` from `at` until `until`, then `after`, and send EC2's state-change
    event of each (the second only if no later transition took over before `until`)."""
    if isinstance(instance._state, ClockedInstanceState):
        instance._state.replaced_at = at
    instance._state = state = ClockedInstanceState(rt.clock, during, after, until)
    state_change_event(rt, instance, during[0], at)
    state_change_event(rt, instance, after[0], until, lambda: state.replaced_at is None or state.replaced_at >= until)


def instance_went_down_at(instance: Any, since: int, before: int) -> int | None:
    """The first time in [since, before) at which the instance began to stop or terminate."""
    for t in getattr(instance, "opsflow_downs", ()):
        if since <= t < before:
            return t
    return None


def _patch_ec2_transitions(rt: Any) -> None:
    def going_down(action: str) -> Any:
        def make(orig: Any) -> Any:
            def method(self: Instance, *args: Any, **kwargs: Any) -> Any:
                if self.state in ("shutting-down", "terminated") or (
                        action == "stop" and self.state in ("stopping", "stopped")):
                    # Already on its way down (or down): a second call changes nothing, and must
                    # not cut the transition short as moto's own stop()/terminate() would.
                    return copy.copy(self._state)
                # A scheduled action passes the time it was due (it runs at the first request after).
                at, transition = getattr(self, "_opsflow_effective", None) or (
                    rt.clock.now_ms(), ms(rt.cfg(DOWN_TRANSITION_CONFIG[action])))
                self._opsflow_effective = None
                result = orig(self, *args, **kwargs)
                clock_state(rt, self, *DOWN_STATES[action], at, at + transition)
                self.opsflow_downs = [*getattr(self, "opsflow_downs", []), at]
                return result

            return method

        return make

    wrap(Instance, "stop", going_down("stop"))
    wrap(Instance, "terminate", going_down("terminate"))


def find_instance(instance_id: str) -> Instance | None:
    """The instance with this id in any account and region moto has created, else None."""
    for _account, regions in list(ec2_backends.items()):
        for _region, backend in list(regions.items()):
            for reservation in list(backend.reservations.values()):
                for instance in reservation.instances:
                    if instance.id == instance_id:
                        return instance
    return None


def apply_instance_action(instance: Instance, action: str, at_ms: int, transition_ms: int) -> bool:
    """Stop or terminate an instance as of `at_ms` (a schedule that came due); False if moot."""
    if instance.state in ("shutting-down", "terminated") or (action == "stop" and instance.state != "running"):
        return False
    instance._opsflow_effective = (at_ms, transition_ms)
    if action == "stop":
        instance.stop()
    else:
        instance.terminate()
    return True


# --------------------------------------------------------------------------- EventBridge: EC2 and Auto Scaling events

EC2_STATE_CHANGE = "EC2 Instance State-change Notification"
TERMINATE_LIFECYCLE_ACTION = "EC2 Instance-terminate Lifecycle Action"
#: The event AWS delivers to a target without an InputTransformer: the whole event. moto's own
#: template leaves out `account`.
FULL_EVENT_TEMPLATE = ('{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
                       '"account": "<account>", "time": <time>, "region": "<region>", "resources": <resources>, '
                       '"detail": <detail>}')


class EventFeed:
    """Events AWS services send to EventBridge. Each is delivered once the clock reaches its time
    (at the end of the request that made it happen, or at the first request after), in time order,
    through moto's PutEvents to the default event bus of its account and region (moto matches the
    rules and sends to their targets), and kept in the log (GET /_opsflow/events)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pending: list[tuple[int, int, dict[str, Any], Any]] = []  # (time, order, event, still_happens)
        self.log: list[dict[str, Any]] = []

    def add(self, at_ms: int, account: str, region: str, source: str, detail_type: str, resources: list[str],
            detail: dict[str, Any], still_happens: Any = None) -> None:
        event = {"version": "0", "id": "", "detail-type": detail_type, "source": source, "account": account,
                 "time": _ec2_time(at_ms), "region": region, "resources": resources, "detail": detail}
        with self.lock:
            self.pending.append((at_ms, next(REQUEST_ORDER), event, still_happens))

    def deliver_due(self, now: int) -> None:
        if not self.pending:
            return
        with self.lock:
            due = sorted((e for e in self.pending if e[0] <= now), key=lambda e: e[:2])
            self.pending = [e for e in self.pending if e[0] > now]
            for at, _, event, still_happens in due:
                if still_happens is None or still_happens():
                    (entry,) = events_backends[event["account"]][event["region"]].put_events([{
                        "Source": event["source"], "DetailType": event["detail-type"],
                        "Detail": json.dumps(event["detail"]), "Resources": event["resources"], "Time": at / 1000}])
                    self.log.append({**event, "id": entry["EventId"]})

    def clear(self, pending: bool = False) -> None:
        with self.lock:
            self.log = []
            if pending:
                self.pending = []


def state_change_event(rt: Any, instance: Instance, state: str, at: int, still_happens: Any = None) -> None:
    backend = instance.ec2_backend
    account, region = backend.account_id, backend.region_name
    arn = f"arn:{get_partition(region)}:ec2:{region}:{account}:instance/{instance.id}"
    rt.events.add(at, account, region, "aws.ec2", EC2_STATE_CHANGE, [arn],
                  {"instance-id": instance.id, "state": state}, still_happens)


def _patch_events(rt: Any) -> None:
    EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = FULL_EVENT_TEMPLATE

    def run_instances(orig: Any) -> Any:
        def method(self: InstanceBackend, *args: Any, **kwargs: Any) -> Any:
            reservation = orig(self, *args, **kwargs)
            now = rt.clock.now_ms()
            for instance in reservation.instances:  # launched `running` at once (moto's), so both now
                state_change_event(rt, instance, "pending", now)
                state_change_event(rt, instance, "running", now)
            return reservation

        return method

    wrap(InstanceBackend, "run_instances", run_instances)


# --------------------------------------------------------------------------- Auto Scaling: termination hooks

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
#: An instance waits at most 48 hours or 100 heartbeat timeouts, whichever is smaller (LifecycleHook.GlobalTimeout).
MAX_GLOBAL_TIMEOUT_SECONDS = 172800


class LifecycleAction:
    """One termination lifecycle action: an instance of `group` waiting for one hook."""

    def __init__(self, group: FakeAutoScalingGroup, state: Any, hook: Any, now: int):
        self.token = str(uuid.uuid4())
        self.group, self.state = group, state  # the group's InstanceState of the instance
        self.hook, self.default_result = hook.name, hook.default_result
        self.metadata = getattr(hook, "notification_metadata", None)
        self.timeout = ms(hook.heartbeat_timeout)
        self.started_at = now
        self.global_timeout_at = now + min(ms(MAX_GLOBAL_TIMEOUT_SECONDS), 100 * self.timeout)
        self.timeout_at = min(now + self.timeout, self.global_timeout_at)
        self.heartbeats: list[int] = []
        self.completed_at: int | None = None
        self.result: str | None = None
        self.completed_by: str | None = None
        self.complete_calls = 0

    def view(self) -> dict[str, Any]:
        return {"token": self.token, "account": self.group.account_id, "region": self.group.region,
                "group": self.group.name, "hook": self.hook, "instance_id": self.state.instance.id,
                "transition": TERMINATING, "started_at": self.started_at, "heartbeats": list(self.heartbeats),
                "timeout_at": self.timeout_at, "completed_at": self.completed_at, "result": self.result,
                "completed_by": self.completed_by, "complete_calls": self.complete_calls}


class LifecycleActions:
    """Every termination lifecycle action, and the instances they let go (removed from their group
    once EC2 has terminated them)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.actions: list[LifecycleAction] = []
        self.leaving: list[LifecycleAction] = []

    def start(self, rt: Any, group: FakeAutoScalingGroup, state: Any, hooks: list[Any]) -> None:
        """The instance leaves the group: Terminating:Wait, one action (and event) per hook."""
        now = rt.clock.now_ms()
        state.lifecycle_state = "Terminating:Wait"
        with self.lock:
            for hook in hooks:
                action = LifecycleAction(group, state, hook, now)
                self.actions.append(action)
                metadata = {"NotificationMetadata": action.metadata} if action.metadata else {}
                rt.events.add(now, group.account_id, group.region, "aws.autoscaling", TERMINATE_LIFECYCLE_ACTION,
                              [group.arn], {"LifecycleActionToken": action.token, "AutoScalingGroupName": group.name,
                                            "LifecycleHookName": hook.name, "EC2InstanceId": state.instance.id,
                                            "LifecycleTransition": TERMINATING, **metadata,
                                            "Origin": "AutoScalingGroup", "Destination": "EC2"})

    def find(self, account: str, region: str, group: str, hook: str, token: str | None, instance_id: str | None,
             completing: bool = False) -> LifecycleAction:
        """The open action a CompleteLifecycleAction / RecordLifecycleActionHeartbeat names (by token,
        else by instance), or AWS's ValidationError; a completion counts against every action it names."""
        if not token and not instance_id:
            raise AutoScalingValidationError("Either LifecycleActionToken or InstanceId must be specified.")
        with self.lock:
            named = [a for a in self.actions
                     if (a.group.account_id, a.group.region, a.group.name, a.hook) == (account, region, group, hook)
                     and (a.token == token if token else a.state.instance.id == instance_id)]
            if completing:
                for action in named:
                    action.complete_calls += 1
            for action in named:
                if action.completed_at is None:
                    return action
        raise AutoScalingValidationError(f"No active Lifecycle Action found with token {token}" if token
                                         else f"No active Lifecycle Action found with instance ID {instance_id}")

    def finish(self, rt: Any, action: LifecycleAction, result: str, by: str, at: int) -> None:
        """End an action. Once none is left for its instance (ABANDON ends the others: "ABANDON stops any
        remaining actions, such as other lifecycle hooks"), the instance is Terminating:Proceed and
        EC2 terminates it, as of `at`."""
        with self.lock:
            action.completed_at, action.result, action.completed_by = at, result, by
            others = [a for a in self.actions if a.state is action.state and a.completed_at is None]
            if others and result != "ABANDON":
                return
            for other in others:
                other.completed_at, other.result, other.completed_by = at, "ABANDON", "abandoned"
            action.state.lifecycle_state = "Terminating:Proceed"
            apply_instance_action(action.state.instance, "terminate", at, ms(rt.cfg("instance_shutting_down_seconds")))
            self.leaving.append(action)

    def apply_due(self, rt: Any, now: int) -> None:
        """Apply the default result of actions whose timeout passed (as of that time), and take the
        instances EC2 has terminated out of their group."""
        if not self.actions and not self.leaving:
            return
        with self.lock:
            for action in sorted((a for a in self.actions if a.completed_at is None and a.timeout_at <= now),
                                 key=lambda a: a.timeout_at):
                if action.completed_at is None:  # not ended meanwhile by another hook's ABANDON
                    self.finish(rt, action, action.default_result, "timeout", action.timeout_at)
            for action in [a for a in self.leaving if a.state.instance.state == "terminated"]:
                action.group.instance_states = [s for s in action.group.instance_states if s is not action.state]
                self.leaving.remove(action)

    def clear_ended(self) -> None:
        with self.lock:
            self.actions = [a for a in self.actions if a.completed_at is None]

    def view(self) -> list[dict[str, Any]]:
        with self.lock:
            return [a.view() for a in self.actions]


def _patch_autoscaling(rt: Any) -> None:
    """Termination lifecycle hooks (moto keeps hooks but never waits for them), CompleteLifecycleAction
    and RecordLifecycleActionHeartbeat (moto 5.2.6 has neither)."""
    registry: LifecycleActions = rt.lifecycle

    def terminating_hooks(group: FakeAutoScalingGroup) -> list[Any]:
        return [h for h in group.autoscaling_backend.describe_lifecycle_hooks(group.name)
                if h.lifecycle_transition == TERMINATING]

    def set_desired_capacity(orig: Any) -> Any:
        def method(self: FakeAutoScalingGroup, new_capacity: int | None) -> None:
            # Scale-in with termination hooks: the instances that leave (InService, unprotected, in the
            # group's order, as moto picks them) wait instead of terminating.
            target = self.min_size if new_capacity is None else new_capacity
            excess = len(self.active_instances()) - (target or 0)
            hooks = terminating_hooks(self) if excess > 0 else []
            if hooks:
                leaving = [s for s in self.instance_states
                           if s.lifecycle_state == "InService" and not s.protected_from_scale_in][:excess]
                for state in leaving:
                    registry.start(rt, self, state, hooks)
            # Instances on their way out are no longer the group's: moto must neither count nor pick them.
            going = [s for s in self.instance_states if s.lifecycle_state.startswith("Terminating")]
            self.instance_states = [s for s in self.instance_states if s not in going]
            try:
                orig(self, new_capacity)
            finally:
                self.instance_states = [*self.instance_states, *going]

        return method

    wrap(FakeAutoScalingGroup, "set_desired_capacity", set_desired_capacity)

    def terminate_instance(orig: Any) -> Any:
        def method(self: AutoScalingBackend, instance_id: str, should_decrement: bool) -> Any:
            state = next((s for g in self.autoscaling_groups.values() for s in g.instance_states
                          if s.instance.id == instance_id), None)
            hooks = terminating_hooks(state.auto_scaling_group) if state is not None else []
            if not hooks:
                return orig(self, instance_id, should_decrement)
            group, original = state.auto_scaling_group, state.auto_scaling_group.desired_capacity
            if state.lifecycle_state == "InService":
                registry.start(rt, group, state, hooks)
                if should_decrement:
                    group.desired_capacity -= 1
                group.set_desired_capacity(group.desired_capacity)  # launches a replacement unless decremented
            return TerminateInstanceActivity(state.instance, original)

        return method

    wrap(AutoScalingBackend, "terminate_instance", terminate_instance)

    def delete_lifecycle_hook(orig: Any) -> Any:
        def method(self: AutoScalingBackend, as_name: str, name: str) -> None:
            # "If there are any outstanding lifecycle actions, they are completed first (ABANDON for
            # launching instances, CONTINUE for terminating instances)."
            now = rt.clock.now_ms()
            with registry.lock:
                for action in [a for a in registry.actions if a.completed_at is None and a.hook == name
                               and (a.group.account_id, a.group.region, a.group.name)
                               == (self.account_id, self.region_name, as_name)]:
                    registry.finish(rt, action, "CONTINUE", "DeleteLifecycleHook", now)
            orig(self, as_name, name)

        return method

    wrap(AutoScalingBackend, "delete_lifecycle_hook", delete_lifecycle_hook)

    def delete_auto_scaling_group(orig: Any) -> Any:
        def method(self: AutoScalingBackend, group_name: str) -> None:
            for hook in self.describe_lifecycle_hooks(group_name):  # they go with the group (moto kept them)
                self.delete_lifecycle_hook(group_name, hook.name)
            orig(self, group_name)

        return method

    wrap(AutoScalingBackend, "delete_auto_scaling_group", delete_auto_scaling_group)

    def put_lifecycle_hook(orig: Any) -> Any:
        def method(self: AutoScalingResponse) -> ActionResult:
            timeout = self._get_int_param("HeartbeatTimeout")
            if timeout is not None and not 30 <= timeout <= 7200:
                raise AutoScalingValidationError(
                    f"HeartbeatTimeout {timeout} is not valid: the range is from 30 to 7200 seconds.")
            if self._get_param("DefaultResult") not in (None, "CONTINUE", "ABANDON"):
                raise AutoScalingValidationError("DefaultResult must be CONTINUE or ABANDON.")
            result = orig(self)
            # moto stores neither the metadata nor the target and role, and a fixed GlobalTimeout.
            hook = self.autoscaling_backend.lifecycle_hooks[
                f"{self._get_param('AutoScalingGroupName')}_{self._get_param('LifecycleHookName')}"]
            hook.notification_metadata = self._get_param("NotificationMetadata")
            hook.notification_target_arn = self._get_param("NotificationTargetARN")
            hook.role_arn = self._get_param("RoleARN")
            hook.global_timeout = min(MAX_GLOBAL_TIMEOUT_SECONDS, 100 * hook.heartbeat_timeout)
            return result

        return method

    wrap(AutoScalingResponse, "put_lifecycle_hook", put_lifecycle_hook)

    def named_action(self: AutoScalingResponse, completing: bool = False) -> LifecycleAction:
        return registry.find(self.current_account, self.region, self._get_param("AutoScalingGroupName"),
                             self._get_param("LifecycleHookName"), self._get_param("LifecycleActionToken"),
                             self._get_param("InstanceId"), completing)

    def complete_lifecycle_action(self: AutoScalingResponse) -> ActionResult:
        result = self._get_param("LifecycleActionResult")
        if result not in ("CONTINUE", "ABANDON"):
            raise AutoScalingValidationError("LifecycleActionResult must be CONTINUE or ABANDON.")
        registry.finish(rt, named_action(self, completing=True), result, "CompleteLifecycleAction", rt.clock.now_ms())
        return EmptyResult()

    def record_lifecycle_action_heartbeat(self: AutoScalingResponse) -> ActionResult:
        action, now = named_action(self), rt.clock.now_ms()
        action.heartbeats.append(now)  # restarts the timeout, within the global timeout
        action.timeout_at = min(now + action.timeout, action.global_timeout_at)
        return EmptyResult()

    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action  # type: ignore[attr-defined]
    AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- EC2: volume modifications


def _mod_state(rt: Any, mod: Any, now: int | None = None) -> tuple[str, int, int | None]:
    """(ModificationState, Progress, EndTime) of a modification at `now`."""
    start = getattr(mod, "opsflow_start", None)
    if start is None:
        return "completed", 100, None
    now = rt.clock.now_ms() if now is None else now
    fail_at = getattr(mod, "opsflow_fail_at", None)
    if fail_at is not None:  # a volume failure rule chose this one: modifying, then failed
        return ("failed", 0, fail_at) if now >= fail_at else ("modifying", 0, None)
    m, o = mod.opsflow_modifying, mod.opsflow_optimizing
    elapsed = now - start
    end = start + m + o
    if elapsed >= m + o:
        return "completed", 100, end
    progress = min(99, int(100 * elapsed / (m + o))) if m + o > 0 else 0
    return ("modifying" if elapsed < m else "optimizing"), max(progress, 0), None


def _patch_ec2_volumes(rt: Any) -> None:
    def mod_init(orig: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            now = rt.clock.now_ms()
            self.opsflow_start = now
            self.opsflow_modifying = ms(rt.cfg("volume_modifying_seconds"))
            self.opsflow_optimizing = ms(rt.cfg("volume_optimizing_seconds"))
            self.opsflow_fail_at = None
            self.opsflow_fail_message = ""
            failure = rt.take_failure("volume_failures", self.volume.id)
            if failure is not None:
                after = failure["fail_after_seconds"]
                self.opsflow_fail_at = now + (self.opsflow_modifying if after is None else ms(after))
                self.opsflow_fail_message = failure["status_message"]
            self.start_time = to_dt(now)

        return __init__

    wrap(VolumeModification, "__init__", mod_init)
    VolumeModification.modification_state = property(lambda self: _mod_state(rt, self)[0])  # type: ignore[assignment]
    VolumeModification.progress = property(lambda self: _mod_state(rt, self)[1])  # type: ignore[assignment]

    def _status_message(self: Any) -> str | None:
        return self.opsflow_fail_message if _mod_state(rt, self)[0] == "failed" else None

    VolumeModification.status_message = property(_status_message)  # type: ignore[attr-defined]

    # A failed modification leaves the volume as it was: its size is the original size again.
    # moto sets Volume.size when the modification starts (as AWS shows it); this property
    # answers the original size once the volume's latest modification has failed.
    def _size_get(self: Any) -> Any:
        mods = getattr(self, "modifications", None)
        if mods:
            last = mods[-1]
            if last.original_size is not None and _mod_state(rt, last)[0] == "failed":
                return last.original_size
        return self._opsflow_size

    def _size_set(self: Any, value: Any) -> None:
        self._opsflow_size = value

    Volume.size = property(_size_get, _size_set)  # type: ignore[assignment]

    def describe_mods(orig: Any) -> Any:
        def describe_volumes_modifications(self: Any, volume_ids: Any = None, filters: Any = None) -> Any:
            # As AWS: only the most recent modification of each volume (moto lists them all).
            latest = {}
            for mod in orig(self, volume_ids=volume_ids, filters=None):
                latest[mod.volume.id] = mod
            mods = list(latest.values())
            if filters:
                from moto.ec2.utils import generic_filter

                mods = generic_filter(filters, mods)
            return mods

        return describe_volumes_modifications

    wrap(EBSBackend, "describe_volumes_modifications", describe_mods)

    def _end_get(self: Any) -> Any:
        if getattr(self, "opsflow_start", None) is None:
            return getattr(self, "_opsflow_end_time", None)
        return to_dt(_mod_state(rt, self)[2])

    def _end_set(self: Any, value: Any) -> None:
        self._opsflow_end_time = value

    VolumeModification.end_time = property(_end_get, _end_set)  # type: ignore[attr-defined]

    def filter_value(orig: Any) -> Any:
        def get_filter_value(self: Any, filter_name: str) -> Any:
            if filter_name == "modification-state":
                return self.modification_state
            return orig(self, filter_name)

        return get_filter_value

    wrap(VolumeModification, "get_filter_value", filter_value)

    def modify(orig: Any) -> Any:
        def method(self: Volume, *args: Any, **kwargs: Any) -> Any:
            target_size = kwargs.get("target_size", args[0] if args else None)
            if target_size and int(target_size) < int(self.size):
                raise EC2ClientError(
                    "InvalidParameterValue",
                    f"New size cannot be smaller than existing size ({self.size} GiB).",
                )
            now = rt.clock.now_ms()
            states = [(_mod_state(rt, m, now), m) for m in self.modifications]
            if rt.cfg("volume_modification_in_progress_error"):
                for (state, _, _), _m in states:
                    if state in ("modifying", "optimizing"):
                        raise EC2ClientError(
                            "IncorrectModificationState",
                            f"Cannot modify volume {self.id}: a modification is already in the "
                            f"'{state}' state.",
                        )
            if rt.cfg("volume_modification_rate_limit"):
                window = ms(rt.cfg("volume_modification_rate_window_seconds"))
                ends = [end for (state, _, end), _m in states if state == "completed" and end is not None]
                if ends and now - max(ends) < window:
                    raise EC2ClientError(
                        "VolumeModificationRateExceeded",
                        "You've reached the maximum modification rate per volume limit. "
                        "Wait at least 6 hours between modifications per EBS volume.",
                    )
            return orig(self, *args, **kwargs)

        return method

    wrap(Volume, "modify", modify)


# --------------------------------------------------------------------------- EC2: snapshots on the clock


def _snapshot_state(snap: Any, now: int) -> tuple[str, str, str | None]:
    """(State, Progress, StateMessage) of a snapshot at `now`."""
    end = getattr(snap, "opsflow_end", None)
    if end is None:  # not made by CreateSnapshot(s) (an AMI's, a copy): moto's own
        return snap._opsflow_status, "100%", None
    if now >= end:
        return ("completed", "100%", None) if snap.opsflow_error is None else ("error", "0%", snap.opsflow_error)
    if snap.opsflow_error is not None:
        return "pending", "0%", None
    start = snap.opsflow_start
    return "pending", f"{min(99, 100 * (now - start) // (end - start))}%", None


def _start_snapshots(rt: Any, snapshots: list[Any], instance: Instance | None, at: int | None = None,
                     order: int | None = None) -> None:
    """Time the snapshots of one CreateSnapshot(s) request: pending for snapshot_seconds, then
    completed; or, by a snapshot failure rule, error (all of a multi-volume set, as AWS fails it).
    `at` (default: now) is when the request was made, `order` its rank among requests of that
    millisecond (default: a fresh one); a VSS snapshot set is made as of its invocation's end."""
    now = rt.clock.now_ms() if at is None else at
    failure = rt.take_failure("snapshot_failures", instance.id if instance is not None else None)
    seconds = rt.cfg("snapshot_seconds")
    if failure is not None and failure["fail_after_seconds"] is not None:
        seconds = failure["fail_after_seconds"]
    for snap in snapshots:
        snap.opsflow_start, snap.opsflow_end = now, now + ms(seconds)
        snap.opsflow_error = failure["state_message"] if failure is not None else None
        snap.start_time = to_dt(now)
    if instance is not None:  # for GET /_opsflow/frozen: was the instance frozen when they started?
        started = [(now, next(REQUEST_ORDER) if order is None else order, s.id) for s in snapshots]
        instance.opsflow_snapshots = [*getattr(instance, "opsflow_snapshots", []), *started]


def _patch_ec2_snapshots(rt: Any) -> None:
    def current(field: int) -> Any:
        return lambda self: _snapshot_state(self, rt.clock.now_ms())[field]

    def _status_set(self: Any, value: str) -> None:
        self._opsflow_status = value

    Snapshot.status = property(current(0), _status_set)  # type: ignore[assignment]
    Snapshot.state = property(current(0))  # type: ignore[attr-defined]  # the name in CreateSnapshots' answer
    Snapshot.progress = property(current(1))  # type: ignore[assignment]
    Snapshot.status_message = property(current(2))  # type: ignore[attr-defined]

    def create_snapshot(orig: Any) -> Any:
        def method(self: ElasticBlockStore) -> ActionResult:
            result = orig(self)
            snap: Any = result.result
            attachment = snap.volume.attachment
            _start_snapshots(rt, [snap], attachment.instance if attachment else None)
            return result

        return method

    wrap(ElasticBlockStore, "create_snapshot", create_snapshot)

    def create_snapshots(orig: Any) -> Any:
        def method(self: ElasticBlockStore) -> ActionResult:
            result = orig(self)
            snaps = result.result["Snapshots"]  # type: ignore[index]
            if self._get_param("CopyTagsFromSource") == "volume":  # moto ignores it
                for snap in snaps:
                    own = {t["key"] for t in snap.get_tags()}
                    snap.add_tags({t["key"]: t["value"] for t in snap.volume.get_tags() if t["key"] not in own})
            instance = self.ec2_backend.get_instance(self._get_param("InstanceSpecification")["InstanceId"])
            _start_snapshots(rt, snaps, instance)
            return result

        return method

    wrap(ElasticBlockStore, "create_snapshots", create_snapshots)

    def copy_snapshot(orig: Any) -> Any:
        def method(self: EBSBackend, *args: Any, **kwargs: Any) -> Snapshot:
            snap = orig(self, *args, **kwargs)
            snap.opsflow_copy = True  # not usable to replace a root volume (moto keeps the source volume)
            return snap

        return method

    wrap(EBSBackend, "copy_snapshot", copy_snapshot)


# --------------------------------------------------------------------------- EC2: root volume replacement


def _ec2_time(t_ms: int) -> str:
    """ReplaceRootVolumeTask's string times, as the CLI reference shows them: 2022-03-14T15:06:38Z."""
    return to_dt(t_ms).strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[union-attr]


def _root_volume(instance: Instance) -> Volume:
    return instance.ec2_backend.get_volume(instance.block_device_mapping[instance.root_device_name].volume_id)


class RootVolumeTask:
    """One CreateReplaceRootVolumeTask, timed when created. Its creation answer says `pending`
    (the replacement volume is created then); it is then `in-progress` for replace_root_seconds
    while the node reboots, then `succeeded`: the volumes are swapped as of that time (`apply`).
    With a failure rule: `in-progress` for fail_after_seconds, `failing` for failing_seconds, then
    `failed`, the original root volume still attached and the replacement volume deleted."""

    def __init__(self, rt: Any, instance: Instance, params: tuple[Any, ...], tags: dict[str, str],
                 failure: dict[str, Any] | None):
        now = rt.clock.now_ms()
        self.id = random_id("replacevol")
        self.instance = instance
        self.params = params  # what a request with the same ClientToken must repeat
        _, self.snapshot_id, self.image_id, self.delete_replaced = params
        self.tags = tags
        self.start = now
        seconds = rt.cfg("replace_root_seconds")
        if failure is None:
            self.failing_at = None
            self.end = now + ms(seconds)
        else:
            after = failure["fail_after_seconds"]
            self.failing_at = now + ms(seconds if after is None else after)
            self.end = self.failing_at + ms(failure["failing_seconds"] or 0)
        self.checks_ok_at = self.end + ms(rt.cfg("status_checks_seconds"))
        backend = instance.ec2_backend
        root = _root_volume(instance)
        size = root.size
        if self.image_id:
            ami = backend.describe_images(ami_ids=[self.image_id])[0]
            source, size = ami.ebs_snapshot.id, ami.block_device_mappings[0]["Ebs"]["VolumeSize"]
        elif self.snapshot_id:
            source = self.snapshot_id
        else:  # the launch state: "the snapshot that was used to create the current root volume"
            source = root.snapshot_id
        # The replacement gets the original root volume's type and attributes (user guide).
        self.volume = backend.create_volume(
            size=size, zone_name=root.zone.name, snapshot_id=source, encrypted=root.encrypted,
            kms_key_id=root.kms_key_id, volume_type=root.volume_type, iops=root.iops, throughput=root.throughput)

    def state(self, now: int) -> str:
        if self.failing_at is None:
            return "succeeded" if now >= self.end else "in-progress"
        if now >= self.end:
            return "failed"
        return "failing" if now >= self.failing_at else "in-progress"

    def view(self, now: int, created: bool = False) -> dict[str, Any]:
        state = "pending" if created else self.state(now)
        out = {"ReplaceRootVolumeTaskId": self.id, "InstanceId": self.instance.id, "TaskState": state,
               "StartTime": _ec2_time(self.start), "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
               "DeleteReplacedRootVolume": self.delete_replaced, "SnapshotId": self.snapshot_id,
               "ImageId": self.image_id}
        if state in ("succeeded", "failed"):
            out["CompleteTime"] = _ec2_time(self.end)
        return {k: v for k, v in out.items() if v is not None}

    def apply(self) -> None:
        """Make moto's volumes what the task left (called once, at or after its end)."""
        backend = self.instance.ec2_backend
        device = self.instance.root_device_name
        mapping = self.instance.block_device_mapping.get(device)
        if self.failing_at is not None or mapping is None or self.volume.id not in backend.volumes:
            backend.volumes.pop(self.volume.id, None)  # failed (or the instance is gone): nothing swapped
            return
        old = backend.get_volume(mapping.volume_id)
        backend.detach_volume(old.id, self.instance.id, device)
        backend.attach_volume(self.volume.id, self.instance.id, device, mapping.delete_on_termination)
        self.instance.opsflow_previous_roots = [*getattr(self.instance, "opsflow_previous_roots", []), old]
        if self.image_id:
            self.instance.image_id = self.image_id  # "New AMI ID" (user guide)
        if self.delete_replaced:
            backend.delete_volume(old.id)


class RootVolumeTasks:
    """Root volume replacement tasks whose end has not been applied to moto's volumes yet."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: list[RootVolumeTask] = []

    def add(self, task: RootVolumeTask) -> None:
        with self.lock:
            self.waiting.append(task)

    def apply_due(self, now: int) -> None:
        if not self.waiting:
            return
        with self.lock:
            due = sorted((t for t in self.waiting if t.end <= now), key=lambda t: t.end)
            self.waiting = [t for t in self.waiting if t.end > now]
            for task in due:
                task.apply()


def _backend_dict(backend: Any, name: str) -> dict[str, Any]:
    if not hasattr(backend, name):
        setattr(backend, name, {})
    return getattr(backend, name)


def _patch_ec2_replace_root(rt: Any) -> None:
    """CreateReplaceRootVolumeTask and DescribeReplaceRootVolumeTasks (moto 5.2.6 has neither)."""

    def create_replace_root_volume_task(self: EC2Response) -> ActionResult:
        self.error_on_dryrun()
        backend = self.ec2_backend
        instance = backend.get_instance(self._get_param("InstanceId"))  # InvalidInstanceID.NotFound
        snapshot_id, image_id = self._get_param("SnapshotId"), self._get_param("ImageId")
        params = (instance.id, snapshot_id, image_id, self._get_bool_param("DeleteReplacedRootVolume", False))
        now = rt.clock.now_ms()
        tokens = _backend_dict(backend, "opsflow_root_tokens")
        token = self._get_param("ClientToken")
        if token in tokens:
            if tokens[token].params != params:
                raise EC2ClientError("IdempotentParameterMismatch",
                                     "The request uses the same client token as a previous, but non-identical request.")
            return ActionResult({"ReplaceRootVolumeTask": tokens[token].view(now)})
        if self._get_param("VolumeId"):
            raise EC2ClientError("UnsupportedOperation", "VolumeId is not supported by opsflow's local cloud.")
        if snapshot_id and image_id:
            raise EC2ClientError("InvalidParameterCombination", "Specify at most one of SnapshotId and ImageId.")
        if instance.state != "running":
            raise EC2ClientError("IncorrectInstanceState",
                                 f"The instance '{instance.id}' is not in the 'running' state.")
        if snapshot_id:
            snap = backend.get_snapshot(snapshot_id)  # InvalidSnapshot.NotFound
            lineage = {_root_volume(instance).id, *(v.id for v in getattr(instance, "opsflow_previous_roots", ()))}
            if snap.volume.id not in lineage or getattr(snap, "opsflow_copy", False):
                raise EC2ClientError(
                    "InvalidParameterValue",
                    f"The snapshot '{snapshot_id}' was not created from a current or previous root volume "
                    f"of instance '{instance.id}'.")
        if image_id:
            backend.describe_images(ami_ids=[image_id])  # InvalidAMIID.NotFound
        tags = self._parse_tag_specification().get("replace-root-volume-task", {})
        task = RootVolumeTask(rt, instance, params, tags, rt.take_failure("replace_root_failures", instance.id))
        _backend_dict(backend, "opsflow_root_tasks")[task.id] = task
        instance.opsflow_root_tasks = [*getattr(instance, "opsflow_root_tasks", []), task]
        if token:
            tokens[token] = task
        rt.root_tasks.add(task)
        return ActionResult({"ReplaceRootVolumeTask": task.view(now, created=True)})

    def describe_replace_root_volume_tasks(self: EC2Response) -> ActionResult:
        tasks = list(_backend_dict(self.ec2_backend, "opsflow_root_tasks").values())
        ids = self._get_param("ReplaceRootVolumeTaskIds") or []
        if ids:  # AWS documents no error for an unknown id: it is not listed
            tasks = [t for t in tasks if t.id in ids]
        for name, values in self._filters_from_querystring().items():
            if name != "instance-id":  # the only filter the API reference lists
                raise EC2ClientError("InvalidFilter", "The specified filter is not valid.")
            tasks = [t for t in tasks if t.instance.id in values]
        limit = self._get_int_param("MaxResults")
        if limit is not None and not 1 <= limit <= 50:
            raise EC2ClientError("InvalidMaxResults", "The specified value for MaxResults is not valid.")
        try:
            items, token = page(tasks, limit or max(len(tasks), 1), self._get_param("NextToken"))
        except SSMException:
            raise EC2ClientError("InvalidNextToken", "The specified NextToken is not valid.") from None
        now = rt.clock.now_ms()
        return ActionResult({"ReplaceRootVolumeTasks": [t.view(now) for t in items], "NextToken": token})

    EC2Response.create_replace_root_volume_task = create_replace_root_volume_task  # type: ignore[attr-defined]
    EC2Response.describe_replace_root_volume_tasks = describe_replace_root_volume_tasks  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- SSM: command progression


#: Exit codes that make SSM Agent reboot the node and then run the script again (SSM user guide,
#: "Handling reboots when running commands"): `exit 194` for Linux/macOS (aws:runShellScript),
#: `exit 3010` for Windows (aws:runPowerShellScript). Any other plugin/code pair is an ordinary exit.
REBOOT_EXIT_CODES = {"aws:runShellScript": 194, "aws:runPowerShellScript": 3010}


class InvocationRun:
    """The scripted life of one command invocation (one instance).

    The rule fixes it at SendCommand: Pending for `pending_seconds`, then InProgress while the
    script runs, then Success/Failed by exit code (TimedOut past the execution timeout), or
    Failed/Undeliverable after `pending_seconds` with an `undeliverable` rule. A rule's `runs`
    are successive runs of the script: a run that exits with the plugin's reboot code (194 for
    aws:runShellScript, 3010 for aws:runPowerShellScript) is followed by a reboot of
    `reboot_seconds` (the instance's agent is ConnectionLost, the invocation stays InProgress),
    then the next run; the first run that exits otherwise ends the invocation with its code and
    output. If the instance stops or terminates before the invocation ends, its agent never
    reports again: the invocation stays where it was (Pending or InProgress) until the command
    expires, then ends TimedOut/DeliveryTimedOut (see `_plan`).

    An invocation of a document with an end effect (`END_EFFECT_DOCUMENTS`: the forensic collection's
    uploads, `ForensicCollection`; the VSS snapshot set of AWSEC2-CreateVssSnapshot, `VssSnapshotSet`)
    that would end Success does what its script does last when first seen ended (`state`, at the
    latest at the first request after its end: `CommandRegistry.flush`), in end-time order among
    them; an effect that fails turns it Failed with the effect's exit code (8 for an upload, 1 for
    VSS).
    """

    def __init__(self, rt: Any, cmd: CommandRun, instance_id: str, rule: dict[str, Any]):
        self.instance_id = instance_id
        self.instance = cmd.instance(instance_id)
        self.rule_id = rule.get("id")
        self.leaves_frozen = bool(rule.get("leaves_frozen"))  # opsflow-Freeze: frozen even if it fails
        self.t0 = t0 = cmd.requested
        self.expires_at = cmd.expires_at
        pending = ms(rule["pending_seconds"] if rule.get("pending_seconds") is not None
                     else rt.cfg("command_pending_seconds"))
        runs = rule.get("runs") or [{"exit_code": rule.get("exit_code", 0),
                                     "duration_seconds": rule.get("duration_seconds", 0),
                                     "stdout": rule.get("stdout", ""), "stderr": rule.get("stderr", "")}]
        reboot_ms = ms(rule["reboot_seconds"] if rule.get("reboot_seconds") is not None
                       else rt.cfg("reboot_seconds"))
        reboot_code = REBOOT_EXIT_CODES.get(cmd.plugin)
        self.visible_at = t0 + ms(rt.cfg("invocation_does_not_exist_seconds"))
        self.cancelled_at: int | None = None
        self.outputs_written = False
        #: (start, end) of each run of the script and of each reboot between runs
        self.run_spans: list[tuple[int, int]] = []
        self.reboot_spans: list[tuple[int, int]] = []
        self.exit_code, self.stdout, self.stderr = 0, "", ""
        self.exec_start: int | None
        if cmd.delivery_timeout is not None and pending > cmd.delivery_timeout:
            self.exec_start = None
            self.final_at = t0 + cmd.delivery_timeout
            self.final = ("TimedOut", "DeliveryTimedOut", -1)
        elif rule.get("undeliverable"):
            # As AWS reports a command its agent never got (e.g. the agent is ConnectionLost):
            # Status Failed, StatusDetails Undeliverable, ResponseCode -1, no start, no output.
            self.exec_start = None
            self.final_at = t0 + pending
            self.final = ("Failed", "Undeliverable", -1)
        else:
            self.exec_start = t = t0 + pending
            for i, run in enumerate(runs):
                duration = ms(run.get("duration_seconds", 0))
                self.stdout, self.stderr = str(run.get("stdout", "")), str(run.get("stderr", ""))
                if duration > cmd.execution_timeout:  # each run is one execution of the script
                    self.run_spans.append((t, t + cmd.execution_timeout))
                    self.final_at = t + cmd.execution_timeout
                    self.final = ("TimedOut", "ExecutionTimedOut", -1)
                    break
                self.run_spans.append((t, t + duration))
                t += duration
                code = int(run.get("exit_code", 0))
                if code == reboot_code and i < len(runs) - 1:
                    self.reboot_spans.append((t, t + reboot_ms))
                    t += reboot_ms
                    continue
                self.exit_code = code
                self.final_at = t
                status = "Success" if code == 0 else "Failed"
                self.final = (status, status, code)
                break
        self.order = cmd.order
        self.effect = end_effect(rt, cmd, instance_id, rule, self.stdout, self.stderr)
        if self.effect is not None and self.final[0] == "Success":
            with END_EFFECT_LOCK:
                END_EFFECTS_PENDING.append(self)

    def _plan(self) -> tuple[int | None, int, tuple[str, str, int]]:
        """(execution start, end, final status) as things stand, the instance's fate included."""
        if self.exec_start is None or self.instance is None:
            return self.exec_start, self.final_at, self.final
        down = instance_went_down_at(self.instance, self.t0, self.final_at)
        if down is None:
            return self.exec_start, self.final_at, self.final
        # The instance stopped or terminated under the invocation: no agent reports its end.
        # SSM keeps it InProgress (or Pending, if it never started) until the command expires,
        # then marks it DeliveryTimedOut ("If Run Command doesn't receive a document terminal
        # response from SSM Agent, the command invocation is marked as deliveryTimeout").
        started = self.exec_start if self.exec_start <= down else None
        return started, max(self.expires_at, down), ("TimedOut", "DeliveryTimedOut", -1)

    def _cut(self) -> int:
        """The time after which nothing more happens on the instance (cancel, stop, terminate)."""
        cut = self.final_at
        if self.cancelled_at is not None:
            cut = min(cut, self.cancelled_at)
        if self.instance is not None:
            down = instance_went_down_at(self.instance, self.t0, self.final_at)
            if down is not None:
                cut = min(cut, down)
        return cut

    def counts(self, now: int) -> tuple[int, int]:
        """(runs started, reboots started) by `now`."""
        cut = min(now, self._cut())
        return (sum(1 for s, _ in self.run_spans if s <= cut),
                sum(1 for s, _ in self.reboot_spans if s <= cut))

    def rebooting(self, now: int) -> int | None:
        """When the current reboot began, if the instance is rebooting for this invocation at `now`."""
        cut = self._cut()
        for start, end in self.reboot_spans:
            if start <= now < end and start < cut:
                return start
        return None

    def cancel(self, now: int) -> bool:
        if self.cancelled_at is None and now < self._plan()[1]:
            self.cancelled_at = now
            return True
        return False

    def state(self, now: int) -> dict[str, Any]:
        """Status, details, code, start, end and output as seen at `now`."""
        exec_start, final_at, final = self._plan()
        if self.cancelled_at is not None:
            started = exec_start is not None and exec_start <= self.cancelled_at
            return {
                "Status": "Cancelled", "StatusDetails": "Cancelled", "ResponseCode": -1,
                "start": exec_start if started else None, "end": self.cancelled_at,
                "stdout": "", "stderr": "",
            }
        if exec_start is not None and now < exec_start or exec_start is None and now < final_at:
            return {"Status": "Pending", "StatusDetails": "Pending", "ResponseCode": -1,
                    "start": None, "end": None, "stdout": "", "stderr": ""}
        if now < final_at:
            return {"Status": "InProgress", "StatusDetails": "InProgress", "ResponseCode": -1,
                    "start": exec_start, "end": None, "stdout": "", "stderr": ""}
        status, details, code = final
        if status == "Success" and self.effect is not None and not self.effect.settled:
            self._settle_effects()  # what the script does last (uploads, snapshots): it may still fail it
            return self.state(now)
        ran = details not in ("DeliveryTimedOut", "Undeliverable")
        return {"Status": status, "StatusDetails": details, "ResponseCode": code,
                "start": exec_start, "end": final_at,
                "stdout": self.stdout if ran else "",
                "stderr": self.stderr if ran else ""}

    def _settle_effects(self) -> None:
        """Run the script's end effect (once) and take its exit code and output. Effects of invocations
        that ended before this one run first, in the order they ended: of two forensic collections
        into one prefix the first to end wins a key; snapshot sets are made in end order."""
        with END_EFFECT_LOCK:
            mine = (self.final_at, self.order)
            due = sorted((inv for inv in END_EFFECTS_PENDING if (inv.final_at, inv.order) <= mine),
                         key=lambda inv: (inv.final_at, inv.order))
            for inv in due:
                END_EFFECTS_PENDING.remove(inv)
                inv._settle_one()
            self._settle_one()  # (already done if it was pending)

    def _settle_one(self) -> None:
        effect = self.effect
        if effect is None or effect.settled:
            return
        effect.settled = True
        ended_ok = self.cancelled_at is None and self._plan()[2][0] == "Success"
        if not ended_ok or self.exec_start is None:
            return  # cancelled, or its instance went down: the script never finished
        code, self.stdout, self.stderr = effect.settle(self)
        if code:
            self.exit_code = code
            self.final = ("Failed", "Failed", code)


def _plugin_name(document_name: str | None) -> str:
    name = document_name or ""
    windows = "PowerShell" in name or FORENSIC_DOCUMENTS.get(name) == "Windows" or name == VSS_DOCUMENT
    return "aws:runPowerShellScript" if windows else "aws:runShellScript"


class CommandRun:
    """opsflow's view of one moto Command (attached as command.opsflow)."""

    def __init__(self, rt: Any, command: Command, user_timeout: int | None):
        self.command = command
        self.requested = rt.clock.now_ms()
        self.order = next(REQUEST_ORDER)
        self.plugin = _plugin_name(command.document_name)
        self.set_cloudwatch(None)
        params = command.parameters or {}
        self.delivery_timeout = ms(user_timeout) if user_timeout else None
        exec_timeout = (params.get("executionTimeout") or [None])[0]
        if exec_timeout:
            self.execution_timeout = ms(exec_timeout)
        elif user_timeout:
            self.execution_timeout = ms(user_timeout)
        else:
            self.execution_timeout = ms(SSM_DEFAULT_EXECUTION_TIMEOUT)
        # ExpiresAfter: the command's total timeout = delivery timeout (TimeoutSeconds, default
        # 3600) + execution timeout; invocations still Pending/InProgress then are DeliveryTimedOut.
        self.expires_at = (self.requested + (self.delivery_timeout or ms(SSM_DEFAULT_DELIVERY_TIMEOUT))
                           + self.execution_timeout)
        commands = params.get("commands")
        text = "\n".join(commands) if isinstance(commands, list) else json.dumps(params, sort_keys=True)
        self.invocations: dict[str, InvocationRun] = {}
        for instance_id in command.instance_ids:
            rule = rt.pick_command_rule(command.document_name, text, instance_id)
            inv = self.invocations[instance_id] = InvocationRun(rt, self, instance_id, rule)
            if inv.instance is not None and inv.reboot_spans:
                inv.instance.opsflow_invocations = [*getattr(inv.instance, "opsflow_invocations", []), inv]

    def instance(self, instance_id: str) -> Instance | None:
        try:
            return ec2_backends[self.command.account_id][self.command.backend_region].get_instance(instance_id)
        except Exception:  # noqa: BLE001 - moto lets SendCommand name instances EC2 does not know
            return None

    # -- S3 output layout, as SSM writes it
    def s3_key(self, instance_id: str, stream: str) -> str:
        step = self.plugin.replace(":", "")
        parts = [self.command.output_s3_key_prefix.strip("/")] if self.command.output_s3_key_prefix else []
        parts += [self.command.command_id, instance_id, step, f"0.{step}", stream]
        return "/".join(parts)

    # -- CloudWatch Logs output (SendCommand's CloudWatchOutputConfig)
    def set_cloudwatch(self, config: dict[str, Any] | None) -> None:
        config = config or {}
        self.cw_enabled = bool(config.get("CloudWatchOutputEnabled"))
        # API reference: without a name, SSM creates the group aws/ssm/<DocumentName>; the
        # group as SSM creates it (and as the console and users read it) starts with a slash.
        self.cw_group = config.get("CloudWatchLogGroupName") or (
            f"/aws/ssm/{self.command.document_name}" if self.cw_enabled else "")

    def cloudwatch_config(self) -> dict[str, Any]:
        return {"CloudWatchLogGroupName": self.cw_group, "CloudWatchOutputEnabled": self.cw_enabled}

    def cw_stream(self, instance_id: str, stream: str) -> str:
        # <CommandId>/<InstanceId>/aws-runShellScript/stdout: the plugin name with '-' for ':'
        # (a colon is not allowed in a log stream name).
        return f"{self.command.command_id}/{instance_id}/{self.plugin.replace(':', '-')}/{stream}"

    def s3_region(self) -> str:
        return self.command.output_s3_region or self.command.backend_region

    def s3_url(self, instance_id: str, stream: str) -> str:
        if not self.command.output_s3_bucket_name:
            return ""
        return (f"https://s3.{self.s3_region()}.amazonaws.com/"
                f"{self.command.output_s3_bucket_name}/{self.s3_key(instance_id, stream)}")

    def aggregate(self, now: int) -> dict[str, Any]:
        seen = [inv.state(now) for inv in self.invocations.values()]
        # Undeliverable invocations count as completed but not as errors, and decide the
        # command's status only when all are undeliverable (then Failed), as SSM documents.
        delivered = [st["Status"] for st in seen if st["StatusDetails"] != "Undeliverable"]
        states = delivered if delivered else ["Failed"] * len(seen)
        if not states:
            status = "Success"
        elif all(s == "Pending" for s in states):
            status = "Pending"
        elif any(s in ("Pending", "InProgress") for s in states):
            status = "InProgress"
        elif all(s == "Success" for s in states):
            status = "Success"
        elif "Failed" in states:
            status = "Failed"
        elif "TimedOut" in states:
            status = "TimedOut"
        else:
            status = "Cancelled"
        return {
            "Status": status,
            "StatusDetails": status,
            "CompletedCount": sum(st["Status"] in FINAL_STATUSES for st in seen),
            "ErrorCount": sum(st["StatusDetails"] in ("Failed", "ExecutionTimedOut") for st in seen),
            "DeliveryTimedOutCount": sum(st["StatusDetails"] == "DeliveryTimedOut" for st in seen),
        }


def _truncate(text: str, limit: int) -> str:
    return text[:limit]


def invocation_view(rt: Any, run: CommandRun, inv: InvocationRun, now: int) -> dict[str, Any]:
    """GetCommandInvocation's response for one invocation."""
    st = inv.state(now)
    cmd = run.command
    elapsed = 0
    if st["start"] is not None:
        elapsed = (st["end"] if st["end"] is not None else now) - st["start"]
    return {
        "CommandId": cmd.command_id,
        "InstanceId": inv.instance_id,
        "Comment": cmd.comment,
        "DocumentName": cmd.document_name,
        "DocumentVersion": "$DEFAULT",
        "PluginName": run.plugin,
        "ResponseCode": st["ResponseCode"],
        "ExecutionStartDateTime": iso(st["start"]),
        "ExecutionElapsedTime": iso_duration(elapsed) if st["start"] is not None else "",
        "ExecutionEndDateTime": iso(st["end"]) if st["start"] is not None else "",
        "Status": st["Status"],
        "StatusDetails": st["StatusDetails"],
        "StandardOutputContent": _truncate(st["stdout"], SSM_GET_INVOCATION_OUTPUT_LIMIT),
        "StandardOutputUrl": run.s3_url(inv.instance_id, "stdout"),
        "StandardErrorContent": _truncate(st["stderr"], SSM_GET_INVOCATION_ERROR_LIMIT),
        "StandardErrorUrl": run.s3_url(inv.instance_id, "stderr"),
        "CloudWatchOutputConfig": run.cloudwatch_config(),
    }


def list_invocation_view(run: CommandRun, inv: InvocationRun, now: int, details: bool) -> dict[str, Any]:
    st = inv.state(now)
    cmd = run.command
    plugins = []
    if details:
        output = st["stdout"]
        if st["stderr"]:
            output += "\n\n----------ERROR-------\n" + st["stderr"]
        plugins.append({
            "Name": run.plugin,
            "Status": st["Status"],
            "StatusDetails": st["StatusDetails"],
            "ResponseCode": st["ResponseCode"],
            "ResponseStartDateTime": to_dt(st["start"]),
            "ResponseFinishDateTime": to_dt(st["end"]) if st["start"] is not None else None,
            "Output": _truncate(output, SSM_LIST_INVOCATIONS_OUTPUT_LIMIT),
            "StandardOutputUrl": run.s3_url(inv.instance_id, "stdout"),
            "StandardErrorUrl": run.s3_url(inv.instance_id, "stderr"),
            "OutputS3Region": run.s3_region() if cmd.output_s3_bucket_name else "",
            "OutputS3BucketName": cmd.output_s3_bucket_name or "",
            "OutputS3KeyPrefix": cmd.output_s3_key_prefix or "",
        })
        plugins = [{k: v for k, v in p.items() if v is not None} for p in plugins]
    return {
        "CommandId": cmd.command_id,
        "InstanceId": inv.instance_id,
        "InstanceName": "",
        "Comment": cmd.comment,
        "DocumentName": cmd.document_name,
        "DocumentVersion": "$DEFAULT",
        "RequestedDateTime": to_dt(run.requested),
        "Status": st["Status"],
        "StatusDetails": st["StatusDetails"],
        "TraceOutput": "",
        "StandardOutputUrl": run.s3_url(inv.instance_id, "stdout"),
        "StandardErrorUrl": run.s3_url(inv.instance_id, "stderr"),
        "CommandPlugins": plugins,
        "ServiceRole": cmd.service_role_arn or "",
        "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
        "CloudWatchOutputConfig": run.cloudwatch_config(),
    }


class CommandRegistry:
    """Every command sent (the invocation log), and those whose S3 output still has to be
    written once they finish."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.unwritten: list[CommandRun] = []
        self.log: list[CommandRun] = []

    def add(self, run: CommandRun) -> None:
        with self.lock:
            self.log.append(run)
            if run.command.output_s3_bucket_name or run.command.document_name in END_EFFECT_DOCUMENTS:
                self.unwritten.append(run)  # end effects (uploads, snapshots) happen at the end, as output does

    def track_output(self, run: CommandRun) -> None:
        """Make sure a command whose output goes somewhere (S3, CloudWatch Logs) gets written."""
        with self.lock:
            if run not in self.unwritten:
                self.unwritten.append(run)

    def clear_log(self) -> None:
        with self.lock:
            self.log = []

    def invocation_log(self, now: int) -> list[dict[str, Any]]:
        """One row per invocation, oldest command first (GET /_opsflow/invocations)."""
        with self.lock:
            runs = list(self.log)
        rows = []
        for run in runs:
            cmd = run.command
            for iid, inv in run.invocations.items():
                st = inv.state(now)
                final = st["Status"] in FINAL_STATUSES
                n_runs, n_reboots = inv.counts(now)
                rows.append({
                    "account": cmd.account_id, "region": cmd.backend_region,
                    "command_id": cmd.command_id, "instance_id": iid, "document": cmd.document_name,
                    "requested_ms": run.requested, "started_ms": st["start"],
                    "ended_ms": st["end"] if final else None,
                    "status": st["Status"], "status_details": st["StatusDetails"],
                    "exit_code": st["ResponseCode"] if final else None,
                    "runs": n_runs, "reboots": n_reboots,
                })
        return rows

    def flush(self, rt: Any) -> None:
        """Write stdout/stderr of invocations that reached a final state to the command's
        S3 bucket and CloudWatch Logs group (only non-empty streams). End effects (a forensic
        collection's uploads, a VSS snapshot set) happen here too, at the latest (`inv.state` runs them)."""
        if not self.unwritten:
            return
        from moto.utilities.utils import get_partition

        now = rt.clock.now_ms()
        with self.lock:
            keep = []
            for run in self.unwritten:
                cmd = run.command
                for inv in run.invocations.values():
                    if inv.outputs_written:
                        continue
                    st = inv.state(now)
                    if st["Status"] not in FINAL_STATUSES:
                        continue
                    inv.outputs_written = True
                    streams = [(name, st[name]) for name in ("stdout", "stderr") if st[name]]
                    if run.cw_enabled and streams:
                        _write_cloudwatch(run, inv.instance_id, streams)
                    if not cmd.output_s3_bucket_name:
                        continue
                    backend = _bucket_backend(cmd.account_id, get_partition(run.s3_region()),
                                              cmd.output_s3_bucket_name)
                    if backend is None:
                        continue  # SSM fails the upload silently; the command itself is unaffected
                    for name, text in streams:
                        backend.put_object(cmd.output_s3_bucket_name, run.s3_key(inv.instance_id, name),
                                           text.encode())
                if any(not inv.outputs_written for inv in run.invocations.values()):
                    keep.append(run)
            self.unwritten = keep


def _write_cloudwatch(run: CommandRun, instance_id: str, streams: list[tuple[str, str]]) -> None:
    """The agent's CloudWatch output: group (created if missing), one stream per output stream.
    Written once the invocation ends (the agent streams while it runs), stamped in real time
    (moto refuses events more than 14 days old or 2 hours ahead of its own clock)."""
    import time

    from moto.logs.models import logs_backends

    backend = logs_backends[run.command.account_id][run.command.backend_region]
    if run.cw_group not in backend.groups:
        backend.create_log_group(run.cw_group, {})
    for name, text in streams:
        stream = run.cw_stream(instance_id, name)
        if stream not in backend.groups[run.cw_group].streams:
            backend.create_log_stream(run.cw_group, stream)
        backend.put_log_events(run.cw_group, stream, [{"timestamp": int(time.time() * 1000), "message": text}])


def _bucket_backend(account_id: str, partition: str, bucket: str) -> Any:
    """moto's S3 backend holding `bucket`: the command's own account first, then any other.
    Bucket names are global on AWS, and the bucket of a fleet's output is often in another
    account than the instance (its policy, not checked here, lets the instance profile write)."""
    from moto.s3.models import s3_backends

    if bucket in s3_backends[account_id][partition].buckets:
        return s3_backends[account_id][partition]
    for other, partitions in list(s3_backends.items()):
        if other != account_id and partition in partitions and bucket in partitions[partition].buckets:
            return partitions[partition]
    return None


# --------------------------------------------------------------------------- SSM: the forensic collection's upload

#: opsflow's forensic-capture documents and the platform each runs on. Parameters (each a list of one
#: string, as SendCommand gives them): Bucket, KeyPrefix (ends with "/"), CaseId, BucketRegion, MaxLogMiB.
FORENSIC_DOCUMENTS = {"opsflow-ForensicCollect": "Linux", "opsflow-ForensicCollectWindows": "Windows"}
FORENSIC_ARCHIVE, FORENSIC_MANIFEST = "collection.tar.gz", "manifest.json"
#: The parts of the archive, in archive (and manifest) order.
FORENSIC_PARTS = {
    "Linux": ("system.txt", "journal.txt", "var-log/messages", "var-log/secure", "processes.txt",
              "sockets.txt", "memory.txt", "disks.txt"),
    "Windows": ("system.txt", "eventlogs/System.evtx", "eventlogs/Application.evtx", "eventlogs/Security.evtx",
                "processes.txt", "sockets.txt", "memory.txt", "disks.txt"),
}
FORENSIC_SKIPPED = {
    "Linux": [{"Name": "core-dumps", "Reason": "none found in /var/lib/systemd/coredump or /var/crash"}],
    "Windows": [],
}
FORENSIC_RULE_KEYS = {"tamper", "no_manifest"}
#: The script's exit code when an upload fails; stderr is then the AWS CLI's error line.
FORENSIC_UPLOAD_FAILED = 8
#: ... and when a required parameter is missing (a local choice: the document requires them).
FORENSIC_USAGE = 2
PUT_PRECONDITION_FAILED = ("An error occurred (PreconditionFailed) when calling the PutObject operation: "
                           "At least one of the pre-conditions you specified did not hold")
PUT_NO_SUCH_BUCKET = ("An error occurred (NoSuchBucket) when calling the PutObject operation: "
                      "The specified bucket does not exist")
FORENSIC_DIED = "forensic-collect: terminated after the archive upload, before the manifest upload"
#: Guards the end effects (forensic uploads, VSS snapshot sets) and the list of those still to run.
END_EFFECT_LOCK = threading.Lock()
#: Invocations planned to end Success whose end effect has not run yet (settled in end-time order).
END_EFFECTS_PENDING: list[Any] = []


def check_forensics_rule(value: Any) -> dict[str, Any]:
    """A command rule's `forensics` field, checked (ValueError if malformed)."""
    if not isinstance(value, dict) or set(value) - FORENSIC_RULE_KEYS:
        raise ValueError(f"forensics must be an object with keys among {sorted(FORENSIC_RULE_KEYS)}")
    out: dict[str, Any] = {}
    if value.get("tamper") is not None:
        names = sorted({n for parts in FORENSIC_PARTS.values() for n in parts})
        if value["tamper"] not in names:
            raise ValueError(f"forensics.tamper must name a part: one of {names}")
        out["tamper"] = value["tamper"]
    no_manifest = value.get("no_manifest", False)
    if not isinstance(no_manifest, bool):
        raise ValueError("forensics.no_manifest must be a boolean")
    out["no_manifest"] = no_manifest
    return out


def _patch_command_rules(rt: Any) -> None:
    """Let command rules carry `forensics` (the launcher's rule check does not know it)."""
    original = getattr(rt, "add_rule", None)
    if original is None:
        return
    bad_request = getattr(sys.modules.get(type(rt).__module__), "BadRequest", ValueError)

    def add_rule(body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict) or "forensics" not in body:
            return original(body)
        body = dict(body)
        try:
            spec = check_forensics_rule(body.pop("forensics"))
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        with rt.lock:  # the rule is never seen without its field
            rule = original(body)
            rule["forensics"] = spec
        return rule

    rt.add_rule = add_rule


def _utc_stamp(t_ms: int) -> str:
    d = to_dt(t_ms)
    assert d is not None
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def forensic_parts(platform: str, instance_id: str, case_id: str, started_ms: int,
                   max_log_mib: int = 50) -> list[tuple[str, bytes]]:
    """The evidence the script collects, as (archive path, bytes) in archive order: made-up but
    plausible command output, a function of the instance id, the case id and the start time only.
    Every part mentions the instance id. Logs are cut to MaxLogMiB, as the script cuts them."""
    seed = f"{instance_id}|{case_id}|{started_ms}".encode()

    def n(label: str, modulo: int) -> int:
        return int.from_bytes(hashlib.sha256(seed + b"|" + label.encode()).digest()[:8], "big") % modulo

    now = to_dt(started_ms)
    assert now is not None
    stamp = _utc_stamp(started_ms)
    up = _dt.timedelta(days=n("up-d", 90), hours=n("up-h", 24), minutes=n("up-m", 60))
    boot = now - up
    pid = {name: 300 + n(f"pid-{name}", 30000) for name in ("agent", "worker", "doc", "script", "sshd")}
    ip = f"10.0.{n('ip3', 256)}.{1 + n('ip4', 254)}"
    mem_total = (4, 8, 16, 32)[n("mem", 4)] * 1024
    mem_used = mem_total * (20 + n("mem-used", 50)) // 100
    disk_size, disk_used = (20, 50, 100)[n("disk", 3)], 3 + n("disk-used", 15)

    def header(command: str) -> str:
        return f"# {command}  (instance {instance_id}, case {case_id}, collected {stamp})"

    def log_cut(text: str) -> bytes:
        return text.encode()[: max(max_log_mib, 0) * 1024 * 1024]

    if platform == "Windows":
        host = f"EC2AMAZ-{hashlib.sha256(instance_id.encode()).hexdigest()[:7].upper()}"
        docdir = rf"C:\ProgramData\Amazon\SSM\InstanceData\{instance_id}\document\orchestration"
        ssm_dir = r"C:\Program Files\Amazon\SSM"

        def text(*lines: str) -> bytes:
            return ("\r\n".join(lines) + "\r\n").encode()

        def evtx(log: str) -> bytes:
            body = (f"opsflow local cloud stand-in for the {log} event log of {host} ({instance_id}), "
                    f"exported {stamp} for case {case_id}\r\n")
            return b"ElfFile\x00" + hashlib.sha256(seed + log.encode()).digest() * 4 + body.encode()

        return [
            ("system.txt", text(
                header("systeminfo"),
                f"Host Name:                 {host}",
                "OS Name:                   Microsoft Windows Server 2022 Datacenter",
                "OS Version:                10.0.20348 N/A Build 20348",
                f"System Boot Time:          {boot:%m/%d/%Y, %I:%M:%S %p}",
                f"Total Physical Memory:     {mem_total:,} MB",
                f"Instance ID:               {instance_id}",
                f"Case ID:                   {case_id}",
                f"Collected At:              {stamp}")),
            ("eventlogs/System.evtx", evtx("System")),
            ("eventlogs/Application.evtx", evtx("Application")),
            ("eventlogs/Security.evtx", evtx("Security")),
            ("processes.txt", text(
                header("Get-Process | Format-Table Id, ProcessName, CPU, WS, Path"),
                "   Id ProcessName          CPU         WS Path",
                "   -- -----------          ---         -- ----",
                "    4 System          1021.4       20480",
                f"{pid['agent']:5d} amazon-ssm-agent   88.02   35123200 {ssm_dir}\\amazon-ssm-agent.exe",
                f"{pid['worker']:5d} ssm-agent-worker   41.50   48758784 {ssm_dir}\\ssm-agent-worker.exe",
                f"{pid['doc']:5d} ssm-document-worker 2.11  30117888 {ssm_dir}\\ssm-document-worker.exe",
                f"{pid['script']:5d} powershell          6.75  90431488 "
                f"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -File {docdir}\\_script.ps1")),
            ("sockets.txt", text(
                header("netstat -ano"),
                "  Proto  Local Address          Foreign Address        State           PID",
                "  TCP    0.0.0.0:3389           0.0.0.0:0              LISTENING       1012",
                "  TCP    0.0.0.0:5985           0.0.0.0:0              LISTENING       4",
                f"  TCP    {ip}:{49152 + n('port', 16000)}     52.94.{n('ssm3', 256)}.{n('ssm4', 256)}:443"
                f"       ESTABLISHED     {pid['worker']}")),
            ("memory.txt", text(
                header("Get-CimInstance Win32_OperatingSystem | Format-List *Memory*"),
                f"TotalVisibleMemorySize : {mem_total * 1024}",
                f"FreePhysicalMemory     : {(mem_total - mem_used) * 1024}",
                f"TotalVirtualMemorySize : {mem_total * 1024 + 1966080}",
                f"FreeVirtualMemory      : {(mem_total - mem_used) * 1024 + 1048576}")),
            ("disks.txt", text(
                header("Get-Volume; Get-Disk"),
                "DriveLetter FileSystemLabel FileSystem DriveType HealthStatus SizeRemaining      Size",
                f"C                           NTFS       Fixed     Healthy       {disk_size - disk_used:6d} GB "
                f"{disk_size:6d} GB",
                "",
                "Number Friendly Name              Serial Number                    HealthStatus OperationalStatus "
                "Total Size",
                f"0      NVMe Amazon Elastic B     vol{n('vol', 16 ** 17):017x}_00000001. Healthy      Online"
                f"            {disk_size} GB")),
        ]

    host = f"ip-{ip.replace('.', '-')}.ec2.internal"
    kernel = "6.1.115-126.197.amzn2023.x86_64"
    docdir = f"/var/lib/amazon/ssm/{instance_id}/document/orchestration"

    def ts(seconds_before: int) -> str:
        return f"{now - _dt.timedelta(seconds=seconds_before):%b %d %H:%M:%S}"

    def text(*lines: str) -> bytes:
        return ("\n".join(lines) + "\n").encode()

    journal = "\n".join([
        f"{ts(3600)} {host} systemd[1]: Starting dnf-makecache.service - dnf makecache...",
        f"{ts(3590)} {host} systemd[1]: Finished dnf-makecache.service - dnf makecache.",
        f"{ts(900)} {host} amazon-ssm-agent[{pid['agent']}]: INFO [ssm-agent-worker] Entering SSM Agent hibernate "
        f"- instance {instance_id}",
        f"{ts(2)} {host} amazon-ssm-agent[{pid['agent']}]: INFO [ssm-agent-worker] [MessageService] "
        f"SendCommand received for {instance_id}",
        f"{ts(1)} {host} sudo[{pid['script']}]:     root : PWD={docdir} ; USER=root ; "
        f"COMMAND=/usr/bin/journalctl --no-pager --since -24h",
    ]) + "\n"
    messages = "\n".join([
        f"{boot:%b %d %H:%M:%S} {host} kernel: Linux version {kernel} (mockbuild@ip-10-0-1-1) #1 SMP",
        f"{boot + _dt.timedelta(seconds=9):%b %d %H:%M:%S} {host} cloud-init[1702]: Instance ID: {instance_id}",
        f"{ts(1800)} {host} chronyd[{pid['sshd'] - 10}]: Selected source 169.254.169.123",
        f"{ts(2)} {host} amazon-ssm-agent[{pid['agent']}]: INFO [ssm-document-worker] [{instance_id}] "
        "document execution started",
    ]) + "\n"
    secure = "\n".join([
        f"{ts(7200)} {host} sshd[{pid['sshd']}]: Server listening on 0.0.0.0 port 22.",
        f"{ts(5400)} {host} sshd[{pid['sshd'] + 1}]: Invalid user admin from 203.0.113.{n('attacker', 250) + 1} "
        "port 51234",
        f"{ts(1)} {host} sudo[{pid['script']}]:     root : PWD={docdir} ; USER=root ; "
        f"COMMAND=/usr/bin/tar -czf /var/tmp/forensics-{case_id}/collection.tar.gz -C /var/tmp/forensics-{case_id} .",
    ]) + "\n"
    return [
        ("system.txt", text(
            f"hostname: {host}",
            f"uname: Linux {host} {kernel} #1 SMP PREEMPT_DYNAMIC Mon Nov  4 18:22:55 UTC 2024 "
            "x86_64 x86_64 x86_64 GNU/Linux",
            f"uptime: {now:%H:%M:%S} up {up.days} days, {up.seconds // 3600:2d}:{up.seconds // 60 % 60:02d},  "
            f"0 users,  load average: 0.{n('l1', 100):02d}, 0.{n('l5', 100):02d}, 0.{n('l15', 100):02d}",
            f"instance-id: {instance_id}",
            f"case-id: {case_id}",
            f"collected-at: {stamp}")),
        ("journal.txt", log_cut(header("journalctl --no-pager --since -24h") + "\n" + journal)),
        ("var-log/messages", log_cut(messages)),
        ("var-log/secure", log_cut(secure)),
        ("processes.txt", text(
            header("ps auxww"),
            "USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND",
            f"root           1  0.0  0.1 105828 16232 ?        Ss   {boot:%b%d}   0:04 /usr/lib/systemd/systemd",
            f"root       {pid['agent']:5d}  0.0  0.3 1245900 29876 ?       Ssl  {boot:%b%d}   0:31 "
            "/usr/bin/amazon-ssm-agent",
            f"root       {pid['worker']:5d}  0.1  0.6 1330136 52416 ?       Sl   {boot:%b%d}   1:02 "
            "/usr/bin/ssm-agent-worker",
            f"root       {pid['doc']:5d}  0.0  0.3 1250884 28112 ?       Sl   {now:%H:%M}   0:00 "
            "/usr/bin/ssm-document-worker",
            f"root       {pid['script']:5d}  0.0  0.0 222316  3548 ?        S    {now:%H:%M}   0:00 "
            f"/bin/bash {docdir}/awsrunShellScript/_script.sh",
            f"root       {pid['script'] + 7:5d}  0.0  0.0 224504  3320 ?        R    {now:%H:%M}   0:00 ps auxww")),
        ("sockets.txt", text(
            header("ss -tanup"),
            "Netid State  Recv-Q Send-Q  Local Address:Port   Peer Address:Port Process",
            "tcp   LISTEN 0      128            0.0.0.0:22          0.0.0.0:*     "
            f"users:((\"sshd\",pid={pid['sshd']},fd=3))",
            f"tcp   ESTAB  0      0           {ip}:{32768 + n('port', 28000)}  "
            f"52.94.{n('ssm3', 256)}.{n('ssm4', 256)}:443"
            f"   users:((\"ssm-agent-worke\",pid={pid['worker']},fd=12))",
            "udp   UNCONN 0      0          127.0.0.1:323         0.0.0.0:*     users:((\"chronyd\",pid=1210,fd=5))")),
        ("memory.txt", text(
            header("free -m; head -5 /proc/meminfo"),
            "               total        used        free      shared  buff/cache   available",
            f"Mem:           {mem_total:5d}       {mem_used:5d}       {mem_total - mem_used - 300:5d}"
            f"           2         300       {mem_total - mem_used:5d}",
            "Swap:              0           0           0",
            f"MemTotal:       {mem_total * 1024:8d} kB",
            f"MemFree:        {(mem_total - mem_used - 300) * 1024:8d} kB",
            f"MemAvailable:   {(mem_total - mem_used) * 1024:8d} kB",
            "Buffers:            2048 kB",
            "Cached:           305152 kB")),
        ("disks.txt", text(
            header("df -h; df -i; lsblk"),
            "Filesystem      Size  Used Avail Use% Mounted on",
            f"/dev/nvme0n1p1   {disk_size}G  {disk_used}G  {disk_size - disk_used}G  "
            f"{100 * disk_used // disk_size}% /",
            "tmpfs           475M     0  475M   0% /dev/shm",
            "Filesystem      Inodes IUsed   IFree IUse% Mounted on",
            f"/dev/nvme0n1p1 {disk_size * 524288:7d} {40000 + n('inodes', 90000):5d} "
            f"{disk_size * 524288 - 40000 - n('inodes', 90000):7d}    1% /",
            "NAME          MAJ:MIN RM SIZE RO TYPE MOUNTPOINTS",
            f"nvme0n1       259:0    0  {disk_size}G  0 disk",
            f"└─nvme0n1p1   259:1    0  {disk_size}G  0 part /")),
    ]


def forensic_archive(parts: list[tuple[str, bytes]], started_ms: int) -> bytes:
    """A gzip-compressed tar of the parts (regular files, in order), byte-for-byte reproducible:
    what tarfile's ``w:gz`` writes, with the gzip header's and the members' time set to the start."""
    mtime = started_ms // 1000
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=mtime) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in parts:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o600
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put_object_if_none_match(backend: Any, bucket: str, key: str, data: bytes) -> bool:
    """`aws s3api put-object --if-none-match '*' --checksum-algorithm SHA256` into moto's backend:
    False (nothing written) if the key exists, as moto's own PutObject checks If-None-Match: *;
    else the object is stored with its SHA-256 checksum as moto's PutObject stores a request's
    x-amz-checksum-sha256 (FakeKey.checksum_value, base64 of the digest; checksum_algorithm)."""
    if backend.get_object(bucket, key) is not None:
        return False
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    stored = backend.put_object(bucket, key, data, checksum_value=checksum)
    stored.checksum_algorithm = "SHA256"
    return True


class ForensicCollection:
    """What an invocation of a forensic collection document does at its end, if it succeeds:
    collect the parts, pack them (`forensic_archive`), hash them, upload the archive then the
    manifest, each with If-None-Match: * and a SHA-256 checksum. The rule's `forensics` injects
    faults: `tamper` (the manifest's digest of that part is wrong), `no_manifest` (the script dies
    between the two uploads)."""

    def __init__(self, cmd: Any, instance_id: str, rule: dict[str, Any], stdout: str, stderr: str):
        params = cmd.command.parameters or {}

        def param(name: str) -> str:
            value = params.get(name) or [""]
            return str((value if isinstance(value, list) else [value])[0] or "").strip()

        self.platform = FORENSIC_DOCUMENTS[cmd.command.document_name]
        self.account = cmd.command.account_id
        self.instance_id = instance_id
        self.bucket, self.prefix, self.case_id = param("Bucket"), param("KeyPrefix"), param("CaseId")
        self.region = param("BucketRegion") or cmd.command.backend_region
        max_log = param("MaxLogMiB")
        self.max_log_mib = int(max_log) if max_log.isdigit() else 50
        self.fault = rule.get("forensics") or {}
        self.rule_stdout, self.rule_stderr = stdout, stderr  # the rule's own output wins when given
        self.settled = False

    def settle(self, inv: Any) -> tuple[int, str, str]:
        """The end effect of `inv` (an InvocationRun that ended Success): the uploads."""
        return self.upload(inv.exec_start)

    def upload(self, started_ms: int) -> tuple[int, str, str]:
        """Collect and upload now: (exit code, stdout, stderr)."""
        missing = [name for name, v in (("Bucket", self.bucket), ("KeyPrefix", self.prefix),
                                        ("CaseId", self.case_id)) if not v]
        if missing:
            return FORENSIC_USAGE, self.rule_stdout, f"forensic-collect: missing parameter(s): {', '.join(missing)}"
        parts = forensic_parts(self.platform, self.instance_id, self.case_id, started_ms, self.max_log_mib)
        archive = forensic_archive(parts, started_ms)
        listed = []
        for name, data in parts:
            digest = hashlib.sha256(data).hexdigest()
            if self.fault.get("tamper") == name:  # hashed, then the part was altered in the archive
                digest = hashlib.sha256(b"before tampering:" + data).hexdigest()
            listed.append({"Name": name, "Bytes": len(data), "Sha256": digest})
        archive_key, manifest_key = self.prefix + FORENSIC_ARCHIVE, self.prefix + FORENSIC_MANIFEST
        manifest = {
            "Version": 1, "CaseId": self.case_id, "InstanceId": self.instance_id, "Platform": self.platform,
            "CollectedAt": _utc_stamp(started_ms),
            "Archive": {"Key": FORENSIC_ARCHIVE, "Bytes": len(archive), "Sha256": hashlib.sha256(archive).hexdigest()},
            "Parts": listed,
            "Skipped": FORENSIC_SKIPPED[self.platform],
        }
        lines = [f"PART {p['Name']} {p['Bytes']} {p['Sha256']}" for p in listed]

        def result(code: int, error: str = "") -> tuple[int, str, str]:
            # The rule's stdout replaces the script's; an upload's error line follows the rule's stderr.
            stdout = self.rule_stdout or "".join(f"{line}\n" for line in lines)
            return code, stdout, "\n".join(e for e in (self.rule_stderr.rstrip("\n"), error) if e)

        backend = _bucket_backend(self.account, get_partition(self.region), self.bucket)
        if backend is None:
            return result(FORENSIC_UPLOAD_FAILED, PUT_NO_SUCH_BUCKET)
        if not put_object_if_none_match(backend, self.bucket, archive_key, archive):
            return result(FORENSIC_UPLOAD_FAILED, PUT_PRECONDITION_FAILED)
        lines.append(f"ARCHIVE s3://{self.bucket}/{archive_key} {len(archive)} {manifest['Archive']['Sha256']}")
        if self.fault.get("no_manifest"):  # the script died: what it says is the rule's stderr, if any
            return result(FORENSIC_UPLOAD_FAILED, "" if self.rule_stderr else FORENSIC_DIED)
        body = (json.dumps(manifest, indent=2) + "\n").encode()
        if not put_object_if_none_match(backend, self.bucket, manifest_key, body):
            return result(FORENSIC_UPLOAD_FAILED, PUT_PRECONDITION_FAILED)
        lines.append(f"MANIFEST s3://{self.bucket}/{manifest_key}")
        return result(0)


# --------------------------------------------------------------------------- SSM: AWSEC2-CreateVssSnapshot

#: AWS's own document for VSS based snapshots of a Windows instance (EC2 user guide, "Create VSS based
#: snapshots using Systems Manager command documents"). Its parameters are strings, all optional:
#: ExcludeBootVolume, NoWriters, CopyOnly, CreateAmi, AmiName, description, tags, executionTimeout,
#: CollectDiagnosticLogs, SaveVssMetadata. Modelled: ExcludeBootVolume, CreateAmi (refused),
#: description, tags (and executionTimeout, as for any document); the others change nothing here.
VSS_DOCUMENT = "AWSEC2-CreateVssSnapshot"
#: The tags the document adds to every snapshot; giving one of them in `tags` is an error.
VSS_RESERVED_TAGS = ("Device", "AppConsistent", "AwsVssConfig")
#: AwsVssConfig's value: "meta info, such as the AwsVssComponents version" (the exact text is
#: not documented: a local stand-in).
VSS_CONFIG_TAG = "AwsVssComponentsVersion:2.5.0"
#: The exit code of the local failures (bad tags, CreateAmi, nothing to snapshot): a local choice.
VSS_FAILED = 1
VSS_NO_AMI = "CreateAmi is not modelled by the local cloud"
VSS_DONE = "VSS snapshot set created"
_VSS_TAG = re.compile(r"^\s*Key=([^,]*),\s*Value=(.*?)\s*$", re.DOTALL)


def parse_vss_tags(text: str) -> dict[str, str]:
    """The document's `tags` parameter, `Key=Environment,Value=Test;Key=User,Value=TestUser1`, as a
    dict in the given order (ValueError naming the problem). Empty segments (a trailing `;`) are
    skipped; a value runs to the next `;` (it may hold commas). A key is required, once; a reserved
    key (`VSS_RESERVED_TAGS`, compared case-insensitively) is refused."""
    tags: dict[str, str] = {}
    for segment in text.split(";"):
        if not segment.strip():
            continue
        m = _VSS_TAG.match(segment)
        if m is None or not m.group(1).strip():
            raise ValueError(f"Invalid tags parameter: {segment.strip()!r} is not Key=<key>,Value=<value>")
        key, value = m.group(1).strip(), m.group(2)
        reserved = [r for r in VSS_RESERVED_TAGS if r.lower() == key.lower()]
        if reserved:
            raise ValueError(f"Invalid tags parameter: {reserved[0]} is a reserved tag key "
                             f"({', '.join(VSS_RESERVED_TAGS)}) and cannot be specified")
        if key in tags:
            raise ValueError(f"Invalid tags parameter: the key {key!r} is given more than once")
        tags[key] = value
    return tags


class VssSnapshotSet:
    """What an invocation of AWSEC2-CreateVssSnapshot does, if its run ends Success: VSS holds the
    writes while CreateSnapshots makes one multi-volume snapshot set of the instance's EBS volumes
    (the root one unless ExcludeBootVolume is "True"), then tags each snapshot — the `tags` pairs,
    Device (the volume's device name), AppConsistent "true", AwsVssConfig, and Name ("" unless
    given). The set is made as of the invocation's end, by `_start_snapshots`, so `snapshot_seconds`,
    snapshot failure rules and the freeze episodes apply to it as to a CreateSnapshots call. Bad
    `tags`, CreateAmi "True", or no volume to snapshot end the invocation Failed, exit 1, no snapshot.
    A rule's non-zero exit (VSS failed) never gets here."""

    def __init__(self, rt: Any, cmd: Any, instance_id: str, rule: dict[str, Any], stdout: str, stderr: str):
        params = cmd.command.parameters or {}

        def param(name: str) -> str:
            value = params.get(name) or [""]
            return str((value if isinstance(value, list) else [value])[0] or "")

        self.rt = rt
        self.instance_id = instance_id
        self.exclude_boot = param("ExcludeBootVolume").strip().lower() == "true"
        self.create_ami = param("CreateAmi").strip().lower() == "true"
        self.description = param("description")
        self.tags_text = param("tags")
        self.rule_stdout, self.rule_stderr = stdout, stderr  # the rule's own output wins when given
        self.settled = False
        self.snapshot_ids: list[str] = []

    def settle(self, inv: Any) -> tuple[int, str, str]:
        """The end effect of `inv` (an InvocationRun that ended Success): the snapshot set, made as
        of its end. (exit code, stdout, stderr)"""
        def failed(error: str) -> tuple[int, str, str]:
            return VSS_FAILED, self.rule_stdout, "\n".join(e for e in (self.rule_stderr.rstrip("\n"), error) if e)

        if self.create_ami:
            return failed(VSS_NO_AMI)
        try:
            given = parse_vss_tags(self.tags_text)
        except ValueError as exc:
            return failed(str(exc))
        instance = inv.instance
        if instance is None:
            return failed(f"Instance {self.instance_id} is not an EC2 instance: no EBS volume to snapshot")
        devices = [(device, mapping.volume_id) for device, mapping in instance.get_block_device_mapping
                   if not (self.exclude_boot and device == instance.root_device_name)]
        if not devices:
            return failed("No EBS volume to snapshot" + (" (ExcludeBootVolume is True)" if self.exclude_boot else ""))
        backend = instance.ec2_backend
        common = {"Name": "", **given, "AppConsistent": "true", "AwsVssConfig": VSS_CONFIG_TAG}
        snaps = backend.create_snapshots({"InstanceId": instance.id, "ExcludeBootVolume": self.exclude_boot},
                                         self.description, {})
        device_of = {volume_id: device for device, volume_id in devices}
        for snap in snaps:
            snap.add_tags({**common, "Device": device_of.get(snap.volume.id, "")})
        _start_snapshots(self.rt, snaps, instance, at=inv.final_at, order=inv.order)
        self.snapshot_ids = [snap.id for snap in snaps]
        lines = [f"Snapshot {snap.id} of {snap.volume.id} ({device_of.get(snap.volume.id, '')})" for snap in snaps]
        stdout = self.rule_stdout or "".join(f"{line}\n" for line in [*lines, VSS_DONE])
        return 0, stdout, self.rule_stderr


#: Documents whose successful end does something more (`InvocationRun.effect`).
END_EFFECT_DOCUMENTS = (*FORENSIC_DOCUMENTS, VSS_DOCUMENT)


def end_effect(rt: Any, cmd: Any, instance_id: str, rule: dict[str, Any], stdout: str, stderr: str) -> Any:
    """The end effect of one invocation of `cmd` (its document's), or None. `stdout` / `stderr` are the rule's."""
    document = cmd.command.document_name
    if document in FORENSIC_DOCUMENTS:
        return ForensicCollection(cmd, instance_id, rule, stdout, stderr)
    if document == VSS_DOCUMENT:
        return VssSnapshotSet(rt, cmd, instance_id, rule, stdout, stderr)
    return None


def _patch_ssm(rt: Any) -> None:
    registry: CommandRegistry = rt.commands

    def targets(orig: Any) -> Any:
        def _get_instance_ids_from_targets(self: Command) -> list[str]:
            # moto (5.2.5 and 5.2.6) treats "no Targets" as "every instance in the region", so a
            # SendCommand(InstanceIds=[one]) ran on all instances. No targets, no instances.
            return orig(self) if self.targets else []

        return _get_instance_ids_from_targets

    wrap(Command, "_get_instance_ids_from_targets", targets)

    def send_command_backend(orig: Any) -> Any:
        def send_command(self: SimpleSystemManagerBackend, **kwargs: Any) -> Command:
            if rt.cfg("send_command_requires_online"):
                online = {i["InstanceId"] for i in all_managed_instances(rt, self.account_id, self.region_name)
                          if i["PingStatus"] == "Online"}
                bad = [i for i in kwargs.get("instance_ids") or [] if i not in online]
                if bad:
                    raise InvalidInstanceId(f"Instances {bad} not in a valid state for account {self.account_id}")
            user_timeout = kwargs.get("timeout_seconds")
            command = orig(self, **kwargs)
            run = CommandRun(rt, command, user_timeout)
            command.opsflow = run
            command.requested_date_time = to_dt(run.requested)
            command.expires_after = to_dt(run.expires_at)
            registry.add(run)
            return command

        return send_command

    wrap(SimpleSystemManagerBackend, "send_command", send_command_backend)

    def response_object(orig: Any) -> Any:
        def method(self: Command) -> dict[str, Any]:
            out = orig(self)
            run = getattr(self, "opsflow", None)
            if run is not None:
                out.update(run.aggregate(rt.clock.now_ms()))
                out["RequestedDateTime"] = to_dt(run.requested)
                out["CloudWatchOutputConfig"] = run.cloudwatch_config()
            return out

        return method

    wrap(Command, "response_object", response_object)

    def get_invocation(orig: Any) -> Any:
        def method(self: Command, instance_id: str, plugin_name: str | None) -> dict[str, Any]:
            run = getattr(self, "opsflow", None)
            if run is None:
                return orig(self, instance_id, plugin_name)
            now = rt.clock.now_ms()
            inv = run.invocations.get(instance_id)
            if inv is None or now < inv.visible_at or (plugin_name and plugin_name != run.plugin):
                raise InvocationDoesNotExist()
            return invocation_view(rt, run, inv, now)

        return method

    wrap(Command, "get_invocation", get_invocation)

    # --- backend additions (usable in-process too)
    def cancel_command(self: SimpleSystemManagerBackend, command_id: str, instance_ids: list[str] | None) -> None:
        try:
            command = self.get_command_by_id(command_id)
        except Exception as exc:  # moto raises RESTError
            raise InvalidCommandId() from exc
        run = getattr(command, "opsflow", None)
        if run is None:
            return
        now = rt.clock.now_ms()
        for iid, inv in run.invocations.items():
            if not instance_ids or iid in instance_ids:
                inv.cancel(now)

    def list_command_invocations(self: SimpleSystemManagerBackend, params: dict[str, Any]) -> dict[str, Any]:
        command_id = params.get("CommandId")
        instance_id = params.get("InstanceId")
        details = bool(params.get("Details"))
        max_results = int(params.get("MaxResults") or 50)
        if not 1 <= max_results <= 50:
            raise ValidationException(
                f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy "
                "constraint: Member must have value between 1 and 50"
            )
        if command_id:
            try:
                commands = [self.get_command_by_id(command_id)]
            except Exception as exc:
                raise InvalidCommandId() from exc
        else:
            commands = list(self._commands)
        now = rt.clock.now_ms()
        filters = {f["key"]: f["value"] for f in params.get("Filters") or []}
        rows = []
        for command in commands:
            run = getattr(command, "opsflow", None)
            if run is None:
                continue
            for iid, inv in run.invocations.items():
                if instance_id and iid != instance_id:
                    continue
                if now < inv.visible_at:
                    continue  # not created yet (eventual consistency window)
                row = list_invocation_view(run, inv, now, details)
                if "Status" in filters and row["Status"] != filters["Status"]:
                    continue
                if "DocumentName" in filters and row["DocumentName"] != filters["DocumentName"]:
                    continue
                rows.append((run.requested, iid, row))
        rows.sort(key=lambda r: (-r[0], r[1]))  # newest first, as SSM lists them
        items, token = page([r[2] for r in rows], max_results, params.get("NextToken"))
        out: dict[str, Any] = {"CommandInvocations": items}
        if token:
            out["NextToken"] = token
        return out

    def describe_instance_information_backend(
        self: SimpleSystemManagerBackend, params: dict[str, Any]
    ) -> dict[str, Any]:
        return describe_instance_information(rt, self.account_id, self.region_name, params)

    SimpleSystemManagerBackend.cancel_command = cancel_command  # type: ignore[attr-defined]
    SimpleSystemManagerBackend.list_command_invocations = list_command_invocations  # type: ignore[attr-defined]
    SimpleSystemManagerBackend.describe_instance_information = describe_instance_information_backend  # type: ignore[attr-defined]

    # --- response (wire) methods; moto dispatches by snake_case action name
    def send_command_response(orig: Any) -> Any:
        def send_command(self: SimpleSystemManagerResponse) -> ActionResult:
            result = orig(self)
            command = result.result["Command"]  # type: ignore[index]
            cw = self._get_param("CloudWatchOutputConfig")
            if cw:  # moto ignores it
                run = getattr(self.ssm_backend.get_command_by_id(command["CommandId"]), "opsflow", None)
                if run is not None:
                    run.set_cloudwatch(cw)
                    command["CloudWatchOutputConfig"] = run.cloudwatch_config()
                    if run.cw_enabled:
                        registry.track_output(run)
            # As AWS: the SendCommand answer itself always says Pending with zero counts.
            command.update({"Status": "Pending", "StatusDetails": "Pending", "CompletedCount": 0,
                            "ErrorCount": 0, "DeliveryTimedOutCount": 0})
            return result

        return send_command

    wrap(SimpleSystemManagerResponse, "send_command", send_command_response)

    def _params(self: SimpleSystemManagerResponse) -> dict[str, Any]:
        try:
            return json.loads(self.body or "{}")
        except ValueError:
            return {}

    def r_describe_instance_information(self: SimpleSystemManagerResponse) -> ActionResult:
        return ActionResult(self.ssm_backend.describe_instance_information(_params(self)))

    def r_list_command_invocations(self: SimpleSystemManagerResponse) -> ActionResult:
        return ActionResult(self.ssm_backend.list_command_invocations(_params(self)))

    def r_cancel_command(self: SimpleSystemManagerResponse) -> ActionResult:
        p = _params(self)
        self.ssm_backend.cancel_command(p.get("CommandId"), p.get("InstanceIds"))
        return EmptyResult()

    # Service settings (moto 5.2.6 has none): GetServiceSetting / UpdateServiceSetting / ResetServiceSetting.
    def r_get_service_setting(self: SimpleSystemManagerResponse) -> ActionResult:
        backend = self.ssm_backend
        setting_id = _setting_id(_params(self).get("SettingId"), backend.account_id, backend.region_name)
        return ActionResult({"ServiceSetting": service_setting_view(rt, backend, setting_id)})

    def r_update_service_setting(self: SimpleSystemManagerResponse) -> ActionResult:
        backend, p = self.ssm_backend, _params(self)
        setting_id = _setting_id(p.get("SettingId"), backend.account_id, backend.region_name)
        value = p.get("SettingValue")
        if not isinstance(value, str) or not 1 <= len(value) <= 4096:
            raise ValidationException("1 validation error detected: Value at 'settingValue' failed to satisfy "
                                      "constraint: Member must have length between 1 and 4096")
        _setting_state(backend)[setting_id] = {
            "value": value, "modified_ms": rt.clock.now_ms(),
            "user": caller_identity(_signing_key(self))["arn"]}  # "The ARN of the last modified user"
        return EmptyResult()  # "There is no output if the command succeeds." (CLI example)

    def r_reset_service_setting(self: SimpleSystemManagerResponse) -> ActionResult:
        # Back to the value the service team defined; the answer is the setting as it now is (Status
        # Default, LastModifiedUser System: the CLI's reset-service-setting example).
        backend = self.ssm_backend
        setting_id = _setting_id(_params(self).get("SettingId"), backend.account_id, backend.region_name)
        _setting_state(backend).pop(setting_id, None)
        backend.opsflow_settings_born = rt.clock.now_ms()
        return ActionResult({"ServiceSetting": service_setting_view(rt, backend, setting_id)})

    def r_deregister_managed_instance(self: SimpleSystemManagerResponse) -> ActionResult:
        backend = self.ssm_backend
        deregister_managed_instance(rt, backend.account_id, backend.region_name, _params(self).get("InstanceId"))
        return EmptyResult()

    SimpleSystemManagerResponse.describe_instance_information = r_describe_instance_information  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.list_command_invocations = r_list_command_invocations  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.cancel_command = r_cancel_command  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.get_service_setting = r_get_service_setting  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.update_service_setting = r_update_service_setting  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.reset_service_setting = r_reset_service_setting  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.deregister_managed_instance = r_deregister_managed_instance  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- SSM: fsfreeze seen from the invocations

#: opsflow's command documents. Freeze (Mounts, WatchdogSeconds) runs the pre-snapshot hooks, arms
#: an on-instance watchdog that thaws the mounts WatchdogSeconds later, then freezes them; Thaw
#: (Mounts) thaws them (its watchdog, left armed, then changes nothing; the next Freeze re-arms
#: it). The watchdog is modelled from the script's start: the hooks' time makes the real one a
#: little later, never earlier.
FREEZE_DOCUMENT, THAW_DOCUMENT = "opsflow-Freeze", "opsflow-Thaw"


def _instance_reboots(instance: Instance) -> list[int]:
    """When the instance began each reboot: RebootInstances, a script's exit 194 / 3010, a root
    volume replacement."""
    times = [*getattr(instance, "opsflow_reboots", ()), *(t.start for t in getattr(instance, "opsflow_root_tasks", ()))]
    for inv in getattr(instance, "opsflow_invocations", ()):
        cut = inv._cut()
        times += [start for start, _ in inv.reboot_spans if start < cut]
    return times


def freeze_episodes(runs: list[tuple[CommandRun, InvocationRun]], instance: Instance | None,
                    now: int) -> list[dict[str, Any]]:
    """The freeze episodes of one instance as of `now`, from its Freeze/Thaw invocations, its stops,
    terminations and reboots, and the snapshots started for it. Events of the same millisecond
    apply in request order: a command's effect ranks by when it was sent."""
    events: list[tuple[int, int, int, str, Any]] = []  # (time, rank, request order, kind, data)
    for run, inv in runs:
        st, cmd, order = inv.state(now), run.command, run.order
        params = cmd.parameters or {}
        if cmd.document_name == THAW_DOCUMENT:
            if st["Status"] == "Success":
                events.append((st["end"], 1, order, "thaw", cmd.command_id))
            continue
        if st["start"] is None:
            continue  # never ran: no watchdog, no freeze
        watchdog = str((params.get("WatchdogSeconds") or [""])[0]).strip()
        if watchdog.isdigit():
            events.append((st["start"], 0, order, "arm", cmd.command_id))
            events.append((st["start"] + ms(int(watchdog)), 2, order, "watchdog", cmd.command_id))
        ended = st["Status"] in FINAL_STATUSES and st["StatusDetails"] != "DeliveryTimedOut"
        if ended and (st["Status"] == "Success" or inv.leaves_frozen):
            mounts = " ".join(params.get("Mounts") or []).split()
            events.append((st["end"], 1, order, "freeze", (cmd.command_id, mounts)))
    if instance is not None:
        events += [(t, 3, -1, "stop", None) for t in getattr(instance, "opsflow_downs", ())]
        events += [(t, 3, -1, "reboot", None) for t in _instance_reboots(instance)]
    episodes: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    armed: set[str] = set()
    for t, _, order, kind, data in sorted((e for e in events if e[0] <= now), key=lambda e: e[:3]):
        if kind == "arm":
            armed.add(data)
        elif kind == "freeze" and current is None:  # a second freeze while frozen fails (busy)
            current = {"frozen_at": t, "thawed_at": None, "thawed_by": None, "mounts": data[1],
                       "freeze_command_id": data[0], "thaw_command_id": None, "snapshots": [],
                       "_from": (t, order), "_to": None}
            episodes.append(current)
        elif kind in ("thaw", "stop", "reboot") or kind == "watchdog" and data in armed:
            armed = set() if kind != "watchdog" else armed - {data}  # a thaw or a (re)boot disarms all
            if current is not None:
                thaw = kind == "thaw"
                current.update(thawed_at=t, thawed_by=kind, thaw_command_id=data if thaw else None,
                               _to=(t, order if thaw else -1))
                current = None
    for started, order, snapshot_id in getattr(instance, "opsflow_snapshots", ()):
        for ep in episodes:
            if ep["_from"] < (started, order) and (ep["_to"] is None or (started, order) < ep["_to"]):
                ep["snapshots"].append(snapshot_id)
    return [{k: v for k, v in ep.items() if not k.startswith("_")} for ep in episodes]


def frozen_view(registry: CommandRegistry, now: int) -> dict[str, Any]:
    """GET /_opsflow/frozen: every instance sent opsflow-Freeze or opsflow-Thaw since start / reset /
    DELETE invocations, with its freeze episodes in order, and those frozen now."""
    with END_EFFECT_LOCK:
        pending = list(END_EFFECTS_PENDING)
    for inv in pending:
        inv.state(now)  # VSS snapshot sets the clock has reached are made first: they count in the episodes
    with registry.lock:
        log = list(registry.log)
    per_instance: dict[str, tuple[Instance | None, list[Any]]] = {}
    for run in log:
        if run.command.document_name in (FREEZE_DOCUMENT, THAW_DOCUMENT):
            for iid, inv in run.invocations.items():
                per_instance.setdefault(iid, (inv.instance, []))[1].append((run, inv))
    instances = {iid: freeze_episodes(runs, instance, now) for iid, (instance, runs) in per_instance.items()}
    return {"instances": instances,
            "frozen_now": [iid for iid, eps in instances.items() if eps and eps[-1]["thawed_at"] is None]}


def rule_matches(rule: dict[str, Any], document: str | None, text: str, instance_id: str) -> bool:
    doc = rule.get("document") or "*"
    if not fnmatch.fnmatchcase(document or "", doc):
        return False
    if rule.get("match") and rule["match"] not in text:
        return False
    if rule.get("instance_id") and rule["instance_id"] != instance_id:
        return False
    return rule.get("remaining") is None or rule["remaining"] > 0


def install(rt: Any) -> None:
    """Patch moto's classes; call once, before the server handles requests."""
    _patch_ec2_instances(rt)
    _patch_fleet(rt)
    _patch_ec2_transitions(rt)
    _patch_ec2_volumes(rt)
    _patch_ec2_snapshots(rt)
    _patch_ec2_replace_root(rt)
    _patch_events(rt)
    _patch_autoscaling(rt)
    _patch_ssm(rt)
    _patch_command_rules(rt)
    _patch_sts()
    _patch_cloudtrail(rt)
    _patch_iam_reads()
    _patch_cloudwatch_mute_rules(rt)
    _prepare_cloudformation(rt)


# --------------------------------------------------------------------------- CloudWatch: alarm mute rules

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_AT = re.compile(r"^at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})\)$")
_CRON = re.compile(r"^cron\(([^()]+)\)$")
_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
#: PutAlarmMuteRule's documented bounds of Duration: PT1M to P15D.
MUTE_MIN_S, MUTE_MAX_S = 60, 15 * 86400


def mute_duration_s(text: str) -> int:
    m = _DURATION.match(text or "")
    if not m or not any(m.groups()):
        raise InvalidParameterValue(f"Duration {text!r} is not an ISO 8601 duration (e.g. PT4H, P2DT12H)")
    d, h, mi, sec = (int(x or 0) for x in m.groups())
    total = ((d * 24 + h) * 60 + mi) * 60 + sec
    if not MUTE_MIN_S <= total <= MUTE_MAX_S:
        raise InvalidParameterValue(f"Duration {text!r} must be from PT1M to P15D")
    return total


def _cron_field(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.upper().split(","):
        if part == "*":
            values.update(range(low, high + 1))
            continue
        bounds = [names.get(x, None) if x in names else int(x) for x in part.split("-")]
        if len(bounds) == 1:
            bounds *= 2
        a, b = bounds
        if a is None or b is None or not (low <= a <= b <= high):
            raise ValueError(part)
        values.update(range(a, b + 1))
    return values


def _cron(expression: str) -> tuple[set[int], ...]:
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidParameterValue(f"cron({expression}) must have 5 fields: minutes hours day-of-month month day-of-week")
    try:
        return (_cron_field(fields[0], 0, 59, {}), _cron_field(fields[1], 0, 23, {}),
                _cron_field(fields[2], 1, 31, {}), _cron_field(fields[3], 1, 12, _MONTHS),
                _cron_field(fields[4], 0, 6, _DAYS))
    except ValueError as e:
        raise InvalidParameterValue(f"cron({expression}): {e} is not a valid field value") from None


def mute_windows(rule: dict[str, Any], now: int) -> tuple[str, str]:
    """(Status, MuteType) of a stored rule at `now` (epoch ms)."""
    schedule = rule["Rule"]["Schedule"]
    duration_ms = mute_duration_s(schedule["Duration"]) * 1000
    tz = zoneinfo.ZoneInfo(schedule.get("Timezone") or "UTC")
    start, expire = rule.get("_start_ms"), rule.get("_expire_ms")
    if expire is not None and now >= expire:
        return "EXPIRED", rule["_type"]
    if start is not None and now < start:
        return "SCHEDULED", rule["_type"]
    at = _AT.match(schedule["Expression"])
    if at:
        y, mo, d, h, mi = (int(x) for x in at.groups())
        begin = int(_dt.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp() * 1000)
        if now < begin:
            return "SCHEDULED", "ONE_TIME"
        return ("ACTIVE" if now < begin + duration_ms else "EXPIRED"), "ONE_TIME"
    minutes, hours, days, months, weekdays = _cron(_CRON.match(schedule["Expression"]).group(1))
    # Active if an occurrence began within the last Duration (minute by minute, at most 15 days).
    t = _dt.datetime.fromtimestamp(now / 1000, tz).replace(second=0, microsecond=0)
    for _ in range(duration_ms // 60000 + 1):
        if (t.minute in minutes and t.hour in hours and t.day in days and t.month in months
                and (t.isoweekday() % 7) in weekdays and int(t.timestamp() * 1000) + duration_ms > now):
            return "ACTIVE", "RECURRING"
        t -= _dt.timedelta(minutes=1)
    return "SCHEDULED", "RECURRING"


def _patch_cloudwatch_mute_rules(rt: Any) -> None:
    def rules(self: CloudWatchResponse) -> dict[str, dict[str, Any]]:
        backend = self.cloudwatch_backend
        if not hasattr(backend, "opsflow_mute_rules"):
            backend.opsflow_mute_rules = {}
        return backend.opsflow_mute_rules

    def arn(self: CloudWatchResponse, name: str) -> str:
        return f"arn:aws:cloudwatch:{self.region}:{self.current_account}:alarm-mute-rule:{name}"

    def view(self: CloudWatchResponse, rule: dict[str, Any], summary: bool) -> dict[str, Any]:
        status, mute_type = mute_windows(rule, rt.clock.now_ms())
        out = {"AlarmMuteRuleArn": arn(self, rule["Name"]), "Status": status, "MuteType": mute_type,
               "LastUpdatedTimestamp": to_dt(rule["_updated_ms"]), "ExpireDate": to_dt(rule.get("_expire_ms"))}
        if not summary:
            out.update({"Name": rule["Name"], "Description": rule.get("Description"), "Rule": rule["Rule"],
                        "MuteTargets": rule.get("MuteTargets"), "StartDate": to_dt(rule.get("_start_ms"))})
        return {k: v for k, v in out.items() if v is not None}

    def put_alarm_mute_rule(self: CloudWatchResponse) -> ActionResult:
        name = self._get_param("Name")
        schedule = (self._get_param("Rule") or {}).get("Schedule") or {}
        expression, duration = schedule.get("Expression", ""), schedule.get("Duration", "")
        mute_duration_s(duration)
        if not _AT.match(expression) and not _CRON.match(expression):
            raise InvalidParameterValue(f"Expression {expression!r} must be at(yyyy-MM-ddThh:mm) or cron(…)")
        if _CRON.match(expression):
            _cron(_CRON.match(expression).group(1))
        if schedule.get("Timezone"):
            try:
                zoneinfo.ZoneInfo(schedule["Timezone"])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise InvalidParameterValue(f"Timezone {schedule['Timezone']!r} is not a time zone") from None
        targets = self._get_param("MuteTargets")
        if targets is not None and len(targets.get("AlarmNames") or []) > 100:
            raise InvalidParameterValue("MuteTargets.AlarmNames: at most 100 alarms")
        def ms_of(v: Any) -> int | None:
            if v is None:
                return None
            if isinstance(v, _dt.datetime):
                return int(v.timestamp() * 1000)
            if isinstance(v, (int, float)):
                return int(v * 1000)
            return int(_dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp() * 1000)
        rules(self)[name] = {
            "Name": name, "Description": self._get_param("Description"),
            "Rule": {"Schedule": {k: v for k, v in schedule.items() if v}}, "MuteTargets": targets,
            "_start_ms": ms_of(self._get_param("StartDate")), "_expire_ms": ms_of(self._get_param("ExpireDate")),
            "_type": "ONE_TIME" if _AT.match(expression) else "RECURRING", "_updated_ms": rt.clock.now_ms(),
        }
        return EmptyResult()

    def get_alarm_mute_rule(self: CloudWatchResponse) -> ActionResult:
        name = self._get_param("AlarmMuteRuleName")
        rule = rules(self).get(name)
        if rule is None:
            raise ResourceNotFoundException(f"Alarm mute rule {name} does not exist")
        return ActionResult(view(self, rule, summary=False))

    def list_alarm_mute_rules(self: CloudWatchResponse) -> ActionResult:
        alarm = self._get_param("AlarmName")
        statuses = self._get_param("Statuses") or []
        found = []
        for rule in sorted(rules(self).values(), key=lambda r: r["Name"]):
            if alarm and alarm not in ((rule.get("MuteTargets") or {}).get("AlarmNames") or []):
                continue
            v = view(self, rule, summary=True)
            if statuses and v["Status"] not in statuses:
                continue
            found.append(v)
        return ActionResult({"AlarmMuteRuleSummaries": found})

    def delete_alarm_mute_rule(self: CloudWatchResponse) -> ActionResult:
        rules(self).pop(self._get_param("AlarmMuteRuleName"), None)  # deleting a missing rule succeeds
        return EmptyResult()

    for method in (put_alarm_mute_rule, get_alarm_mute_rule, list_alarm_mute_rules, delete_alarm_mute_rule):
        setattr(CloudWatchResponse, method.__name__, method)


#: Path prefix of the custom resources' ResponseURLs (opsflow_moto_cfn.py).
CFN_RESPONSE_PATH = "/_opsflow/cfn-response/"


def _prepare_cloudformation(rt: Any) -> None:
    """The custom resource patches import moto's CloudFormation, which imports most of moto
    (half a second): they are installed at the first CloudFormation request instead of at start.
    ``rt.custom_resources`` is None until then; ``rt.cfn_base_url`` is the ResponseURLs' base."""
    lock = threading.Lock()
    rt.custom_resources = None
    rt.cfn_base_url = None

    def ensure_custom_resources() -> Any:
        with lock:
            if rt.custom_resources is None:
                import opsflow_moto_cfn

                registry = opsflow_moto_cfn.install(rt)
                registry.base_url = rt.cfn_base_url
                rt.custom_resources = registry
        return rt.custom_resources

    rt.ensure_custom_resources = ensure_custom_resources


# --------------------------------------------------------------------------- STS: trust policies and accounts

PARTITION = "aws"
#: The IAM user POST /_opsflow/accounts creates in an account to seed it.
SEED_USER = "opsflow-admin"
ADMIN_POLICY_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"


def default_account() -> str:
    """The account moto gives credentials it does not know (e.g. the `testing` keys)."""
    import os

    from moto.core import DEFAULT_ACCOUNT_ID

    return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)


def key_owner(access_key: str) -> tuple[str, Any, Any] | None:
    """(account, assumed-role session or None, IAM user or None) of an access key moto issued, as
    moto maps keys to accounts (iam_backends' access_keys; an AssumeRole's key lives in the role's
    account, its session in that account's STS backend); None for a key moto does not know."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for account_id, partitions in list(iam_backends.items()):
        iam = partitions[PARTITION]
        if access_key not in iam.access_keys:
            continue
        for assumed in list(sts_backends[account_id][PARTITION].assumed_roles):
            if assumed.access_key_id == access_key:
                return account_id, assumed, None
        return account_id, None, iam.get_user_from_access_key_id(access_key)
    return None


def caller_identity(access_key: str) -> dict[str, Any]:
    """Who signs with this access key, as moto maps keys to accounts (see key_owner):
    {"account", "arn", "role_arn" (assumed-role sessions only)}."""
    owner = key_owner(access_key)
    if owner is None:
        account_id = default_account()
        # moto's GetCallerIdentity calls such a caller the IAM user "moto"
        return {"account": account_id, "arn": f"arn:aws:iam::{account_id}:user/moto", "role_arn": None}
    account_id, assumed, user = owner
    if assumed is not None:
        return {"account": account_id, "arn": assumed.arn, "role_arn": assumed.role_arn}
    if user is not None:
        return {"account": account_id, "arn": user.arn, "role_arn": None}
    return {"account": account_id, "arn": f"arn:aws:iam::{account_id}:root", "role_arn": None}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: Any, caller: dict[str, Any]) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for p in _as_list(principal.get("AWS", [])):
        p = str(p)
        if p == "*":
            return True
        if p == caller["account"] or p == f"arn:aws:iam::{caller['account']}:root":
            return True  # the account: any of its principals (its own policies decide, not checked here)
        if p == caller["arn"] or (caller["role_arn"] and p == caller["role_arn"]):
            return True  # that user, that role's sessions, or that very session
    return False


def _action_matches(action: Any) -> bool:
    return any(fnmatch.fnmatchcase("sts:assumerole", str(a).lower()) for a in _as_list(action))


def _string_like(pattern: str, value: str) -> bool:
    import re

    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _conditions_hold(condition: Any, context: dict[str, str]) -> bool:
    """Every operator and every key must hold (AND); any of a key's values may match (OR).
    A key the request lacks fails the operator. Operators other than StringEquals / StringLike
    are not evaluated: the statement does not apply (fails closed)."""
    if not condition:
        return True
    if not isinstance(condition, dict):
        return False
    for operator, keys in condition.items():
        if operator not in ("StringEquals", "StringLike") or not isinstance(keys, dict):
            return False
        for key, values in keys.items():
            actual = context.get(key.lower())  # condition keys are case-insensitive
            if actual is None:
                return False
            test = (lambda v: v == actual) if operator == "StringEquals" else (lambda v: _string_like(v, actual))
            if not any(test(str(v)) for v in _as_list(values)):
                return False
    return True


def trust_allows(document: Any, caller: dict[str, Any], external_id: str | None) -> bool:
    """IAM's evaluation of a role trust policy for sts:AssumeRole: an explicit Deny wins, else
    an Allow is needed, else implicit deny. NotPrincipal / NotAction statements never apply."""
    if isinstance(document, str):
        from urllib.parse import unquote

        try:
            document = json.loads(document)
        except ValueError:
            document = json.loads(unquote(document))
    context = {"aws:principalaccount": caller["account"], "aws:principalarn": caller["role_arn"] or caller["arn"]}
    if external_id is not None:
        context["sts:externalid"] = external_id
    allowed = False
    for st in _as_list(document.get("Statement", [])):
        if not isinstance(st, dict) or "Principal" not in st or "Action" not in st:
            continue
        if not (_principal_matches(st["Principal"], caller) and _action_matches(st["Action"])
                and _conditions_hold(st.get("Condition"), context)):
            continue
        if st.get("Effect") == "Deny":
            return False
        if st.get("Effect") == "Allow":
            allowed = True
    return allowed


def find_role(role_arn: str) -> Any:
    """The IAM role with this exact ARN in the account the ARN names, or None."""
    import re

    from moto.iam.models import iam_backends

    m = re.match(r"arn:aws:iam::(\d{12}):role/", role_arn or "")
    if not m or m.group(1) not in iam_backends:
        return None
    for role in iam_backends[m.group(1)][PARTITION].roles.values():
        if role.arn == role_arn:
            return role
    return None


def assume_role_denial(access_key: str, role_arn: str, external_id: str | None) -> str | None:
    """None if the role's trust policy lets this caller assume it, else AWS's AccessDenied text."""
    caller = caller_identity(access_key)
    role = find_role(role_arn)
    if role is not None:
        try:
            if trust_allows(role.assume_role_policy_document, caller, external_id):
                return None
        except (ValueError, AttributeError, TypeError):
            pass  # a document we cannot read allows nothing
    return f"User: {caller['arn']} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"


def _patch_sts() -> None:
    """GetCallerIdentity for keys moto does not know: moto answers arn:aws:sts::ACCT:user/moto;
    an IAM user's ARN is arn:aws:iam::ACCT:user/NAME (STS API reference, GetCallerIdentity)."""
    from moto.sts.models import STSBackend

    def make(orig: Any) -> Any:
        def get_caller_identity(self: Any, access_key_id: str, region: str) -> tuple[str, str, str]:
            user_id, arn, account_id = orig(self, access_key_id, region)
            if arn.endswith(f":sts::{account_id}:user/moto"):
                arn = arn.replace(":sts::", ":iam::", 1)
            return user_id, arn, account_id

        return get_caller_identity

    wrap(STSBackend, "get_caller_identity", make)


def seed_account(account_id: str, known: dict[str, Any] | None) -> dict[str, Any]:
    """An administrator's access key in `account_id` (the IAM user opsflow-admin with
    AdministratorAccess), created once; moto maps the key to that account. `known` is what an
    earlier call returned: reused while moto still has that key (a moto reset drops it)."""
    from moto.iam.models import iam_backends

    iam = iam_backends[account_id][PARTITION]
    if known and known["access_key_id"] in iam.access_keys:
        return known
    if SEED_USER not in iam.users:
        iam.create_user(region_name="us-east-1", user_name=SEED_USER)
        try:
            iam.attach_user_policy(ADMIN_POLICY_ARN, SEED_USER)
        except Exception:  # noqa: BLE001 - managed policies not loaded: permissions are not checked anyway
            pass
    for old in list(iam.users[SEED_USER].access_keys):  # at most 2 keys per user: start afresh
        iam.delete_access_key(old.access_key_id, SEED_USER)
    key = iam.create_access_key(SEED_USER)
    return {"account_id": account_id, "user_arn": iam.users[SEED_USER].arn,
            "access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}


# --------------------------------------------------------------------------- EventBridge: CloudTrail management events

#: "All events that are delivered by CloudTrail have AWS API Call via CloudTrail as the value for
#: detail-type" (EventBridge user guide, "Events from AWS services").
CLOUDTRAIL_API_CALL = "AWS API Call via CloudTrail"
#: The record version of the CloudTrail user guide's examples ("CloudTrail record contents").
CLOUDTRAIL_EVENT_VERSION = "1.08"
#: IAM is a global service: "events created by ... AWS Identity and Access Management ... are recorded
#: in the Region in which they were created, the US East (N. Virginia) Region, us-east-1" (CloudTrail
#: user guide, "Using the update-trail command"); "the EventBridge rule must be in the US East
#: (N. Virginia) Region" (AWS re:Post knowledge center, iam-eventbridge-sns-rule).
GLOBAL_SERVICE_REGION = "us-east-1"
#: The namespace EC2's newer API calls carry in their CloudTrail responseElements (the CloudTrail
#: examples of CreateTransitGateway / DeleteFlowLogs: {"<Action>Response": {"xmlns": …, "requestId": …}}).
EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
#: The UserId moto's GetCallerIdentity gives a key it does not know (STSBackend.get_caller_identity).
MOTO_DEFAULT_USER_ID = "AKIAIOSFODNN7EXAMPLE"
#: The IAM calls that change what a role, and so the instances of its instance profiles, may do, with
#: the request parameters CloudTrail records for each (the API's names in lowerCamelCase: AttachRolePolicy
#: records {"roleName", "policyArn"}, CreatePolicyVersion {"policyArn", "policyDocument", "setAsDefault"}).
IAM_TRAILED_CALLS: dict[str, tuple[str, ...]] = {
    "AttachRolePolicy": ("RoleName", "PolicyArn"),
    "DetachRolePolicy": ("RoleName", "PolicyArn"),
    "PutRolePolicy": ("RoleName", "PolicyName", "PolicyDocument"),
    "DeleteRolePolicy": ("RoleName", "PolicyName"),
    "CreatePolicyVersion": ("PolicyArn", "PolicyDocument", "SetAsDefault"),
    "SetDefaultPolicyVersion": ("PolicyArn", "VersionId"),
    "UpdateAssumeRolePolicy": ("RoleName", "PolicyDocument"),
    "AddRoleToInstanceProfile": ("InstanceProfileName", "RoleName"),
    "RemoveRoleFromInstanceProfile": ("InstanceProfileName", "RoleName"),
    "PutRolePermissionsBoundary": ("RoleName", "PermissionsBoundary"),
    "DeleteRolePermissionsBoundary": ("RoleName",),
}
#: The EC2 calls that change which profile an instance has: the parameter naming what they act on,
#: whether they name a profile, and the association state their answer (so the record) carries
#: (API reference examples: Associate and Replace answer `associating`, Disassociate `disassociating`).
EC2_TRAILED_CALLS: dict[str, tuple[str, bool, str]] = {
    "AssociateIamInstanceProfile": ("InstanceId", True, "associating"),
    "ReplaceIamInstanceProfileAssociation": ("AssociationId", True, "associating"),
    "DisassociateIamInstanceProfile": ("AssociationId", False, "disassociating"),
}


class TrailedCall(NamedTuple):
    """What a successful call leaves for its CloudTrail record, kept on moto's response object until
    the answer (and so the request id) is made."""

    source: str  # EventBridge source, e.g. aws.iam
    region: str  # where CloudTrail records it (and EventBridge receives it)
    request_parameters: dict[str, Any]
    response_elements: Callable[[str], Any]  # request id -> responseElements


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def trail_user_identity(access_key: str, account: str) -> dict[str, Any]:
    """CloudTrail's userIdentity of whoever signed with `access_key`, as the CloudTrail user guide's
    "CloudTrail userIdentity element" shows each type: an assumed-role session (AssumedRole, with the
    role as sessionIssuer), an IAM user (IAMUser), a key of the account itself (Root). A key moto does
    not know (the `testing` keys) is the IAM user GetCallerIdentity reports for it: `moto`."""
    owner = key_owner(access_key)
    if owner is None:
        return {"type": "IAMUser", "principalId": MOTO_DEFAULT_USER_ID, "arn": f"arn:aws:iam::{account}:user/moto",
                "accountId": account, "accessKeyId": access_key, "userName": "moto"}
    account_id, assumed, user = owner
    if assumed is not None:
        role = find_role(assumed.role_arn)
        role_id = role.id if role is not None else assumed.user_id.split(":", 1)[0]
        issuer = {"type": "Role", "principalId": role_id, "arn": assumed.role_arn, "accountId": account_id,
                  "userName": assumed.role_arn.rsplit("/", 1)[-1]}
        created = assumed.access_key.create_date.strftime("%Y-%m-%dT%H:%M:%SZ")  # moto's real time
        return {"type": "AssumedRole", "principalId": f"{role_id}:{assumed.session_name}", "arn": assumed.arn,
                "accountId": account_id, "accessKeyId": access_key,
                "sessionContext": {"sessionIssuer": issuer, "webIdFederationData": {},
                                   "attributes": {"creationDate": created, "mfaAuthenticated": "false"}}}
    if user is not None:
        return {"type": "IAMUser", "principalId": user.id, "arn": user.arn, "accountId": account_id,
                "accessKeyId": access_key, "userName": user.name}
    return {"type": "Root", "principalId": account_id, "arn": f"arn:aws:iam::{account_id}:root",
            "accountId": account_id, "accessKeyId": access_key}


def _signing_key(response: Any) -> str:
    """The access key id that signed the request (SigV4 header or presigned query). moto's own
    get_access_key only knows 20-character keys and calls the rest (the `testing` keys) AKIAEXAMPLE."""
    auth = response.headers.get("Authorization", "")
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split("/", 1)[0].strip()
    credential = response.querystring.get("X-Amz-Credential") or ""
    if isinstance(credential, list):  # parse_qs's lists
        credential = credential[0] if credential else ""
    return credential.split("/", 1)[0] or response.get_access_key()


def _request_id(body: Any) -> str:
    """The request id the answer carries (IAM's query XML: <RequestId>, which moto makes unique), else a
    new UUID (moto's EC2 answers all carry the constant `request-id`)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    m = re.search(r"<RequestId>([^<]+)</RequestId>", text)
    return m.group(1) if m else str(uuid.uuid4())


def trail_event(rt: Any, response: Any, call: TrailedCall, request_id: str) -> None:
    """Queue the CloudTrail record of a successful call as EventBridge receives it (the "AWS API Call via
    CloudTrail" event, its detail the record: CloudTrail user guide, "CloudTrail record contents for
    management, data, and network activity events"), for the default bus of the caller's account in
    `call.region`, at the clock's now."""
    account, now = response.current_account, rt.clock.now_ms()
    detail = {
        "eventVersion": CLOUDTRAIL_EVENT_VERSION,
        "userIdentity": trail_user_identity(_signing_key(response), account),
        "eventTime": _ec2_time(now),
        "eventSource": f"{call.source.split('.', 1)[1]}.amazonaws.com",
        "eventName": response._get_action(),
        "awsRegion": call.region,
        "sourceIPAddress": "127.0.0.1",  # every caller of the local cloud is on this machine
        "userAgent": response.headers.get("User-Agent", ""),
        "requestParameters": call.request_parameters,
        "responseElements": call.response_elements(request_id),
        "requestID": request_id,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    rt.events.add(now, account, call.region, call.source, CLOUDTRAIL_API_CALL, [], detail)


def _iam_trailed(names: tuple[str, ...]) -> Callable[[Any, Any], TrailedCall]:
    """The TrailedCall of one IAM call, from its parameters (and for CreatePolicyVersion its answer)."""

    def make(response: Any, result: Any) -> TrailedCall:
        params: dict[str, Any] = {}
        for name in names:
            value = response._get_param(name)
            if name == "SetAsDefault":  # recorded as a boolean, sent or not
                value = value in (True, "true", "True")
            if value is not None:
                params[_lower_camel(name)] = value
        elements: Any = None  # IAM records null for these calls, but for the version a create made
        payload = getattr(result, "result", None)
        version = payload.get("PolicyVersion") if isinstance(payload, dict) else None
        if version is not None:
            elements = {"policyVersion": {"versionId": version.version_id, "isDefaultVersion": version.is_default,
                                          "createDate": version.create_date.strftime("%Y-%m-%dT%H:%M:%SZ")}}
        return TrailedCall("aws.iam", GLOBAL_SERVICE_REGION, params, lambda _request_id: elements)

    return make


def _ec2_trailed(action: str) -> Callable[[Any, Any], TrailedCall]:
    """The TrailedCall of one EC2 instance-profile call: requestParameters {"<Action>Request": {…}} and
    responseElements {"<Action>Response": {"xmlns", "requestId", "iamInstanceProfileAssociation"}}, as
    CloudTrail records EC2's newer calls: AWS's own sample Lambda for these events ("Amazon EC2 IAM Role
    Security Certification") reads detail.requestParameters.AssociateIamInstanceProfileRequest
    .IamInstanceProfile.Name and detail.responseElements.ReplaceIamInstanceProfileAssociationResponse
    .iamInstanceProfileAssociation.instanceId; the association's fields are the API's
    (IamInstanceProfileAssociation: associationId, instanceId, iamInstanceProfile {arn, id}, state)."""
    target, names_profile, state = EC2_TRAILED_CALLS[action]

    def make(response: Any, result: Any) -> TrailedCall:
        request: dict[str, Any] = {target: response._get_param(target)}
        if names_profile:  # as sent: by Name or by Arn
            spec = {key: response._get_param(f"IamInstanceProfile.{key}") for key in ("Arn", "Name")}
            request["IamInstanceProfile"] = {key: value for key, value in spec.items() if value}
        assoc = result.result["IamInstanceProfileAssociation"]
        profile = assoc.iam_instance_profile
        association = {"associationId": assoc.association_id, "instanceId": assoc.instance_id,
                       "iamInstanceProfile": {"arn": profile.arn, "id": profile.id}, "state": state}
        return TrailedCall("aws.ec2", response.region, {f"{action}Request": request},
                           lambda request_id: {f"{action}Response": {
                               "xmlns": EC2_XMLNS, "requestId": request_id,
                               "iamInstanceProfileAssociation": association}})

    return make


def _patch_cloudtrail(rt: Any) -> None:
    """CloudTrail management events to EventBridge for the IAM and EC2 calls that change what an
    instance's role may do or which profile an instance has (moto sends none). Each successful call
    makes one event, delivered through moto's PutEvents like the EC2 and Auto Scaling events (EventFeed)
    to the caller account's default bus: IAM's in us-east-1, EC2's in the region of the call. A call that
    fails (moto raised, or a fault answered it) makes none."""
    from moto.core.utils import camelcase_to_underscores
    from moto.iam.responses import IamResponse

    def stash(make: Callable[[Any, Any], TrailedCall]) -> Callable[[Any], Any]:
        def wrapper(orig: Any) -> Any:
            def method(self: Any) -> Any:
                result = orig(self)  # raises on failure: nothing is recorded
                self.opsflow_trailed = make(self, result)
                return result

            return method

        return wrapper

    for name, params in IAM_TRAILED_CALLS.items():
        wrap(IamResponse, camelcase_to_underscores(name), stash(_iam_trailed(params)))
    for name in EC2_TRAILED_CALLS:
        wrap(EC2Response, camelcase_to_underscores(name), stash(_ec2_trailed(name)))

    def call_action(orig: Any) -> Any:
        def method(self: Any) -> Any:
            self.opsflow_trailed = None
            status, headers, body = orig(self)
            if self.opsflow_trailed is not None and int(status) < 400:
                trail_event(rt, self, self.opsflow_trailed, _request_id(body))
            return status, headers, body

        return method

    wrap(IamResponse, "call_action", call_action)
    wrap(EC2Response, "call_action", call_action)


# --------------------------------------------------------------------------- IAM: reads as IAM answers them


def _permissions_boundary_usage_count(policy: Any) -> int:
    """How many roles (and users) of the policy's account have it as permissions boundary."""
    backend = policy.backend
    entities = [*backend.roles.values(), *backend.users.values()]
    return sum(1 for e in entities if getattr(e, "permissions_boundary_arn", None) == policy.arn)


def _patch_iam_reads() -> None:
    """GetAccountAuthorizationDetails and GetPolicyVersion as the IAM API reference describes them:
    policy documents URL-encoded ("The policy document returned in this structure is URL-encoded
    compliant with RFC 3986", RoleDetail.AssumeRolePolicyDocument, PolicyVersion.Document; moto encoded
    only the inline and version documents of GetAccountAuthorizationDetails), and ManagedPolicyDetail
    with its PolicyName, PolicyId and PermissionsBoundaryUsageCount (moto left them out)."""
    from moto.core.serialize import return_if_not_empty, url_encode
    from moto.iam.models import ManagedPolicy
    from moto.iam.responses import IamResponse

    details = "GetAccountAuthorizationDetailsResponse"
    IamResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER.update({
        f"{details}.RoleDetailList.RoleDetail.AssumeRolePolicyDocument": url_encode,
        f"{details}.RoleDetailList.RoleDetail.InstanceProfileList.InstanceProfile.Roles.Role.AssumeRolePolicyDocument":
            url_encode,
        f"{details}.Policies.ManagedPolicyDetail.Description": return_if_not_empty,
        "GetPolicyVersionResponse.PolicyVersion.Document": url_encode,
    })
    ManagedPolicy.policy_name = property(lambda self: self.name)  # type: ignore[attr-defined]
    ManagedPolicy.policy_id = property(lambda self: self.id)  # type: ignore[attr-defined]
    ManagedPolicy.permissions_boundary_usage_count = property(  # type: ignore[attr-defined]
        _permissions_boundary_usage_count)
