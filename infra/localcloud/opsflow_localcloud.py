"""opsflow local cloud: moto's server plus what opsflow's flows need from AWS.

Run:  python opsflow_localcloud.py --host 127.0.0.1 --port 5000
      (or: PYTHONPATH=infra/localcloud python -m opsflow_localcloud ...)

What it adds on top of moto (see README.md for the control API):
  * behaviour patches on moto's classes (opsflow_moto_ext.py): SSM managed-instance view,
    SSM command progression + ListCommandInvocations/CancelCommand, EBS volume
    modification progression and its errors (and failures), EBS snapshot progression (and
    failures), root volume replacement tasks, the frozen flag of opsflow-Freeze / opsflow-Thaw,
    EC2 stop/terminate transitions and scheduled stops/terminations; EventBridge events of EC2
    state changes and Auto Scaling termination lifecycle actions (hooks, CompleteLifecycleAction,
    RecordLifecycleActionHeartbeat, timeouts); CloudFormation custom
    resources that wait for a PUT to their ResponseURL (opsflow_moto_cfn.py);
  * a WSGI layer in front of moto's app: the /_opsflow/ control endpoint, per-operation
    call counts, fault injection in the right wire format per protocol;
  * one clock for all time-driven progress: real time x time_scale, or driven explicitly.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import io
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

# Before moto is imported: AdministratorAccess & co must exist (see shared/DESIGN.md).
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

import moto  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opsflow_moto_ext as ext  # noqa: E402

DEFAULT_CONFIG: dict[str, Any] = {
    # SSM managed-instance view
    "online_delay_seconds": 0.0,
    "ping_status": {},  # instance id -> "Online" | "ConnectionLost" | "Inactive"
    "agent_version": "3.3.987.0",
    # SSM fleet health (see the "SSM fleet health" row of README.md)
    "agent_versions": {},  # node id (i- or mi-) -> SSM Agent version; null removes
    "latest_agent_version": "3.3.987.0",  # IsLatestVersion = (AgentVersion == this)
    "ssm_role_check": True,  # an instance profile's role must allow ssm:UpdateInstanceInformation
    "registered_as": {},  # EC2 instance id -> the mi- id its image's hybrid registration gives it; null removes
    "network_checks": False,  # list only agents whose instance can reach SSM (SG egress 443, route or endpoints)
    "send_command_requires_online": False,
    # The agent started without credentials and gave up: a profile associated after launch only
    # reaches it at the next (re)boot (what opsflow's RebootFallback recovers from).
    "agent_needs_reboot": False,
    # SSM commands
    "invocation_does_not_exist_seconds": 0.0,
    "command_pending_seconds": 0.0,
    # how long a node is down when a script exits 194 (shell) / 3010 (PowerShell) between runs
    "reboot_seconds": 0.0,
    # STS: AssumeRole checks the role exists and its trust policy allows the caller
    "sts_trust_enforced": True,
    # EBS volume modifications
    "volume_modifying_seconds": 0.0,
    "volume_optimizing_seconds": 0.0,
    "volume_modification_in_progress_error": True,
    "volume_modification_rate_limit": True,
    "volume_modification_rate_window_seconds": 6 * 3600.0,
    # EC2 stop / terminate: how long an instance is `stopping` / `shutting-down` before it is
    # `stopped` / `terminated` (StopInstances, TerminateInstances, scheduled actions, lifecycle terminations)
    "instance_stopping_seconds": 0.0,
    "instance_shutting_down_seconds": 0.0,
    # EC2 start: how long a started instance is `pending` before `running`, then how long its
    # status checks are `initializing` before `ok`
    "instance_pending_seconds": 0.0,
    "status_checks_seconds": 0.0,
    # EBS snapshots: how long CreateSnapshot(s)' snapshots are `pending` before `completed`
    "snapshot_seconds": 0.0,
    # root volume replacement: how long a task is `in-progress` (the node rebooting) before `succeeded`
    "replace_root_seconds": 0.0,
    # clock
    "time_scale": 1.0,
    # network: "service:Operation" (fnmatch pattern) -> real milliseconds added before answering
    "latency_ms": {},
}

PING_STATUSES = ("Online", "ConnectionLost", "Inactive")
#: StatusMessage of a modification a volume failure rule fails. AWS documents no wording for
#: this rare state ("a transient AWS fault"); tests should not depend on the text.
DEFAULT_VOLUME_FAILURE_MESSAGE = "The volume modification failed due to a transient AWS fault. Retry the modification."
#: StateMessage of a snapshot a snapshot failure rule fails (AWS documents no wording either).
DEFAULT_SNAPSHOT_FAILURE_MESSAGE = "The snapshot could not be completed due to an internal error."
#: Failure rules, by control route: (id prefix, key naming what a rule applies to (absent: any),
#: its duration keys, its message key and default message, if any).
FAILURE_RULES: dict[str, tuple[str, str, tuple[str, ...], tuple[str, str] | None]] = {
    "volume_failures": ("volfail", "volume_id", ("fail_after_seconds",),
                        ("status_message", DEFAULT_VOLUME_FAILURE_MESSAGE)),
    "snapshot_failures": ("snapfail", "instance_id", ("fail_after_seconds",),
                          ("state_message", DEFAULT_SNAPSHOT_FAILURE_MESSAGE)),
    "replace_root_failures": ("rootfail", "instance_id", ("fail_after_seconds", "failing_seconds"), None),
}
SIGNING_NAME_TO_SERVICE = {"monitoring": "cloudwatch", "eventbridge": "events"}


class BadRequest(Exception):
    pass


# --------------------------------------------------------------------------- clock


class Clock:
    """Integer epoch milliseconds for all time-driven progress.

    now = anchor_virtual + (monotonic_now - anchor_real) * rate, where rate is time_scale
    while the clock runs and 0 once it is driven explicitly (POST /_opsflow/clock), so an
    engine running in virtual time fully controls it. It never goes backwards.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._anchor_real = time.monotonic()
        self._anchor_virtual = int(time.time() * 1000)
        self._scale = 1.0
        self._manual = False

    def _now_locked(self) -> int:
        if self._manual:
            return self._anchor_virtual
        return self._anchor_virtual + int((time.monotonic() - self._anchor_real) * 1000 * self._scale)

    def now_ms(self) -> int:
        with self._lock:
            return self._now_locked()

    def _reanchor(self, virtual: int) -> None:
        self._anchor_real = time.monotonic()
        self._anchor_virtual = virtual

    def set(self, now_ms: int, running: bool = False) -> bool:
        """Set the time (ignored if it would go backwards); returns whether it moved."""
        with self._lock:
            current = self._now_locked()
            self._reanchor(max(int(now_ms), current))
            self._manual = not running
            return int(now_ms) > current

    def advance(self, delta_ms: int, running: bool = False) -> None:
        with self._lock:
            self._reanchor(self._now_locked() + max(int(delta_ms), 0))
            self._manual = not running

    def set_scale(self, scale: float) -> None:
        with self._lock:
            self._reanchor(self._now_locked())
            self._scale = scale

    def reset(self) -> None:
        """Back to running at scale 1 from the current (virtual) time."""
        with self._lock:
            self._reanchor(self._now_locked())
            self._scale = 1.0
            self._manual = False

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "now_ms": self._now_locked(),
                "mode": "manual" if self._manual else "running",
                "time_scale": self._scale,
            }


