"""CloudFormation custom resources that wait for their provider, patched onto moto 5.x.

moto's CloudFormation creates stacks, but a custom resource (``moto/cloudformation/
custom_model.py``) invokes a moto Lambda through Docker, and DescribeStackResource reports
the stack's status for every resource. Here a ``Custom::*`` (or
``AWS::CloudFormation::CustomResource``) resource whose ServiceToken is not a moto Lambda
function is not invoked: the request CloudFormation would send is recorded
(``GET /_opsflow/custom_resources``), and the resource waits until someone PUTs a response
to its ResponseURL, an URL on the local cloud itself. The answer then drives the resource
and the stack as CloudFormation does: CREATE_COMPLETE, or CREATE_FAILED and a rollback that
sends Delete; UpdateStack sends Update (rolled back with a second Update if it fails, a
changed PhysicalResourceId deletes the old one); DeleteStack sends Delete.

Request and response fields follow the CloudFormation User Guide ("Custom resource request
objects", "Custom resource response objects"). Timeouts (ServiceTimeout, one hour) are not
modelled: a request waits until it is answered.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import uuid
from typing import Any
from urllib.parse import quote, unquote

from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.custom_model import CustomModel
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.models import CloudFormationBackend, Event, Stack, cloudformation_backends
from moto.core.utils import utcnow
from opsflow_moto_ext import CFN_RESPONSE_PATH

#: CloudFormation rejects a response body above this size ("Response object is too long.").
RESPONSE_BODY_LIMIT = 4096
#: A PhysicalResourceId "can be up to 1 KB in size".
PHYSICAL_ID_LIMIT = 1024
#: Path prefix of the ResponseURLs the local cloud hands out.
RESPONSE_PATH = CFN_RESPONSE_PATH
#: Stack statuses during which a stack operation is still running (UpdateStack is refused).
IN_PROGRESS = ("CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "DELETE_IN_PROGRESS", "UPDATE_IN_PROGRESS",
               "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS",
               "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
#: Stack statuses whose Outputs CloudFormation shows.
OUTPUTS_VISIBLE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
                   "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
                   "UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_FAILED",
                   "DELETE_FAILED")


def is_custom_type(resource_type: str) -> bool:
    return resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource"


def cfn_strings(value: Any) -> Any:
    """Property values as the provider receives them: CloudFormation turns numbers and booleans
    into strings (true -> "true"), keeping lists and objects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return {k: cfn_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [cfn_strings(v) for v in value]
    return value


def _is_moto_lambda(token: Any, account_id: str, region_name: str) -> bool:
    if not isinstance(token, str) or not token:
        return False
    try:
        from moto.awslambda.utils import get_backend as get_lambda_backend

        get_lambda_backend(account_id, region_name).get_function(token)
        return True
    except Exception:  # noqa: BLE001 - any lookup failure: not a moto Lambda
        return False


# --------------------------------------------------------------------------- requests and answers


class CustomResourceRequests:
    """Every request sent to a custom resource provider, its answers, and the stacks they drive.

    One lock serialises all of it: answers arrive on other server threads than the
    CreateStack / UpdateStack / DeleteStack calls that send requests.
    """

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, Any]] = {}  # RequestId -> record (all, answerable)
        self.listed: list[str] = []  # RequestIds GET /_opsflow/custom_resources shows
        self.base_url: str | None = None  # http://127.0.0.1:PORT, set by the launcher

    def _base(self) -> str:
        if self.base_url:
            return self.base_url
        import os

        return f"http://127.0.0.1:{os.environ.get('MOTO_PORT', '5000')}"

    # ----- control API
    def list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.view(self.records[rid]) for rid in self.listed]

    def clear(self) -> None:
        """Forget the listing; requests already sent stay answerable, as their URLs do on AWS."""
        with self.lock:
            self.listed = []

    @staticmethod
    def view(rec: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy({k: v for k, v in rec.items() if not k.startswith("_")})

    # ----- sending
    def send(self, res: OpsflowCustomResource, request_type: str, properties: dict[str, Any],
             physical_id: str | None = None, old_properties: dict[str, Any] | None = None) -> str:
        with self.lock:
            rid = str(uuid.uuid4())
            signature = secrets.token_hex(32)
            now = utcnow()
            key = quote(f"{res.stack_id}|{res.logical_id}|{rid}", safe="")
            url = (f"{self._base()}{RESPONSE_PATH}{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                   f"&X-Amz-Date={now.strftime('%Y%m%dT%H%M%SZ')}&X-Amz-SignedHeaders=host&X-Amz-Expires=7200"
                   f"&X-Amz-Credential=AKIAOPSFLOWLOCALCLOUD%2F{now.strftime('%Y%m%d')}%2F{res.region_name}"
                   f"%2Fs3%2Faws4_request&X-Amz-Signature={signature}")
            event: dict[str, Any] = {
                "RequestType": request_type,
                "ServiceToken": res.service_token,
                "ResponseURL": url,
                "StackId": res.stack_id,
                "RequestId": rid,
                "ResourceType": res.resource_type,
                "LogicalResourceId": res.logical_id,
            }
            if request_type != "Create":
                event["PhysicalResourceId"] = physical_id
            event["ResourceProperties"] = copy.deepcopy(properties)
            if request_type == "Update":
                event["OldResourceProperties"] = copy.deepcopy(old_properties or {})
            self.records[rid] = {
                "request": event,
                "state": "waiting",
                "requested_ms": self.rt.clock.now_ms(),
                "answered_ms": None,
                "response": None,
                "error": None,
                "answers": [],
                "_signature": signature,
                "_resource": res,
            }
            self.listed.append(rid)
            res.pending = rid
            return rid

    def cancel(self, rid: str) -> None:
        rec = self.records.get(rid)
        if rec is not None and rec["state"] == "waiting":
            rec["state"] = "cancelled"

    # ----- answering (PUT to the ResponseURL)
    def answer(self, path: str, query: dict[str, list[str]], raw: bytes) -> tuple[int, dict[str, Any]]:
        """Handle a PUT to a ResponseURL: (HTTP status, result for the caller and the log)."""
        key = unquote(path[len(RESPONSE_PATH):])
        rid = key.rsplit("|", 1)[-1]
        with self.lock:
            rec = self.records.get(rid)
            if rec is None:
                return 404, {"error": f"no custom resource request {rid!r}"}
            if (query.get("X-Amz-Signature") or [""])[0] != rec["_signature"]:
                # The URL is presigned: S3 refuses a PUT whose query string was lost or changed.
                return 403, {"error": "SignatureDoesNotMatch: the ResponseURL's query string must be sent unchanged"}
            text = raw.decode("utf-8", "replace")
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text
            answer: dict[str, Any] = {"received_ms": self.rt.clock.now_ms(), "body": body}
            rec["answers"].append(answer)
            if rec["state"] != "waiting":
                answer["result"] = f"ignored: the request is already {rec['state']}"
                return 200, answer
            error = check_response(rec["request"], raw, body)
            rec["state"] = "answered"
            rec["answered_ms"] = answer["received_ms"]
            rec["response"] = body
            rec["error"] = error
            answer["result"] = "applied" if error is None else f"applied as FAILED: {error}"
            res: OpsflowCustomResource = rec["_resource"]
            if res.pending == rid:
                res.pending = None
            try:
                apply_answer(self, res, rec, body if isinstance(body, dict) else {}, error)
            except ValidationError:  # the stack is gone (moto's own reset): nothing to drive
                answer["result"] += " (the stack no longer exists)"
            return 200, answer


def check_response(request: dict[str, Any], raw: bytes, body: Any) -> str | None:
    """Why CloudFormation would not take this body as a valid answer, or None if it would."""
    if len(raw) > RESPONSE_BODY_LIMIT:
        return "Response object is too long."
    if not isinstance(body, dict):
        return "Invalid response object: the body is not a JSON object"
    status = body.get("Status")
    if status not in ("SUCCESS", "FAILED"):
        return f"Invalid response object: Status must be SUCCESS or FAILED, not {status!r}"
    for field in ("RequestId", "StackId", "LogicalResourceId"):
        if body.get(field) != request[field]:
            return f"Invalid response object: {field} {body.get(field)!r} does not match the request's {request[field]!r}"
    if status == "FAILED" and not (isinstance(body.get("Reason"), str) and body["Reason"]):
        return "Invalid response object: a FAILED response needs a Reason"
    if "Data" in body and not isinstance(body["Data"], dict):
        return "Invalid response object: Data must be a JSON object"
    if "NoEcho" in body and not isinstance(body["NoEcho"], bool):
        return "Invalid response object: NoEcho must be a boolean"
    pid = body.get("PhysicalResourceId")
    if status == "SUCCESS" and not _valid_physical_id(pid):
        return "Invalid PhysicalResourceId"
    return None


def _valid_physical_id(pid: Any) -> bool:
    return isinstance(pid, str) and 0 < len(pid.encode()) <= PHYSICAL_ID_LIMIT


# --------------------------------------------------------------------------- the resource


class OpsflowCustomResource(CustomModel):
    """A custom resource whose provider answers through the ResponseURL."""

    # moto's model metaclass files every model under its service, taken from the module name.
    __module__ = "moto.cloudformation.opsflow_custom_resource"

    def __init__(self, account_id: str, region_name: str, stack_id: str, logical_id: str, resource_type: str,
                 resource_name: str, properties: dict[str, Any]):
        super().__init__(region_name, "", logical_id, resource_name)
        self.account_id = account_id
        self.stack_id = stack_id
        self.resource_type = resource_type
        self.properties = properties
        self.service_token = properties.get("ServiceToken")
        self.physical_id: str | None = None
        self.no_echo = False
        self.status = "CREATE_IN_PROGRESS"
        self.status_reason: str | None = None
        self.updated_at = utcnow()
        self.pending: str | None = None  # RequestId of the request it waits for
        self.operation: str | None = None  # what the pending request does: create|update|delete|rollback-update|cleanup
        self.previous: dict[str, Any] | None = None  # properties and id before an update, for its rollback
        self.cleanup_physical_id: str | None = None  # an id an update replaced, deleted in cleanup
        self.rollback_failed = False  # a rollback Update was answered FAILED
        self.added_by_update = False  # created by the running UpdateStack (deleted if it rolls back)
        self.removed_by_update = False  # removed from the template by the running UpdateStack

    # moto's CloudFormation interface
    @property
    def physical_resource_id(self) -> str | None:  # type: ignore[override]
        return self.physical_id

    def is_created(self) -> bool:
        return self.pending is None

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name in self.data:
            return "*****" if self.no_echo else self.data[attribute_name]
        return None

    def delete(self, account_id: str, region_name: str) -> None:
        """moto deletes the stack's resources: after DeleteStack or a rollback the Delete request
        was already answered; an UpdateStack that removes the resource sends it in cleanup."""
        stack = _stack_of(self)
        if getattr(stack, "opsflow_updating", False):
            self.removed_by_update = True

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc,override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str,
        **kwargs: Any,
    ) -> Any:
        properties = cloudformation_json.get("Properties") or {}
        if _is_moto_lambda(properties.get("ServiceToken"), account_id, region_name):
            return CustomModel.create_from_cloudformation_json(
                resource_name, cloudformation_json, account_id, region_name, **kwargs)
        if not properties.get("ServiceToken"):
            raise ValidationError(message=f"Resource {kwargs['LogicalId']}: ServiceToken is required")
        stack = cloudformation_backends[account_id][region_name].get_stack(kwargs["StackId"])
        res = cls(account_id, region_name, kwargs["StackId"], kwargs["LogicalId"], kwargs["ResourceType"],
                  resource_name, cfn_strings(properties))
        stack.add_custom_resource(res)
        stack.opsflow_tracked = True
        res.added_by_update = bool(getattr(stack, "opsflow_updating", False))
        res.operation = "create"
        _event(stack, res, "CREATE_IN_PROGRESS")
        REQUESTS.send(res, "Create", res.properties)
        return res

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc,override]
        cls, original_resource: Any, new_resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
        region_name: str,
    ) -> Any:
        if not isinstance(original_resource, OpsflowCustomResource):
            return original_resource  # moto's own (Lambda) custom resource: moto updates nothing
        res = original_resource
        new_properties = cfn_strings(cloudformation_json.get("Properties") or {})
        if new_properties == res.properties:
            return res  # nothing to send: CloudFormation updates only what changed
        stack = cloudformation_backends[account_id][region_name].get_stack(res.stack_id)
        res.previous = {"properties": res.properties, "physical_id": res.physical_id, "data": res.data,
                        "no_echo": res.no_echo}
        old = res.properties
        res.properties = new_properties
        res.service_token = new_properties.get("ServiceToken")
        res.operation = "update"
        _set_status(stack, res, "UPDATE_IN_PROGRESS")
        REQUESTS.send(res, "Update", new_properties, res.physical_id, old)
        return res