# --------------------------------------------------------------------------- runtime state


class Runtime:
    """Config, command rules, faults and call counts; shared by the patches and the API."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.commands = ext.CommandRegistry()
        self.root_tasks = ext.RootVolumeTasks()
        self.events = ext.EventFeed()
        self.lifecycle = ext.LifecycleActions()
        self.config: dict[str, Any] = {}
        self.rules: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.failures: dict[str, list[dict[str, Any]]] = {}
        self.schedules: list[dict[str, Any]] = []
        self.calls: dict[str, int] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.config = json.loads(json.dumps(DEFAULT_CONFIG))
            self.rules = []
            self.faults = []
            self.failures = {kind: [] for kind in FAILURE_RULES}
            self.schedules = []
            self.calls = {}
        self.commands.clear_log()
        self.events.clear(pending=True)
        self.lifecycle.clear_ended()
        self.clock.reset()

    def _id(self, prefix: str) -> str:
        with self.lock:
            n = self._next_id
            self._next_id += 1
        return f"{prefix}-{n}"

    # ----- config
    def cfg(self, key: str) -> Any:
        return self.config[key]

    def update_config(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - set(DEFAULT_CONFIG))
        if unknown:
            raise BadRequest(f"unknown config keys: {unknown}; known: {sorted(DEFAULT_CONFIG)}")
        with self.lock:
            for key, value in body.items():
                default = DEFAULT_CONFIG[key]
                if key == "ping_status":
                    if not isinstance(value, dict):
                        raise BadRequest("ping_status must be an object {instance_id: status|null}")
                    merged = dict(self.config["ping_status"])
                    for iid, status in value.items():
                        if status is None:
                            merged.pop(iid, None)
                        elif status not in PING_STATUSES:
                            raise BadRequest(f"ping status {status!r} not one of {PING_STATUSES}")
                        else:
                            merged[iid] = status
                    self.config["ping_status"] = merged
                elif key in ("agent_versions", "registered_as"):
                    self.config[key] = _merge_id_map(key, self.config[key], value)
                elif key == "latency_ms":
                    if not isinstance(value, dict) or not all(
                            isinstance(k, str) and ":" in k and isinstance(v, (int, float)) and not isinstance(v, bool)
                            and v >= 0 for k, v in value.items()):
                        raise BadRequest("latency_ms must be an object {\"service:Operation\": milliseconds >= 0}")
                    self.config["latency_ms"] = {k: float(v) for k, v in value.items()}
                elif isinstance(default, bool):
                    if not isinstance(value, bool):
                        raise BadRequest(f"{key} must be a boolean")
                    self.config[key] = value
                elif isinstance(default, float):
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                        raise BadRequest(f"{key} must be a non-negative number")
                    self.config[key] = float(value)
                else:
                    if not isinstance(value, str):
                        raise BadRequest(f"{key} must be a string")
                    self.config[key] = value
            if "time_scale" in body:
                self.clock.set_scale(self.config["time_scale"])
            return dict(self.config)

    # ----- command rules
    def add_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"document", "match", "instance_id", "pending_seconds", "duration_seconds", "exit_code",
                   "stdout", "stderr", "count", "undeliverable", "runs", "reboot_seconds", "leaves_frozen"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise BadRequest(f"unknown command rule keys: {unknown}; known: {sorted(allowed)}")
        runs = body.get("runs")
        if runs is not None:
            if set(body) & {"duration_seconds", "exit_code", "stdout", "stderr"}:
                raise BadRequest("give either runs or duration_seconds/exit_code/stdout/stderr, not both")
            if not isinstance(runs, list) or not runs:
                raise BadRequest("runs must be a non-empty list of {exit_code, duration_seconds, stdout, stderr}")
            checked = []
            for run in runs:
                if not isinstance(run, dict) or set(run) - {"exit_code", "duration_seconds", "stdout", "stderr"}:
                    raise BadRequest("each run is an object with exit_code, duration_seconds, stdout, stderr")
                code = run.get("exit_code", 0)
                if isinstance(code, bool) or not isinstance(code, int):
                    raise BadRequest("exit_code must be an integer")
                checked.append({"exit_code": code, "duration_seconds": _num(run, "duration_seconds", 0.0),
                                "stdout": str(run.get("stdout", "")), "stderr": str(run.get("stderr", ""))})
            if checked[-1]["exit_code"] in ext.REBOOT_EXIT_CODES.values():
                raise BadRequest("the last run exits with a reboot code (194/3010): the agent would reboot "
                                 "and run the script again; add the run that follows")
            runs = checked
        rule = {
            "id": self._id("rule"),
            "document": body.get("document") or "*",
            "match": body.get("match"),
            "instance_id": body.get("instance_id"),
            "pending_seconds": _num(body, "pending_seconds", None),
            "duration_seconds": _num(body, "duration_seconds", 0.0),
            "exit_code": int(body.get("exit_code", 0)),
            "stdout": str(body.get("stdout", "")),
            "stderr": str(body.get("stderr", "")),
            "remaining": int(body["count"]) if body.get("count") is not None else None,
            "undeliverable": _bool(body, "undeliverable", False),
            "runs": runs,
            "reboot_seconds": _num(body, "reboot_seconds", None),
            "leaves_frozen": _bool(body, "leaves_frozen", False),
        }
        with self.lock:
            self.rules.append(rule)
        return rule

    def pick_command_rule(self, document: str | None, text: str, instance_id: str) -> dict[str, Any]:
        """The most recently added matching rule (consuming one use of it), else the default."""
        with self.lock:
            for rule in reversed(self.rules):
                if ext.rule_matches(rule, document, text, instance_id):
                    if rule["remaining"] is not None:
                        rule["remaining"] -= 1
                    return dict(rule)
        return {"duration_seconds": 0.0, "exit_code": 0, "stdout": "", "stderr": ""}

    # ----- failure rules (volume modifications, snapshots, root volume replacements)
    def add_failure(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        prefix, target, durations, message = FAILURE_RULES[kind]
        allowed = {target, "count", *durations, *([message[0]] if message else [])}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise BadRequest(f"unknown {kind} keys: {unknown}; known: {sorted(allowed)}")
        target_id = body.get(target)
        if target_id is not None and not isinstance(target_id, str):
            raise BadRequest(f"{target} must be a string or absent for any")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadRequest("count must be an integer >= 1")
        failure = {"id": self._id(prefix), target: target_id, **{k: _num(body, k, None) for k in durations},
                   "remaining": count}
        if message:
            failure[message[0]] = body.get(message[0], message[1])
            if not isinstance(failure[message[0]], str):
                raise BadRequest(f"{message[0]} must be a string")
        with self.lock:
            self.failures[kind].append(failure)
        return failure

    def take_failure(self, kind: str, target_id: str | None) -> dict[str, Any] | None:
        """The most recently added failure rule of this kind for this target (or any), using one of its count."""
        target = FAILURE_RULES[kind][1]
        with self.lock:
            for failure in reversed(self.failures[kind]):
                if failure["remaining"] > 0 and failure[target] in (None, target_id):
                    failure["remaining"] -= 1
                    return dict(failure)
        return None

    # ----- scheduled EC2 state changes
    def add_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"instance_id", "action", "at_ms", "after_seconds", "transition_seconds"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise BadRequest(f"unknown schedule keys: {unknown}; known: {sorted(allowed)}")
        instance_id = body.get("instance_id")
        if not isinstance(instance_id, str) or ext.find_instance(instance_id) is None:
            raise BadRequest(f"instance_id {instance_id!r} is not an EC2 instance of this local cloud")
        action = body.get("action")
        if action not in ext.DOWN_STATES:
            raise BadRequest(f"action must be one of {sorted(ext.DOWN_STATES)}")
        if ("at_ms" in body) == ("after_seconds" in body):
            raise BadRequest("give exactly one of at_ms (epoch milliseconds) or after_seconds")
        if "at_ms" in body:
            at = body["at_ms"]
            if isinstance(at, bool) or not isinstance(at, int):
                raise BadRequest("at_ms must be an integer (epoch milliseconds)")
        else:
            at = self.clock.now_ms() + ext.ms(_num(body, "after_seconds", 0.0))
        schedule = {
            "id": self._id("schedule"),
            "instance_id": instance_id,
            "action": action,
            "at_ms": int(at),
            "transition_seconds": _num(body, "transition_seconds", None),
            "applied_ms": None,
            "result": None,
        }
        with self.lock:
            self.schedules.append(schedule)
        self.apply_schedules()  # a time already past applies at once
        return dict(schedule)

    def apply_schedules(self) -> None:
        """Apply every scheduled action whose time the clock has reached, oldest time first."""
        if not self.schedules:
            return
        with self.lock:
            now = self.clock.now_ms()
            due = sorted((s for s in self.schedules if s["applied_ms"] is None and s["at_ms"] <= now),
                         key=lambda s: s["at_ms"])
            for sched in due:
                instance = ext.find_instance(sched["instance_id"])
                transition = sched["transition_seconds"]
                if transition is None:
                    transition = self.cfg(ext.DOWN_TRANSITION_CONFIG[sched["action"]])
                applied = instance is not None and ext.apply_instance_action(
                    instance, sched["action"], sched["at_ms"], ext.ms(transition))
                sched["applied_ms"] = now
                sched["result"] = "applied" if applied else "skipped: the instance was already down"

    # ----- faults
    def add_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"operation", "count", "code", "message", "http_status"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise BadRequest(f"unknown fault keys: {unknown}; known: {sorted(allowed)}")
        op = body.get("operation")
        if not isinstance(op, str) or ":" not in op:
            raise BadRequest("operation must look like 'service:Operation' (e.g. ec2:ModifyVolume)")
        if not body.get("code"):
            raise BadRequest("code is required (e.g. RequestLimitExceeded)")
        fault = {
            "id": self._id("fault"),
            "operation": op,
            "remaining": int(body.get("count", 1)),
            "code": str(body["code"]),
            "message": str(body.get("message", "")),
            "http_status": int(body.get("http_status", 400)),
        }
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            for fault in self.faults:
                if fault["remaining"] > 0 and fnmatch.fnmatch(key.lower(), fault["operation"].lower()):
                    fault["remaining"] -= 1
                    return dict(fault)
        return None

    def latency_s(self, key: str) -> float:
        """The configured latency of an operation, in seconds (the first matching pattern)."""
        for pattern, ms_ in self.config["latency_ms"].items():
            if fnmatch.fnmatch(key.lower(), pattern.lower()):
                return ms_ / 1000.0
        return 0.0

    def count_call(self, key: str) -> None:
        with self.lock:
            self.calls[key] = self.calls.get(key, 0) + 1

    def tick(self) -> None:
        """Work that follows the clock and must change moto's state: run before each request."""
        self.apply_schedules()
        self.root_tasks.apply_due(self.clock.now_ms())
        self.commands.flush(self)
        self.lifecycle.apply_due(self, self.clock.now_ms())
        self.events.deliver_due(self.clock.now_ms())