REQUESTS: CustomResourceRequests  # set by install()


# --------------------------------------------------------------------------- events and statuses


def _event(stack: Stack, res: OpsflowCustomResource, status: str, reason: str | None = None) -> None:
    event = Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=res.logical_id,
        physical_resource_id=res.physical_id or "",
        resource_type=res.resource_type,
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=json.dumps(res.properties),
    )
    event.sendToSns(stack.account_id, stack.region_name, stack.notification_arns)
    stack.events.append(event)


def _set_status(stack: Stack, res: OpsflowCustomResource, status: str, reason: str | None = None) -> None:
    res.status = status
    res.status_reason = reason
    res.updated_at = utcnow()
    _event(stack, res, status, reason)


def _stack_status(stack: Stack, status: str, reason: str | None = None) -> None:
    stack.status = status
    stack.status_reason = reason
    stack._add_stack_event(status, resource_status_reason=reason)


def custom_resources(stack: Stack) -> list[OpsflowCustomResource]:
    return [r for r in stack.custom_resources.values() if isinstance(r, OpsflowCustomResource)]


def _stack_of(res: OpsflowCustomResource) -> Stack:
    return cloudformation_backends[res.account_id][res.region_name].get_stack(res.stack_id)


# --------------------------------------------------------------------------- the state machine