AGENT_VERSION_RE = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){2,3}$")  # InstanceInformation.AgentVersion's pattern
MI_ID_RE = re.compile(r"^mi-[0-9a-f]{17}$")


def _merge_id_map(key: str, current: dict[str, str], value: Any) -> dict[str, str]:
    """Merge {id: value|null} into an id-keyed config map (null removes): `agent_versions` takes SSM Agent
    versions by node id, `registered_as` mi- ids by EC2 instance id."""
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be an object {{id: value|null}}")
    merged = dict(current)
    for node_id, item in value.items():
        if item is None:
            merged.pop(node_id, None)
        elif key == "agent_versions":
            if not isinstance(item, str) or not AGENT_VERSION_RE.fullmatch(item):
                raise BadRequest(f"agent_versions[{node_id!r}]: {item!r} is not a version like 3.3.987.0")
            merged[node_id] = item
        else:
            if not str(node_id).startswith("i-") or not isinstance(item, str) or not MI_ID_RE.fullmatch(item):
                raise BadRequest(f"registered_as takes {{\"i-…\": \"mi-<17 hex>\"}}, not {node_id!r}: {item!r}")
            merged[node_id] = item
    return merged


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be a boolean")
    return value


def _num(body: dict[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BadRequest(f"{key} must be a non-negative number")
    return float(value)


# --------------------------------------------------------------------------- request identification


def _read_form_body(environ: dict[str, Any]) -> str:
    """The form-encoded body (query protocols), leaving wsgi.input readable for moto."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return ""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return ""
    if length <= 0:
        return ""
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
        try:
            raw = gzip.decompress(raw)
        except OSError:
            return ""
    return raw.decode("utf-8", "replace")


def identify(environ: dict[str, Any]) -> tuple[str, str, str]:
    """(service, Operation, protocol) of an AWS request."""
    service = ""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    cred = ""
    if "Credential=" in auth:
        cred = auth.split("Credential=", 1)[1].split(",", 1)[0]
    else:
        cred = (parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential") or [""])[0]
    parts = cred.split("/")
    if len(parts) >= 5:
        service = parts[3].lower()
    service = SIGNING_NAME_TO_SERVICE.get(service, service) or "unknown"

    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.rsplit(".", 1)[-1], "json"
    if environ.get("HTTP_SMITHY_PROTOCOL") == "rpc-v2-cbor":
        return service, environ.get("PATH_INFO", "").rsplit("/", 1)[-1], "json"
    action = (parse_qs(environ.get("QUERY_STRING", "")).get("Action") or [""])[0]
    if not action:
        action = (parse_qs(_read_form_body(environ)).get("Action") or [""])[0]
    if action:
        return service, action, ("ec2" if service == "ec2" else "query")
    protocol = "rest-xml" if service == "s3" else "rest-json"
    return service, _rest_operation(service, environ) or environ.get("REQUEST_METHOD", "?"), protocol


def _access_key(environ: dict[str, Any]) -> str:
    """The access key id that signed the request (Authorization header or presigned query)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split("/", 1)[0].strip()
    return (parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential") or [""])[0].split("/", 1)[0]


def _rest_operation(service: str, environ: dict[str, Any]) -> str | None:
    try:
        from moto.core.request import Request
        from moto.core.routing import get_service_router

        operation, _ = get_service_router(service).match(Request(dict(environ)))
        return str(operation.name)
    except Exception:  # noqa: BLE001 - best effort, only used for counting/faults
        return None


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def error_response(protocol: str, service: str, environ: dict[str, Any], code: str, message: str,
                   status: int) -> tuple[str, list[tuple[str, str]], bytes]:
    """An AWS error in the wire format of the request's protocol."""
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    c, m = _xml_escape(code), _xml_escape(message)
    if protocol == "json":
        ctype = environ.get("CONTENT_TYPE") or "application/x-amz-json-1.1"
        body = json.dumps({"__type": code, "message": message}).encode()
        headers += [("Content-Type", ctype), ("x-amzn-ErrorType", code)]
        if service == "sqs":  # awsQueryCompatible
            headers.append(("x-amzn-query-error", f"{code};{'Receiver' if status >= 500 else 'Sender'}"))
    elif protocol == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{c}</Code>'
                f"<Message>{m}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>").encode()
        headers.append(("Content-Type", "text/xml;charset=UTF-8"))
    elif protocol == "query":
        kind = "Receiver" if status >= 500 else "Sender"
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>{kind}</Type>'
                f"<Code>{c}</Code><Message>{m}</Message></Error><RequestId>{request_id}</RequestId>"
                "</ErrorResponse>").encode()
        headers.append(("Content-Type", "text/xml"))
    elif protocol == "rest-xml":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{c}</Code><Message>{m}</Message>'
                f"<RequestId>{request_id}</RequestId></Error>").encode()
        headers.append(("Content-Type", "application/xml"))
    else:  # rest-json
        body = json.dumps({"message": message}).encode()
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
    return f"{status} {_reason(status)}", headers + [("Content-Length", str(len(body)))], body


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --------------------------------------------------------------------------- WSGI layer + control API