def apply_answer(reg: CustomResourceRequests, res: OpsflowCustomResource, rec: dict[str, Any],
                 body: dict[str, Any], error: str | None) -> None:
    """One answer to one request: the resource's new status, then what its stack does next."""
    stack = _stack_of(res)
    request = rec["request"]
    success = error is None and body.get("Status") == "SUCCESS"
    reason = error if error is not None else body.get("Reason")
    given_id = body.get("PhysicalResourceId") if _valid_physical_id(body.get("PhysicalResourceId")) else None
    op = res.operation
    res.operation = None

    if op == "create":
        if success:
            res.physical_id = given_id
            res.data = dict(body.get("Data") or {})
            res.no_echo = bool(body.get("NoEcho", False))
            _set_status(stack, res, "CREATE_COMPLETE")
        else:
            # CloudFormation deletes what the failed create may have left, under the id the
            # FAILED answer gave (or one of its own making).
            res.physical_id = given_id or f"{stack.name}-{res.logical_id}-{secrets.token_hex(6).upper()}"
            _set_status(stack, res, "CREATE_FAILED", reason)
            _operation_failed(reg, stack, res)
    elif op in ("update", "rollback-update"):
        if success:
            if given_id != request["PhysicalResourceId"] and op == "update":
                res.cleanup_physical_id = request["PhysicalResourceId"]  # a replacement: delete the old one later
            res.physical_id = given_id
            res.data = dict(body.get("Data") or {})
            res.no_echo = bool(body.get("NoEcho", False))
            _set_status(stack, res, "UPDATE_COMPLETE")
        else:
            _set_status(stack, res, "UPDATE_FAILED", reason)
            if op == "update":
                _operation_failed(reg, stack, res)
            else:
                res.rollback_failed = True
    elif op in ("delete", "cleanup"):
        if success:
            if op == "delete":
                _set_status(stack, res, "DELETE_COMPLETE")
            else:
                _event_for_id(stack, res, rec["request"]["PhysicalResourceId"], "DELETE_COMPLETE")
        else:
            if op == "delete":
                _set_status(stack, res, "DELETE_FAILED", reason)
            else:
                _event_for_id(stack, res, rec["request"]["PhysicalResourceId"], "DELETE_FAILED", reason)
    stack.output_map = stack._create_output_map()  # Fn::GetAtt of the new Data
    _advance(reg, stack)