class LocalCloudApp:
    """Control endpoint, call counting and fault injection in front of moto's app."""

    def __init__(self, moto_app: Callable[..., Any], rt: Runtime):
        self.moto_app = moto_app
        self.rt = rt

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(ext.CFN_RESPONSE_PATH):
            return self.custom_resource_response(environ, start_response)
        if path.startswith("/_opsflow/") or path == "/_opsflow":
            return self.control(environ, start_response)
        if path.startswith(("/moto-api", "/latest/", "/favicon.ico")):
            return self.moto_app(environ, start_response)
        service, operation, protocol = identify(environ)
        key = f"{service}:{operation}"
        if service == "cloudformation" and self.rt.custom_resources is None:
            self.rt.ensure_custom_resources()  # patch moto's CloudFormation before it serves
        self.rt.count_call(key)
        self.rt.tick()
        latency = self.rt.latency_s(key)
        if latency:
            time.sleep(latency)  # a threaded server: concurrent calls wait concurrently
        fault = self.rt.take_fault(key)
        if fault is not None:
            status, headers, body = error_response(protocol, service, environ, fault["code"],
                                                   fault["message"], fault["http_status"])
            start_response(status, headers)
            return [body]
        if key == "sts:AssumeRole" and self.rt.cfg("sts_trust_enforced"):
            denial = self.assume_role_denial(environ, protocol)
            if denial is not None:
                status, headers, body = error_response(protocol, service, environ, "AccessDenied", denial, 403)
                start_response(status, headers)
                return [body]
        response = self.moto_app(environ, start_response)
        self.rt.events.deliver_due(self.rt.clock.now_ms())  # the events this request made happen
        return response

    @staticmethod
    def assume_role_denial(environ: dict[str, Any], protocol: str) -> str | None:
        """AccessDenied's message if the role's trust policy does not let the caller in, else None."""
        if protocol == "json":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length > 0 else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            try:
                params = {k: [v] for k, v in json.loads(raw or b"{}").items()}
            except ValueError:
                params = {}
        else:
            params = parse_qs(_read_form_body(environ))
            params.update(parse_qs(environ.get("QUERY_STRING", "")))
        role_arn = (params.get("RoleArn") or [""])[0]
        external_id = (params.get("ExternalId") or [None])[0]
        return ext.assume_role_denial(_access_key(environ), role_arn, external_id)

    # ----- ResponseURL of CloudFormation custom resources (S3 presigned URLs on AWS)
    def custom_resource_response(self, environ: dict[str, Any],
                                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "PUT":
            status, headers, body = error_response("rest-xml", "s3", environ, "MethodNotAllowed",
                                                   "The specified method is not allowed against this resource.", 405)
            start_response(status, headers)
            return [body]
        length = environ.get("CONTENT_LENGTH")
        if length:
            raw = environ["wsgi.input"].read(int(length))
        elif environ.get("wsgi.input_terminated"):
            raw = environ["wsgi.input"].read()
        else:
            raw = b""
        code, result = self.rt.ensure_custom_resources().answer(
            environ.get("PATH_INFO", ""), parse_qs(environ.get("QUERY_STRING", "")), raw)
        if code != 200:
            s3_code = "SignatureDoesNotMatch" if code == 403 else "NoSuchKey"
            status, headers, body = error_response("rest-xml", "s3", environ, s3_code, result["error"], code)
            start_response(status, headers)
            return [body]
        # As S3: 200 and an empty body whatever the JSON says; x-opsflow-result tells what it did.
        note = str(result.get("result", "")).encode("ascii", "replace").decode()[:500]
        start_response("200 OK", [("ETag", f'"{uuid.uuid4().hex}"'), ("x-amz-request-id", uuid.uuid4().hex[:16]),
                                  ("x-opsflow-result", note), ("Content-Length", "0")])
        return [b""]

    # ----- control API
    def control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        route = environ.get("PATH_INFO", "").rstrip("/")[len("/_opsflow"):] or "/"
        try:
            if method in ("POST", "PUT"):
                body = self._json_body(environ)
            else:  # GET / DELETE: the query string's parameters
                body = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            handler = getattr(self, f"api_{method.lower()}_{route.strip('/').replace('/', '_')}", None)
            if handler is None:
                return self._reply(start_response, 404, {"error": f"no route {method} /_opsflow{route}"})
            result = handler(body)
            self.rt.events.deliver_due(self.rt.clock.now_ms())  # e.g. of a schedule applied at once
            return self._reply(start_response, 200, result)
        except BadRequest as exc:
            return self._reply(start_response, 400, {"error": str(exc)})
        except (ValueError, TypeError, KeyError) as exc:
            return self._reply(start_response, 400, {"error": f"{type(exc).__name__}: {exc}"})

    @staticmethod
    def _json_body(environ: dict[str, Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"body is not JSON: {exc}") from exc

    @staticmethod
    def _reply(start_response: Callable[..., Any], status: int, payload: Any) -> list[bytes]:
        body = json.dumps(payload, default=str).encode()
        start_response(f"{status} {_reason(status)}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _object(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        return body

    def api_get_health(self, _: Any) -> dict[str, Any]:
        return {"status": "ok", "moto_version": moto.__version__, "now_ms": self.rt.clock.now_ms()}

    def api_get_config(self, _: Any) -> dict[str, Any]:
        return dict(self.rt.config)

    def api_post_config(self, body: Any) -> dict[str, Any]:
        return self.rt.update_config(self._object(body))

    def api_get_commands(self, _: Any) -> dict[str, Any]:
        return {"rules": list(self.rt.rules)}

    def api_post_commands(self, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and "rules" in body:
            return {"rules": [self.rt.add_rule(self._object(r)) for r in body["rules"]]}
        return self.rt.add_rule(self._object(body))

    def api_delete_commands(self, _: Any) -> dict[str, Any]:
        with self.rt.lock:
            self.rt.rules = []
        return {"rules": []}

    def api_get_faults(self, _: Any) -> dict[str, Any]:
        return {"faults": [f for f in self.rt.faults if f["remaining"] > 0]}

    def api_post_faults(self, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and "faults" in body:
            return {"faults": [self.rt.add_fault(self._object(f)) for f in body["faults"]]}
        return self.rt.add_fault(self._object(body))

    def api_delete_faults(self, _: Any) -> dict[str, Any]:
        with self.rt.lock:
            self.rt.faults = []
        return {"faults": []}

    def _failures(self, kind: str) -> dict[str, Any]:
        with self.rt.lock:
            return {kind: [dict(f) for f in self.rt.failures[kind] if f["remaining"] > 0]}

    def _add_failures(self, kind: str, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and kind in body:
            return {kind: [self.rt.add_failure(kind, self._object(f)) for f in body[kind]]}
        return self.rt.add_failure(kind, self._object(body))

    def _clear_failures(self, kind: str) -> dict[str, Any]:
        with self.rt.lock:
            self.rt.failures[kind] = []
        return {kind: []}

    def api_get_volume_failures(self, _: Any) -> dict[str, Any]:
        return self._failures("volume_failures")

    def api_post_volume_failures(self, body: Any) -> dict[str, Any]:
        return self._add_failures("volume_failures", body)

    def api_delete_volume_failures(self, _: Any) -> dict[str, Any]:
        return self._clear_failures("volume_failures")

    def api_get_snapshot_failures(self, _: Any) -> dict[str, Any]:
        return self._failures("snapshot_failures")

    def api_post_snapshot_failures(self, body: Any) -> dict[str, Any]:
        return self._add_failures("snapshot_failures", body)

    def api_delete_snapshot_failures(self, _: Any) -> dict[str, Any]:
        return self._clear_failures("snapshot_failures")

    def api_get_replace_root_failures(self, _: Any) -> dict[str, Any]:
        return self._failures("replace_root_failures")

    def api_post_replace_root_failures(self, body: Any) -> dict[str, Any]:
        return self._add_failures("replace_root_failures", body)

    def api_delete_replace_root_failures(self, _: Any) -> dict[str, Any]:
        return self._clear_failures("replace_root_failures")

    def api_get_schedule(self, _: Any) -> dict[str, Any]:
        with self.rt.lock:
            return {"schedule": [dict(s) for s in self.rt.schedules]}

    def api_post_schedule(self, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and "schedule" in body:
            return {"schedule": [self.rt.add_schedule(self._object(s)) for s in body["schedule"]]}
        return self.rt.add_schedule(self._object(body))

    def api_delete_schedule(self, _: Any) -> dict[str, Any]:
        with self.rt.lock:
            self.rt.schedules = []
        return {"schedule": []}

    def api_get_calls(self, _: Any) -> dict[str, Any]:
        with self.rt.lock:
            calls = dict(sorted(self.rt.calls.items()))
        return {"calls": calls, "total": sum(calls.values())}

    def api_delete_calls(self, _: Any) -> dict[str, Any]:
        with self.rt.lock:
            self.rt.calls = {}
        return {"calls": {}, "total": 0}

    def api_get_clock(self, _: Any) -> dict[str, Any]:
        return self.rt.clock.describe()

    def api_post_clock(self, body: Any) -> dict[str, Any]:
        body = self._object(body)
        running = bool(body.get("running", False))
        if "now_ms" in body:
            moved = self.rt.clock.set(int(body["now_ms"]), running=running)
        elif "advance_ms" in body:
            self.rt.clock.advance(int(body["advance_ms"]), running=running)
            moved = int(body["advance_ms"]) > 0
        else:
            raise BadRequest("give now_ms (epoch milliseconds) or advance_ms")
        self.rt.tick()
        return {**self.rt.clock.describe(), "moved": moved}

    def api_get_custom_resources(self, _: Any) -> dict[str, Any]:
        registry = self.rt.custom_resources  # None until the first CloudFormation request
        return {"requests": registry.list() if registry is not None else []}

    def api_delete_custom_resources(self, _: Any) -> dict[str, Any]:
        if self.rt.custom_resources is not None:
            self.rt.custom_resources.clear()
        return {"requests": []}

    def api_get_accounts(self, _: Any) -> dict[str, Any]:
        with self.rt.lock:
            return {"accounts": list(self.rt.accounts.values())}

    def api_post_accounts(self, body: Any) -> dict[str, Any]:
        body = self._object(body)
        unknown = sorted(set(body) - {"account_id"})
        if unknown:
            raise BadRequest(f"unknown account keys: {unknown}; known: ['account_id']")
        account_id = body.get("account_id")
        if not isinstance(account_id, str) or len(account_id) != 12 or not account_id.isdigit():
            raise BadRequest("account_id must be a 12-digit string")
        with self.rt.lock:
            seeded = ext.seed_account(account_id, self.rt.accounts.get(account_id))
            self.rt.accounts[account_id] = seeded
        return seeded

    def api_get_invocations(self, _: Any) -> dict[str, Any]:
        return {"invocations": self.rt.commands.invocation_log(self.rt.clock.now_ms())}

    def api_delete_invocations(self, _: Any) -> dict[str, Any]:
        self.rt.commands.clear_log()
        return {"invocations": []}

    def api_get_frozen(self, _: Any) -> dict[str, Any]:
        return ext.frozen_view(self.rt.commands, self.rt.clock.now_ms())

    def api_get_events(self, query: Any) -> dict[str, Any]:
        unknown = sorted(set(query) - {"source", "detail_type", "instance_id"})
        if unknown:
            raise BadRequest(f"unknown events filters: {unknown}; known: ['detail_type', 'instance_id', 'source']")
        self.rt.tick()  # what the clock has reached is delivered first
        with self.rt.events.lock:
            events = list(self.rt.events.log)
        return {"events": [e for e in events if query.get("source", e["source"]) == e["source"]
                           and query.get("detail_type", e["detail-type"]) == e["detail-type"]
                           and query.get("instance_id") in (None, e["detail"].get("instance-id"),
                                                            e["detail"].get("EC2InstanceId"))]}

    def api_delete_events(self, _: Any) -> dict[str, Any]:
        self.rt.events.clear()
        return {"events": []}

    def api_get_lifecycle_actions(self, _: Any) -> dict[str, Any]:
        return {"lifecycle_actions": self.rt.lifecycle.view()}

    def api_post_managed_nodes(self, body: Any) -> dict[str, Any]:
        try:
            return ext.register_managed_nodes(self.rt, self._object(body))
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc

    def api_get_managed_nodes(self, query: Any) -> dict[str, Any]:
        unknown = sorted(set(query) - {"account_id", "region"})
        if unknown:
            raise BadRequest(f"unknown managed_nodes filters: {unknown}; known: ['account_id', 'region']")
        return ext.registered_managed_nodes(query.get("account_id"), query.get("region"))

    def api_post_reset(self, _: Any) -> dict[str, Any]:
        self.rt.reset()
        if self.rt.custom_resources is not None:
            self.rt.custom_resources.clear()
        return {"status": "reset", **self.rt.clock.describe()}


# --------------------------------------------------------------------------- launcher


def build_app(rt: Runtime | None = None) -> tuple[LocalCloudApp, Runtime]:
    rt = rt or Runtime()
    ext.install(rt)
    return LocalCloudApp(DomainDispatcherApplication(create_backend_app), rt), rt


def warm_up(app: LocalCloudApp | None = None) -> None:
    """Create the IAM (with its ~1000 managed policies), EC2, EventBridge and DynamoDB backends before
    serving, so the first IAM/EC2/DynamoDB calls do not take a second (benchmarks, SDK
    timeouts). DynamoDB's first call also loads its service model: one ListTables through
    moto's own app (past the call counter) does that."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.ec2.models import ec2_backends
    from moto.events.models import events_backends
    from moto.iam.models import iam_backends

    account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    iam_backends[account]["global"]
    ec2_backends[account][region]
    events_backends[account][region]  # a launch's state-change events go to its default bus
    dynamodb_backends[account][region]
    if app is not None:
        body = b"{}"
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/x-amz-json-1.0", "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.ListTables",
            "HTTP_AUTHORIZATION": (f"AWS4-HMAC-SHA256 Credential=testing/20250101/{region}/dynamodb/aws4_request, "
                                   "SignedHeaders=host, Signature=x"),
        }
        b"".join(app.moto_app(environ, lambda *_: None))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MOTO_PORT", "5000")),
                        help="0 picks a free port (printed on stdout)")
    parser.add_argument("--quiet", action="store_true", help="do not log every request")
    parser.add_argument("--no-warm-up", action="store_true",
                        default=os.environ.get("LOCALCLOUD_WARM_UP", "1") == "0",
                        help="create moto backends lazily (also LOCALCLOUD_WARM_UP=0)")
    args = parser.parse_args(argv)

    if args.quiet:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app, rt = build_app()
    if not args.no_warm_up:
        warm_up(app)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    host, port = server.server_address[:2]
    os.environ.setdefault("MOTO_PORT", str(port))  # moto calls itself for some flows
    rt.cfn_base_url = f"http://{host}:{port}"  # custom resources' ResponseURLs
    print(f"opsflow-localcloud (moto {moto.__version__}) listening on http://{host}:{port}", flush=True)

    def stop(signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("opsflow-localcloud stopped", flush=True)
        sys.stderr.flush()
        # Nothing to persist: skip the interpreter's slow teardown of moto's object graph (~2 s).
        os._exit(0)


if __name__ == "__main__":
    main()