def _event_for_id(stack: Stack, res: OpsflowCustomResource, physical_id: str, status: str,
                  reason: str | None = None) -> None:
    current = res.physical_id
    res.physical_id = physical_id
    _event(stack, res, status, reason)
    res.physical_id = current


def _operation_failed(reg: CustomResourceRequests, stack: Stack, failed: OpsflowCustomResource) -> None:
    """A create or update failed: cancel what still waits, then roll back as CloudFormation does."""
    if stack.status == "CREATE_IN_PROGRESS":
        for res in custom_resources(stack):
            if res.pending is not None and res.operation == "create":
                reg.cancel(res.pending)
                res.pending = None
                res.operation = None
                # CloudFormation sends the Delete of a cancelled create a physical id of its own.
                res.physical_id = f"{stack.name}-{res.logical_id}-{secrets.token_hex(6).upper()}"
                _set_status(stack, res, "CREATE_FAILED", "Resource creation cancelled")
        if stack.disable_rollback:
            _stack_status(stack, "CREATE_FAILED",
                          f"The following resource(s) failed to create: [{failed.logical_id}]. ")
            return
        _stack_status(stack, "ROLLBACK_IN_PROGRESS",
                      f"The following resource(s) failed to create: [{failed.logical_id}]. Rollback requested by user.")
        for res in custom_resources(stack):
            if res.status != "DELETE_COMPLETE":
                _send_delete(reg, stack, res)
    elif stack.status == "UPDATE_IN_PROGRESS":
        for res in custom_resources(stack):
            if res.pending is not None and res.operation == "update":
                reg.cancel(res.pending)
                res.pending = None
                res.operation = None
                _set_status(stack, res, "UPDATE_FAILED", "Resource update cancelled")
            elif res.pending is not None and res.operation == "create":
                reg.cancel(res.pending)
                res.pending = None
                res.operation = None
                res.physical_id = f"{stack.name}-{res.logical_id}-{secrets.token_hex(6).upper()}"
                _set_status(stack, res, "CREATE_FAILED", "Resource creation cancelled")
        what = "create" if failed.status == "CREATE_FAILED" else "update"
        _stack_status(stack, "UPDATE_ROLLBACK_IN_PROGRESS",
                      f"The following resource(s) failed to {what}: [{failed.logical_id}]. ")
        getattr(stack, "opsflow_rollback", lambda: None)()
        for res in custom_resources(stack):
            if res.previous is not None:
                # Back to the properties before the update, under the id the resource had then.
                prev = res.previous
                new_properties = res.properties
                res.properties = prev["properties"]
                res.service_token = prev["properties"].get("ServiceToken")
                res.operation = "rollback-update"
                res.cleanup_physical_id = None
                _set_status(stack, res, "UPDATE_IN_PROGRESS")
                reg.send(res, "Update", prev["properties"], prev["physical_id"], new_properties)
                res.physical_id = prev["physical_id"]


def _send_delete(reg: CustomResourceRequests, stack: Stack, res: OpsflowCustomResource) -> None:
    res.operation = "delete"
    _set_status(stack, res, "DELETE_IN_PROGRESS")
    reg.send(res, "Delete", res.properties, res.physical_id)


def _advance(reg: CustomResourceRequests, stack: Stack) -> None:
    """Move the stack on once none of its custom resources waits."""
    resources = custom_resources(stack)
    if any(r.pending is not None for r in resources):
        return
    status = stack.status
    if status == "CREATE_IN_PROGRESS":
        stack.verify_readiness()  # moto's own: CREATE_COMPLETE once every resource is created
    elif status == "ROLLBACK_IN_PROGRESS":
        if any(r.status == "DELETE_FAILED" for r in resources):
            _stack_status(stack, "ROLLBACK_FAILED", "The following resource(s) failed to delete: ["
                          + ", ".join(r.logical_id for r in resources if r.status == "DELETE_FAILED") + "]. ")
        else:
            _delete_moto_resources(stack)
            _stack_status(stack, "ROLLBACK_COMPLETE")
    elif status == "DELETE_IN_PROGRESS":
        failed = [r.logical_id for r in resources if r.status == "DELETE_FAILED"]
        if failed:
            _stack_status(stack, "DELETE_FAILED",
                          f"The following resource(s) failed to delete: [{', '.join(failed)}]. ")
        else:
            backend = cloudformation_backends[stack.account_id][stack.region_name]
            stack.opsflow_deleting = True
            _delete_moto_resources(stack, keep_events=True)
            backend._opsflow_orig_delete_stack(stack.stack_id)
    elif status == "UPDATE_IN_PROGRESS":
        _finish_update(reg, stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
    elif status == "UPDATE_ROLLBACK_IN_PROGRESS":
        if any(getattr(r, "rollback_failed", False) for r in resources):
            for r in resources:
                r.rollback_failed = False
            _stack_status(stack, "UPDATE_ROLLBACK_FAILED")
        else:
            _finish_update(reg, stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
    elif status in ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"):
        _stack_status(stack, status.replace("_CLEANUP_IN_PROGRESS", ""))


def _finish_update(reg: CustomResourceRequests, stack: Stack, cleanup_status: str) -> None:
    """The update (or its rollback) is done: cleanup deletes replaced resources, then COMPLETE."""
    _stack_status(stack, cleanup_status)
    rolled_back = cleanup_status.startswith("UPDATE_ROLLBACK")
    sent = False
    for res in custom_resources(stack):
        res.previous = None
        if rolled_back and res.added_by_update and res.status != "DELETE_COMPLETE" and res.physical_id:
            res.added_by_update = False
            _send_delete(reg, stack, res)  # created by the update that failed
            sent = True
        elif res.removed_by_update:
            res.removed_by_update = False
            if not rolled_back and res.status != "DELETE_COMPLETE":
                _send_delete(reg, stack, res)
                sent = True
        elif res.cleanup_physical_id is not None:
            old_id, res.cleanup_physical_id = res.cleanup_physical_id, None
            res.operation = "cleanup"
            _event_for_id(stack, res, old_id, "DELETE_IN_PROGRESS")
            reg.send(res, "Delete", res.properties, old_id)
            sent = True
    if not sent:
        _stack_status(stack, cleanup_status.replace("_CLEANUP_IN_PROGRESS", ""))


def _delete_moto_resources(stack: Stack, keep_events: bool = False) -> None:
    """Delete the stack's other resources with moto's machinery, and keep a view of them all."""
    snapshot = [r for k, r in stack.resource_map._parsed_resources.items()
                if k in stack.resource_map._resource_json_map and r is not None and not isinstance(r, (str, dict, list))]
    stack.resource_map.delete()
    for r in snapshot:
        if not isinstance(r, OpsflowCustomResource):
            r.opsflow_status = "DELETE_COMPLETE"
    if getattr(stack, "opsflow_deleted_resources", None) is None:
        stack.opsflow_deleted_resources = snapshot


# --------------------------------------------------------------------------- patches


def _patch(cls: Any, name: str, make: Any) -> None:
    original = getattr(cls, name)
    setattr(cls, f"_opsflow_orig_{name}", original)
    setattr(cls, name, make(original))


def install(rt: Any) -> CustomResourceRequests:
    global REQUESTS
    REQUESTS = CustomResourceRequests(rt)
    reg = REQUESTS

    # Custom resources: ours unless the ServiceToken is a moto Lambda (decided at creation).
    original_class_from_type = cfn_parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str) -> Any:
        if is_custom_type(resource_type):
            return OpsflowCustomResource
        return original_class_from_type(resource_type)

    cfn_parsing.resource_class_from_type = resource_class_from_type

    # Stack: remembers the template before an update (for its rollback), hides Outputs while
    # CloudFormation does, lists deleted resources instead of re-creating them lazily.
    def stack_init(orig: Any) -> Any:
        def __init__(self: Stack, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            self.status_reason = None
            self.opsflow_tracked = False

        return __init__

    _patch(Stack, "__init__", stack_init)

    orig_outputs = Stack.outputs

    def outputs(self: Stack) -> Any:
        if getattr(self, "opsflow_tracked", False) and self.status not in OUTPUTS_VISIBLE:
            return None
        return orig_outputs.fget(self)  # type: ignore[attr-defined]

    Stack.outputs = property(outputs)  # type: ignore[assignment,method-assign]

    orig_resources = Stack.stack_resources

    def stack_resources(self: Stack) -> Any:
        deleted = getattr(self, "opsflow_deleted_resources", None)
        if deleted is not None:
            return deleted
        return orig_resources.fget(self)  # type: ignore[attr-defined]

    Stack.stack_resources = property(stack_resources)  # type: ignore[assignment,method-assign]

    def update(orig: Any) -> Any:
        def method(self: Stack, template: str, role_arn: str | None = None, parameters: Any = None,
                   tags: Any = None) -> None:
            with reg.lock:
                tracked = getattr(self, "opsflow_tracked", False)
                if tracked and self.status in IN_PROGRESS:
                    raise ValidationError(
                        self.stack_id,
                        message=f"Stack:{self.stack_id} is in {self.status} state and can not be updated.")
                saved = (self.template, self.template_dict, self.output_map)

                def rollback() -> None:
                    self.template, self.template_dict, self.output_map = saved

                self.opsflow_rollback = rollback
                for res in custom_resources(self):
                    res.added_by_update = False
                    res.removed_by_update = False
                self.opsflow_updating = True
                try:
                    orig(self, template, role_arn, parameters, tags)
                finally:
                    self.opsflow_updating = False
                if getattr(self, "opsflow_tracked", False):
                    # moto finished at once; CloudFormation waits for the providers' answers,
                    # then cleans up (deletes what the update replaced or removed).
                    self.events.pop()  # moto's UPDATE_COMPLETE
                    self.status = "UPDATE_IN_PROGRESS"
                    self.status_reason = None
                    _advance(reg, self)

        return method

    _patch(Stack, "update", update)

    # Backend: create/delete under the lock; DeleteStack sends Delete and waits for the answers.
    def create_stack(orig: Any) -> Any:
        def method(self: CloudFormationBackend, *args: Any, **kwargs: Any) -> Stack:
            with reg.lock:
                return orig(self, *args, **kwargs)

        return method

    _patch(CloudFormationBackend, "create_stack", create_stack)

    def delete_stack(orig: Any) -> Any:
        def method(self: CloudFormationBackend, name_or_stack_id: str) -> None:
            with reg.lock:
                stack = None
                for s in self.stacks.values():
                    if name_or_stack_id in (s.stack_id, s.name):
                        stack = s
                        break
                if stack is None or not getattr(stack, "opsflow_tracked", False):
                    return orig(self, name_or_stack_id)
                if stack.status == "DELETE_IN_PROGRESS":
                    return None  # already being deleted: CloudFormation changes nothing
                for r in custom_resources(stack):  # a stack operation still running is cancelled
                    if r.pending is None:
                        continue
                    reg.cancel(r.pending)
                    r.pending = None
                    if r.operation == "create":
                        r.physical_id = f"{stack.name}-{r.logical_id}-{secrets.token_hex(6).upper()}"
                        _set_status(stack, r, "CREATE_FAILED", "Resource creation cancelled")
                    r.operation = None
                to_delete = [r for r in custom_resources(stack)
                             if r.status != "DELETE_COMPLETE" and r.physical_id is not None]
                _stack_status(stack, "DELETE_IN_PROGRESS", "User Initiated")
                for r in to_delete:
                    _send_delete(reg, stack, r)
                _advance(reg, stack)
                return None

        return method

    _patch(CloudFormationBackend, "delete_stack", delete_stack)

    # moto's own Stack.delete adds DELETE_IN_PROGRESS again: skip that event for our stacks.
    def stack_delete(orig: Any) -> Any:
        def method(self: Stack) -> None:
            if getattr(self, "opsflow_deleting", False):
                self._add_stack_event("DELETE_COMPLETE")
                self.status = "DELETE_COMPLETE"
                self.status_reason = None
                return
            orig(self)

        return method

    _patch(Stack, "delete", stack_delete)

    # Resource statuses: a custom resource's own; other resources CREATE_COMPLETE (moto
    # reports the stack's status for every resource) or DELETE_COMPLETE once deleted.
    def dto_init(orig: Any) -> Any:
        def __init__(self: Any, stack: Stack, resource: Any) -> None:
            orig(self, stack, resource)
            self.resource_status_reason = None
            self.last_updated_timestamp = stack.creation_time
            if isinstance(resource, OpsflowCustomResource):
                self.resource_status = resource.status
                self.resource_status_reason = resource.status_reason
                self.resource_type = resource.resource_type
                self.last_updated_timestamp = resource.updated_at
                self.timestamp = resource.updated_at
            elif getattr(resource, "opsflow_status", None):
                self.resource_status = resource.opsflow_status
            elif getattr(stack, "opsflow_tracked", False):
                self.resource_status = "CREATE_COMPLETE"

        return __init__

    _patch(cfn_responses.StackResourceDTO, "__init__", dto_init)

    def list_stack_resources(orig: Any) -> Any:
        def method(self: Any) -> Any:
            result = orig(self)
            stack, resources = self.cloudformation_backend.list_stack_resources(self._get_param("StackName"))
            for summary, resource in zip(result.result["StackResourceSummaries"], resources, strict=False):
                dto = cfn_responses.StackResourceDTO(stack, resource)
                summary["ResourceStatus"] = dto.resource_status
                summary["ResourceType"] = dto.resource_type
                summary["LastUpdatedTimestamp"] = dto.last_updated_timestamp
                if dto.resource_status_reason:
                    summary["ResourceStatusReason"] = dto.resource_status_reason
            return result

        return method

    _patch(cfn_responses.CloudFormationResponse, "list_stack_resources", list_stack_resources)

    # OnFailure / DisableRollback of CreateStack: moto ignores them; we need them for rollback.
    def r_create_stack(orig: Any) -> Any:
        def method(self: Any) -> Any:
            disable = self._get_bool_param("DisableRollback", False) or self._get_param("OnFailure") == "DO_NOTHING"
            with reg.lock:
                _DISABLE_ROLLBACK.value = disable
                try:
                    return orig(self)
                finally:
                    _DISABLE_ROLLBACK.value = False

        return method

    _patch(cfn_responses.CloudFormationResponse, "create_stack", r_create_stack)

    def stack_init_rollback(orig: Any) -> Any:
        def __init__(self: Stack, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            self.disable_rollback = bool(getattr(_DISABLE_ROLLBACK, "value", False))

        return __init__

    _patch(Stack, "__init__", stack_init_rollback)
    return reg


_DISABLE_ROLLBACK = threading.local()
