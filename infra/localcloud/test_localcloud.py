"""Tests of the opsflow local cloud, through boto3 against the real moto server.

The server is started once per session by ``localcloud.sh start`` on a free port; every
test resets the extension (config, rules, faults, counts) and freezes the clock, then moves
time with POST /_opsflow/clock instead of sleeping.

Run: infra/localcloud/localcloud.sh test   (installs requirements-dev.txt into the venv)
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "localcloud.sh"
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})


# --------------------------------------------------------------------------- fixtures


def _run_script(*args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **env})


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("localcloud")


@pytest.fixture(scope="session")
def endpoint(state_dir: Path) -> Any:
    res = _run_script("start", "--state-dir", str(state_dir))
    assert res.returncode == 0, res.stderr
    url = res.stdout.strip()
    assert url.startswith("http://127.0.0.1:")
    yield url
    res = _run_script("stop", "--state-dir", str(state_dir))
    assert res.returncode == 0, res.stderr


class Control:
    """Tiny client of the /_opsflow/ control API."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def post(self, path: str, body: Any) -> Any:
        status, out = self.call("POST", path, body)
        assert status == 200, out
        return out

    def get(self, path: str) -> Any:
        status, out = self.call("GET", path)
        assert status == 200, out
        return out

    def now_ms(self) -> int:
        return self.get("/_opsflow/clock")["now_ms"]

    def advance(self, seconds: float) -> None:
        self.post("/_opsflow/clock", {"now_ms": self.now_ms() + int(seconds * 1000)})


@pytest.fixture
def ctl(endpoint: str) -> Control:
    c = Control(endpoint)
    c.post("/_opsflow/reset", {})
    # Freeze on a whole millisecond: from here time moves only when a test says so.
    c.post("/_opsflow/clock", {"now_ms": c.now_ms() + 1})
    return c


@pytest.fixture
def aws(endpoint: str) -> Any:
    def client(name: str) -> Any:
        return boto3.client(name, endpoint_url=endpoint, region_name="us-east-1", config=NO_RETRY,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    return client


#: Two of the fixed AMIs moto ships (moto/ec2/resources/amis.json.gz); listing all of
#: moto's images takes seconds, looking these up by id does not.
LINUX_AMI, WINDOWS_AMI = "ami-1e749f67", "ami-03cf127a"


def _ami(ec2: Any, windows: bool) -> str:
    ami = WINDOWS_AMI if windows else LINUX_AMI
    (image,) = ec2.describe_images(ImageIds=[ami])["Images"]
    assert (image.get("Platform") == "windows") == windows
    return ami


def _profile(iam: Any, ssm: bool = True) -> str:
    """An instance profile and its role, both named p-…; with `ssm`, the role has AmazonSSMManagedInstanceCore
    (the local cloud lists an instance only when its profile's role may call ssm:UpdateInstanceInformation)."""
    name = f"p-{uuid.uuid4().hex[:8]}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    if ssm:
        iam.attach_role_policy(RoleName=name, PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return name


def _instances(aws: Any, n: int = 1, windows: bool = False) -> list[str]:
    ec2 = aws("ec2")
    ami = _ami(ec2, windows)
    res = ec2.run_instances(ImageId=ami, MinCount=n, MaxCount=n)
    return [i["InstanceId"] for i in res["Instances"]]


def _managed(aws: Any, ctl: Control, n: int = 1, windows: bool = False) -> list[str]:
    """n instances with an instance profile, already Online (online delay 0)."""
    ids = _instances(aws, n, windows)
    profile = _profile(aws("iam"))
    for iid in ids:
        aws("ec2").associate_iam_instance_profile(IamInstanceProfile={"Name": profile}, InstanceId=iid)
    return ids


def _info(ssm: Any, ids: list[str]) -> list[dict[str, Any]]:
    return ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": ids}])[
        "InstanceInformationList"]


def _iso(s: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"{s!r} has no timezone"
    return parsed


# --------------------------------------------------------------------------- server & script


def test_health_and_endpoint_subcommand(aws: Any, endpoint: str, state_dir: Path, ctl: Control) -> None:
    health = ctl.get("/_opsflow/health")
    assert health["status"] == "ok"
    assert health["moto_version"].startswith("5.")
    # managed policies are loaded (MOTO_IAM_LOAD_MANAGED_POLICIES=true)
    pol = aws("iam").get_policy(PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    assert pol["Policy"]["PolicyName"] == "AdministratorAccess"
    res = _run_script("endpoint", "--state-dir", str(state_dir))
    assert res.returncode == 0 and res.stdout.strip() == endpoint
    assert (state_dir / "endpoint").read_text().strip() == endpoint
    assert (state_dir / "pid").read_text().strip().isdigit()


def test_start_is_idempotent_and_stop_tolerates_nothing_running(tmp_path: Path) -> None:
    first = _run_script("start", "--state-dir", str(tmp_path), LOCALCLOUD_WARM_UP="0")
    assert first.returncode == 0, first.stderr
    pid = int((tmp_path / "pid").read_text())
    try:
        again = _run_script("start", "--state-dir", str(tmp_path))
        assert again.returncode == 0 and again.stdout == first.stdout
        assert int((tmp_path / "pid").read_text()) == pid
        assert "listening on " + first.stdout.strip() in (tmp_path / "server.log").read_text()
    finally:
        stop = _run_script("stop", "--state-dir", str(tmp_path))
    assert stop.returncode == 0, stop.stderr
    assert not (tmp_path / "pid").exists()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert _run_script("stop", "--state-dir", str(tmp_path)).returncode == 0
    assert _run_script("endpoint", "--state-dir", str(tmp_path)).returncode != 0


# --------------------------------------------------------------------------- SSM managed instances


def test_instance_is_online_only_after_the_online_delay(aws: Any, ctl: Control) -> None:
    ssm, ec2 = aws("ssm"), aws("ec2")
    ctl.post("/_opsflow/config", {"online_delay_seconds": 60})
    (iid,) = _instances(aws)
    assert _info(ssm, [iid]) == [], "no instance profile: not a managed instance"
    ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": _profile(aws("iam"))}, InstanceId=iid)
    ctl.advance(59)
    assert _info(ssm, [iid]) == []
    ctl.advance(1)
    (info,) = _info(ssm, [iid])
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert info["InstanceId"] == iid
    assert info["PingStatus"] == "Online"
    assert info["PlatformType"] == "Linux"
    assert info["ResourceType"] == "EC2Instance"
    assert info["AgentVersion"] == "3.3.987.0" and info["IsLatestVersion"] is True
    assert info["IPAddress"] == inst["PrivateIpAddress"]
    assert info["ComputerName"] == inst["PrivateDnsName"]
    assert info["PlatformName"] and info["PlatformVersion"]
    assert info["LastPingDateTime"].tzinfo is not None
    assert abs(info["LastPingDateTime"].timestamp() * 1000 - ctl.now_ms()) < 1000

    # a reboot restarts the agent: offline again for the delay
    ec2.reboot_instances(InstanceIds=[iid])
    assert _info(ssm, [iid]) == []
    ctl.advance(60)
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"


def test_agent_that_needs_a_reboot_registers_only_after_one(aws: Any, ctl: Control) -> None:
    ssm, ec2 = aws("ssm"), aws("ec2")
    ctl.post("/_opsflow/config", {"online_delay_seconds": 30, "agent_needs_reboot": True})
    (iid,) = _managed(aws, ctl)
    ctl.advance(3600)
    assert _info(ssm, [iid]) == [], "associated after launch: the agent never gets the credentials"
    ec2.reboot_instances(InstanceIds=[iid])
    ctl.advance(29)
    assert _info(ssm, [iid]) == []
    ctl.advance(1)
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"


def test_tagged_instances_are_listed_and_filterable_by_tag(aws: Any, ctl: Control) -> None:
    ssm, ec2 = aws("ssm"), aws("ec2")
    (iid,) = _managed(aws, ctl)
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "Name", "Value": "web-7"}, {"Key": "Team", "Value": "platform"}])
    assert [i["InstanceId"] for i in _info(ssm, [iid])] == [iid]
    tagged = ssm.describe_instance_information(Filters=[{"Key": "tag:Name", "Values": ["web-7"]}])["InstanceInformationList"]
    assert [i["InstanceId"] for i in tagged] == [iid]
    assert ssm.describe_instance_information(Filters=[{"Key": "tag:Name", "Values": ["db-1"]}])["InstanceInformationList"] == []


def test_profile_at_launch_stop_start_and_disassociate(aws: Any, ctl: Control) -> None:
    ssm, ec2 = aws("ssm"), aws("ec2")
    ctl.post("/_opsflow/config", {"online_delay_seconds": 30})
    profile = _profile(aws("iam"))
    (iid,) = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=_ami(ec2, False), MinCount=1, MaxCount=1, IamInstanceProfile={"Name": profile})["Instances"]]
    assert _info(ssm, [iid]) == []
    ctl.advance(30)
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"
    ec2.stop_instances(InstanceIds=[iid])
    assert _info(ssm, [iid])[0]["PingStatus"] == "ConnectionLost"
    ec2.start_instances(InstanceIds=[iid])
    assert _info(ssm, [iid])[0]["PingStatus"] == "ConnectionLost", "known, not Online until the delay after a start"
    ctl.advance(30)
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"
    (assoc,) = ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [iid]}])["IamInstanceProfileAssociations"]
    ec2.disassociate_iam_instance_profile(AssociationId=assoc["AssociationId"])
    assert _info(ssm, [iid]) == []


def test_windows_platform_and_ping_status_override(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (win,) = _managed(aws, ctl, windows=True)
    (lin,) = _managed(aws, ctl)
    assert _info(ssm, [win])[0]["PlatformType"] == "Windows"
    ctl.post("/_opsflow/config", {"ping_status": {lin: "ConnectionLost"}})
    lost = ssm.describe_instance_information(
        Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])["InstanceInformationList"]
    assert [i["InstanceId"] for i in lost if i["InstanceId"] in (win, lin)] == [lin]
    ctl.post("/_opsflow/config", {"ping_status": {lin: None}})
    assert _info(ssm, [lin])[0]["PingStatus"] == "Online"


def test_instance_information_filter_list_and_pagination(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    ids = _managed(aws, ctl, n=7)
    flt = [{"key": "InstanceIds", "valueSet": ids}]
    first = ssm.describe_instance_information(InstanceInformationFilterList=flt, MaxResults=5)
    assert len(first["InstanceInformationList"]) == 5 and first["NextToken"]
    second = ssm.describe_instance_information(InstanceInformationFilterList=flt, MaxResults=5,
                                               NextToken=first["NextToken"])
    assert len(second["InstanceInformationList"]) == 2 and "NextToken" not in second
    got = [i["InstanceId"] for i in first["InstanceInformationList"] + second["InstanceInformationList"]]
    assert sorted(got) == sorted(ids)
    # boto3's own paginator
    pages = ssm.get_paginator("describe_instance_information").paginate(
        InstanceInformationFilterList=flt, PaginationConfig={"PageSize": 5})
    assert sorted(i["InstanceId"] for p in pages for i in p["InstanceInformationList"]) == sorted(ids)
    unchecked = boto3.client("ssm", endpoint_url=ctl.url, region_name="us-east-1", aws_access_key_id="testing",
                             aws_secret_access_key="testing", config=NO_RETRY.merge(Config(parameter_validation=False)))
    with pytest.raises(ClientError) as err:
        unchecked.describe_instance_information(MaxResults=1)  # SSM's range is 5..50
    assert err.value.response["Error"]["Code"] == "ValidationException"


# --------------------------------------------------------------------------- SSM fleet health

ACCOUNT = "123456789012"  # the `testing` keys' account
DHMC = "/ssm/managed-instance/default-ec2-instance-management-role"
MI = re.compile(r"^mi-[0-9a-f]{17}$")


def _regional(endpoint: str, region: str) -> Any:
    """Clients of another Region: these tests keep their hybrid nodes, DHMC setting and VPCs out of the
    Region the other tests list (moto's state outlives each test)."""
    def client(name: str) -> Any:
        return boto3.client(name, endpoint_url=endpoint, region_name=region, config=NO_RETRY,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    return client


def _listed(ssm: Any) -> dict[str, dict[str, Any]]:
    pages = ssm.get_paginator("describe_instance_information").paginate()
    return {i["InstanceId"]: i for p in pages for i in p["InstanceInformationList"]}


def _launch(ec2: Any, **kwargs: Any) -> str:
    return ec2.run_instances(ImageId=LINUX_AMI, MinCount=1, MaxCount=1, **kwargs)["Instances"][0]["InstanceId"]


def test_agent_versions_and_is_latest_version(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    old, new = _managed(aws, ctl, n=2)
    ctl.post("/_opsflow/config", {"latest_agent_version": "3.3.1142.0", "agent_versions": {new: "3.3.1142.0"}})
    by_id = {i["InstanceId"]: i for i in _info(ssm, [old, new])}
    assert (by_id[new]["AgentVersion"], by_id[new]["IsLatestVersion"]) == ("3.3.1142.0", True)
    assert (by_id[old]["AgentVersion"], by_id[old]["IsLatestVersion"]) == ("3.3.987.0", False), "agent_version"
    latest = ssm.describe_instance_information(Filters=[{"Key": "AgentVersion", "Values": ["3.3.1142.0"]},
                                                        {"Key": "InstanceIds", "Values": [old, new]}])
    assert [i["InstanceId"] for i in latest["InstanceInformationList"]] == [new]
    ctl.post("/_opsflow/config", {"agent_versions": {new: None}, "latest_agent_version": "3.3.987.0"})
    assert all(i["AgentVersion"] == "3.3.987.0" and i["IsLatestVersion"] for i in _info(ssm, [old, new]))
    status, out = ctl.call("POST", "/_opsflow/config", {"agent_versions": {new: "latest"}})
    assert status == 400 and "version" in out["error"]


def test_a_profile_whose_role_may_not_register_the_agent_is_not_listed(aws: Any, ctl: Control) -> None:
    ssm, ec2, iam = aws("ssm"), aws("ec2"), aws("iam")
    bare = _profile(iam, ssm=False)
    inline = _profile(iam, ssm=False)
    iam.put_role_policy(RoleName=inline, PolicyName="agent", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ssm:Update*", "ec2messages:*"],
                                                "Resource": "*"}]}))
    denied = _profile(iam)  # AmazonSSMManagedInstanceCore, and an explicit Deny that wins
    iam.put_role_policy(RoleName=denied, PolicyName="no-ssm", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "ssm:UpdateInstanceInformation",
                                                "Resource": "*"}]}))
    admin = _profile(iam, ssm=False)
    iam.attach_role_policy(RoleName=admin, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    core = _profile(iam)
    profiles = [bare, inline, denied, admin, core]
    ids = _instances(aws, len(profiles))
    for iid, profile in zip(ids, profiles):
        ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": profile}, InstanceId=iid)
    listed = [i["InstanceId"] for i in _info(ssm, ids)]
    assert sorted(listed) == sorted([ids[1], ids[3], ids[4]]), "inline Allow, AdministratorAccess, Core"
    iam.attach_role_policy(RoleName=bare, PolicyArn=SSM_CORE_ARN)
    assert ids[0] in [i["InstanceId"] for i in _info(ssm, ids)], "the role may register now"
    iam.detach_role_policy(RoleName=core, PolicyArn=SSM_CORE_ARN)
    assert ids[4] not in [i["InstanceId"] for i in _info(ssm, ids)]
    ctl.post("/_opsflow/config", {"ssm_role_check": False})
    assert sorted(i["InstanceId"] for i in _info(ssm, ids)) == sorted(ids), "ssm_role_check off: any profile"


def test_default_host_management_configuration(endpoint: str, aws: Any, ctl: Control) -> None:
    region = "ca-central-1"
    c = _regional(endpoint, region)
    ssm, ec2, iam = c("ssm"), c("ec2"), aws("iam")
    arn = f"arn:aws:ssm:{region}:{ACCOUNT}:servicesetting{DHMC}"
    setting = ssm.get_service_setting(SettingId=DHMC)["ServiceSetting"]
    assert {k: setting[k] for k in ("SettingId", "SettingValue", "LastModifiedUser", "ARN", "Status")} == {
        "SettingId": DHMC, "SettingValue": "$None", "LastModifiedUser": "System", "ARN": arn, "Status": "Default"}
    assert setting["LastModifiedDate"].tzinfo is not None
    assert ssm.get_service_setting(SettingId=arn)["ServiceSetting"]["SettingId"] == DHMC, "the ARN form too"
    with pytest.raises(ClientError) as err:
        ssm.get_service_setting(SettingId="/ssm/no-such-setting")
    assert err.value.response["Error"]["Code"] == "ServiceSettingNotFound"

    ctl.post("/_opsflow/config", {"online_delay_seconds": 30})
    v2 = _launch(ec2, MetadataOptions={"HttpTokens": "required"})
    v1 = _launch(ec2)  # IMDSv1 allowed: HttpTokens optional
    ctl.advance(60)
    assert _info(ssm, [v2, v1]) == [], "no profile and no DHMC: not managed"

    role = f"dhmc-{uuid.uuid4().hex[:6]}"
    assert ssm.update_service_setting(SettingId=arn, SettingValue=f"service-role/{role}")[
        "ResponseMetadata"]["HTTPStatusCode"] == 200
    setting = ssm.get_service_setting(SettingId=DHMC)["ServiceSetting"]
    assert (setting["SettingValue"], setting["Status"], setting["LastModifiedUser"]) == (
        f"service-role/{role}", "Customized", f"arn:aws:iam::{ACCOUNT}:user/moto")
    ctl.advance(60)
    assert _info(ssm, [v2, v1]) == [], "the role DHMC names does not exist"
    iam.create_role(RoleName=role, Path="/service-role/", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    (info,) = _info(ssm, [v2, v1])
    assert (info["InstanceId"], info["PingStatus"], info["ResourceType"]) == (v2, "Online", "EC2Instance")

    # requiring IMDSv2 on the other one brings it in; the options the call leaves out are kept
    ec2.modify_instance_metadata_options(InstanceId=v1, HttpTokens="required")
    options = ec2.describe_instances(InstanceIds=[v1])["Reservations"][0]["Instances"][0]["MetadataOptions"]
    assert (options["HttpTokens"], options["HttpEndpoint"], options["HttpPutResponseHopLimit"]) == (
        "required", "enabled", 1)
    assert sorted(i["InstanceId"] for i in _info(ssm, [v2, v1])) == sorted([v2, v1])
    ctl.post("/_opsflow/config", {"agent_versions": {v1: "3.2.300.0"}})
    assert [i["InstanceId"] for i in _info(ssm, [v2, v1])] == [v2], "DHMC needs SSM Agent 3.2.582.0 or later"

    # a new instance registers the online delay after its launch
    v3 = _launch(ec2, MetadataOptions={"HttpTokens": "required"})
    ctl.advance(29)
    assert _info(ssm, [v3]) == []
    ctl.advance(1)
    assert _info(ssm, [v3])[0]["PingStatus"] == "Online"

    reset = ssm.reset_service_setting(SettingId=DHMC)["ServiceSetting"]
    assert (reset["SettingValue"], reset["Status"], reset["LastModifiedUser"]) == ("$None", "Default", "System")
    assert _info(ssm, [v2, v1, v3]) == [], "DHMC off: instances without a profile leave the list"


def test_hybrid_nodes_are_listed_paged_filtered_and_deregistered(endpoint: str, aws: Any, ctl: Control) -> None:
    region = "ap-southeast-2"
    c = _regional(endpoint, region)
    ssm, ec2 = c("ssm"), c("ec2")
    ec2_node = _launch(ec2, IamInstanceProfile={"Name": _profile(aws("iam"))})
    t0 = ctl.now_ms()
    activation = str(uuid.uuid4())
    nodes = [{"computer_name": f"host-{n}.corp.example", "ip_address": f"192.168.0.{n}",
              "ping_status": "Online" if n % 2 else "ConnectionLost", "last_ping_ms": t0 - n * 60_000,
              "agent_version": "3.3.40.0", "platform_type": "Linux", "platform_name": "Ubuntu",
              "registration_date_ms": t0 - 86_400_000} for n in range(1, 7)]
    nodes[0].update(instance_id="mi-0123456789abcdef0", iam_role="HybridRole", activation_id=activation,
                    name="edge-1", platform_version="24.04", tags={"Team": "edge"})
    out = ctl.post("/_opsflow/managed_nodes", {"account_id": ACCOUNT, "region": region, "nodes": nodes})
    ids = [n["instance_id"] for n in out["nodes"]]
    assert ids[0] == "mi-0123456789abcdef0" and all(MI.fullmatch(i) for i in ids)

    first = ssm.describe_instance_information(MaxResults=5)
    assert len(first["InstanceInformationList"]) == 5 and first["NextToken"]
    listed = _listed(ssm)
    assert sorted(listed) == sorted([*ids, ec2_node]), "i- and mi- nodes, all pages"
    edge = listed[ids[0]]
    assert set(edge) == {"InstanceId", "PingStatus", "LastPingDateTime", "AgentVersion", "IsLatestVersion",
                         "PlatformType", "PlatformName", "PlatformVersion", "ActivationId", "IamRole",
                         "RegistrationDate", "ResourceType", "Name", "IPAddress", "ComputerName", "SourceId",
                         "SourceType"}
    assert {k: v for k, v in edge.items() if not k.endswith(("Date", "DateTime"))} == {
        "InstanceId": ids[0], "PingStatus": "Online", "AgentVersion": "3.3.40.0", "IsLatestVersion": False,
        "PlatformType": "Linux", "PlatformName": "Ubuntu", "PlatformVersion": "24.04", "ActivationId": activation,
        "IamRole": "HybridRole", "ResourceType": "ManagedInstance", "Name": "edge-1", "IPAddress": "192.168.0.1",
        "ComputerName": "host-1.corp.example", "SourceId": ids[0], "SourceType": "AWS::SSM::ManagedInstance"}
    assert edge["RegistrationDate"].timestamp() * 1000 == pytest.approx(t0 - 86_400_000, abs=1)
    assert edge["LastPingDateTime"].timestamp() * 1000 == pytest.approx(t0 - 60_000, abs=1)
    assert listed[ids[1]]["IamRole"] == "SSMServiceRole" and "Name" not in listed[ids[1]]

    def ids_for(**kwargs: Any) -> list[str]:
        pages = ssm.get_paginator("describe_instance_information").paginate(**kwargs)
        return sorted(i["InstanceId"] for p in pages for i in p["InstanceInformationList"])

    assert ids_for(Filters=[{"Key": "ResourceType", "Values": ["ManagedInstance"]}]) == sorted(ids)
    assert ids_for(Filters=[{"Key": "ResourceType", "Values": ["EC2Instance"]}]) == [ec2_node]
    assert ids_for(Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}]) == sorted(ids[1::2])
    assert ids_for(InstanceInformationFilterList=[{"key": "ActivationIds", "valueSet": [activation]}]) == [ids[0]]
    assert ids_for(Filters=[{"Key": "tag:Team", "Values": ["edge"]}]) == [ids[0]]

    ssm.deregister_managed_instance(InstanceId=ids[1])
    assert ids[1] not in _listed(ssm)
    for gone in (ids[1], "mi-00000000000000000"):
        with pytest.raises(ClientError) as err:
            ssm.deregister_managed_instance(InstanceId=gone)
        assert err.value.response["Error"]["Code"] == "InvalidInstanceId"
    registered = ctl.get(f"/_opsflow/managed_nodes?account_id={ACCOUNT}&region={region}")["nodes"]
    assert sorted(n["instance_id"] for n in registered) == sorted(i for i in ids if i != ids[1])
    for bad in ({"computer_name": "x", "ip_address": "10.0.0.1", "ping_status": "Up"},
                {"computer_name": "no-ip"}, {"instance_id": "mi-123", "computer_name": "x", "ip_address": "1.2.3.4"}):
        status, _ = ctl.call("POST", "/_opsflow/managed_nodes", {"account_id": ACCOUNT, "region": region,
                                                                 "nodes": [bad]})
        assert status == 400, bad
    for mi in ids:
        if mi != ids[1]:
            ssm.deregister_managed_instance(InstanceId=mi)
    assert list(_listed(ssm)) == [ec2_node]


def test_an_instance_launched_from_a_hybrid_machines_image_lists_as_its_mi_node(
        endpoint: str, aws: Any, ctl: Control) -> None:
    region = "eu-west-2"
    c = _regional(endpoint, region)
    ssm, ec2 = c("ssm"), c("ec2")
    ctl.post("/_opsflow/config", {"online_delay_seconds": 20})
    profile = _profile(aws("iam"))
    clone, copied, plain = (_launch(ec2, IamInstanceProfile={"Name": profile}) for _ in range(3))
    mi, mi2 = "mi-0a1b2c3d4e5f60718", "mi-0fedcba9876543210"
    ctl.post("/_opsflow/managed_nodes", {"account_id": ACCOUNT, "region": region, "nodes": [
        {"instance_id": mi, "source_instance": clone, "iam_role": "OnPremRole", "name": "golden-image",
         "registration_date_ms": ctl.now_ms() - 7 * 86_400_000}]})
    ctl.post("/_opsflow/config", {"registered_as": {copied: mi2}})
    ctl.advance(20)
    listed = _listed(ssm)
    assert sorted(listed) == sorted([mi, mi2, plain]), "the clones list as mi- nodes, never as their i- ids"
    inst = ec2.describe_instances(InstanceIds=[clone])["Reservations"][0]["Instances"][0]
    node = listed[mi]
    assert (node["ResourceType"], node["PingStatus"], node["IPAddress"], node["ComputerName"], node["IamRole"],
            node["Name"], node["SourceId"], node["SourceType"]) == (
        "ManagedInstance", "Online", inst["PrivateIpAddress"], inst["PrivateDnsName"], "OnPremRole",
        "golden-image", mi, "AWS::SSM::ManagedInstance")
    assert abs(node["LastPingDateTime"].timestamp() * 1000 - ctl.now_ms()) < 1000
    other = listed[mi2]  # registered_as alone: the original activation is not known, defaults stand for it
    assert (other["IamRole"], other["ResourceType"]) == ("SSMServiceRole", "ManagedInstance")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", other["ActivationId"])
    assert _info(ssm, [clone, copied]) == []

    ec2.stop_instances(InstanceIds=[clone])
    ctl.advance(5)
    assert _info(ssm, [mi])[0]["PingStatus"] == "ConnectionLost"
    ec2.start_instances(InstanceIds=[clone])
    assert _info(ssm, [mi])[0]["PingStatus"] == "ConnectionLost", "until the agent is up again"
    ctl.advance(20)
    assert _info(ssm, [mi])[0]["PingStatus"] == "Online"

    ssm.deregister_managed_instance(InstanceId=mi)
    listed = _listed(ssm)
    assert mi not in listed and clone not in listed, "deregistered: its agent hibernates"
    ssm.deregister_managed_instance(InstanceId=mi2)
    assert sorted(_listed(ssm)) == [plain]


def test_network_checks_list_only_instances_that_can_reach_ssm(endpoint: str, aws: Any, ctl: Control) -> None:
    region = "sa-east-1"
    c = _regional(endpoint, region)
    ssm, ec2 = c("ssm"), c("ec2")
    profile = {"Name": _profile(aws("iam"))}
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    inside = _launch(ec2, SubnetId=private, IamInstanceProfile=profile)
    public = _launch(ec2, IamInstanceProfile=profile)  # the default VPC: a public IP, a route to its gateway
    assert sorted(_listed(ssm)) == sorted([inside, public]), "network_checks is off by default"
    ctl.post("/_opsflow/config", {"network_checks": True})
    assert sorted(_listed(ssm)) == [public], "a private subnet with no route out and no endpoints"

    # what the check reads, as EC2 answers it
    (subnet,) = ec2.describe_subnets(SubnetIds=[private])["Subnets"]
    assert (subnet["VpcId"], subnet["MapPublicIpOnLaunch"], subnet["State"]) == (vpc, False, "available")
    (sg,) = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    inst = ec2.describe_instances(InstanceIds=[inside])["Reservations"][0]["Instances"][0]
    assert inst["SecurityGroups"] == [{"GroupId": sg["GroupId"], "GroupName": "default"}], "the VPC's default group"
    assert sg["IpPermissionsEgress"] == [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                                          "Ipv6Ranges": [], "PrefixListIds": [], "UserIdGroupPairs": []}]
    (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
    assert [a["Main"] for a in main["Associations"]] == [True]
    assert [r["GatewayId"] for r in main["Routes"]] == ["local"]
    default_vpc = ec2.describe_instances(InstanceIds=[public])["Reservations"][0]["Instances"][0]["VpcId"]
    (default_main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [default_vpc]},
                                                         {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    igw = [r["GatewayId"] for r in default_main["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
    assert len(igw) == 1 and igw[0].startswith("igw-"), "the default VPC routes 0.0.0.0/0 to its gateway"
    (gateway,) = ec2.describe_internet_gateways(InternetGatewayIds=igw)["InternetGateways"]
    assert gateway["Attachments"] == [{"State": "available", "VpcId": default_vpc}]

    for service in ("ssm", "ssmmessages"):
        ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{region}.{service}",
                                VpcEndpointType="Interface", SubnetIds=[private])
    assert inside not in _listed(ssm), "ec2messages is missing"
    ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{region}.ec2messages",
                            VpcEndpointType="Interface", SubnetIds=[private])
    assert inside in _listed(ssm), "the three interface endpoints"
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
    assert sorted((e["ServiceName"], e["VpcEndpointType"], e["State"], e["VpcId"]) for e in endpoints) == [
        (f"com.amazonaws.{region}.{s}", "Interface", "available", vpc) for s in ("ec2messages", "ssm", "ssmmessages")]
    assert all(e["Groups"] == [{"GroupId": sg["GroupId"], "GroupName": "default"}] for e in endpoints)

    ec2.revoke_security_group_egress(GroupId=sg["GroupId"], IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert inside not in _listed(ssm), "no egress to TCP 443"
    ec2.authorize_security_group_egress(GroupId=sg["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "192.0.2.0/24"}]}])
    assert inside not in _listed(ssm), "443 only to an unrelated range"
    ec2.authorize_security_group_egress(GroupId=sg["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert inside in _listed(ssm)

    # another VPC: a route to an internet gateway needs a public IP; a NAT gateway does not
    vpc2 = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    sub2 = ec2.create_subnet(VpcId=vpc2, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    igw2 = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw2, VpcId=vpc2)
    table = ec2.create_route_table(VpcId=vpc2)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw2)
    ec2.associate_route_table(RouteTableId=table, SubnetId=sub2)
    no_ip = _launch(ec2, SubnetId=sub2, IamInstanceProfile=profile)
    with_ip = _launch(ec2, IamInstanceProfile=profile, NetworkInterfaces=[
        {"DeviceIndex": 0, "SubnetId": sub2, "AssociatePublicIpAddress": True}])
    listed = _listed(ssm)
    assert with_ip in listed and no_ip not in listed
    nat = ec2.create_nat_gateway(SubnetId=sub2, AllocationId=ec2.allocate_address(Domain="vpc")["AllocationId"])[
        "NatGateway"]["NatGatewayId"]
    ec2.replace_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    assert no_ip in _listed(ssm), "through the NAT gateway"
    ctl.post("/_opsflow/config", {"network_checks": False})
    assert {inside, public, no_ip, with_ip} <= set(_listed(ssm))


# --------------------------------------------------------------------------- SSM commands


def _send(ssm: Any, ids: list[str], commands: list[str], **kw: Any) -> str:
    params = {"commands": commands, **kw.pop("extra_params", {})}
    cmd = ssm.send_command(InstanceIds=ids, DocumentName=kw.pop("document", "AWS-RunShellScript"),
                           Parameters=params, **kw)["Command"]
    assert cmd["Status"] == "Pending"
    return cmd["CommandId"]


def _inv(ssm: Any, cid: str, iid: str) -> dict[str, Any]:
    return ssm.get_command_invocation(CommandId=cid, InstanceId=iid)


def test_command_goes_pending_in_progress_success(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/commands", {"document": "AWS-RunShellScript", "match": "growpart",
                                    "pending_seconds": 2, "duration_seconds": 30,
                                    "stdout": "CHANGED: partition=1", "stderr": ""})
    cid = _send(ssm, [iid], ["growpart /dev/nvme0n1 1"])
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["ResponseCode"], inv["ExecutionStartDateTime"]) == ("Pending", -1, "")
    ctl.advance(2)
    inv = _inv(ssm, cid, iid)
    assert inv["Status"] == "InProgress" and inv["StatusDetails"] == "InProgress"
    assert inv["ExecutionEndDateTime"] == "" and inv["StandardOutputContent"] == ""
    start = _iso(inv["ExecutionStartDateTime"])
    ctl.advance(29)
    assert _inv(ssm, cid, iid)["Status"] == "InProgress"
    ctl.advance(1)
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["StatusDetails"], inv["ResponseCode"]) == ("Success", "Success", 0)
    assert inv["StandardOutputContent"] == "CHANGED: partition=1"
    assert _iso(inv["ExecutionStartDateTime"]) == start
    assert (_iso(inv["ExecutionEndDateTime"]) - start).total_seconds() == pytest.approx(30, abs=0.01)
    (listed,) = ssm.list_commands(CommandId=cid)["Commands"]
    assert listed["Status"] == "Success" and listed["CompletedCount"] == 1


def test_default_command_behaviour_is_immediate_success(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (iid,) = _managed(aws, ctl)
    cid = _send(ssm, [iid], ["echo hi"])
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["ResponseCode"], inv["StandardOutputContent"]) == ("Success", 0, "")


def test_non_zero_exit_fails_with_that_response_code(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/commands", {"match": "resize2fs", "duration_seconds": 5, "exit_code": 3,
                                    "stdout": "partial", "stderr": "resize2fs: Bad magic number"})
    ctl.post("/_opsflow/commands", {"match": "uptime", "stdout": "up 3 days"})
    failing = _send(ssm, [iid], ["resize2fs /dev/nvme0n1p1"])
    other = _send(ssm, [iid], ["uptime"])
    ctl.advance(5)
    inv = _inv(ssm, failing, iid)
    assert (inv["Status"], inv["StatusDetails"], inv["ResponseCode"]) == ("Failed", "Failed", 3)
    assert inv["StandardErrorContent"] == "resize2fs: Bad magic number"
    assert ssm.list_commands(CommandId=failing)["Commands"][0]["Status"] == "Failed"
    assert _inv(ssm, other, iid)["StandardOutputContent"] == "up 3 days"


def test_rule_count_limits_how_many_invocations_it_applies_to(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/commands", {"match": "flaky", "exit_code": 1, "count": 1})
    first = _send(ssm, [iid], ["flaky"])
    second = _send(ssm, [iid], ["flaky"])
    assert _inv(ssm, first, iid)["Status"] == "Failed"
    assert _inv(ssm, second, iid)["Status"] == "Success"


def test_execution_timeout_and_timeout_seconds_give_timed_out(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/commands", {"match": "sleep", "duration_seconds": 600})
    by_param = _send(ssm, [iid], ["sleep 600"], extra_params={"executionTimeout": ["10"]})
    by_timeout = _send(ssm, [iid], ["sleep 600"], TimeoutSeconds=30)
    ctl.advance(9)
    assert _inv(ssm, by_param, iid)["Status"] == "InProgress"
    ctl.advance(1)
    inv = _inv(ssm, by_param, iid)
    assert (inv["Status"], inv["ResponseCode"]) == ("TimedOut", -1)
    assert _inv(ssm, by_timeout, iid)["Status"] == "InProgress"
    ctl.advance(20)
    inv = _inv(ssm, by_timeout, iid)
    assert (inv["Status"], inv["ResponseCode"]) == ("TimedOut", -1)
    assert ssm.list_commands(CommandId=by_timeout)["Commands"][0]["Status"] == "TimedOut"


def test_cancel_command(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/commands", {"match": "long", "duration_seconds": 100})
    cid = _send(ssm, [iid], ["long job"])
    ctl.advance(10)
    ssm.cancel_command(CommandId=cid)
    ctl.advance(200)
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["ResponseCode"]) == ("Cancelled", -1)
    assert ssm.list_commands(CommandId=cid)["Commands"][0]["Status"] == "Cancelled"
    with pytest.raises(ClientError) as err:
        ssm.cancel_command(CommandId=str(uuid.uuid4()))
    assert err.value.response["Error"]["Code"] == "InvalidCommandId"


def test_invocation_does_not_exist_window(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/config", {"invocation_does_not_exist_seconds": 3})
    cid = _send(ssm, [iid], ["echo"])
    with pytest.raises(ClientError) as err:
        _inv(ssm, cid, iid)
    assert err.value.response["Error"]["Code"] == "InvocationDoesNotExist"
    assert ssm.list_command_invocations(CommandId=cid)["CommandInvocations"] == []
    ctl.advance(3)
    assert _inv(ssm, cid, iid)["Status"] == "Success"
    # an instance the command was never sent to never has an invocation
    with pytest.raises(ClientError) as err:
        _inv(ssm, cid, "i-00000000000000000")
    assert err.value.response["Error"]["Code"] == "InvocationDoesNotExist"


def test_list_command_invocations_follows_progression(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    a, b = _managed(aws, ctl, n=2)
    ctl.post("/_opsflow/commands", {"match": "deploy", "duration_seconds": 10, "stdout": "ok", "stderr": "warn"})
    ctl.post("/_opsflow/commands", {"match": "deploy", "instance_id": b, "duration_seconds": 20, "exit_code": 2})
    cid = _send(ssm, [a, b], ["deploy"])
    ctl.advance(1)
    invs = ssm.list_command_invocations(CommandId=cid)["CommandInvocations"]
    assert {i["InstanceId"]: i["Status"] for i in invs} == {a: "InProgress", b: "InProgress"}
    assert all(i["CommandPlugins"] == [] for i in invs)
    assert ssm.list_commands(CommandId=cid)["Commands"][0]["Status"] == "InProgress"
    ctl.advance(9)
    invs = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"]
    by_id = {i["InstanceId"]: i for i in invs}
    assert (by_id[a]["Status"], by_id[b]["Status"]) == ("Success", "InProgress")
    (plugin,) = by_id[a]["CommandPlugins"]
    assert plugin["Name"] == "aws:runShellScript" and plugin["ResponseCode"] == 0
    assert plugin["Output"].startswith("ok") and "warn" in plugin["Output"]
    assert plugin["ResponseStartDateTime"].tzinfo is not None
    (listed,) = ssm.list_commands(CommandId=cid)["Commands"]
    assert (listed["Status"], listed["CompletedCount"]) == ("InProgress", 1)
    ctl.advance(10)
    only_b = ssm.list_command_invocations(CommandId=cid, InstanceId=b, Details=True)["CommandInvocations"]
    assert [(i["Status"], i["CommandPlugins"][0]["ResponseCode"]) for i in only_b] == [("Failed", 2)]
    (listed,) = ssm.list_commands(CommandId=cid)["Commands"]
    assert (listed["Status"], listed["CompletedCount"], listed["ErrorCount"]) == ("Failed", 2, 1)
    page = ssm.list_command_invocations(CommandId=cid, MaxResults=1)
    assert len(page["CommandInvocations"]) == 1 and page["NextToken"]
    rest = ssm.list_command_invocations(CommandId=cid, MaxResults=1, NextToken=page["NextToken"])
    assert len(rest["CommandInvocations"]) == 1 and "NextToken" not in rest


def test_output_truncation_and_s3_output_layout(aws: Any, ctl: Control) -> None:
    ssm, s3 = aws("ssm"), aws("s3")
    (iid,) = _managed(aws, ctl)
    bucket = f"ssm-out-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    big = "".join(f"{i:07d}\n" for i in range(4000))  # 32000 chars
    ctl.post("/_opsflow/commands", {"match": "dump", "duration_seconds": 1, "stdout": big, "stderr": "e"})
    cid = _send(ssm, [iid], ["dump"], OutputS3BucketName=bucket, OutputS3KeyPrefix="runs")
    ctl.advance(1)
    inv = _inv(ssm, cid, iid)
    assert inv["StandardOutputContent"] == big[:24000]
    details = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"][0]
    assert len(details["CommandPlugins"][0]["Output"]) == 2500
    base = f"runs/{cid}/{iid}/awsrunShellScript/0.awsrunShellScript"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"{base}/stderr", f"{base}/stdout"]
    assert s3.get_object(Bucket=bucket, Key=f"{base}/stdout")["Body"].read().decode() == big
    assert inv["StandardOutputUrl"].endswith(f"/{bucket}/{base}/stdout")


def test_undeliverable_command_fails_as_ssm_reports_it(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    a, b = _managed(aws, ctl, n=2)
    ctl.post("/_opsflow/commands", {"match": "bootstrap", "instance_id": a, "undeliverable": True,
                                    "pending_seconds": 30, "stdout": "never shown"})
    cid = _send(ssm, [a, b], ["bootstrap"])
    ctl.advance(29)
    assert _inv(ssm, cid, a)["Status"] == "Pending"
    ctl.advance(1)
    inv = _inv(ssm, cid, a)
    assert (inv["Status"], inv["StatusDetails"], inv["ResponseCode"]) == ("Failed", "Undeliverable", -1)
    assert (inv["ExecutionStartDateTime"], inv["StandardOutputContent"], inv["StandardErrorContent"]) == ("", "", "")
    rows = {i["InstanceId"]: i for i in ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"]}
    assert (rows[a]["Status"], rows[a]["StatusDetails"]) == ("Failed", "Undeliverable")
    assert rows[a]["CommandPlugins"][0]["StatusDetails"] == "Undeliverable"
    assert (rows[b]["Status"], rows[b]["StatusDetails"]) == ("Success", "Success")
    # "if a command has five invocations, four of which return the status Undeliverable and one
    # of which returns the status Success, then the parent command's status is Success"
    (cmd,) = ssm.list_commands(CommandId=cid)["Commands"]
    assert (cmd["Status"], cmd["CompletedCount"], cmd["ErrorCount"]) == ("Success", 2, 0)
    # "if all invocations in a command have the status Undeliverable, then the command status
    # returned is Failed"
    only = _send(ssm, [a], ["bootstrap again"])
    ctl.advance(30)
    (cmd,) = ssm.list_commands(CommandId=only)["Commands"]
    assert (cmd["Status"], cmd["CompletedCount"], cmd["ErrorCount"]) == ("Failed", 1, 0)
    assert ctl.call("POST", "/_opsflow/commands", {"undeliverable": "yes"})[0] == 400


def _expires_after(ssm: Any, cid: str) -> dt.datetime:
    return ssm.list_commands(CommandId=cid)["Commands"][0]["ExpiresAfter"]


def test_invocation_on_an_instance_terminated_mid_run_stays_in_progress_until_the_command_expires(
        aws: Any, ctl: Control) -> None:
    ssm, ec2 = aws("ssm"), aws("ec2")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/commands", {"match": "bootstrap", "duration_seconds": 600, "stdout": "half done"})
    ctl.post("/_opsflow/commands", {"match": "quick", "duration_seconds": 5})
    sent_ms = ctl.now_ms()
    cid = _send(ssm, [iid], ["bootstrap"], TimeoutSeconds=120, extra_params={"executionTimeout": ["300"]})
    quick = _send(ssm, [iid], ["quick"])
    # ExpiresAfter = RequestedDateTime + delivery timeout + execution timeout
    assert _expires_after(ssm, cid).timestamp() * 1000 == pytest.approx(sent_ms + 420_000, abs=1)
    ctl.post("/_opsflow/schedule", {"instance_id": iid, "action": "terminate", "after_seconds": 20})
    ctl.advance(30)
    assert ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"
    assert _inv(ssm, quick, iid)["Status"] == "Success", "it had finished before the instance went"
    inv = _inv(ssm, cid, iid)
    assert inv["Status"] == "InProgress" and inv["ExecutionStartDateTime"]
    ctl.advance(389)  # 419 s after the send: still InProgress, past its own 600 s never reached
    assert _inv(ssm, cid, iid)["Status"] == "InProgress"
    ctl.advance(1)
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["StatusDetails"], inv["ResponseCode"]) == ("TimedOut", "DeliveryTimedOut", -1)
    assert inv["StandardOutputContent"] == ""
    assert _iso(inv["ExecutionEndDateTime"]).timestamp() * 1000 == pytest.approx(sent_ms + 420_000, abs=1)
    (cmd,) = ssm.list_commands(CommandId=cid)["Commands"]
    assert (cmd["Status"], cmd["CompletedCount"], cmd["ErrorCount"], cmd["DeliveryTimedOutCount"]) == (
        "TimedOut", 1, 0, 1)
    (row,) = ssm.list_command_invocations(CommandId=cid)["CommandInvocations"]
    assert (row["Status"], row["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")


def test_invocation_on_a_stopped_instance_never_starts_and_can_be_cancelled(aws: Any, ctl: Control) -> None:
    ssm, ec2 = aws("ssm"), aws("ec2")
    a, b = _managed(aws, ctl, n=2)
    ctl.post("/_opsflow/commands", {"match": "setup", "pending_seconds": 60, "duration_seconds": 10})
    sent_ms = ctl.now_ms()
    waiting = _send(ssm, [a], ["setup"])  # no TimeoutSeconds: 3600 s delivery + 3600 s execution
    cancelled = _send(ssm, [b], ["setup"])
    assert _expires_after(ssm, waiting).timestamp() * 1000 == pytest.approx(sent_ms + 7_200_000, abs=1)
    ctl.advance(10)
    ec2.stop_instances(InstanceIds=[a, b])
    ctl.advance(3600)
    ec2.start_instances(InstanceIds=[a, b])  # the agent that comes back does not pick it up again
    inv = _inv(ssm, waiting, a)
    assert (inv["Status"], inv["ExecutionStartDateTime"]) == ("Pending", "")
    ssm.cancel_command(CommandId=cancelled)
    assert _inv(ssm, cancelled, b)["Status"] == "Cancelled"
    ctl.advance(3590)
    inv = _inv(ssm, waiting, a)
    assert (inv["Status"], inv["StatusDetails"], inv["ExecutionStartDateTime"]) == ("TimedOut", "DeliveryTimedOut", "")


# --------------------------------------------------------------------------- EBS volume modifications


def test_volume_modification_progression(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"volume_modifying_seconds": 10, "volume_optimizing_seconds": 50})
    vol = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    mod = ec2.modify_volume(VolumeId=vol, Size=20)["VolumeModification"]
    assert (mod["ModificationState"], mod["OriginalSize"], mod["TargetSize"]) == ("modifying", 8, 20)
    assert "EndTime" not in mod
    assert ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Size"] == 20  # as AWS: size changes at start

    def current() -> dict[str, Any]:
        return ec2.describe_volumes_modifications(VolumeIds=[vol])["VolumesModifications"][0]

    ctl.advance(9)
    assert current()["ModificationState"] == "modifying"
    ctl.advance(1)
    first = current()
    assert first["ModificationState"] == "optimizing"
    ctl.advance(25)
    second = current()
    assert second["ModificationState"] == "optimizing"
    assert 0 < first["Progress"] < second["Progress"] < 100
    ctl.advance(25)
    done = current()
    assert (done["ModificationState"], done["Progress"]) == ("completed", 100)
    assert (done["EndTime"] - done["StartTime"]).total_seconds() == pytest.approx(60)
    filtered = ec2.describe_volumes_modifications(
        VolumeIds=[vol], Filters=[{"Name": "modification-state", "Values": ["completed"]}])["VolumesModifications"]
    assert [m["ModificationState"] for m in filtered] == ["completed"]


def test_volume_modification_errors_and_toggles(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"volume_modifying_seconds": 5, "volume_optimizing_seconds": 5})
    vol = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    ec2.modify_volume(VolumeId=vol, Size=10)
    with pytest.raises(ClientError) as err:
        ec2.modify_volume(VolumeId=vol, Size=12)
    assert err.value.response["Error"]["Code"] == "IncorrectModificationState"
    ctl.advance(7)  # optimizing: still refused
    with pytest.raises(ClientError) as err:
        ec2.modify_volume(VolumeId=vol, Size=12)
    assert err.value.response["Error"]["Code"] == "IncorrectModificationState"
    ctl.advance(3)  # completed: now the 6-hour rate limit applies
    with pytest.raises(ClientError) as err:
        ec2.modify_volume(VolumeId=vol, Size=12)
    assert err.value.response["Error"]["Code"] == "VolumeModificationRateExceeded"
    ctl.advance(6 * 3600)
    assert ec2.modify_volume(VolumeId=vol, Size=12)["VolumeModification"]["ModificationState"] == "modifying"

    ctl.post("/_opsflow/config", {"volume_modification_in_progress_error": False,
                                  "volume_modification_rate_limit": False})
    assert ec2.modify_volume(VolumeId=vol, Size=14)["VolumeModification"]["TargetSize"] == 14
    ctl.advance(10)
    assert ec2.modify_volume(VolumeId=vol, Size=16)["VolumeModification"]["TargetSize"] == 16
    with pytest.raises(ClientError) as err:
        ec2.modify_volume(VolumeId=vol, Size=4)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"


# --------------------------------------------------------------------------- EC2 stop / terminate on the clock


def _state(ec2: Any, iid: str) -> tuple[int, str]:
    st = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]
    return st["Code"], st["Name"]


def test_scheduled_termination_mid_flow(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    (iid,) = _managed(aws, ctl)
    sched = ctl.post("/_opsflow/schedule", {"instance_id": iid, "action": "terminate", "after_seconds": 60,
                                            "transition_seconds": 20})
    assert sched["at_ms"] == ctl.now_ms() + 60_000 and sched["applied_ms"] is None
    ctl.advance(59)
    assert _state(ec2, iid) == (16, "running")
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"
    ctl.advance(1)
    assert _state(ec2, iid) == (32, "shutting-down")
    assert ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"] == [], "only running ones by default"
    (status,) = ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)["InstanceStatuses"]
    assert status["InstanceState"] == {"Code": 32, "Name": "shutting-down"}
    assert status["InstanceStatus"]["Status"] == "not-applicable"
    assert _info(ssm, [iid]) == [], "no longer a managed instance"
    stopped = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["shutting-down"]}])
    assert iid in [i["InstanceId"] for r in stopped["Reservations"] for i in r["Instances"]]
    ctl.advance(20)
    assert _state(ec2, iid) == (48, "terminated")
    (applied,) = ctl.get("/_opsflow/schedule")["schedule"]
    assert applied["result"] == "applied" and applied["applied_ms"] is not None


def test_a_schedule_applies_as_of_its_time_even_when_the_clock_jumps_past_it(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"instance_stopping_seconds": 30})
    a, b = _managed(aws, ctl, n=2)
    at = ctl.now_ms() + 10_000
    ctl.post("/_opsflow/schedule", {"schedule": [{"instance_id": a, "action": "stop", "at_ms": at},
                                                 {"instance_id": b, "action": "stop", "at_ms": at + 40_000}]})
    ctl.advance(45)  # a: stopping from +10 s to +40 s, so stopped by now; b: not yet due
    assert (_state(ec2, a), _state(ec2, b)) == ((80, "stopped"), (16, "running"))
    assert _info(aws("ssm"), [a])[0]["PingStatus"] == "ConnectionLost"
    ctl.advance(5)
    assert _state(ec2, b) == (64, "stopping")
    # a time already past applies at once; stopping a stopped instance is moot
    again = ctl.post("/_opsflow/schedule", {"instance_id": a, "action": "stop", "at_ms": at})
    assert again["result"].startswith("skipped")
    ec2.start_instances(InstanceIds=[a])
    assert _state(ec2, a) == (16, "running")


def test_stop_and_terminate_calls_take_the_configured_transition(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"instance_stopping_seconds": 15, "instance_shutting_down_seconds": 5})
    a, b = _instances(aws, n=2)
    out = ec2.stop_instances(InstanceIds=[a])["StoppingInstances"][0]
    assert out["CurrentState"]["Name"] == "stopping"
    ec2.terminate_instances(InstanceIds=[b])
    assert (_state(ec2, a), _state(ec2, b)) == ((64, "stopping"), (32, "shutting-down"))
    ec2.stop_instances(InstanceIds=[a])  # again: AWS keeps it stopping, it does not jump to stopped
    assert _state(ec2, a) == (64, "stopping")
    ctl.advance(5)
    assert (_state(ec2, a), _state(ec2, b)) == ((64, "stopping"), (48, "terminated"))
    ctl.advance(10)
    assert _state(ec2, a) == (80, "stopped")


def _checks(ec2: Any, iid: str) -> tuple[str, str, str]:
    (st,) = ec2.describe_instance_status(InstanceIds=[iid], IncludeAllInstances=True)["InstanceStatuses"]
    return st["InstanceState"]["Name"], st["SystemStatus"]["Status"], st["InstanceStatus"]["Status"]


def test_a_started_instance_is_pending_then_running_with_checks_initializing_then_ok(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    ctl.post("/_opsflow/config", {"instance_pending_seconds": 20, "status_checks_seconds": 30,
                                  "online_delay_seconds": 10})
    (iid,) = _managed(aws, ctl)
    ctl.advance(10)
    ec2.stop_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as e:
        ec2.start_instances(InstanceIds=["i-0000000000000dead"])
    out = ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert out["CurrentState"]["Name"] == "pending" and out["PreviousState"]["Name"] == "stopped"
    assert _checks(ec2, iid) == ("pending", "not-applicable", "not-applicable")
    assert ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"] == [], "only running ones by default"
    assert _info(ssm, [iid])[0]["PingStatus"] == "ConnectionLost"
    ctl.advance(20)
    assert _state(ec2, iid) == (16, "running")
    assert _checks(ec2, iid) == ("running", "initializing", "initializing")
    assert _info(ssm, [iid])[0]["PingStatus"] == "ConnectionLost", "the agent has not pinged since the boot"
    ctl.advance(10)
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"
    ctl.advance(20)
    assert _checks(ec2, iid) == ("running", "ok", "ok")
    # a second start changes nothing, a stopping instance cannot be started
    again = ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert again["PreviousState"]["Name"] == "running"
    assert _checks(ec2, iid) == ("running", "ok", "ok")
    ctl.post("/_opsflow/config", {"instance_stopping_seconds": 15})
    ec2.stop_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as e:
        ec2.start_instances(InstanceIds=[iid])
    assert e.value.response["Error"]["Code"] == "IncorrectInstanceState"
    assert "not in a state from which it can be started" in e.value.response["Error"]["Message"]


def test_schedule_rejects_bad_input(aws: Any, ctl: Control) -> None:
    (iid,) = _instances(aws)
    assert ctl.call("POST", "/_opsflow/schedule", {"instance_id": "i-0000000000000dead", "action": "stop",
                                                   "after_seconds": 1})[0] == 400
    assert ctl.call("POST", "/_opsflow/schedule", {"instance_id": iid, "action": "reboot", "after_seconds": 1})[0] == 400
    assert ctl.call("POST", "/_opsflow/schedule", {"instance_id": iid, "action": "stop"})[0] == 400
    assert ctl.call("POST", "/_opsflow/schedule", {"instance_id": iid, "action": "stop", "after_seconds": 1,
                                                   "at_ms": 1})[0] == 400
    assert ctl.call("POST", "/_opsflow/schedule", {"instance_id": iid, "action": "stop", "in": 1})[0] == 400
    ctl.post("/_opsflow/schedule", {"instance_id": iid, "action": "terminate", "after_seconds": 5})
    ctl.call("DELETE", "/_opsflow/schedule")
    ctl.advance(10)
    assert _state(aws("ec2"), iid) == (16, "running"), "a cleared schedule never applies"


# --------------------------------------------------------------------------- DynamoDB


def _table(ddb: Any) -> str:
    name = f"opsflow-state-{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    assert ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
    return name


def test_dynamodb_conditional_put_succeeds_once(aws: Any, ctl: Control) -> None:
    ddb = aws("dynamodb")
    table = _table(ddb)
    item = {"pk": {"S": "request#r-1"}, "answered": {"BOOL": True}}
    ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "request#r-1"}}, ConsistentRead=True)["Item"]
    assert got == item
    assert ctl.get("/_opsflow/calls")["calls"]["dynamodb:PutItem"] == 2


def test_dynamodb_update_delete_and_transactions_honour_conditions(aws: Any, ctl: Control) -> None:
    ddb = aws("dynamodb")
    table = _table(ddb)
    key = {"pk": {"S": "instance#i-1"}}
    ddb.put_item(TableName=table, Item={**key, "profile": {"S": "before"}, "version": {"N": "1"}})
    out = ddb.update_item(TableName=table, Key=key, UpdateExpression="SET profile = :p, version = version + :one",
                          ConditionExpression="version = :v",
                          ExpressionAttributeValues={":p": {"S": "after"}, ":one": {"N": "1"}, ":v": {"N": "1"}},
                          ReturnValues="ALL_NEW")
    assert out["Attributes"]["version"] == {"N": "2"} and out["Attributes"]["profile"] == {"S": "after"}
    with pytest.raises(ClientError) as err:  # a stale writer loses
        ddb.update_item(TableName=table, Key=key, UpdateExpression="SET profile = :p",
                        ConditionExpression="version = :v",
                        ExpressionAttributeValues={":p": {"S": "stale"}, ":v": {"N": "1"}})
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"

    # all or nothing: the condition on the second item cancels the write of the first
    other = {"pk": {"S": "lock#i-1"}}
    ddb.put_item(TableName=table, Item=other)
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "request#r-2"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"ConditionCheck": {"TableName": table, "Key": other, "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "ConditionalCheckFailed" in err.value.response["Error"]["Message"]
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "request#r-2"}})
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": {"pk": {"S": "request#r-2"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Delete": {"TableName": table, "Key": other, "ConditionExpression": "attribute_exists(pk)"}},
    ])
    assert "Item" in ddb.get_item(TableName=table, Key={"pk": {"S": "request#r-2"}})

    with pytest.raises(ClientError) as err:
        ddb.delete_item(TableName=table, Key=other, ConditionExpression="attribute_exists(pk)")
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    ddb.delete_item(TableName=table, Key=key, ConditionExpression="profile = :p",
                    ExpressionAttributeValues={":p": {"S": "after"}})
    assert "Item" not in ddb.get_item(TableName=table, Key=key)


def test_dynamodb_faults_use_its_json_wire_format(aws: Any, ctl: Control) -> None:
    ddb = aws("dynamodb")
    table = _table(ddb)
    ctl.post("/_opsflow/faults", {"operation": "dynamodb:PutItem", "code": "ProvisionedThroughputExceededException",
                                  "message": "Rate of requests exceeds the allowed throughput."})
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=table, Item={"pk": {"S": "x"}})
    assert err.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    ddb.put_item(TableName=table, Item={"pk": {"S": "x"}})


def test_volume_modification_can_end_failed_and_leave_the_size_as_it_was(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"volume_modifying_seconds": 10, "volume_optimizing_seconds": 10})
    vol = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    other = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    rule = ctl.post("/_opsflow/volume_failures", {"volume_id": vol, "fail_after_seconds": 30,
                                                  "status_message": "transient fault"})
    assert rule["remaining"] == 1

    mod = ec2.modify_volume(VolumeId=vol, Size=20)["VolumeModification"]
    assert (mod["ModificationState"], mod["OriginalSize"], mod["TargetSize"]) == ("modifying", 8, 20)
    assert "StatusMessage" not in mod
    assert ec2.modify_volume(VolumeId=other, Size=20)["VolumeModification"]["TargetSize"] == 20  # not this one

    def current(volume: str) -> dict[str, Any]:
        (m,) = ec2.describe_volumes_modifications(VolumeIds=[volume])["VolumesModifications"]
        return m

    ctl.advance(29)
    assert current(vol)["ModificationState"] == "modifying", "no optimizing on the way to failed"
    with pytest.raises(ClientError) as err:
        ec2.modify_volume(VolumeId=vol, Size=30)
    assert err.value.response["Error"]["Code"] == "IncorrectModificationState"
    ctl.advance(1)
    failed = current(vol)
    assert failed["ModificationState"] == "failed" and failed["StatusMessage"] == "transient fault"
    assert (failed["OriginalSize"], failed["TargetSize"]) == (8, 20), "the request's sizes stay on record"
    assert (failed["EndTime"] - failed["StartTime"]).total_seconds() == pytest.approx(30)
    assert ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Size"] == 8, "the volume keeps its size"
    assert current(other)["ModificationState"] == "completed"
    by_state = ec2.describe_volumes_modifications(
        VolumeIds=[vol, other], Filters=[{"Name": "modification-state", "Values": ["failed"]}])["VolumesModifications"]
    assert [m["VolumeId"] for m in by_state] == [vol]

    # AWS: "If this occurs, retry the volume modification" - no 6-hour wait after a failure,
    # and DescribeVolumesModifications then shows only the most recent request.
    retry = ec2.modify_volume(VolumeId=vol, Size=20)["VolumeModification"]
    assert (retry["ModificationState"], retry["OriginalSize"]) == ("modifying", 8)
    ctl.advance(20)
    done = current(vol)
    assert (done["ModificationState"], done["TargetSize"]) == ("completed", 20) and "StatusMessage" not in done
    assert ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Size"] == 20
    assert ctl.get("/_opsflow/volume_failures")["volume_failures"] == [], "count 1: used up"


def test_volume_failure_for_any_volume_defaults_to_the_modifying_time(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"volume_modifying_seconds": 5, "volume_modification_rate_limit": False})
    ctl.post("/_opsflow/volume_failures", {"count": 2})
    vols = [ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"] for _ in range(3)]
    for v in vols:
        ec2.modify_volume(VolumeId=v, Size=9)
    ctl.advance(5)
    mods = ec2.describe_volumes_modifications(VolumeIds=vols)["VolumesModifications"]
    states = {m["VolumeId"]: m["ModificationState"] for m in mods}
    assert [states[v] for v in vols] == ["failed", "failed", "completed"]
    assert all(m["StatusMessage"] for m in mods if m["ModificationState"] == "failed")
    assert ctl.call("POST", "/_opsflow/volume_failures", {"count": 0})[0] == 400
    assert ctl.call("POST", "/_opsflow/volume_failures", {"fail_after": 3})[0] == 400
    ctl.post("/_opsflow/volume_failures", {"volume_failures": [{"volume_id": vols[0]}, {"volume_id": vols[1]}]})
    assert len(ctl.get("/_opsflow/volume_failures")["volume_failures"]) == 2
    ctl.call("DELETE", "/_opsflow/volume_failures")
    ec2.modify_volume(VolumeId=vols[0], Size=10)
    ctl.advance(5)
    assert ec2.describe_volumes_modifications(VolumeIds=[vols[0]])["VolumesModifications"][0][
        "ModificationState"] == "completed"


# --------------------------------------------------------------------------- faults


def test_fault_injection_per_protocol(aws: Any, ctl: Control) -> None:
    ec2, iam, ssm = aws("ec2"), aws("iam"), aws("ssm")
    (iid,) = _instances(aws)
    profile = _profile(iam)
    msg = ("Value (my-profile) for parameter iamInstanceProfile.name is invalid. "
           "Invalid IAM Instance Profile name")
    ctl.post("/_opsflow/faults", {"operation": "ec2:AssociateIamInstanceProfile", "count": 2,
                                  "code": "InvalidParameterValue", "message": msg, "http_status": 400})
    ctl.post("/_opsflow/faults", {"faults": [
        {"operation": "ec2:ModifyVolume", "code": "RequestLimitExceeded", "message": "Request limit exceeded.",
         "http_status": 503},
        {"operation": "iam:GetInstanceProfile", "code": "Throttling", "message": "Rate exceeded"},
        {"operation": "ssm:SendCommand", "code": "ThrottlingException", "message": "Rate exceeded"},
    ]})
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": profile}, InstanceId=iid)
        assert err.value.response["Error"] == {"Code": "InvalidParameterValue", "Message": msg}
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": profile}, InstanceId=iid)  # third works

    vol = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    with pytest.raises(ClientError) as err:
        ec2.modify_volume(VolumeId=vol, Size=9)
    assert err.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

    with pytest.raises(ClientError) as err:
        iam.get_instance_profile(InstanceProfileName=profile)
    assert err.value.response["Error"]["Code"] == "Throttling"
    assert iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["InstanceProfileName"] == profile

    with pytest.raises(ClientError) as err:
        ssm.send_command(InstanceIds=[iid], DocumentName="AWS-RunShellScript", Parameters={"commands": ["x"]})
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ThrottlingException"
    assert ctl.get("/_opsflow/faults")["faults"] == []
    assert ctl.get("/_opsflow/calls")["calls"]["ec2:AssociateIamInstanceProfile"] == 3


def test_fault_wire_formats(endpoint: str, ctl: Control) -> None:
    """The raw bodies the Rust SDK parses: EC2 <Response><Errors>, IAM <ErrorResponse>, JSON __type."""
    auth = "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{}/aws4_request, SignedHeaders=host, Signature=x"
    ctl.post("/_opsflow/faults", {"faults": [
        {"operation": "ec2:DescribeInstances", "code": "RequestLimitExceeded", "message": "m1", "http_status": 503},
        {"operation": "iam:ListRoles", "code": "Throttling", "message": "m2"},
        {"operation": "ssm:*", "code": "ThrottlingException", "message": "m3"},
    ]})

    def raw(service: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
        req = urllib.request.Request(endpoint + "/", data=body, method="POST",
                                     headers={"Authorization": auth.format(service), **headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    status, _, body = raw("ec2", b"Action=DescribeInstances&Version=2016-11-15", form)
    assert status == 503
    assert "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>m1</Message></Error></Errors>" in body
    assert "<RequestID>" in body
    status, _, body = raw("iam", b"Action=ListRoles&Version=2010-05-08", form)
    assert status == 400 and "<ErrorResponse>" in body and "<Code>Throttling</Code>" in body
    status, headers, body = raw("ssm", b"{}", {"Content-Type": "application/x-amz-json-1.1",
                                               "X-Amz-Target": "AmazonSSM.DescribeInstanceInformation"})
    assert status == 400 and json.loads(body) == {"__type": "ThrottlingException", "message": "m3"}
    assert {k.lower(): v for k, v in headers.items()}["x-amzn-errortype"] == "ThrottlingException"


# --------------------------------------------------------------------------- clock, counts, control API


def test_clock_is_monotonic_and_drives_progress(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    now = ctl.now_ms()
    out = ctl.post("/_opsflow/clock", {"now_ms": now - 60_000})
    assert out["moved"] is False and out["now_ms"] == now, "going backwards is ignored"
    out = ctl.post("/_opsflow/clock", {"now_ms": now + 3_600_000})
    assert out["moved"] is True and out["now_ms"] == now + 3_600_000 and out["mode"] == "manual"
    assert ctl.now_ms() == now + 3_600_000, "a driven clock stands still between calls"
    # progress started now is measured on that clock
    ctl.post("/_opsflow/config", {"volume_modifying_seconds": 100})
    vol = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a")["VolumeId"]
    mod = ec2.modify_volume(VolumeId=vol, Size=9)["VolumeModification"]
    assert abs(mod["StartTime"].timestamp() * 1000 - (now + 3_600_000)) < 1000
    ctl.post("/_opsflow/clock", {"advance_ms": 100_000})
    assert ec2.describe_volumes_modifications(VolumeIds=[vol])["VolumesModifications"][0][
        "ModificationState"] == "completed"


def test_time_scale_speeds_up_real_time(ctl: Control) -> None:
    import time

    ctl.post("/_opsflow/clock", {"advance_ms": 0, "running": True})
    ctl.post("/_opsflow/config", {"time_scale": 1000})
    before = ctl.now_ms()
    time.sleep(0.05)
    elapsed = ctl.now_ms() - before
    assert elapsed >= 40_000, f"at 1000x, 50 ms real should be >= 40 s virtual, got {elapsed} ms"
    assert ctl.get("/_opsflow/clock")["mode"] == "running"


def test_call_counts_and_reset(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    assert ctl.get("/_opsflow/calls") == {"calls": {}, "total": 0}
    ec2.describe_volumes()
    ec2.describe_volumes()
    ssm.describe_instance_information()
    ctl.get("/_opsflow/health")  # control calls are not AWS calls
    calls = ctl.get("/_opsflow/calls")
    assert calls["calls"] == {"ec2:DescribeVolumes": 2, "ssm:DescribeInstanceInformation": 1}
    assert calls["total"] == 3

    ctl.post("/_opsflow/config", {"online_delay_seconds": 5})
    ctl.post("/_opsflow/commands", {"match": "x", "exit_code": 1})
    ctl.post("/_opsflow/faults", {"operation": "ec2:DescribeVolumes", "code": "X"})
    ctl.post("/_opsflow/volume_failures", {})
    ctl.post("/_opsflow/snapshot_failures", {})
    ctl.post("/_opsflow/replace_root_failures", {})
    (iid,) = _instances(aws)
    ctl.post("/_opsflow/schedule", {"instance_id": iid, "action": "stop", "after_seconds": 1})
    ctl.post("/_opsflow/reset", {})
    assert ctl.get("/_opsflow/volume_failures")["volume_failures"] == []
    assert ctl.get("/_opsflow/snapshot_failures")["snapshot_failures"] == []
    assert ctl.get("/_opsflow/replace_root_failures")["replace_root_failures"] == []
    assert ctl.get("/_opsflow/schedule")["schedule"] == []
    assert ctl.get("/_opsflow/calls")["total"] == 0
    assert ctl.get("/_opsflow/config")["online_delay_seconds"] == 0
    assert ctl.get("/_opsflow/commands")["rules"] == []
    assert ctl.get("/_opsflow/faults")["faults"] == []
    ec2.describe_volumes()  # the fault is gone


def test_control_api_rejects_bad_input(ctl: Control) -> None:
    assert ctl.call("POST", "/_opsflow/config", {"online_delay": 5})[0] == 400
    assert ctl.call("POST", "/_opsflow/config", {"online_delay_seconds": "soon"})[0] == 400
    assert ctl.call("POST", "/_opsflow/config", {"ping_status": {"i-1": "Sleeping"}})[0] == 400
    assert ctl.call("POST", "/_opsflow/faults", {"operation": "ModifyVolume", "code": "X"})[0] == 400
    assert ctl.call("POST", "/_opsflow/commands", {"duraton_seconds": 5})[0] == 400
    assert ctl.call("POST", "/_opsflow/commands", {"leaves_frozen": "yes"})[0] == 400
    assert ctl.call("POST", "/_opsflow/config", {"snapshot_seconds": -1})[0] == 400
    assert ctl.call("POST", "/_opsflow/config", {"replace_root_seconds": "1"})[0] == 400
    assert ctl.call("POST", "/_opsflow/snapshot_failures", {"volume_id": "vol-1"})[0] == 400
    assert ctl.call("POST", "/_opsflow/snapshot_failures", {"state_message": 1})[0] == 400
    assert ctl.call("POST", "/_opsflow/replace_root_failures", {"count": 0})[0] == 400
    assert ctl.call("POST", "/_opsflow/replace_root_failures", {"failing_seconds": -1})[0] == 400
    assert ctl.call("POST", "/_opsflow/clock", {})[0] == 400
    assert ctl.call("GET", "/_opsflow/nope")[0] == 404


def test_latency_is_added_per_operation_and_overlaps_for_concurrent_calls(aws: Any, ctl: Control) -> None:
    import threading
    import time

    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"latency_ms": {"ec2:DescribeRegions": 300}})
    started = time.monotonic()
    ec2.describe_availability_zones()
    assert time.monotonic() - started < 0.25, "other operations are not delayed"
    started = time.monotonic()
    threads = [threading.Thread(target=ec2.describe_regions) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.8, f"three concurrent calls took {elapsed:.2f} s"
    assert ctl.call("POST", "/_opsflow/config", {"latency_ms": {"DescribeRegions": 5}})[0] == 400


def test_send_command_requires_online_when_configured(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (offline,) = _instances(aws)
    (online,) = _managed(aws, ctl)
    ctl.post("/_opsflow/config", {"send_command_requires_online": True})
    with pytest.raises(ClientError) as err:
        ssm.send_command(InstanceIds=[offline], DocumentName="AWS-RunShellScript",
                         Parameters={"commands": ["x"]})
    assert err.value.response["Error"]["Code"] == "InvalidInstanceId"
    assert _send(ssm, [online], ["x"])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))


# --------------------------------------------------------------------------- CloudFormation custom resources

SERVICE_TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:opsflow-request"
CUSTOM_TYPE = "Custom::OpsflowInstanceSetup"


def _setup_template(profile: str = "web", size: int = 20, names: tuple[str, ...] = ("Setup",)) -> str:
    """An EC2 instance and opsflow's custom resource(s) on it; Outputs read the first one."""
    custom = "".join(f"""
  {name}:
    Type: {CUSTOM_TYPE}
    Properties:
      ServiceToken: {SERVICE_TOKEN}
      InstanceId: !Ref Instance
      Profile: {profile}
      VolumeSizeGiB: {size}
      Reboot: true""" for name in names)
    return f"""
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Instance:
    Type: AWS::EC2::Instance
    Properties:
      ImageId: {LINUX_AMI}
      InstanceType: t3.micro{custom}
Outputs:
  Ready:
    Value: !GetAtt {names[0]}.ReadyAt
  SetupId:
    Value: !Ref {names[0]}
"""


def _requests(ctl: Control, stack_id: str) -> list[dict[str, Any]]:
    return [r for r in ctl.get("/_opsflow/custom_resources")["requests"] if r["request"]["StackId"] == stack_id]


def _put(url: str, body: Any, raw: bytes | None = None) -> tuple[int, dict[str, str]]:
    data = raw if raw is not None else json.dumps(body).encode()
    # As the cfn-response module does: PUT, empty Content-Type, the URL exactly as given.
    req = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": ""})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def _respond(event: dict[str, Any], status: str = "SUCCESS", **fields: Any) -> tuple[int, dict[str, str]]:
    body = {"Status": status, "StackId": event["StackId"], "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "PhysicalResourceId": event.get("PhysicalResourceId", "setup-1"), **fields}
    return _put(event["ResponseURL"], body)


def _resource(cfn: Any, stack_id: str, logical_id: str = "Setup") -> dict[str, Any]:
    return cfn.describe_stack_resource(StackName=stack_id, LogicalResourceId=logical_id)["StackResourceDetail"]


def _stack(cfn: Any, stack_id: str) -> dict[str, Any]:
    return cfn.describe_stacks(StackName=stack_id)["Stacks"][0]


def _create_setup_stack(aws: Any, ctl: Control, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    cfn = aws("cloudformation")
    stack_id = cfn.create_stack(StackName=f"s-{uuid.uuid4().hex[:8]}", TemplateBody=_setup_template(),
                                **kwargs)["StackId"]
    (rec,) = _requests(ctl, stack_id)
    return stack_id, rec


def test_custom_resource_create_is_recorded_and_waits_for_its_answer(aws: Any, ctl: Control) -> None:
    cfn, ec2 = aws("cloudformation"), aws("ec2")
    stack_id, rec = _create_setup_stack(aws, ctl)
    event = rec["request"]
    assert rec["state"] == "waiting" and rec["answers"] == [] and rec["response"] is None
    instance_id = _resource(cfn, stack_id, "Instance")["PhysicalResourceId"]
    assert instance_id.startswith("i-")
    # The fields of the User Guide's Create request, and only those.
    assert set(event) == {"RequestType", "ServiceToken", "ResponseURL", "StackId", "RequestId", "ResourceType",
                          "LogicalResourceId", "ResourceProperties"}
    assert event["RequestType"] == "Create" and event["ServiceToken"] == SERVICE_TOKEN
    assert event["StackId"] == stack_id and event["LogicalResourceId"] == "Setup"
    assert event["ResourceType"] == CUSTOM_TYPE
    assert str(uuid.UUID(event["RequestId"])) == event["RequestId"]
    # Properties arrive as CloudFormation sends them: resolved, numbers and booleans as strings.
    assert event["ResourceProperties"] == {"ServiceToken": SERVICE_TOKEN, "InstanceId": instance_id,
                                           "Profile": "web", "VolumeSizeGiB": "20", "Reboot": "true"}
    assert event["ResponseURL"].startswith(ctl.url + "/_opsflow/cfn-response/")
    # The EC2 instance carries the stack id tag, as CloudFormation tags it.
    tags = {t["Key"]: t["Value"] for t in ec2.describe_instances(InstanceIds=[instance_id])[
        "Reservations"][0]["Instances"][0]["Tags"]}
    assert tags["aws:cloudformation:stack-id"] == stack_id
    assert tags["aws:cloudformation:logical-id"] == "Instance"

    detail = _resource(cfn, stack_id)
    assert detail["ResourceType"] == CUSTOM_TYPE and detail["ResourceStatus"] == "CREATE_IN_PROGRESS"
    assert "PhysicalResourceId" not in detail
    assert _resource(cfn, stack_id, "Instance")["ResourceStatus"] == "CREATE_COMPLETE"
    stack = _stack(cfn, stack_id)
    assert stack["StackStatus"] == "CREATE_IN_PROGRESS" and "Outputs" not in stack
    statuses = {r["LogicalResourceId"]: r["ResourceStatus"] for r in
                cfn.describe_stack_resources(StackName=stack_id)["StackResources"]}
    assert statuses == {"Instance": "CREATE_COMPLETE", "Setup": "CREATE_IN_PROGRESS"}
    events = cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
    assert [(e["LogicalResourceId"], e["ResourceStatus"]) for e in events if e["LogicalResourceId"] == "Setup"] == [
        ("Setup", "CREATE_IN_PROGRESS")]


def test_custom_resource_success_completes_the_stack_with_its_data(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    status, headers = _respond(rec["request"], PhysicalResourceId="setup-i-1", Data={"ReadyAt": "2026-12-06T07:00Z"})
    assert status == 200 and headers["x-opsflow-result"] == "applied"

    detail = _resource(cfn, stack_id)
    assert detail["ResourceStatus"] == "CREATE_COMPLETE" and detail["PhysicalResourceId"] == "setup-i-1"
    stack = _stack(cfn, stack_id)
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]} == {
        "Ready": "2026-12-06T07:00Z", "SetupId": "setup-i-1"}
    (rec,) = _requests(ctl, stack_id)
    assert rec["state"] == "answered" and rec["response"]["Status"] == "SUCCESS" and rec["error"] is None

    # A second answer changes nothing, but is recorded.
    status, headers = _respond(rec["request"], "FAILED", Reason="late")
    assert status == 200 and headers["x-opsflow-result"].startswith("ignored")
    (rec,) = _requests(ctl, stack_id)
    assert len(rec["answers"]) == 2 and rec["response"]["Status"] == "SUCCESS"
    assert _resource(cfn, stack_id)["ResourceStatus"] == "CREATE_COMPLETE"
    assert _stack(cfn, stack_id)["StackStatus"] == "CREATE_COMPLETE"
    events = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in
              cfn.describe_stack_events(StackName=stack_id)["StackEvents"]]
    assert events[0] == (stack["StackName"], "CREATE_COMPLETE")
    assert events.index(("Setup", "CREATE_COMPLETE")) < events.index(("Setup", "CREATE_IN_PROGRESS"))


def test_custom_resource_failure_rolls_the_stack_back_with_a_delete(aws: Any, ctl: Control) -> None:
    cfn, ec2 = aws("cloudformation"), aws("ec2")
    stack_id, rec = _create_setup_stack(aws, ctl)
    instance_id = _resource(cfn, stack_id, "Instance")["PhysicalResourceId"]
    _respond(rec["request"], "FAILED", Reason="instance i-x is not in this stack", PhysicalResourceId="failed-1")

    detail = _resource(cfn, stack_id)
    assert detail["ResourceStatus"] == "DELETE_IN_PROGRESS"
    stack = _stack(cfn, stack_id)
    assert stack["StackStatus"] == "ROLLBACK_IN_PROGRESS"
    assert stack["StackStatusReason"].startswith("The following resource(s) failed to create: [Setup]")
    events = cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
    (failed,) = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["LogicalResourceId"] == "Setup"
    assert failed["ResourceStatusReason"] == "instance i-x is not in this stack"

    create, delete = _requests(ctl, stack_id)
    assert create["state"] == "answered"
    event = delete["request"]
    assert delete["state"] == "waiting" and event["RequestType"] == "Delete"
    assert set(event) == {"RequestType", "ServiceToken", "ResponseURL", "StackId", "RequestId", "ResourceType",
                          "LogicalResourceId", "PhysicalResourceId", "ResourceProperties"}
    assert event["PhysicalResourceId"] == "failed-1"  # the id the FAILED answer gave
    assert event["ResourceProperties"] == create["request"]["ResourceProperties"]
    assert event["RequestId"] != create["request"]["RequestId"]

    _respond(event)
    assert _stack(cfn, stack_id)["StackStatus"] == "ROLLBACK_COMPLETE"
    assert _resource(cfn, stack_id)["ResourceStatus"] == "DELETE_COMPLETE"
    state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    with pytest.raises(ClientError) as err:
        cfn.update_stack(StackName=stack_id, TemplateBody=_setup_template(profile="db"))
    assert "ROLLBACK_COMPLETE" in str(err.value)
    # Deleting a rolled-back stack sends nothing more.
    cfn.delete_stack(StackName=stack_id)
    assert _stack(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert len(_requests(ctl, stack_id)) == 2


def test_delete_stack_sends_delete_and_waits_for_it(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    _respond(rec["request"], PhysicalResourceId="setup-7")
    cfn.delete_stack(StackName=stack_id)
    _, delete = _requests(ctl, stack_id)
    assert delete["request"]["RequestType"] == "Delete"
    assert delete["request"]["PhysicalResourceId"] == "setup-7"
    assert _stack(cfn, stack_id)["StackStatus"] == "DELETE_IN_PROGRESS"
    assert _resource(cfn, stack_id)["ResourceStatus"] == "DELETE_IN_PROGRESS"
    cfn.delete_stack(StackName=stack_id)  # again while it runs: nothing more is sent
    assert len(_requests(ctl, stack_id)) == 2

    _respond(delete["request"])
    assert _stack(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    names = [s["StackName"] for s in cfn.describe_stacks()["Stacks"]]
    assert _stack(cfn, stack_id)["StackName"] not in names


def test_delete_answered_failed_leaves_the_stack_delete_failed(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    _respond(rec["request"], PhysicalResourceId="setup-8")
    cfn.delete_stack(StackName=stack_id)
    _, delete = _requests(ctl, stack_id)
    _respond(delete["request"], "FAILED", Reason="cannot clean up")
    assert _stack(cfn, stack_id)["StackStatus"] == "DELETE_FAILED"
    detail = _resource(cfn, stack_id)
    assert detail["ResourceStatus"] == "DELETE_FAILED" and detail["ResourceStatusReason"] == "cannot clean up"
    cfn.delete_stack(StackName=stack_id)  # a retry sends Delete again
    retry = _requests(ctl, stack_id)[-1]
    assert retry["request"]["RequestType"] == "Delete" and retry["state"] == "waiting"
    _respond(retry["request"])
    assert _stack(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"


def test_update_stack_sends_update_with_the_old_properties(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    _respond(rec["request"], PhysicalResourceId="setup-1", Data={"ReadyAt": "t1"})
    cfn.update_stack(StackName=stack_id, TemplateBody=_setup_template(profile="db", size=40))
    _, update = _requests(ctl, stack_id)
    event = update["request"]
    assert set(event) == {"RequestType", "ServiceToken", "ResponseURL", "StackId", "RequestId", "ResourceType",
                          "LogicalResourceId", "PhysicalResourceId", "ResourceProperties", "OldResourceProperties"}
    assert event["RequestType"] == "Update" and event["PhysicalResourceId"] == "setup-1"
    assert event["ResourceProperties"]["Profile"] == "db" and event["ResourceProperties"]["VolumeSizeGiB"] == "40"
    assert event["OldResourceProperties"] == rec["request"]["ResourceProperties"]
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_IN_PROGRESS"
    assert _resource(cfn, stack_id)["ResourceStatus"] == "UPDATE_IN_PROGRESS"
    with pytest.raises(ClientError) as err:
        cfn.update_stack(StackName=stack_id, TemplateBody=_setup_template(profile="x"))
    assert "UPDATE_IN_PROGRESS state and can not be updated" in str(err.value)

    _respond(event, Data={"ReadyAt": "t2"})  # same PhysicalResourceId: an update in place
    stack = _stack(cfn, stack_id)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["Ready"] == "t2"
    assert _resource(cfn, stack_id)["ResourceStatus"] == "UPDATE_COMPLETE"
    assert len(_requests(ctl, stack_id)) == 2


def test_update_with_a_new_physical_id_deletes_the_old_one_in_cleanup(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    _respond(rec["request"], PhysicalResourceId="setup-old")
    cfn.update_stack(StackName=stack_id, TemplateBody=_setup_template(profile="db"))
    _respond(_requests(ctl, stack_id)[1]["request"], PhysicalResourceId="setup-new")
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"
    cleanup = _requests(ctl, stack_id)[2]["request"]
    assert cleanup["RequestType"] == "Delete" and cleanup["PhysicalResourceId"] == "setup-old"
    _respond(cleanup, "FAILED", Reason="gone already")  # a failed cleanup does not fail the update
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_COMPLETE"
    assert _resource(cfn, stack_id)["PhysicalResourceId"] == "setup-new"


def test_failed_update_is_rolled_back_with_a_second_update(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    _respond(rec["request"], PhysicalResourceId="setup-1")
    cfn.update_stack(StackName=stack_id, TemplateBody=_setup_template(profile="db"))
    update = _requests(ctl, stack_id)[1]["request"]
    _respond(update, "FAILED", Reason="no such profile")
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS"
    back = _requests(ctl, stack_id)[2]["request"]
    assert back["RequestType"] == "Update" and back["PhysicalResourceId"] == "setup-1"
    assert back["ResourceProperties"] == update["OldResourceProperties"]
    assert back["OldResourceProperties"] == update["ResourceProperties"]
    _respond(back)
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert "Profile: web" in cfn.get_template(StackName=stack_id)["TemplateBody"]


def test_invalid_answers_fail_the_resource_as_cloudformation_would(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    event = rec["request"]
    # The presigned URL must be used as given: without its query string S3 refuses the PUT.
    status, _ = _put(event["ResponseURL"].split("?")[0], {"Status": "SUCCESS"})
    assert status == 403
    assert _requests(ctl, stack_id)[0]["answers"] == []
    status, headers = _respond(event, Data={"Blob": "x" * 5000})
    assert status == 200 and "Response object is too long." in headers["x-opsflow-result"]
    detail = _resource(cfn, stack_id)
    assert detail["ResourceStatus"] == "DELETE_IN_PROGRESS"
    (failed,) = [e for e in cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
                 if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["ResourceStatusReason"] == "Response object is too long."
    create, delete = _requests(ctl, stack_id)
    assert create["error"] == "Response object is too long."
    # A body answering another request (here: the Create's RequestId) fails the Delete.
    status, headers = _put(delete["request"]["ResponseURL"], {
        "Status": "SUCCESS", "StackId": stack_id, "RequestId": create["request"]["RequestId"],
        "LogicalResourceId": "Setup", "PhysicalResourceId": "x"})
    assert status == 200 and "RequestId" in headers["x-opsflow-result"]
    assert _stack(cfn, stack_id)["StackStatus"] == "ROLLBACK_FAILED"


@pytest.mark.parametrize("body, error", [
    ({"Status": "DONE"}, "Status must be SUCCESS or FAILED"),
    ({"Status": "FAILED"}, "needs a Reason"),
    ({"Status": "SUCCESS", "PhysicalResourceId": ""}, "Invalid PhysicalResourceId"),
    ({"Status": "SUCCESS", "LogicalResourceId": "Other"}, "LogicalResourceId"),
    ({"Status": "SUCCESS", "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/x/y"}, "StackId"),
])
def test_answer_checks(aws: Any, ctl: Control, body: dict[str, Any], error: str) -> None:
    stack_id, rec = _create_setup_stack(aws, ctl)
    event = rec["request"]
    full = {"StackId": event["StackId"], "RequestId": event["RequestId"], "LogicalResourceId": "Setup",
            "PhysicalResourceId": "p", **body}
    status, headers = _put(event["ResponseURL"], full)
    assert status == 200 and error in headers["x-opsflow-result"]
    create = _requests(ctl, stack_id)[0]
    assert create["state"] == "answered" and error in create["error"]
    assert _stack(aws("cloudformation"), stack_id)["StackStatus"] == "ROLLBACK_IN_PROGRESS"


def test_disable_rollback_leaves_the_stack_create_failed(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl, DisableRollback=True)
    _respond(rec["request"], "FAILED", Reason="nope")
    assert _stack(cfn, stack_id)["StackStatus"] == "CREATE_FAILED"
    assert len(_requests(ctl, stack_id)) == 1


def test_custom_resources_listing_is_oldest_first_and_can_be_cleared(aws: Any, ctl: Control) -> None:
    first, _ = _create_setup_stack(aws, ctl)
    second, _ = _create_setup_stack(aws, ctl)
    listed = [r["request"]["StackId"] for r in ctl.get("/_opsflow/custom_resources")["requests"]]
    assert listed[-2:] == [first, second]
    status, out = ctl.call("DELETE", "/_opsflow/custom_resources")
    assert status == 200 and out == {"requests": []}
    assert ctl.get("/_opsflow/custom_resources")["requests"] == []


def test_update_that_adds_and_removes_custom_resources(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    _respond(rec["request"], PhysicalResourceId="setup-1")
    cfn.update_stack(StackName=stack_id, TemplateBody=_setup_template(names=("Other",)))  # Setup out, Other in
    create = _requests(ctl, stack_id)[1]["request"]
    assert (create["RequestType"], create["LogicalResourceId"]) == ("Create", "Other")
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_IN_PROGRESS"
    _respond(create, PhysicalResourceId="other-1")
    # The removed resource is deleted in cleanup, after the update itself.
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"
    delete = _requests(ctl, stack_id)[2]["request"]
    assert (delete["RequestType"], delete["LogicalResourceId"], delete["PhysicalResourceId"]) == (
        "Delete", "Setup", "setup-1")
    _respond(delete)
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_COMPLETE"

    # An update whose new resource fails rolls back: the new one is deleted.
    cfn.update_stack(StackName=stack_id, TemplateBody=_setup_template(names=("Other", "Third")))
    third = _requests(ctl, stack_id)[3]["request"]
    assert (third["RequestType"], third["LogicalResourceId"]) == ("Create", "Third")
    _respond(third, "FAILED", Reason="bad", PhysicalResourceId="third-1")
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
    cleanup = _requests(ctl, stack_id)[4]["request"]
    assert (cleanup["RequestType"], cleanup["LogicalResourceId"], cleanup["PhysicalResourceId"]) == (
        "Delete", "Third", "third-1")
    _respond(cleanup)
    assert _stack(cfn, stack_id)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"


def test_delete_stack_while_a_create_waits_cancels_it(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    stack_id, rec = _create_setup_stack(aws, ctl)
    cfn.delete_stack(StackName=stack_id)
    create, delete = _requests(ctl, stack_id)
    assert create["state"] == "cancelled"
    assert delete["request"]["RequestType"] == "Delete" and delete["request"]["PhysicalResourceId"]
    status, headers = _respond(create["request"])  # the provider answers late: ignored
    assert status == 200 and headers["x-opsflow-result"] == "ignored: the request is already cancelled"
    assert _stack(cfn, stack_id)["StackStatus"] == "DELETE_IN_PROGRESS"
    _respond(delete["request"])
    assert _stack(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"


def test_aws_cloudformation_customresource_type_is_a_custom_resource_too(aws: Any, ctl: Control) -> None:
    cfn = aws("cloudformation")
    template = _setup_template().replace(CUSTOM_TYPE, "AWS::CloudFormation::CustomResource")
    stack_id = cfn.create_stack(StackName=f"s-{uuid.uuid4().hex[:8]}", TemplateBody=template)["StackId"]
    (rec,) = _requests(ctl, stack_id)
    assert rec["request"]["ResourceType"] == "AWS::CloudFormation::CustomResource"
    assert _resource(cfn, stack_id)["ResourceType"] == "AWS::CloudFormation::CustomResource"
    assert _resource(cfn, stack_id)["ResourceStatus"] == "CREATE_IN_PROGRESS"
    _respond(rec["request"], Data={"ReadyAt": "now"})
    assert _stack(cfn, stack_id)["StackStatus"] == "CREATE_COMPLETE"


# --------------------------------------------------------------------------- several accounts, STS trust

MEMBER_A, MEMBER_B = "123456789012", "111111111111"


def _client_for(endpoint: str, name: str, creds: dict[str, str], region: str = "us-east-1") -> Any:
    return boto3.client(name, endpoint_url=endpoint, region_name=region, config=NO_RETRY,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds.get("SessionToken"))


def _seed(ctl: Control, account_id: str) -> dict[str, str]:
    out = ctl.post("/_opsflow/accounts", {"account_id": account_id})
    return {"AccessKeyId": out["access_key_id"], "SecretAccessKey": out["secret_access_key"]}


def _trust(principal: Any, **condition: Any) -> str:
    st: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    if condition:
        st["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [st]})


def _member_role(endpoint: str, ctl: Control, trust: str, account: str = MEMBER_B) -> str:
    iam = _client_for(endpoint, "iam", _seed(ctl, account))
    name = f"opsflow-member-{uuid.uuid4().hex[:6]}"
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]


def _denied(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def test_seeded_account_credentials_belong_to_that_account(aws: Any, ctl: Control, endpoint: str) -> None:
    creds = _seed(ctl, MEMBER_B)
    ident = _client_for(endpoint, "sts", creds).get_caller_identity()
    assert ident["Account"] == MEMBER_B
    assert ident["Arn"] == f"arn:aws:iam::{MEMBER_B}:user/opsflow-admin"
    # the same key again (idempotent), listed
    assert _seed(ctl, MEMBER_B) == creds
    assert MEMBER_B in [a["account_id"] for a in ctl.get("/_opsflow/accounts")["accounts"]]
    # the default test credentials are moto's default account, an IAM user ARN as AWS writes one
    default = aws("sts").get_caller_identity()
    assert (default["Account"], default["Arn"]) == (MEMBER_A, f"arn:aws:iam::{MEMBER_A}:user/moto")
    assert ctl.call("POST", "/_opsflow/accounts", {"account_id": "12"})[0] == 400


def test_assume_role_with_the_right_external_id_gives_credentials_of_the_member_account(
        aws: Any, ctl: Control, endpoint: str) -> None:
    role = _member_role(endpoint, ctl, _trust(f"arn:aws:iam::{MEMBER_A}:root",
                                              StringEquals={"sts:ExternalId": "fleet-42"}))
    out = aws("sts").assume_role(RoleArn=role, RoleSessionName="runbook", ExternalId="fleet-42")
    ident = _client_for(endpoint, "sts", out["Credentials"]).get_caller_identity()
    assert ident["Account"] == MEMBER_B
    assert ident["Arn"] == f"arn:aws:sts::{MEMBER_B}:assumed-role/{role.split('/')[-1]}/runbook"


@pytest.mark.parametrize("external_id", [None, "wrong"])
def test_assume_role_without_the_external_id_it_requires_is_denied(
        aws: Any, ctl: Control, endpoint: str, external_id: str | None) -> None:
    role = _member_role(endpoint, ctl, _trust(MEMBER_A, StringEquals={"sts:ExternalId": "fleet-42"}))
    kw = {"ExternalId": external_id} if external_id else {}
    resp = _denied(lambda: aws("sts").assume_role(RoleArn=role, RoleSessionName="sess", **kw))
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert resp["Error"]["Code"] == "AccessDenied"
    assert resp["Error"]["Type"] == "Sender"
    assert resp["Error"]["Message"] == (f"User: arn:aws:iam::{MEMBER_A}:user/moto is not authorized to perform: "
                                        f"sts:AssumeRole on resource: {role}")


def test_assume_role_of_a_missing_role_or_one_trusting_another_account_is_denied(
        aws: Any, ctl: Control, endpoint: str) -> None:
    sts = aws("sts")
    missing = f"arn:aws:iam::{MEMBER_B}:role/opsflow-member-missing"
    assert _denied(lambda: sts.assume_role(RoleArn=missing, RoleSessionName="sess"))["Error"]["Code"] == "AccessDenied"
    other = _member_role(endpoint, ctl, _trust("arn:aws:iam::222222222222:root"))
    assert _denied(lambda: sts.assume_role(RoleArn=other, RoleSessionName="sess"))["Error"]["Code"] == "AccessDenied"
    # with enforcement off, moto's own behaviour (any ARN is assumable) comes back
    ctl.post("/_opsflow/config", {"sts_trust_enforced": False})
    assert sts.assume_role(RoleArn=missing, RoleSessionName="sess")["Credentials"]["AccessKeyId"]


def test_trust_by_role_arn_string_like_and_explicit_deny(aws: Any, ctl: Control, endpoint: str) -> None:
    # a hub role in account A, assumable by A; the member role trusts only that hub role
    hub = aws("iam").create_role(RoleName=f"hub-{uuid.uuid4().hex[:6]}",
                                 AssumeRolePolicyDocument=_trust(MEMBER_A))["Role"]["Arn"]
    hub_creds = aws("sts").assume_role(RoleArn=hub, RoleSessionName="lambda")["Credentials"]
    hub_sts = _client_for(endpoint, "sts", hub_creds)
    member = _member_role(endpoint, ctl, _trust(hub, StringLike={"sts:ExternalId": "fleet-*"}))
    assert hub_sts.assume_role(RoleArn=member, RoleSessionName="tt", ExternalId="fleet-7")["Credentials"]
    assert _denied(lambda: hub_sts.assume_role(RoleArn=member, RoleSessionName="tt", ExternalId="other"))
    # the account's default caller is not the hub role
    assert _denied(lambda: aws("sts").assume_role(RoleArn=member, RoleSessionName="tt", ExternalId="fleet-7"))
    # an explicit Deny wins over the Allow
    doc = json.loads(_trust("*"))
    doc["Statement"].append({"Effect": "Deny", "Principal": {"AWS": hub}, "Action": "sts:AssumeRole"})
    denied = _member_role(endpoint, ctl, json.dumps(doc))
    assert _denied(lambda: hub_sts.assume_role(RoleArn=denied, RoleSessionName="tt"))
    assert aws("sts").assume_role(RoleArn=denied, RoleSessionName="tt")["Credentials"]


def test_member_account_region_is_isolated_for_ec2_and_ssm(aws: Any, ctl: Control, endpoint: str) -> None:
    role = _member_role(endpoint, ctl, _trust(MEMBER_A, StringEquals={"sts:ExternalId": "ext-x"}))
    creds = aws("sts").assume_role(RoleArn=role, RoleSessionName="sess", ExternalId="ext-x")["Credentials"]
    region = "eu-north-1"
    ec2, ssm = _client_for(endpoint, "ec2", creds, region), _client_for(endpoint, "ssm", creds, region)
    iam = _client_for(endpoint, "iam", creds)
    tag = uuid.uuid4().hex[:8]
    (iid,) = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=LINUX_AMI, MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "fleet", "Value": tag}]}])["Instances"]]
    profile = _profile(iam)
    ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": profile}, InstanceId=iid)
    found = ec2.describe_instances(Filters=[{"Name": "tag:fleet", "Values": [tag]}])["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [iid]
    assert [i["InstanceId"] for i in ssm.describe_instance_information(
        Filters=[{"Key": "tag:fleet", "Values": [tag]}])["InstanceInformationList"]] == [iid]
    cid = _send(ssm, [iid], ["uptime"])
    assert _inv(ssm, cid, iid)["Status"] == "Success"
    # account A (same region, and its own default region) sees none of it
    a_ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region, config=NO_RETRY,
                         aws_access_key_id="testing", aws_secret_access_key="testing")
    assert a_ec2.describe_instances(Filters=[{"Name": "tag:fleet", "Values": [tag]}])["Reservations"] == []
    assert aws("ec2").describe_instances(Filters=[{"Name": "tag:fleet", "Values": [tag]}])["Reservations"] == []
    assert _denied(lambda: aws("ssm").get_command_invocation(CommandId=cid, InstanceId=iid))
    # and account B's other region neither
    b_use1 = _client_for(endpoint, "ec2", creds, "us-east-1")
    assert b_use1.describe_instances(Filters=[{"Name": "tag:fleet", "Values": [tag]}])["Reservations"] == []
    (row,) = [r for r in ctl.get("/_opsflow/invocations")["invocations"] if r["command_id"] == cid]
    assert (row["account"], row["region"], row["status"]) == (MEMBER_B, region, "Success")


def test_sns_publish_delivers_to_a_subscribed_sqs_queue_with_attributes(aws: Any, ctl: Control) -> None:
    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:6]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn)
    sns.publish(TopicArn=topic, Message="done", MessageAttributes={
        "status": {"DataType": "String", "StringValue": "Success"}})
    (msg,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    body = json.loads(msg["Body"])  # not raw delivery: the SNS envelope, attributes inside it
    assert body["Message"] == "done"
    assert body["MessageAttributes"]["status"] == {"Type": "String", "Value": "Success"}


# --------------------------------------------------------------------------- reboot-and-resume, Windows, output


def test_exit_194_reboots_the_instance_and_runs_the_script_again(aws: Any, ctl: Control) -> None:
    ssm, ec2 = aws("ssm"), aws("ec2")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/commands", {"match": "patch", "reboot_seconds": 20, "runs": [
        {"exit_code": 194, "duration_seconds": 5, "stdout": "installing"},
        {"exit_code": 0, "duration_seconds": 3, "stdout": "patched"}]})
    cid = _send(ssm, [iid], ["patch"])
    ctl.advance(5)  # first run exits 194: the reboot begins
    assert _inv(ssm, cid, iid)["Status"] == "InProgress"
    assert _info(ssm, [iid])[0]["PingStatus"] == "ConnectionLost"
    assert ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
    (row,) = ctl.get("/_opsflow/invocations")["invocations"]
    assert (row["runs"], row["reboots"], row["ended_ms"], row["exit_code"]) == (1, 1, None, None)
    ctl.advance(20)  # back: the second run starts
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"
    assert _inv(ssm, cid, iid)["Status"] == "InProgress"
    ctl.advance(3)
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["ResponseCode"], inv["StandardOutputContent"]) == ("Success", 0, "patched")
    (row,) = ctl.get("/_opsflow/invocations")["invocations"]
    assert (row["runs"], row["reboots"], row["exit_code"]) == (2, 1, 0)
    assert row["ended_ms"] - row["started_ms"] == 28000


def test_reboot_codes_belong_to_their_plugin(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    (lin,) = _managed(aws, ctl)
    (win,) = _managed(aws, ctl, windows=True)
    ctl.post("/_opsflow/config", {"reboot_seconds": 10})
    runs = [{"exit_code": 3010, "duration_seconds": 1}, {"exit_code": 0, "duration_seconds": 1, "stdout": "ok"}]
    ctl.post("/_opsflow/commands", {"document": "AWS-RunShellScript", "match": "x", "runs": runs})
    ctl.post("/_opsflow/commands", {"document": "AWS-RunPowerShellScript", "match": "x", "runs": [
        {"exit_code": 194, "duration_seconds": 1}, {"exit_code": 0, "duration_seconds": 1}]})
    ctl.post("/_opsflow/commands", {"document": "AWS-RunPowerShellScript", "match": "y", "runs": runs})
    shell = _send(ssm, [lin], ["x"])
    ps_194 = _send(ssm, [win], ["x"], document="AWS-RunPowerShellScript")
    ctl.advance(1)
    assert (_inv(ssm, shell, lin)["Status"], _inv(ssm, shell, lin)["ResponseCode"]) == ("Failed", 3010)
    assert (_inv(ssm, ps_194, win)["Status"], _inv(ssm, ps_194, win)["ResponseCode"]) == ("Failed", 194)
    ps = _send(ssm, [win], ["y"], document="AWS-RunPowerShellScript")
    ctl.advance(1)
    assert _info(ssm, [win])[0]["PingStatus"] == "ConnectionLost"  # config reboot_seconds
    ctl.advance(11)
    inv = _inv(ssm, ps, win)
    assert (inv["Status"], inv["StandardOutputContent"], inv["PluginName"]) == ("Success", "ok", "aws:runPowerShellScript")
    # a list that ends asking for a reboot describes no end
    bad = ctl.call("POST", "/_opsflow/commands", {"runs": [{"exit_code": 194}]})
    assert bad[0] == 400


def test_windows_instance_platform_and_powershell_s3_output_key(aws: Any, ctl: Control) -> None:
    ssm, s3, ec2 = aws("ssm"), aws("s3"), aws("ec2")
    (win,) = _managed(aws, ctl, windows=True)
    info = _info(ssm, [win])[0]
    assert info["PlatformType"] == "Windows" and "Windows" in info["PlatformName"]
    assert ec2.describe_instances(InstanceIds=[win])["Reservations"][0]["Instances"][0]["Platform"] == "windows"
    bucket = f"ssm-out-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    ctl.post("/_opsflow/commands", {"document": "AWS-RunPowerShellScript", "stdout": "hi"})
    cid = _send(ssm, [win], ["Get-Date"], document="AWS-RunPowerShellScript", OutputS3BucketName=bucket)
    ctl.advance(0.001)
    key = f"{cid}/{win}/awsrunPowerShellScript/0.awsrunPowerShellScript/stdout"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hi"
    assert _inv(ssm, cid, win)["StandardOutputUrl"] == f"https://s3.us-east-1.amazonaws.com/{bucket}/{key}"


def test_long_output_keeps_the_first_characters_and_goes_whole_to_a_bucket_of_another_account(
        aws: Any, ctl: Control, endpoint: str) -> None:
    ssm = aws("ssm")
    (iid,) = _managed(aws, ctl)
    b_s3 = _client_for(endpoint, "s3", _seed(ctl, MEMBER_B))
    bucket = f"fleet-out-{uuid.uuid4().hex[:8]}"
    b_s3.create_bucket(Bucket=bucket)
    out = "".join(f"{i:09d}\n" for i in range(3000))  # 30000 characters
    err = "E" * 9000
    ctl.post("/_opsflow/commands", {"match": "big", "stdout": out, "stderr": err, "exit_code": 1})
    cid = _send(ssm, [iid], ["big"], OutputS3BucketName=bucket)
    ctl.advance(0.001)
    inv = _inv(ssm, cid, iid)
    assert inv["StandardOutputContent"] == out[:24000]
    assert inv["StandardErrorContent"] == err[:8000]
    key = f"{cid}/{iid}/awsrunShellScript/0.awsrunShellScript/stdout"
    assert inv["StandardOutputUrl"] == f"https://s3.us-east-1.amazonaws.com/{bucket}/{key}"
    assert b_s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode() == out
    details = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"][0]
    assert details["CommandPlugins"][0]["Output"] == out[:2500]


def test_invocation_log_gives_overlap_and_clears(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    a, b, c = _managed(aws, ctl, n=3)
    ctl.post("/_opsflow/commands", {"match": "work", "duration_seconds": 10})
    t0 = ctl.now_ms()
    first = _send(ssm, [a, b], ["work"])
    ctl.advance(5)
    _send(ssm, [c], ["work"])
    rows = ctl.get("/_opsflow/invocations")["invocations"]
    assert {r["instance_id"] for r in rows[:2]} == {a, b} and rows[2]["instance_id"] == c  # oldest command first
    assert all(r["ended_ms"] is None and r["status"] == "InProgress" for r in rows)
    ctl.advance(10)
    rows = ctl.get("/_opsflow/invocations")["invocations"]
    assert [(r["started_ms"] - t0, r["ended_ms"] - t0) for r in rows] == [(0, 10000), (0, 10000), (5000, 15000)]
    events = sorted([(r["started_ms"], 1) for r in rows] + [(r["ended_ms"], -1) for r in rows])
    running, peak = 0, 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert peak == 3
    assert {r["command_id"] for r in rows[:2]} == {first}
    assert all(r["document"] == "AWS-RunShellScript" and r["account"] == MEMBER_A for r in rows)
    assert ctl.call("DELETE", "/_opsflow/invocations")[0] == 200
    assert ctl.get("/_opsflow/invocations")["invocations"] == []
    _send(ssm, [a], ["work"])
    ctl.post("/_opsflow/reset", {})
    assert ctl.get("/_opsflow/invocations")["invocations"] == []


def test_cloudwatch_output_goes_to_the_documents_default_group_or_the_named_one(aws: Any, ctl: Control) -> None:
    ssm, logs = aws("ssm"), aws("logs")
    (iid,) = _managed(aws, ctl)
    ctl.post("/_opsflow/commands", {"match": "report", "stdout": "all good", "stderr": "a warning"})
    cid = _send(ssm, [iid], ["report"], CloudWatchOutputConfig={"CloudWatchOutputEnabled": True})
    ctl.advance(0.001)
    inv = _inv(ssm, cid, iid)
    group = "/aws/ssm/AWS-RunShellScript"
    assert inv["CloudWatchOutputConfig"] == {"CloudWatchLogGroupName": group, "CloudWatchOutputEnabled": True}
    for stream, text in (("stdout", "all good"), ("stderr", "a warning")):
        events = logs.get_log_events(logGroupName=group, logStreamName=f"{cid}/{iid}/aws-runShellScript/{stream}",
                                     startFromHead=True)["events"]
        assert [e["message"] for e in events] == [text]
    named = f"/fleet/{uuid.uuid4().hex[:6]}"
    cid2 = _send(ssm, [iid], ["report"], CloudWatchOutputConfig={"CloudWatchOutputEnabled": True,
                                                                  "CloudWatchLogGroupName": named})
    ctl.advance(0.001)
    streams = logs.describe_log_streams(logGroupName=named)["logStreams"]
    assert sorted(s["logStreamName"] for s in streams) == [f"{cid2}/{iid}/aws-runShellScript/stderr",
                                                           f"{cid2}/{iid}/aws-runShellScript/stdout"]
    # without the config nothing is written and the invocation says so
    cid3 = _send(ssm, [iid], ["report"])
    ctl.advance(0.001)
    assert _inv(ssm, cid3, iid)["CloudWatchOutputConfig"]["CloudWatchOutputEnabled"] is False
    assert not any(s["logStreamName"].startswith(cid3) for s in logs.describe_log_streams(
        logGroupName=group)["logStreams"])


# --------------------------------------------------------------------------- CloudWatch alarm mute rules


def test_a_one_time_mute_rule_is_scheduled_then_active_for_its_duration_then_expired(aws: Any, ctl: Control) -> None:
    cw = aws("cloudwatch")
    now = dt.datetime.fromtimestamp(ctl.now_ms() / 1000, dt.UTC)
    begin = (now + dt.timedelta(minutes=2)).replace(second=0, microsecond=0)
    name = f"opsflow-clean-stop-{uuid.uuid4().hex[:8]}"
    cw.put_alarm_mute_rule(Name=name, Description="clean-stop of i-0abc by run nightly",
                           Rule={"Schedule": {"Expression": f"at({begin:%Y-%m-%dT%H:%M})", "Duration": "PT10M"}},
                           MuteTargets={"AlarmNames": ["cpu-high", "status-check"]})
    got = cw.get_alarm_mute_rule(AlarmMuteRuleName=name)
    assert (got["Status"], got["MuteType"]) == ("SCHEDULED", "ONE_TIME")
    assert got["AlarmMuteRuleArn"].endswith(f":alarm-mute-rule:{name}")
    assert got["MuteTargets"]["AlarmNames"] == ["cpu-high", "status-check"]
    assert got["Description"] == "clean-stop of i-0abc by run nightly"
    ctl.advance((begin - now).total_seconds() + 1)
    assert cw.get_alarm_mute_rule(AlarmMuteRuleName=name)["Status"] == "ACTIVE"
    active = cw.list_alarm_mute_rules(AlarmName="cpu-high", Statuses=["ACTIVE"])["AlarmMuteRuleSummaries"]
    assert [r["AlarmMuteRuleArn"].rsplit(":", 1)[1] for r in active] == [name]
    assert cw.list_alarm_mute_rules(AlarmName="other-alarm")["AlarmMuteRuleSummaries"] == []
    ctl.advance(600)
    assert cw.get_alarm_mute_rule(AlarmMuteRuleName=name)["Status"] == "EXPIRED", "it ends by itself"
    cw.delete_alarm_mute_rule(AlarmMuteRuleName=name)
    with pytest.raises(ClientError) as e:
        cw.get_alarm_mute_rule(AlarmMuteRuleName=name)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_recurring_mute_rule_is_active_in_each_window_and_bad_rules_are_refused(aws: Any, ctl: Control) -> None:
    cw = aws("cloudwatch")
    now = dt.datetime.fromtimestamp(ctl.now_ms() / 1000, dt.UTC)
    start = now - dt.timedelta(minutes=5)
    cw.put_alarm_mute_rule(Name="nightly", Rule={"Schedule": {
        "Expression": f"cron({start.minute} {start.hour} * * *)", "Duration": "PT1H"}})
    assert cw.get_alarm_mute_rule(AlarmMuteRuleName="nightly")["Status"] == "ACTIVE"
    assert cw.get_alarm_mute_rule(AlarmMuteRuleName="nightly")["MuteType"] == "RECURRING"
    ctl.advance(3600)
    assert cw.get_alarm_mute_rule(AlarmMuteRuleName="nightly")["Status"] == "SCHEDULED"
    for schedule in ({"Expression": "at(2026-12-06T10:00)", "Duration": "PT30S"},
                     {"Expression": "at(2026-12-06T10:00)", "Duration": "P16D"},
                     {"Expression": "rate(5 minutes)", "Duration": "PT1H"},
                     {"Expression": "cron(0 25 * * *)", "Duration": "PT1H"}):
        with pytest.raises(ClientError) as e:
            cw.put_alarm_mute_rule(Name="bad", Rule={"Schedule": schedule})
        assert e.value.response["Error"]["Code"] == "InvalidParameterValue", schedule


# --------------------------------------------------------------------------- EBS snapshots on the clock


def _root(ec2: Any, iid: str) -> dict[str, Any]:
    """The instance's root device mapping (DescribeInstances)."""
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    (root,) = [m for m in inst["BlockDeviceMappings"] if m["DeviceName"] == inst["RootDeviceName"]]
    return root["Ebs"]


def _data_volume(ec2: Any, iid: str, **tags: str) -> str:
    vol = ec2.create_volume(Size=4, AvailabilityZone="us-east-1a", TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else [])
    ec2.attach_volume(VolumeId=vol["VolumeId"], InstanceId=iid, Device="/dev/sdf")
    return vol["VolumeId"]


def _snapshot(ec2: Any, sid: str) -> dict[str, Any]:
    (snap,) = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"]
    return snap


def test_snapshots_are_pending_with_rising_progress_then_completed_and_tagged(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"snapshot_seconds": 100})
    (iid,) = _instances(aws)
    ec2.create_tags(Resources=[_root(ec2, iid)["VolumeId"]], Tags=[{"Key": "team", "Value": "db"},
                                                                    {"Key": "k", "Value": "from-volume"}])
    data = _data_volume(ec2, iid, role="data")
    out = ec2.create_snapshots(InstanceSpecification={"InstanceId": iid}, Description="consistent",
                               CopyTagsFromSource="volume",
                               TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "req"}]}])
    snaps = out["Snapshots"]
    assert len(snaps) == 2 and all((s["State"], s["Progress"]) == ("pending", "0%") for s in snaps)
    tags = {s["VolumeId"]: {t["Key"]: t["Value"] for t in s["Tags"]} for s in snaps}
    assert tags[data] == {"role": "data", "k": "req"}, "the volume's tags, then the request's"
    assert tags[_root(ec2, iid)["VolumeId"]] == {"team": "db", "k": "req"}
    ids = [s["SnapshotId"] for s in snaps]
    ctl.advance(50)
    assert [(_snapshot(ec2, i)["State"], _snapshot(ec2, i)["Progress"]) for i in ids] == [("pending", "50%")] * 2

    def by_state(state: str) -> list[str]:
        return sorted(s["SnapshotId"] for s in ec2.describe_snapshots(
            SnapshotIds=ids, Filters=[{"Name": "status", "Values": [state]}])["Snapshots"])

    assert (by_state("pending"), by_state("completed")) == (sorted(ids), [])
    one = ec2.create_snapshot(VolumeId=data, TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": [{"Key": "single", "Value": "yes"}]}])
    assert (one["State"], one["Progress"], one["Tags"]) == ("pending", "0%", [{"Key": "single", "Value": "yes"}])
    ctl.advance(50)
    assert (by_state("pending"), by_state("completed")) == ([], sorted(ids))
    assert _snapshot(ec2, ids[0])["Progress"] == "100%" and "StateMessage" not in _snapshot(ec2, ids[0])
    assert _snapshot(ec2, one["SnapshotId"])["State"] == "pending"
    ec2.delete_snapshot(SnapshotId=one["SnapshotId"])  # pending or completed, both can be deleted
    ec2.delete_snapshot(SnapshotId=ids[0])
    assert ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [ids[0], one["SnapshotId"]]}])[
        "Snapshots"] == []

    ec2.stop_instances(InstanceIds=[iid])  # AWS sets no instance state condition on CreateSnapshots
    assert _state(ec2, iid) == (80, "stopped")
    ctl.post("/_opsflow/config", {"snapshot_seconds": 0})
    stopped = ec2.create_snapshots(InstanceSpecification={"InstanceId": iid, "ExcludeBootVolume": True})["Snapshots"]
    assert [(s["VolumeId"], s["State"], s["Progress"]) for s in stopped] == [(data, "completed", "100%")]


def test_a_snapshot_failure_rule_ends_the_whole_set_in_error(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    ctl.post("/_opsflow/config", {"snapshot_seconds": 20})
    a, b = _instances(aws, n=2)
    _data_volume(ec2, a)
    rule = ctl.post("/_opsflow/snapshot_failures", {"instance_id": a, "fail_after_seconds": 5,
                                                    "state_message": "internal error"})
    assert (rule["instance_id"], rule["remaining"]) == (a, 1)
    set_a = [s["SnapshotId"] for s in ec2.create_snapshots(InstanceSpecification={"InstanceId": a})["Snapshots"]]
    (of_b,) = [s["SnapshotId"] for s in ec2.create_snapshots(InstanceSpecification={"InstanceId": b})["Snapshots"]]
    assert ctl.get("/_opsflow/snapshot_failures")["snapshot_failures"] == [], "one request used it"
    ctl.advance(4)
    assert {_snapshot(ec2, s)["State"] for s in set_a} == {"pending"}
    ctl.advance(1)
    failed = [_snapshot(ec2, s) for s in set_a]
    assert [(s["State"], s["StateMessage"]) for s in failed] == [("error", "internal error")] * 2
    errors = ec2.describe_snapshots(SnapshotIds=[*set_a, of_b], Filters=[{"Name": "status", "Values": ["error"]}])
    assert sorted(s["SnapshotId"] for s in errors["Snapshots"]) == sorted(set_a)
    ctl.advance(15)
    assert _snapshot(ec2, of_b)["State"] == "completed" and _snapshot(ec2, set_a[0])["State"] == "error"
    again = ec2.create_snapshots(InstanceSpecification={"InstanceId": a})["Snapshots"]
    ctl.advance(20)
    assert {_snapshot(ec2, s["SnapshotId"])["State"] for s in again} == {"completed"}

    # without instance_id: any snapshot request, even of a volume attached to nothing
    ctl.post("/_opsflow/snapshot_failures", {})
    loose = ec2.create_volume(Size=1, AvailabilityZone="us-east-1a")["VolumeId"]
    sid = ec2.create_snapshot(VolumeId=loose)["SnapshotId"]
    ctl.advance(20)  # fail_after_seconds defaults to snapshot_seconds
    snap = _snapshot(ec2, sid)
    assert snap["State"] == "error" and snap["StateMessage"]
    ec2.delete_snapshot(SnapshotId=sid)


def test_create_snapshots_can_be_throttled_with_a_fault(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    (iid,) = _instances(aws)
    ctl.post("/_opsflow/faults", {"operation": "ec2:CreateSnapshots", "code": "RequestLimitExceeded",
                                  "message": "Request limit exceeded.", "http_status": 503})
    with pytest.raises(ClientError) as err:
        ec2.create_snapshots(InstanceSpecification={"InstanceId": iid})
    assert err.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert len(ec2.create_snapshots(InstanceSpecification={"InstanceId": iid})["Snapshots"]) == 1
    assert ctl.get("/_opsflow/calls")["calls"]["ec2:CreateSnapshots"] == 2


# --------------------------------------------------------------------------- fsfreeze (opsflow-Freeze / opsflow-Thaw)


def _fs(ssm: Any, iid: str, document: str, mounts: str = "/data /logs", watchdog: int | None = None) -> str:
    params = {"Mounts": [mounts], **({"WatchdogSeconds": [str(watchdog)]} if watchdog is not None else {})}
    return ssm.send_command(InstanceIds=[iid], DocumentName=document, Parameters=params)["Command"]["CommandId"]


def _episodes(ctl: Control, iid: str) -> list[dict[str, Any]]:
    return ctl.get("/_opsflow/frozen")["instances"].get(iid, [])


def test_freeze_snapshot_thaw_records_an_episode_holding_the_snapshots(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    (iid,) = _instances(aws)
    ctl.post("/_opsflow/commands", {"rules": [{"document": "opsflow-Freeze", "duration_seconds": 2},
                                              {"document": "opsflow-Thaw", "duration_seconds": 1}]})
    t0 = ctl.now_ms()
    freeze = _fs(ssm, iid, "opsflow-Freeze", watchdog=300)
    assert _episodes(ctl, iid) == [], "the script runs: not frozen before it ends"
    ctl.advance(2)
    assert _episodes(ctl, iid) == [{"frozen_at": t0 + 2000, "thawed_at": None, "thawed_by": None,
                                    "mounts": ["/data", "/logs"], "freeze_command_id": freeze,
                                    "thaw_command_id": None, "snapshots": []}]
    assert ctl.get("/_opsflow/frozen")["frozen_now"] == [iid]
    inside = [s["SnapshotId"] for s in ec2.create_snapshots(InstanceSpecification={"InstanceId": iid})["Snapshots"]]
    ctl.advance(1)
    thaw = _fs(ssm, iid, "opsflow-Thaw")
    ctl.advance(1)
    ec2.create_snapshot(VolumeId=_root(ec2, iid)["VolumeId"])  # after the thaw: not in the episode
    ctl.advance(300)  # the thaw disarmed the watchdog
    (ep,) = _episodes(ctl, iid)
    assert (ep["thawed_at"], ep["thawed_by"], ep["thaw_command_id"]) == (t0 + 4000, "thaw", thaw)
    assert ep["snapshots"] == inside
    assert ctl.get("/_opsflow/frozen")["frozen_now"] == []
    # the manual clock standing still: a snapshot asked between the Freeze and the Thaw is inside
    ctl.post("/_opsflow/commands", {"rules": [{"document": "opsflow-Freeze"}, {"document": "opsflow-Thaw"}]})
    _fs(ssm, iid, "opsflow-Freeze")
    same_ms = ec2.create_snapshot(VolumeId=_root(ec2, iid)["VolumeId"])["SnapshotId"]
    _fs(ssm, iid, "opsflow-Thaw")
    ec2.create_snapshot(VolumeId=_root(ec2, iid)["VolumeId"])
    (_, ep2) = _episodes(ctl, iid)
    assert ep2["frozen_at"] == ep2["thawed_at"] == ctl.now_ms() and ep2["snapshots"] == [same_ms]


def test_the_watchdog_thaws_when_the_thaw_fails_or_never_arrives(aws: Any, ctl: Control) -> None:
    ssm = aws("ssm")
    a, b = _instances(aws, n=2)
    ctl.post("/_opsflow/commands", {"rules": [
        {"document": "opsflow-Freeze", "duration_seconds": 1},
        {"document": "opsflow-Thaw", "instance_id": a, "exit_code": 1},
        {"document": "opsflow-Thaw", "instance_id": a, "undeliverable": True, "pending_seconds": 5, "count": 1}]})
    t0 = ctl.now_ms()
    _fs(ssm, a, "opsflow-Freeze", watchdog=60)
    _fs(ssm, b, "opsflow-Freeze", watchdog=30)
    ctl.advance(1)
    _fs(ssm, a, "opsflow-Thaw")  # undeliverable
    ctl.advance(5)
    _fs(ssm, a, "opsflow-Thaw")  # fails (exit 1)
    ctl.advance(1)
    assert _episodes(ctl, a)[0]["thawed_at"] is None, "an undeliverable or failed thaw thaws nothing"
    ctl.advance(60)
    (ep_a,) = _episodes(ctl, a)
    (ep_b,) = _episodes(ctl, b)
    assert (ep_a["thawed_at"], ep_a["thawed_by"], ep_a["thaw_command_id"]) == (t0 + 60_000, "watchdog", None)
    assert (ep_b["frozen_at"], ep_b["thawed_at"], ep_b["thawed_by"]) == (t0 + 1000, t0 + 30_000, "watchdog")


def test_a_failed_freeze_freezes_only_if_its_rule_says_so_and_stops_and_reboots_thaw(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    a, b, c, d = _instances(aws, n=4)
    ctl.post("/_opsflow/commands", {"rules": [
        {"document": "opsflow-Freeze", "duration_seconds": 1},
        {"document": "opsflow-Freeze", "instance_id": a, "duration_seconds": 1, "exit_code": 1},
        {"document": "opsflow-Freeze", "instance_id": b, "duration_seconds": 1, "exit_code": 1, "leaves_frozen": True},
        {"match": "patch", "instance_id": b, "reboot_seconds": 10,
         "runs": [{"exit_code": 194, "duration_seconds": 1}, {"exit_code": 0, "duration_seconds": 1}]}]})
    t0 = ctl.now_ms()
    for iid in (a, b, c, d):
        _fs(ssm, iid, "opsflow-Freeze", watchdog=600)
    ctl.advance(1)
    assert _episodes(ctl, a) == [], "the script failed before freezing"
    assert _episodes(ctl, b)[0]["frozen_at"] == t0 + 1000, "leaves_frozen: it died after freezing"
    second = _fs(ssm, c, "opsflow-Freeze", mounts="/other", watchdog=600)  # busy: still one episode
    _send(ssm, [b], ["patch"])
    ec2.stop_instances(InstanceIds=[d])
    ctl.advance(1)
    ec2.reboot_instances(InstanceIds=[c])
    ctl.advance(1)
    (ep_b,), (ep_c,), (ep_d,) = _episodes(ctl, b), _episodes(ctl, c), _episodes(ctl, d)
    assert (ep_b["thawed_at"], ep_b["thawed_by"]) == (t0 + 2000, "reboot"), "exit 194 reboots the node"
    assert (ep_c["thawed_at"], ep_c["thawed_by"], ep_c["mounts"]) == (t0 + 2000, "reboot", ["/data", "/logs"])
    assert ep_c["freeze_command_id"] != second
    assert (ep_d["thawed_at"], ep_d["thawed_by"]) == (t0 + 1000, "stop")
    ctl.advance(600)
    assert [len(_episodes(ctl, i)) for i in (a, b, c, d)] == [0, 1, 1, 1], "watchdogs died with the reboot / stop"


# --------------------------------------------------------------------------- root volume replacement


def _task(ec2: Any, task_id: str) -> dict[str, Any]:
    (task,) = ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task_id])["ReplaceRootVolumeTasks"]
    return task


def _ec2_error(call: Any) -> str:
    with pytest.raises(ClientError) as e:
        call()
    return str(e.value.response["Error"]["Code"])


def test_replace_root_volume_from_a_snapshot_reboots_the_instance_and_swaps_the_volume(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    ctl.post("/_opsflow/config", {"replace_root_seconds": 30, "online_delay_seconds": 10, "status_checks_seconds": 20})
    (iid,) = _managed(aws, ctl)
    ctl.advance(10)
    old = _root(ec2, iid)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=old)["SnapshotId"]
    ctl.post("/_opsflow/commands", {"document": "opsflow-Freeze"})
    _fs(ssm, iid, "opsflow-Freeze", watchdog=600)
    t0 = ctl.now_ms()
    task = ec2.create_replace_root_volume_task(InstanceId=iid, SnapshotId=snap, TagSpecifications=[
        {"ResourceType": "replace-root-volume-task", "Tags": [{"Key": "run", "Value": "patch-1"}]}])[
        "ReplaceRootVolumeTask"]
    assert task["ReplaceRootVolumeTaskId"].startswith("replacevol-")
    assert (task["TaskState"], task["InstanceId"], task["SnapshotId"]) == ("pending", iid, snap)
    assert (task["DeleteReplacedRootVolume"], task["Tags"]) == (False, [{"Key": "run", "Value": "patch-1"}])
    tid = task["ReplaceRootVolumeTaskId"]
    assert _task(ec2, tid)["TaskState"] == "in-progress" and "CompleteTime" not in _task(ec2, tid)
    assert _state(ec2, iid) == (16, "running"), "the instance reboots: it stays running"
    assert _info(ssm, [iid])[0]["PingStatus"] == "ConnectionLost"
    assert _checks(ec2, iid) == ("running", "initializing", "initializing")
    (ep,) = _episodes(ctl, iid)
    assert (ep["thawed_at"], ep["thawed_by"]) == (t0, "reboot"), "a freeze does not survive the reboot"
    ctl.advance(29)
    assert _task(ec2, tid)["TaskState"] == "in-progress" and _root(ec2, iid)["VolumeId"] == old
    ctl.advance(1)
    done = _task(ec2, tid)
    assert done["TaskState"] == "succeeded"
    assert (_iso(done["CompleteTime"]) - _iso(done["StartTime"])).total_seconds() == pytest.approx(30, abs=1)
    root = _root(ec2, iid)
    assert root["VolumeId"] != old and root["Status"] == "attached" and root["DeleteOnTermination"] is True
    (new,) = ec2.describe_volumes(VolumeIds=[root["VolumeId"]])["Volumes"]
    assert (new["SnapshotId"], new["Size"], new["State"]) == (snap, 8, "in-use")
    assert ec2.describe_volumes(VolumeIds=[old])["Volumes"][0]["State"] == "available", "kept: not asked to delete"
    assert _info(ssm, [iid])[0]["PingStatus"] == "ConnectionLost", "online_delay_seconds after the reboot"
    ctl.advance(10)
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"
    assert _checks(ec2, iid) == ("running", "initializing", "initializing")
    ctl.advance(10)
    assert _checks(ec2, iid) == ("running", "ok", "ok")


def test_replace_root_volume_deletes_the_old_root_on_request_and_keeps_the_lineage(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    (iid,) = _instances(aws)
    first = _root(ec2, iid)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=first)["SnapshotId"]

    def replace(**kw: Any) -> str:
        return str(ec2.create_replace_root_volume_task(InstanceId=iid, **kw)["ReplaceRootVolumeTask"][
            "ReplaceRootVolumeTaskId"])

    t1 = replace(SnapshotId=snap, DeleteReplacedRootVolume=True, ClientToken="tok-1")
    assert replace(SnapshotId=snap, DeleteReplacedRootVolume=True, ClientToken="tok-1") == t1, "same token, same task"
    assert _ec2_error(lambda: replace(SnapshotId=snap, ClientToken="tok-1")) == "IdempotentParameterMismatch"
    second = _root(ec2, iid)["VolumeId"]  # replace_root_seconds 0: swapped at the next request
    assert second != first
    assert _ec2_error(lambda: ec2.describe_volumes(VolumeIds=[first])) == "InvalidVolume.NotFound"
    # a snapshot of a previous root volume is still accepted; no snapshot restores the launch state
    t2 = replace(SnapshotId=snap)
    third = _root(ec2, iid)["VolumeId"]
    assert third != second and ec2.describe_volumes(VolumeIds=[second])["Volumes"][0]["State"] == "available"
    t3 = replace(ImageId=LINUX_AMI)
    (by_ami,) = ec2.describe_volumes(VolumeIds=[_root(ec2, iid)["VolumeId"]])["Volumes"]
    assert by_ami["Size"] == 15, "the AMI's root volume size (moto's AMIs: 15 GiB)"
    t4 = replace()
    assert _root(ec2, iid)["VolumeId"] not in (first, second, third, by_ami["VolumeId"])
    listed = ec2.describe_replace_root_volume_tasks(Filters=[{"Name": "instance-id", "Values": [iid]}])
    assert [t["ReplaceRootVolumeTaskId"] for t in listed["ReplaceRootVolumeTasks"]] == [t1, t2, t3, t4]
    assert {t["TaskState"] for t in listed["ReplaceRootVolumeTasks"]} == {"succeeded"}
    assert listed["ReplaceRootVolumeTasks"][2]["ImageId"] == LINUX_AMI
    first_page = ec2.describe_replace_root_volume_tasks(Filters=[{"Name": "instance-id", "Values": [iid]}],
                                                        MaxResults=3)
    rest = ec2.describe_replace_root_volume_tasks(Filters=[{"Name": "instance-id", "Values": [iid]}],
                                                  MaxResults=3, NextToken=first_page["NextToken"])
    assert [t["ReplaceRootVolumeTaskId"] for t in first_page["ReplaceRootVolumeTasks"] + rest[
        "ReplaceRootVolumeTasks"]] == [t1, t2, t3, t4] and "NextToken" not in rest
    assert ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=["replacevol-0000000000000dead"])[
        "ReplaceRootVolumeTasks"] == []


def test_replace_root_volume_refuses_what_ec2_refuses(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    a, b = _instances(aws, n=2)
    root_a = _root(ec2, a)["VolumeId"]
    of_a = ec2.create_snapshot(VolumeId=root_a)["SnapshotId"]
    copy = ec2.copy_snapshot(SourceSnapshotId=of_a, SourceRegion="us-east-1")["SnapshotId"]
    of_data = ec2.create_snapshot(VolumeId=_data_volume(ec2, a))["SnapshotId"]
    of_b = ec2.create_snapshot(VolumeId=_root(ec2, b)["VolumeId"])["SnapshotId"]

    def replace(iid: str = a, **kw: Any) -> Any:
        return lambda: ec2.create_replace_root_volume_task(InstanceId=iid, **kw)

    assert _ec2_error(replace("i-0000000000000dead")) == "InvalidInstanceID.NotFound"
    assert _ec2_error(replace(SnapshotId="snap-0000000000000dead")) == "InvalidSnapshot.NotFound"
    for other in (of_b, of_data, copy):  # only snapshots taken from its current or previous root volumes
        assert _ec2_error(replace(SnapshotId=other)) == "InvalidParameterValue", other
    assert _ec2_error(replace(SnapshotId=of_a, ImageId=LINUX_AMI)) == "InvalidParameterCombination"
    assert _ec2_error(replace(ImageId="ami-0000000000000dead")) == "InvalidAMIID.NotFound"
    ec2.stop_instances(InstanceIds=[b])
    assert _ec2_error(replace(b)) == "IncorrectInstanceState"
    describe = ec2.describe_replace_root_volume_tasks
    assert _ec2_error(lambda: describe(MaxResults=51)) == "InvalidMaxResults"
    assert _ec2_error(lambda: describe(Filters=[{"Name": "task-state", "Values": ["failed"]}])) == "InvalidFilter"
    assert _ec2_error(lambda: describe(NextToken="garbage")) == "InvalidNextToken"
    assert _root(ec2, a)["VolumeId"] == root_a, "nothing was replaced"


def test_a_replace_root_failure_rule_goes_failing_then_failed_and_keeps_the_root(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    ctl.post("/_opsflow/config", {"replace_root_seconds": 10})
    (iid,) = _managed(aws, ctl)
    root = _root(ec2, iid)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=root)["SnapshotId"]
    ctl.post("/_opsflow/replace_root_failures", {"instance_id": iid, "fail_after_seconds": 5, "failing_seconds": 10})

    def replacements() -> list[str]:
        return [v["VolumeId"] for v in ec2.describe_volumes(
            Filters=[{"Name": "snapshot-id", "Values": [snap]}])["Volumes"]]

    tid = ec2.create_replace_root_volume_task(InstanceId=iid, SnapshotId=snap)["ReplaceRootVolumeTask"][
        "ReplaceRootVolumeTaskId"]
    assert len(replacements()) == 1, "the replacement volume is created while the task is pending"
    assert ctl.get("/_opsflow/replace_root_failures")["replace_root_failures"] == []
    assert _task(ec2, tid)["TaskState"] == "in-progress"
    ctl.advance(5)
    assert _task(ec2, tid)["TaskState"] == "failing"
    assert _info(ssm, [iid])[0]["PingStatus"] == "ConnectionLost", "a failing task reboots the instance too"
    ctl.advance(10)
    failed = _task(ec2, tid)
    assert failed["TaskState"] == "failed" and "CompleteTime" in failed
    assert _root(ec2, iid)["VolumeId"] == root and replacements() == []
    assert _info(ssm, [iid])[0]["PingStatus"] == "Online"
    retry = ec2.create_replace_root_volume_task(InstanceId=iid, SnapshotId=snap)["ReplaceRootVolumeTask"]
    ctl.advance(10)
    assert _task(ec2, retry["ReplaceRootVolumeTaskId"])["TaskState"] == "succeeded"
    assert _root(ec2, iid)["VolumeId"] == replacements()[0]


# --------------------------------------------------------------------------- EventBridge events, lifecycle hooks


def _event_time(t_ms: int) -> str:
    return dt.datetime.fromtimestamp(t_ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rule_to_queue(aws: Any, pattern: dict[str, Any]) -> str:
    """A rule on the default event bus with an SQS target; returns the queue URL."""
    sqs, events = aws("sqs"), aws("events")
    name = f"r-{uuid.uuid4().hex[:8]}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
    return queue


def _received(aws: Any, queue: str) -> list[dict[str, Any]]:
    messages = aws("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_a_start_sends_pending_then_running_to_a_matching_rule_at_its_clock_time(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    (iid,) = _instances(aws)
    queue = _rule_to_queue(aws, {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"],
                                 "detail": {"state": ["running"], "instance-id": [iid]}})
    ec2.stop_instances(InstanceIds=[iid])
    ctl.post("/_opsflow/config", {"instance_pending_seconds": 20})
    started = ctl.now_ms()
    ec2.start_instances(InstanceIds=[iid])
    ctl.advance(19)
    assert _received(aws, queue) == [], "still pending"
    ctl.advance(1)
    (event,) = _received(aws, queue)
    assert event == {"version": "0", "id": event["id"], "detail-type": "EC2 Instance State-change Notification",
                     "source": "aws.ec2", "account": "123456789012", "time": _event_time(started + 20_000),
                     "region": "us-east-1", "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{iid}"],
                     "detail": {"instance-id": iid, "state": "running"}}
    uuid.UUID(event["id"])
    log = ctl.get(f"/_opsflow/events?instance_id={iid}")["events"]
    assert [e["detail"]["state"] for e in log] == ["pending", "running", "stopping", "stopped", "pending", "running"]
    assert log[-1] == event, "the log holds each event as delivered"
    assert ctl.get(f"/_opsflow/events?instance_id={iid}&source=aws.autoscaling")["events"] == []
    assert ctl.call("GET", "/_opsflow/events?state=running")[0] == 400
    ctl.call("DELETE", "/_opsflow/events")
    assert ctl.get("/_opsflow/events")["events"] == []


def test_changes_between_requests_are_delivered_at_the_next_one_in_time_order(aws: Any, ctl: Control) -> None:
    ec2 = aws("ec2")
    a, b = _instances(aws, n=2)
    ec2.stop_instances(InstanceIds=[b])
    ctl.post("/_opsflow/config", {"instance_stopping_seconds": 30, "instance_pending_seconds": 10})
    ctl.call("DELETE", "/_opsflow/events")
    t0 = ctl.now_ms()
    ec2.stop_instances(InstanceIds=[a])
    ec2.start_instances(InstanceIds=[b])
    ctl.post("/_opsflow/schedule", {"instance_id": b, "action": "terminate", "at_ms": t0 + 20_000,
                                    "transition_seconds": 5})
    assert [(e["detail"]["instance-id"], e["detail"]["state"]) for e in ctl.get("/_opsflow/events")["events"]] == [
        (a, "stopping"), (b, "pending")]
    ctl.advance(60)  # one jump: everything that happened meanwhile, in the order it happened
    events = ctl.get("/_opsflow/events")["events"]
    assert [(e["detail"]["instance-id"], e["detail"]["state"], e["time"]) for e in events] == [
        (a, "stopping", _event_time(t0)), (b, "pending", _event_time(t0)), (b, "running", _event_time(t0 + 10_000)),
        (b, "shutting-down", _event_time(t0 + 20_000)), (b, "terminated", _event_time(t0 + 25_000)),
        (a, "stopped", _event_time(t0 + 30_000))]


def _group(aws: Any, n: int, **hook: Any) -> tuple[str, list[str]]:
    """An Auto Scaling group of n instances with a termination lifecycle hook."""
    name = f"g-{uuid.uuid4().hex[:8]}"
    aws("ec2").create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": LINUX_AMI})
    asg = aws("autoscaling")
    asg.create_auto_scaling_group(AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": name},
                                  MinSize=0, MaxSize=5, DesiredCapacity=n, AvailabilityZones=["us-east-1a"])
    asg.put_lifecycle_hook(AutoScalingGroupName=name, LifecycleHookName="forensics",
                           LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING", **hook)
    return name, [i["InstanceId"] for i in asg.describe_auto_scaling_instances()["AutoScalingInstances"]
                  if i["AutoScalingGroupName"] == name]


def _lifecycle(asg: Any, group: str) -> dict[str, str]:
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return {i["InstanceId"]: i["LifecycleState"] for i in g["Instances"]}


def _asg_error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_scale_in_with_a_termination_hook_waits_and_sends_the_lifecycle_action_event(aws: Any, ctl: Control) -> None:
    asg, ec2 = aws("autoscaling"), aws("ec2")
    group, (first, second) = _group(aws, 2, HeartbeatTimeout=300, NotificationMetadata='{"case":"c-1"}')
    queue = _rule_to_queue(aws, {"source": ["aws.autoscaling"],
                                 "detail-type": ["EC2 Instance-terminate Lifecycle Action"]})
    (hook,) = asg.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
    assert (hook["HeartbeatTimeout"], hook["GlobalTimeout"], hook["DefaultResult"], hook["NotificationMetadata"]) == (
        300, 30000, "ABANDON", '{"case":"c-1"}')
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    assert _lifecycle(asg, group) == {first: "Terminating:Wait", second: "InService"}
    (waiting,) = asg.describe_auto_scaling_instances(InstanceIds=[first])["AutoScalingInstances"]
    assert waiting["LifecycleState"] == "Terminating:Wait"
    (event,) = _received(aws, queue)
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    token = event["detail"]["LifecycleActionToken"]
    uuid.UUID(token)
    assert (event["source"], event["resources"], event["detail"]) == ("aws.autoscaling", [g["AutoScalingGroupARN"]], {
        "LifecycleActionToken": token, "AutoScalingGroupName": group, "LifecycleHookName": "forensics",
        "EC2InstanceId": first, "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "NotificationMetadata": '{"case":"c-1"}', "Origin": "AutoScalingGroup", "Destination": "EC2"})
    ctl.advance(299)
    assert _state(ec2, first) == (16, "running"), "the instance runs while the hook waits (forensics happen now)"
    assert _lifecycle(asg, group)[first] == "Terminating:Wait"
    # TerminateInstanceInAutoScalingGroup goes through the hook too; without decrementing, a replacement launches
    asg.terminate_instance_in_auto_scaling_group(InstanceId=second, ShouldDecrementDesiredCapacity=False)
    states = _lifecycle(asg, group)
    assert (states[first], states[second]) == ("Terminating:Wait", "Terminating:Wait")
    assert sorted(states.values()).count("InService") == 1, "a replacement keeps the desired capacity of 1"
    assert len(_received(aws, queue)) == 1


def test_a_heartbeat_restarts_the_timeout_and_continue_terminates_once(aws: Any, ctl: Control) -> None:
    asg, ec2 = aws("autoscaling"), aws("ec2")
    ctl.post("/_opsflow/config", {"instance_shutting_down_seconds": 5})
    group, (first, _second) = _group(aws, 2, HeartbeatTimeout=60)
    started = ctl.now_ms()
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    (action,) = [a for a in ctl.get("/_opsflow/lifecycle_actions")["lifecycle_actions"] if a["group"] == group]
    token = action["token"]
    ctl.advance(50)
    asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=group, LifecycleHookName="forensics", InstanceId=first)
    ctl.advance(50)  # 100 s after the scale-in, 50 s after the heartbeat
    assert _lifecycle(asg, group)[first] == "Terminating:Wait"
    complete = {"AutoScalingGroupName": group, "LifecycleHookName": "forensics", "LifecycleActionResult": "CONTINUE"}
    asg.complete_lifecycle_action(LifecycleActionToken=token, **complete)
    assert _lifecycle(asg, group)[first] == "Terminating:Proceed"
    assert _state(ec2, first) == (32, "shutting-down")
    assert _asg_error(lambda: asg.complete_lifecycle_action(LifecycleActionToken=token, **complete)) == (
        "ValidationError", f"No active Lifecycle Action found with token {token}")
    assert _asg_error(lambda: asg.record_lifecycle_action_heartbeat(
        AutoScalingGroupName=group, LifecycleHookName="forensics", InstanceId=first)) == (
        "ValidationError", f"No active Lifecycle Action found with instance ID {first}")
    unknown = str(uuid.uuid4())
    assert _asg_error(lambda: asg.complete_lifecycle_action(LifecycleActionToken=unknown, **complete)) == (
        "ValidationError", f"No active Lifecycle Action found with token {unknown}")
    ctl.advance(5)
    assert _state(ec2, first) == (48, "terminated")
    assert first not in _lifecycle(asg, group), "a terminated instance leaves the group"
    (action,) = [a for a in ctl.get("/_opsflow/lifecycle_actions")["lifecycle_actions"] if a["group"] == group]
    assert action == {**action, "instance_id": first, "hook": "forensics", "started_at": started,
                      "heartbeats": [started + 50_000], "timeout_at": started + 110_000,
                      "completed_at": started + 100_000, "result": "CONTINUE",
                      "completed_by": "CompleteLifecycleAction", "complete_calls": 2}
    states = [(e["detail"]["state"], e["time"]) for e in ctl.get(f"/_opsflow/events?instance_id={first}")["events"]
              if e["source"] == "aws.ec2"][-2:]
    assert states == [("shutting-down", _event_time(started + 100_000)), ("terminated", _event_time(started + 105_000))]


def test_the_default_result_applies_at_the_heartbeat_or_global_timeout(aws: Any, ctl: Control) -> None:
    asg, ec2 = aws("autoscaling"), aws("ec2")
    group, (first, second) = _group(aws, 2, HeartbeatTimeout=30, DefaultResult="CONTINUE")
    t0 = ctl.now_ms()
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    ctl.advance(29)
    assert _lifecycle(asg, group)[first] == "Terminating:Wait"
    ctl.advance(100)  # the timeout passed between requests: it applies as of its time
    assert _state(ec2, first) == (48, "terminated") and first not in _lifecycle(asg, group)
    (timed_out,) = [a for a in ctl.get("/_opsflow/lifecycle_actions")["lifecycle_actions"] if a["group"] == group]
    assert (timed_out["completed_at"], timed_out["result"], timed_out["completed_by"]) == (
        t0 + 30_000, "CONTINUE", "timeout")
    assert [e["time"] for e in ctl.get(f"/_opsflow/events?instance_id={first}&source=aws.ec2")["events"]][-1] == (
        _event_time(t0 + 30_000))
    # Heartbeats every 29 s keep an instance waiting until the global timeout: 100 x 30 s.
    t1 = ctl.now_ms()
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)
    heartbeat = {"AutoScalingGroupName": group, "LifecycleHookName": "forensics", "InstanceId": second}
    beats = 0
    while True:
        ctl.post("/_opsflow/clock", {"now_ms": t1 + (beats + 1) * 29_000})
        try:
            asg.record_lifecycle_action_heartbeat(**heartbeat)
        except ClientError:
            break
        beats += 1
    assert beats == 103 and _state(ec2, second) == (48, "terminated")
    (global_out,) = [a for a in ctl.get("/_opsflow/lifecycle_actions")["lifecycle_actions"]
                     if a["instance_id"] == second]
    assert (global_out["completed_at"], global_out["completed_by"], len(global_out["heartbeats"])) == (
        t1 + 3_000_000, "timeout", 103)
    # PutLifecycleHook's documented limits
    for timeout in (29, 7201):
        code, _ = _asg_error(lambda: asg.put_lifecycle_hook(  # noqa: B023
            AutoScalingGroupName=group, LifecycleHookName="x", HeartbeatTimeout=timeout,
            LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING"))
        assert code == "ValidationError"


def test_abandon_ends_the_other_hooks_actions_and_deleting_a_hook_continues(aws: Any, ctl: Control) -> None:
    asg, ec2 = aws("autoscaling"), aws("ec2")
    group, (first, second) = _group(aws, 2)
    asg.put_lifecycle_hook(AutoScalingGroupName=group, LifecycleHookName="drain",
                           LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING")
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    actions = [a for a in ctl.get("/_opsflow/lifecycle_actions")["lifecycle_actions"] if a["group"] == group]
    assert sorted(a["hook"] for a in actions) == ["drain", "forensics"], "one action per hook"
    assert len({a["token"] for a in actions}) == 2
    asg.complete_lifecycle_action(AutoScalingGroupName=group, LifecycleHookName="drain", InstanceId=first,
                                  LifecycleActionResult="ABANDON")
    assert _state(ec2, first) == (48, "terminated")
    ended = {a["hook"]: (a["result"], a["completed_by"]) for a in ctl.get("/_opsflow/lifecycle_actions")[
        "lifecycle_actions"] if a["group"] == group}
    assert ended == {"drain": ("ABANDON", "CompleteLifecycleAction"), "forensics": ("ABANDON", "abandoned")}
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)
    asg.complete_lifecycle_action(AutoScalingGroupName=group, LifecycleHookName="drain", InstanceId=second,
                                  LifecycleActionResult="CONTINUE")
    assert _lifecycle(asg, group)[second] == "Terminating:Wait", "CONTINUE waits for the other hook"
    asg.delete_lifecycle_hook(AutoScalingGroupName=group, LifecycleHookName="forensics")
    assert _state(ec2, second) == (48, "terminated")
    (deleted,) = [a for a in ctl.get("/_opsflow/lifecycle_actions")["lifecycle_actions"]
                  if a["instance_id"] == second and a["hook"] == "forensics"]
    assert (deleted["result"], deleted["completed_by"]) == ("CONTINUE", "DeleteLifecycleHook")
    ctl.post("/_opsflow/reset", {})
    assert [a for a in ctl.get("/_opsflow/lifecycle_actions")["lifecycle_actions"] if a["group"] == group] == []


# --------------------------------------------------------------------------- forensic collection

LINUX_FORENSIC_PARTS = ["system.txt", "journal.txt", "var-log/messages", "var-log/secure", "processes.txt",
                        "sockets.txt", "memory.txt", "disks.txt"]
WINDOWS_FORENSIC_PARTS = ["system.txt", "eventlogs/System.evtx", "eventlogs/Application.evtx",
                          "eventlogs/Security.evtx", "processes.txt", "sockets.txt", "memory.txt", "disks.txt"]
PRECONDITION_FAILED = ("An error occurred (PreconditionFailed) when calling the PutObject operation: "
                       "At least one of the pre-conditions you specified did not hold")


def _collect(ssm: Any, iid: str, bucket: str, prefix: str, windows: bool = False, case: str = "case-123") -> str:
    params = {"Bucket": [bucket], "KeyPrefix": [prefix], "CaseId": [case], "BucketRegion": ["us-east-1"],
              "MaxLogMiB": ["16"]}
    document = "opsflow-ForensicCollectWindows" if windows else "opsflow-ForensicCollect"
    return ssm.send_command(InstanceIds=[iid], DocumentName=document, Parameters=params)["Command"]["CommandId"]


def _evidence_bucket(s3: Any) -> str:
    bucket = f"evidence-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return bucket


def _keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def _untar(blob: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        members = tar.getmembers()
        assert all(m.isfile() for m in members), "regular files only"
        return [(m.name, tar.extractfile(m).read()) for m in members]  # type: ignore[union-attr]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stamp(t_ms: int) -> str:
    return dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _evidence(s3: Any, bucket: str, prefix: str) -> tuple[bytes, dict[str, Any]]:
    archive = s3.get_object(Bucket=bucket, Key=prefix + "collection.tar.gz")["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read().decode("utf-8"))
    return archive, manifest


def test_forensic_collection_uploads_a_checksummed_archive_and_its_manifest_at_its_end(
        aws: Any, ctl: Control) -> None:
    ssm, s3 = aws("ssm"), aws("s3")
    (iid,) = _managed(aws, ctl)
    bucket = _evidence_bucket(s3)
    prefix = f"forensics/case-123/{iid}/"
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect", "pending_seconds": 1,
                                    "duration_seconds": 30})
    t0 = ctl.now_ms()
    cid = _collect(ssm, iid, bucket, prefix)
    ctl.advance(29)
    assert _inv(ssm, cid, iid)["Status"] == "InProgress"
    assert _keys(s3, bucket) == [], "nothing is uploaded before the script ends"
    ctl.advance(2)
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["ResponseCode"]) == ("Success", 0)
    assert _keys(s3, bucket) == [prefix + "collection.tar.gz", prefix + "manifest.json"]
    archive, manifest = _evidence(s3, bucket, prefix)
    parts = _untar(archive)
    assert [name for name, _ in parts] == LINUX_FORENSIC_PARTS
    assert list(manifest) == ["Version", "CaseId", "InstanceId", "Platform", "CollectedAt", "Archive", "Parts",
                              "Skipped"]
    assert (manifest["Version"], manifest["CaseId"], manifest["InstanceId"], manifest["Platform"]) == (
        1, "case-123", iid, "Linux")
    assert manifest["CollectedAt"] == _stamp(t0 + 1000) == _stamp(_iso(inv["ExecutionStartDateTime"]).timestamp()
                                                                   * 1000)
    assert manifest["Archive"] == {"Key": "collection.tar.gz", "Bytes": len(archive), "Sha256": _sha256(archive)}
    assert manifest["Parts"] == [{"Name": n, "Bytes": len(d), "Sha256": _sha256(d)} for n, d in parts]
    assert manifest["Skipped"] == [{"Name": "core-dumps",
                                    "Reason": "none found in /var/lib/systemd/coredump or /var/crash"}]
    for name, data in parts:
        assert iid.encode() in data, f"{name} mentions the instance"
    assert b"case-123" in dict(parts)["system.txt"]
    # Stored as put-object --checksum-algorithm SHA256 stores it, like boto3's own upload through moto.
    head = s3.head_object(Bucket=bucket, Key=prefix + "collection.tar.gz", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(archive).digest()).decode()
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == manifest["Archive"]["Sha256"]
    got = s3.get_object(Bucket=bucket, Key=prefix + "collection.tar.gz", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == head["ChecksumSHA256"]
    s3.put_object(Bucket=bucket, Key="reference", Body=archive, ChecksumAlgorithm="SHA256")
    ref = s3.head_object(Bucket=bucket, Key="reference", ChecksumMode="ENABLED")
    checksum_fields = {k for k in (*head, *ref) if k.startswith("Checksum")}
    assert {k: head.get(k) for k in checksum_fields} == {k: ref.get(k) for k in checksum_fields}
    manifest_bytes = s3.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read()
    mhead = s3.head_object(Bucket=bucket, Key=prefix + "manifest.json", ChecksumMode="ENABLED")
    assert mhead["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(manifest_bytes).digest()).decode()
    # stdout: what the script prints last
    assert inv["StandardOutputContent"].splitlines() == [
        *(f"PART {p['Name']} {p['Bytes']} {p['Sha256']}" for p in manifest["Parts"]),
        f"ARCHIVE s3://{bucket}/{prefix}collection.tar.gz {len(archive)} {_sha256(archive)}",
        f"MANIFEST s3://{bucket}/{prefix}manifest.json",
    ]
    # Deterministic: the same instance, case and start give the same bytes (the clock stands still).
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect"})
    _collect(ssm, iid, bucket, "again/")
    _collect(ssm, iid, bucket, "once-more/")
    assert (s3.get_object(Bucket=bucket, Key="again/collection.tar.gz")["Body"].read()
            == s3.get_object(Bucket=bucket, Key="once-more/collection.tar.gz")["Body"].read())


def test_forensic_collection_on_windows_packs_its_event_logs(aws: Any, ctl: Control) -> None:
    ssm, s3 = aws("ssm"), aws("s3")
    (win,) = _managed(aws, ctl, windows=True)
    bucket = _evidence_bucket(s3)
    prefix = f"forensics/case-9/{win}/"
    cid = _collect(ssm, win, bucket, prefix, windows=True, case="case-9")  # no rule: succeeds at once
    inv = _inv(ssm, cid, win)
    assert (inv["Status"], inv["ResponseCode"], inv["PluginName"]) == ("Success", 0, "aws:runPowerShellScript")
    archive, manifest = _evidence(s3, bucket, prefix)
    parts = _untar(archive)
    assert [name for name, _ in parts] == WINDOWS_FORENSIC_PARTS
    assert (manifest["Platform"], manifest["CaseId"], manifest["Skipped"]) == ("Windows", "case-9", [])
    assert manifest["Parts"] == [{"Name": n, "Bytes": len(d), "Sha256": _sha256(d)} for n, d in parts]
    assert manifest["Archive"]["Sha256"] == _sha256(archive)
    for name, data in parts:
        assert win.encode() in data, f"{name} mentions the instance"
        if name.endswith(".evtx"):
            assert data.startswith(b"ElfFile\x00")
    assert inv["StandardOutputContent"].splitlines()[-1] == f"MANIFEST s3://{bucket}/{prefix}manifest.json"


def test_forensic_tamper_makes_the_manifest_disagree_with_that_part_only(aws: Any, ctl: Control) -> None:
    ssm, s3 = aws("ssm"), aws("s3")
    (iid,) = _managed(aws, ctl)
    bucket = _evidence_bucket(s3)
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect", "duration_seconds": 5,
                                    "forensics": {"tamper": "processes.txt"}})
    assert ctl.get("/_opsflow/commands")["rules"][-1]["forensics"] == {"tamper": "processes.txt",
                                                                      "no_manifest": False}
    cid = _collect(ssm, iid, bucket, "t/")
    ctl.advance(5)
    assert (_inv(ssm, cid, iid)["Status"], _inv(ssm, cid, iid)["ResponseCode"]) == ("Success", 0)
    archive, manifest = _evidence(s3, bucket, "t/")
    actual = {n: (len(d), _sha256(d)) for n, d in _untar(archive)}
    wrong = [p["Name"] for p in manifest["Parts"] if (p["Bytes"], p["Sha256"]) != actual[p["Name"]]]
    assert wrong == ["processes.txt"]
    (listed,) = [p for p in manifest["Parts"] if p["Name"] == "processes.txt"]
    assert listed["Bytes"] == actual["processes.txt"][0] and len(listed["Sha256"]) == 64
    assert manifest["Archive"]["Sha256"] == _sha256(archive)
    # Bad forensics fields are refused.
    for bad in ({"tamper": "nope.txt"}, {"no_manifest": "yes"}, {"other": 1}, "tamper"):
        status, out = ctl.call("POST", "/_opsflow/commands", {"document": "opsflow-ForensicCollect",
                                                              "forensics": bad})
        assert status == 400, out


def test_forensic_no_manifest_uploads_the_archive_only_and_fails(aws: Any, ctl: Control) -> None:
    ssm, s3 = aws("ssm"), aws("s3")
    (iid,) = _managed(aws, ctl)
    bucket = _evidence_bucket(s3)
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect", "duration_seconds": 5,
                                    "forensics": {"no_manifest": True}})
    cid = _collect(ssm, iid, bucket, "n/")
    ctl.advance(5)
    (row,) = [r for r in ctl.get("/_opsflow/invocations")["invocations"] if r["command_id"] == cid]
    assert (row["status"], row["exit_code"]) == ("Failed", 8)
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["StatusDetails"], inv["ResponseCode"]) == ("Failed", "Failed", 8)
    assert _keys(s3, bucket) == ["n/collection.tar.gz"]
    archive = s3.get_object(Bucket=bucket, Key="n/collection.tar.gz")["Body"].read()
    lines = inv["StandardOutputContent"].splitlines()
    assert lines[-1] == f"ARCHIVE s3://{bucket}/n/collection.tar.gz {len(archive)} {_sha256(archive)}"
    assert not any(line.startswith("MANIFEST") for line in lines)
    assert ssm.list_commands(CommandId=cid)["Commands"][0]["Status"] == "Failed"


def test_forensic_upload_refuses_to_overwrite_and_needs_the_bucket(aws: Any, ctl: Control) -> None:
    ssm, s3 = aws("ssm"), aws("s3")
    (iid,) = _managed(aws, ctl)
    bucket = _evidence_bucket(s3)
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect", "duration_seconds": 10})
    first = _collect(ssm, iid, bucket, "p/")
    ctl.advance(10)
    assert _inv(ssm, first, iid)["Status"] == "Success"
    before = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in _keys(s3, bucket)}
    second = _collect(ssm, iid, bucket, "p/")  # a later start: other bytes, were they written
    ctl.advance(10)
    inv = _inv(ssm, second, iid)
    assert (inv["Status"], inv["ResponseCode"]) == ("Failed", 8)
    assert inv["StandardErrorContent"] == PRECONDITION_FAILED
    assert not any(line.startswith(("ARCHIVE", "MANIFEST")) for line in inv["StandardOutputContent"].splitlines())
    assert {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in _keys(s3, bucket)} == before
    # Two collections running at once into one prefix: the first to end wins, the other fails, even
    # when both ends are first seen by the same request.
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect", "duration_seconds": 2})
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect", "duration_seconds": 10, "count": 1})
    slow = _collect(ssm, iid, bucket, "q/")
    fast = _collect(ssm, iid, bucket, "q/")
    ctl.advance(15)
    assert [(_inv(ssm, c, iid)["Status"], _inv(ssm, c, iid)["ResponseCode"]) for c in (slow, fast)] == [
        ("Failed", 8), ("Success", 0)]
    assert json.loads(s3.get_object(Bucket=bucket, Key="q/manifest.json")["Body"].read())["CollectedAt"] == _stamp(
        _iso(_inv(ssm, fast, iid)["ExecutionStartDateTime"]).timestamp() * 1000)
    # No such bucket: nothing written anywhere, Failed 8 with the CLI's error.
    missing = _collect(ssm, iid, f"no-such-{uuid.uuid4().hex[:8]}", "p/")
    ctl.advance(10)
    inv = _inv(ssm, missing, iid)
    assert (inv["Status"], inv["ResponseCode"]) == ("Failed", 8)
    assert inv["StandardErrorContent"] == ("An error occurred (NoSuchBucket) when calling the PutObject operation: "
                                           "The specified bucket does not exist")


def test_forensic_collection_that_exits_non_zero_uploads_nothing(aws: Any, ctl: Control) -> None:
    ssm, s3 = aws("ssm"), aws("s3")
    (iid,) = _managed(aws, ctl)
    bucket = _evidence_bucket(s3)
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect", "duration_seconds": 3, "exit_code": 3,
                                    "stdout": "collecting", "stderr": "tar: /var/log: Cannot open"})
    cid = _collect(ssm, iid, bucket, "x/")
    ctl.advance(3)
    inv = _inv(ssm, cid, iid)
    assert (inv["Status"], inv["ResponseCode"]) == ("Failed", 3)
    assert (inv["StandardOutputContent"], inv["StandardErrorContent"]) == ("collecting", "tar: /var/log: Cannot open")
    # Nor does one cancelled before its end.
    ctl.post("/_opsflow/commands", {"document": "opsflow-ForensicCollect", "duration_seconds": 3})
    cancelled = _collect(ssm, iid, bucket, "y/")
    ctl.advance(1)
    ssm.cancel_command(CommandId=cancelled)
    ctl.advance(5)
    assert _inv(ssm, cancelled, iid)["Status"] == "Cancelled"
    assert _keys(s3, bucket) == []


# --------------------------------------------------------------------------- AWSEC2-CreateVssSnapshot

VSS_DOCUMENT = "AWSEC2-CreateVssSnapshot"


def _vss(ssm: Any, iid: str, **params: str) -> str:
    """Send AWS's VSS snapshot document; its parameters are strings, each given as a list of one."""
    return ssm.send_command(InstanceIds=[iid], DocumentName=VSS_DOCUMENT,
                            Parameters={k: [v] for k, v in params.items()})["Command"]["CommandId"]


def _volume_snapshots(ec2: Any, volumes: list[str]) -> list[dict[str, Any]]:
    return ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": volumes}])["Snapshots"]


def _windows_with_data_volume(aws: Any, ctl: Control) -> tuple[str, str, str, str]:
    """A managed Windows instance with a data volume at /dev/sdf: (instance, root device, root volume, data volume)."""
    ec2 = aws("ec2")
    (win,) = _managed(aws, ctl, windows=True)
    data = _data_volume(ec2, win)
    inst = ec2.describe_instances(InstanceIds=[win])["Reservations"][0]["Instances"][0]
    return win, inst["RootDeviceName"], _root(ec2, win)["VolumeId"], data


def test_vss_snapshot_document_snapshots_every_volume_at_its_end_with_its_tags(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    ctl.post("/_opsflow/config", {"snapshot_seconds": 30})
    win, root_device, root, data = _windows_with_data_volume(aws, ctl)
    ctl.post("/_opsflow/commands", {"document": VSS_DOCUMENT, "pending_seconds": 1, "duration_seconds": 8})
    t0 = ctl.now_ms()
    cid = _vss(ssm, win, description="nightly consistent", tags="Key=Environment,Value=Test;Key=User,Value=TestUser1",
               ExcludeBootVolume="False", executionTimeout="800")
    ctl.advance(8)
    assert _inv(ssm, cid, win)["Status"] == "InProgress"
    assert _volume_snapshots(ec2, [root, data]) == [], "VSS has not snapshotted anything before the end"
    ctl.advance(5)  # the end (t0 + 9 s) passed between requests: the set is made as of the end
    inv = _inv(ssm, cid, win)
    assert (inv["Status"], inv["ResponseCode"], inv["PluginName"]) == ("Success", 0, "aws:runPowerShellScript")
    snaps = {s["VolumeId"]: s for s in _volume_snapshots(ec2, [root, data])}
    assert sorted(snaps) == sorted([root, data]), "one snapshot per EBS volume"
    end = t0 + 9000
    for volume, device in ((root, root_device), (data, "/dev/sdf")):
        snap = snaps[volume]
        assert {t["Key"]: t["Value"] for t in snap["Tags"]} == {
            "Environment": "Test", "User": "TestUser1", "Name": "", "Device": device, "AppConsistent": "true",
            "AwsVssConfig": "AwsVssComponentsVersion:2.5.0"}
        assert snap["Description"] == "nightly consistent"
        assert int(snap["StartTime"].timestamp()) == end // 1000, "started as of the end (EC2 shows seconds)"
        assert (snap["State"], snap["Progress"]) == ("pending", "13%"), "4 s of 30 s since the end"
    assert inv["StandardOutputContent"].splitlines() == [
        *(f"Snapshot {snaps[v]['SnapshotId']} of {v} ({d})" for v, d in ((root, root_device), (data, "/dev/sdf"))),
        "VSS snapshot set created"]
    ctl.advance(26)
    assert {_snapshot(ec2, s["SnapshotId"])["State"] for s in snaps.values()} == {"completed"}

    # ExcludeBootVolume=True leaves the root out; a Name in tags replaces the empty one; no rule: at once.
    ctl.post("/_opsflow/commands", {"document": VSS_DOCUMENT})
    cid = _vss(ssm, win, ExcludeBootVolume="True", tags="Key=Name,Value=db data")
    assert _inv(ssm, cid, win)["Status"] == "Success"
    later = [s for s in _volume_snapshots(ec2, [root, data]) if s["SnapshotId"] not in
             {x["SnapshotId"] for x in snaps.values()}]
    assert [s["VolumeId"] for s in later] == [data]
    assert {t["Key"]: t["Value"] for t in later[0]["Tags"]} == {
        "Name": "db data", "Device": "/dev/sdf", "AppConsistent": "true",
        "AwsVssConfig": "AwsVssComponentsVersion:2.5.0"}
    assert later[0].get("Description", "") == ""
    assert ctl.get("/_opsflow/calls")["calls"].get("ec2:CreateSnapshots") is None, "the instance's call, not ours"


def test_vss_snapshot_document_refuses_reserved_or_malformed_tags_and_create_ami(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    win, _, root, data = _windows_with_data_volume(aws, ctl)
    ctl.post("/_opsflow/commands", {"document": VSS_DOCUMENT, "duration_seconds": 3, "stderr": "warning: slow writer"})
    reserved = _vss(ssm, win, tags="Key=Environment,Value=Test;Key=AppConsistent,Value=false")
    ctl.advance(2)
    assert _inv(ssm, reserved, win)["Status"] == "InProgress", "decided at the end"
    ctl.advance(1)
    inv = _inv(ssm, reserved, win)
    assert (inv["Status"], inv["StatusDetails"], inv["ResponseCode"]) == ("Failed", "Failed", 1)
    (first, reason) = inv["StandardErrorContent"].splitlines()
    assert first == "warning: slow writer" and "AppConsistent" in reason and "reserved" in reason
    (row,) = [r for r in ctl.get("/_opsflow/invocations")["invocations"] if r["command_id"] == reserved]
    assert (row["status"], row["exit_code"]) == ("Failed", 1)
    ctl.post("/_opsflow/commands", {"document": VSS_DOCUMENT})
    malformed = _vss(ssm, win, tags="Environment=Test")
    inv = _inv(ssm, malformed, win)
    assert (inv["Status"], inv["ResponseCode"]) == ("Failed", 1) and "Environment=Test" in inv["StandardErrorContent"]
    ami = _vss(ssm, win, CreateAmi="True", AmiName="backup")
    inv = _inv(ssm, ami, win)
    assert (inv["Status"], inv["ResponseCode"], inv["StandardErrorContent"]) == (
        "Failed", 1, "CreateAmi is not modelled by the local cloud")
    assert _volume_snapshots(ec2, [root, data]) == []


def test_vss_snapshot_document_that_fails_makes_no_snapshot(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    win, _, root, data = _windows_with_data_volume(aws, ctl)
    ctl.post("/_opsflow/commands", {"document": VSS_DOCUMENT, "duration_seconds": 10, "exit_code": 1,
                                    "stderr": "VSS_E_WRITERERROR_TIMEOUT"})
    cid = _vss(ssm, win, tags="Key=Environment,Value=Test")
    ctl.advance(10)
    inv = _inv(ssm, cid, win)
    assert (inv["Status"], inv["ResponseCode"], inv["StandardErrorContent"]) == (
        "Failed", 1, "VSS_E_WRITERERROR_TIMEOUT")
    assert _volume_snapshots(ec2, [root, data]) == []
    # Nor does one cancelled before its end.
    ctl.post("/_opsflow/commands", {"document": VSS_DOCUMENT, "duration_seconds": 10})
    cancelled = _vss(ssm, win)
    ctl.advance(5)
    ssm.cancel_command(CommandId=cancelled)
    ctl.advance(10)
    assert _inv(ssm, cancelled, win)["Status"] == "Cancelled"
    assert _volume_snapshots(ec2, [root, data]) == []


def test_a_snapshot_failure_rule_fails_the_vss_snapshot_set(aws: Any, ctl: Control) -> None:
    ec2, ssm = aws("ec2"), aws("ssm")
    ctl.post("/_opsflow/config", {"snapshot_seconds": 20})
    win, _, root, data = _windows_with_data_volume(aws, ctl)
    ctl.post("/_opsflow/snapshot_failures", {"instance_id": win, "fail_after_seconds": 5,
                                             "state_message": "internal error"})
    ctl.post("/_opsflow/commands", {"rules": [{"document": "opsflow-Freeze", "duration_seconds": 1},
                                              {"document": VSS_DOCUMENT, "duration_seconds": 2}]})
    freeze = _fs(ssm, win, "opsflow-Freeze", mounts="D:", watchdog=600)
    ctl.advance(1)
    cid = _vss(ssm, win)
    ctl.advance(2)
    inv = _inv(ssm, cid, win)
    assert (inv["Status"], inv["ResponseCode"]) == ("Success", 0), "the document ends before EBS fails the set"
    ids = sorted(s["SnapshotId"] for s in _volume_snapshots(ec2, [root, data]))
    assert len(ids) == 2 and ctl.get("/_opsflow/snapshot_failures")["snapshot_failures"] == []
    (episode,) = _episodes(ctl, win)
    assert (episode["freeze_command_id"], sorted(episode["snapshots"])) == (freeze, ids), "taken while frozen"
    ctl.advance(4)
    assert {_snapshot(ec2, s)["State"] for s in ids} == {"pending"}
    ctl.advance(1)
    assert [(_snapshot(ec2, s)["State"], _snapshot(ec2, s)["StateMessage"]) for s in ids] == [
        ("error", "internal error")] * 2, "the whole set fails together"


# --------------------------------------------------------------------------- CloudTrail events, IAM reads

CLOUDTRAIL = "AWS API Call via CloudTrail"
TESTING = {"AccessKeyId": "testing", "SecretAccessKey": "testing"}
MEMBER_C = "222222222222"
ADMIN_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"
SSM_CORE_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
IAM_TRAILED = ["AttachRolePolicy", "DetachRolePolicy", "PutRolePolicy", "DeleteRolePolicy", "CreatePolicyVersion",
               "SetDefaultPolicyVersion", "UpdateAssumeRolePolicy", "AddRoleToInstanceProfile",
               "RemoveRoleFromInstanceProfile", "PutRolePermissionsBoundary", "DeleteRolePermissionsBoundary"]
EC2_TRAILED = ["AssociateIamInstanceProfile", "ReplaceIamInstanceProfileAssociation", "DisassociateIamInstanceProfile"]
ISO_SECOND = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _trail_pattern(source: str, names: list[str]) -> dict[str, Any]:
    return {"source": [source], "detail-type": [CLOUDTRAIL],
            "detail": {"eventSource": [f"{source.split('.')[1]}.amazonaws.com"], "eventName": names}}


def _drain(client: Any, queue: str) -> list[dict[str, Any]]:
    """Every event in the queue: receive until an empty answer."""
    sqs, found = client("sqs"), []
    for _ in range(20):
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        found += [json.loads(m["Body"]) for m in messages]
    return found


def _trail_log(ctl: Control, source: str) -> list[dict[str, Any]]:
    return ctl.get(f"/_opsflow/events?source={source}&detail_type={quote(CLOUDTRAIL)}")["events"]


def _doc(*actions: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


EC2_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _raw_bodies(client: Any) -> dict[str, str]:
    """The raw answers of the client's calls, by operation (boto3 decodes policy documents itself)."""
    raw: dict[str, str] = {}

    def keep(http_response: Any, model: Any, **_: Any) -> None:
        raw[model.name] = http_response.content.decode()

    client.meta.events.register("after-call.*.*", keep)
    return raw


def test_iam_role_changes_send_one_cloudtrail_event_each_to_us_east_1_whatever_the_client_region(
        aws: Any, ctl: Control, endpoint: str) -> None:
    queue = _rule_to_queue(aws, _trail_pattern("aws.iam", IAM_TRAILED))
    in_eu = lambda name: _client_for(endpoint, name, TESTING, "eu-west-1")  # noqa: E731
    eu_queue = _rule_to_queue(in_eu, _trail_pattern("aws.iam", IAM_TRAILED))
    iam = in_eu("iam")
    name = f"web-{uuid.uuid4().hex[:6]}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    iam.create_instance_profile(InstanceProfileName=name)
    policy = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(_doc("ec2:Describe*")))["Policy"]["Arn"]
    ctl.call("DELETE", "/_opsflow/events")
    t = ctl.now_ms()
    # calls that fail send nothing: moto's own error, and a fault the local cloud answers with
    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.attach_role_policy(RoleName=f"missing-{name}", PolicyArn=ADMIN_ARN)
    ctl.post("/_opsflow/faults", {"operation": "iam:PutRolePolicy", "count": 1, "code": "Throttling",
                                  "message": "Rate exceeded", "http_status": 400})
    with pytest.raises(ClientError, match="Throttling"):
        iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=json.dumps(_doc("s3:GetObject")))
    inline, trust = json.dumps(_doc("s3:GetObject")), json.dumps({**EC2_TRUST, "Statement": [
        {**EC2_TRUST["Statement"][0], "Principal": {"Service": ["ec2.amazonaws.com", "ssm.amazonaws.com"]}}]})
    v2, v3 = json.dumps(_doc("ec2:*")), json.dumps(_doc("ec2:*", "iam:PassRole"))
    calls: list[tuple[str, Any, dict[str, Any]]] = [
        ("AttachRolePolicy", lambda: iam.attach_role_policy(RoleName=name, PolicyArn=ADMIN_ARN),
         {"roleName": name, "policyArn": ADMIN_ARN}),
        ("PutRolePolicy", lambda: iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=inline),
         {"roleName": name, "policyName": "inline", "policyDocument": inline}),
        ("CreatePolicyVersion", lambda: iam.create_policy_version(PolicyArn=policy, PolicyDocument=v2),
         {"policyArn": policy, "policyDocument": v2, "setAsDefault": False}),
        ("CreatePolicyVersion", lambda: iam.create_policy_version(PolicyArn=policy, PolicyDocument=v3,
                                                                  SetAsDefault=True),
         {"policyArn": policy, "policyDocument": v3, "setAsDefault": True}),
        ("SetDefaultPolicyVersion", lambda: iam.set_default_policy_version(PolicyArn=policy, VersionId="v1"),
         {"policyArn": policy, "versionId": "v1"}),
        ("UpdateAssumeRolePolicy", lambda: iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust),
         {"roleName": name, "policyDocument": trust}),
        ("AddRoleToInstanceProfile",
         lambda: iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name),
         {"instanceProfileName": name, "roleName": name}),
        ("PutRolePermissionsBoundary",
         lambda: iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=policy),
         {"roleName": name, "permissionsBoundary": policy}),
        ("DeleteRolePermissionsBoundary", lambda: iam.delete_role_permissions_boundary(RoleName=name),
         {"roleName": name}),
        ("RemoveRoleFromInstanceProfile",
         lambda: iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name),
         {"instanceProfileName": name, "roleName": name}),
        ("DeleteRolePolicy", lambda: iam.delete_role_policy(RoleName=name, PolicyName="inline"),
         {"roleName": name, "policyName": "inline"}),
        ("DetachRolePolicy", lambda: iam.detach_role_policy(RoleName=name, PolicyArn=ADMIN_ARN),
         {"roleName": name, "policyArn": ADMIN_ARN}),
    ]
    answers = [call() for _, call, _ in calls]
    assert {c[0] for c in calls} == set(IAM_TRAILED)
    log = _trail_log(ctl, "aws.iam")
    assert [e["detail"]["eventName"] for e in log] == [c[0] for c in calls], "one event per successful call"
    assert [e["detail"]["requestParameters"] for e in log] == [c[2] for c in calls]
    assert [e["detail"]["requestID"] for e in log] == [a["ResponseMetadata"]["RequestId"] for a in answers]
    assert {(e["region"], e["detail"]["awsRegion"], e["account"]) for e in log} == {
        ("us-east-1", "us-east-1", MEMBER_A)}, "IAM is global: its records are us-east-1's"
    versions = [e["detail"]["responseElements"] for e in log if e["detail"]["eventName"] == "CreatePolicyVersion"]
    assert [(v["policyVersion"]["versionId"], v["policyVersion"]["isDefaultVersion"]) for v in versions] == [
        ("v2", False), ("v3", True)]
    assert all(re.fullmatch(ISO_SECOND, v["policyVersion"]["createDate"]) for v in versions)
    assert [e["detail"]["responseElements"] for e in log if e["detail"]["eventName"] != "CreatePolicyVersion"] == [
        None] * (len(log) - 2)
    attach = log[0]
    caller = aws("sts").get_caller_identity()
    assert attach == {
        "version": "0", "id": attach["id"], "detail-type": CLOUDTRAIL, "source": "aws.iam", "account": MEMBER_A,
        "time": _event_time(t), "region": "us-east-1", "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "principalId": caller["UserId"], "arn": caller["Arn"],
                             "accountId": MEMBER_A, "accessKeyId": "testing", "userName": "moto"},
            "eventTime": _event_time(t), "eventSource": "iam.amazonaws.com", "eventName": "AttachRolePolicy",
            "awsRegion": "us-east-1", "sourceIPAddress": "127.0.0.1", "userAgent": attach["detail"]["userAgent"],
            "requestParameters": {"roleName": name, "policyArn": ADMIN_ARN}, "responseElements": None,
            "requestID": answers[0]["ResponseMetadata"]["RequestId"], "eventID": attach["detail"]["eventID"],
            "readOnly": False, "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": MEMBER_A,
            "eventCategory": "Management"}}
    assert attach["detail"]["userAgent"].startswith("Boto3/"), "the request's User-Agent"
    uuid.UUID(attach["id"])
    uuid.UUID(attach["detail"]["eventID"])
    # the rule on us-east-1's default bus got each of them once; the one in the client's region none
    received = _drain(aws, queue)
    assert sorted(e["id"] for e in received) == sorted(e["id"] for e in log)
    assert next(e for e in received if e["id"] == attach["id"]) == attach
    assert _drain(in_eu, eu_queue) == []


def test_instance_profile_association_calls_send_cloudtrail_events_in_their_region(
        aws: Any, ctl: Control, endpoint: str) -> None:
    region = "eu-west-1"
    here = lambda name: _client_for(endpoint, name, TESTING, region)  # noqa: E731
    queue = _rule_to_queue(here, _trail_pattern("aws.ec2", EC2_TRAILED))
    use1_queue = _rule_to_queue(aws, _trail_pattern("aws.ec2", EC2_TRAILED))
    ec2, iam = here("ec2"), here("iam")
    first, second = _profile(iam), _profile(iam)
    p1, p2 = (iam.get_instance_profile(InstanceProfileName=p)["InstanceProfile"] for p in (first, second))
    (iid,) = [i["InstanceId"] for i in ec2.run_instances(ImageId=LINUX_AMI, MinCount=1, MaxCount=1)["Instances"]]

    def profile_of_instance() -> Any:
        return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0].get("IamInstanceProfile")

    def associations() -> list[dict[str, Any]]:
        return ec2.describe_iam_instance_profile_associations(
            Filters=[{"Name": "instance-id", "Values": [iid]}])["IamInstanceProfileAssociations"]

    t = ctl.now_ms()
    with pytest.raises(ClientError, match="NoSuchEntity"):
        ec2.associate_iam_instance_profile(InstanceId=iid, IamInstanceProfile={"Name": f"missing-{first}"})
    assoc = ec2.associate_iam_instance_profile(InstanceId=iid, IamInstanceProfile={"Name": first})[
        "IamInstanceProfileAssociation"]
    aid = assoc["AssociationId"]
    assert assoc == {"AssociationId": aid, "InstanceId": iid, "State": "associating",
                     "IamInstanceProfile": {"Arn": p1["Arn"], "Id": p1["InstanceProfileId"]}}
    assert associations() == [{**assoc, "State": "associated"}]
    assert profile_of_instance() == {"Arn": p1["Arn"], "Id": p1["InstanceProfileId"]}
    with pytest.raises(ClientError, match="IncorrectState"):
        ec2.associate_iam_instance_profile(InstanceId=iid, IamInstanceProfile={"Name": second})
    replaced = ec2.replace_iam_instance_profile_association(AssociationId=aid, IamInstanceProfile={"Arn": p2["Arn"]})
    assert replaced["IamInstanceProfileAssociation"]["IamInstanceProfile"]["Arn"] == p2["Arn"]
    assert [a["IamInstanceProfile"]["Arn"] for a in associations()] == [p2["Arn"]]
    assert profile_of_instance() == {"Arn": p2["Arn"], "Id": p2["InstanceProfileId"]}, "DescribeInstances follows"
    gone = ec2.disassociate_iam_instance_profile(AssociationId=aid)["IamInstanceProfileAssociation"]
    assert gone["State"] == "disassociating"
    assert associations() == [] and profile_of_instance() is None
    with pytest.raises(ClientError, match="InvalidAssociationID.NotFound"):
        ec2.disassociate_iam_instance_profile(AssociationId=aid)

    log = _trail_log(ctl, "aws.ec2")  # since the fixture's reset: the state-change events are not CloudTrail's
    assert [e["detail"]["eventName"] for e in log] == EC2_TRAILED, "one event per successful call"
    assert {(e["source"], e["region"], e["account"], e["time"]) for e in log} == {
        ("aws.ec2", region, MEMBER_A, _event_time(t))}
    profile = {"Arn": p2["Arn"]}
    assert [e["detail"]["requestParameters"] for e in log] == [
        {"AssociateIamInstanceProfileRequest": {"InstanceId": iid, "IamInstanceProfile": {"Name": first}}},
        {"ReplaceIamInstanceProfileAssociationRequest": {"AssociationId": aid, "IamInstanceProfile": profile}},
        {"DisassociateIamInstanceProfileRequest": {"AssociationId": aid}}]
    for event, (action, profile_view, state) in zip(log, [
            ("AssociateIamInstanceProfile", p1, "associating"),
            ("ReplaceIamInstanceProfileAssociation", p2, "associating"),
            ("DisassociateIamInstanceProfile", p2, "disassociating")]):
        detail = event["detail"]
        assert detail["responseElements"] == {f"{action}Response": {
            "xmlns": "http://ec2.amazonaws.com/doc/2016-11-15/", "requestId": detail["requestID"],
            "iamInstanceProfileAssociation": {
                "associationId": aid, "instanceId": iid, "state": state,
                "iamInstanceProfile": {"arn": profile_view["Arn"], "id": profile_view["InstanceProfileId"]}}}}
        uuid.UUID(detail["requestID"])
        assert (detail["eventSource"], detail["awsRegion"], detail["recipientAccountId"], detail["readOnly"]) == (
            "ec2.amazonaws.com", region, MEMBER_A, False)
        assert detail["userIdentity"]["arn"] == f"arn:aws:iam::{MEMBER_A}:user/moto"
    received = _drain(here, queue)
    assert sorted(e["id"] for e in received) == sorted(e["id"] for e in log)
    assert _drain(aws, use1_queue) == [], "EC2 records go to the region of the call"


def test_cloudtrail_user_identity_of_an_assumed_role_session_and_of_a_seeded_user(
        aws: Any, ctl: Control, endpoint: str) -> None:
    admin = _seed(ctl, MEMBER_C)
    admin_iam = _client_for(endpoint, "iam", admin)
    operator_name = f"operator-{uuid.uuid4().hex[:6]}"
    operator = admin_iam.create_role(RoleName=operator_name,
                                     AssumeRolePolicyDocument=_trust(f"arn:aws:iam::{MEMBER_A}:root"))["Role"]
    creds = aws("sts").assume_role(RoleArn=operator["Arn"], RoleSessionName="runbook")["Credentials"]
    session = lambda name: _client_for(endpoint, name, creds)  # noqa: E731
    queue = _rule_to_queue(session, _trail_pattern("aws.iam", IAM_TRAILED))
    a_queue = _rule_to_queue(aws, _trail_pattern("aws.iam", IAM_TRAILED))
    iam = _client_for(endpoint, "iam", creds, "ap-southeast-2")
    web = f"web-{uuid.uuid4().hex[:6]}"
    iam.create_role(RoleName=web, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    iam.attach_role_policy(RoleName=web, PolicyArn=ADMIN_ARN)
    admin_iam.put_role_policy(RoleName=web, PolicyName="inline", PolicyDocument=json.dumps(_doc("s3:*")))
    events = {e["detail"]["eventName"]: e for e in _drain(session, queue)}
    assert sorted(events) == ["AttachRolePolicy", "PutRolePolicy"]
    assert {(e["account"], e["region"], e["detail"]["recipientAccountId"]) for e in events.values()} == {
        (MEMBER_C, "us-east-1", MEMBER_C)}, "moto keeps the session's resources in the role's account"
    session_caller = session("sts").get_caller_identity()
    identity = events["AttachRolePolicy"]["detail"]["userIdentity"]
    assert identity == {
        "type": "AssumedRole", "principalId": f"{operator['RoleId']}:runbook",
        "arn": f"arn:aws:sts::{MEMBER_C}:assumed-role/{operator_name}/runbook", "accountId": MEMBER_C,
        "accessKeyId": creds["AccessKeyId"],
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": operator["RoleId"], "arn": operator["Arn"],
                              "accountId": MEMBER_C, "userName": operator_name},
            "webIdFederationData": {},
            "attributes": {"creationDate": identity["sessionContext"]["attributes"]["creationDate"],
                           "mfaAuthenticated": "false"}}}
    assert re.fullmatch(ISO_SECOND, identity["sessionContext"]["attributes"]["creationDate"])
    assert (identity["arn"], identity["principalId"]) == (session_caller["Arn"], session_caller["UserId"])
    admin_caller = _client_for(endpoint, "sts", admin).get_caller_identity()
    assert events["PutRolePolicy"]["detail"]["userIdentity"] == {
        "type": "IAMUser", "principalId": admin_caller["UserId"], "arn": f"arn:aws:iam::{MEMBER_C}:user/opsflow-admin",
        "accountId": MEMBER_C, "accessKeyId": admin["AccessKeyId"], "userName": "opsflow-admin"}
    assert _drain(aws, a_queue) == [], "account A's bus gets none of account C's calls"


def test_account_authorization_details_give_each_role_its_profiles_policies_and_boundary(
        aws: Any, ctl: Control) -> None:
    iam = aws("iam")
    raw = _raw_bodies(iam)
    name = f"web-{uuid.uuid4().hex[:6]}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST),
                    Tags=[{"Key": "team", "Value": "ops"}])
    plain = _profile(iam, ssm=False)  # a role with no boundary, policy or tag
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    iam.attach_role_policy(RoleName=name, PolicyArn=SSM_CORE_ARN)
    iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=json.dumps(_doc("s3:GetObject")))
    boundary = iam.create_policy(PolicyName=f"{name}-boundary", PolicyDocument=json.dumps(_doc("ec2:*", "s3:*")))[
        "Policy"]
    iam.create_policy_version(PolicyArn=boundary["Arn"], PolicyDocument=json.dumps(_doc("ec2:*")))
    iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary["Arn"])
    details = iam.get_account_authorization_details(Filter=["Role", "LocalManagedPolicy"])
    roles = {r["RoleName"]: r for r in details["RoleDetailList"]}
    role = roles[name]
    assert role["AssumeRolePolicyDocument"] == EC2_TRUST
    assert [(p["InstanceProfileName"], [r["RoleName"] for r in p["Roles"]]) for p in role["InstanceProfileList"]] == [
        (name, [name])]
    assert role["AttachedManagedPolicies"] == [
        {"PolicyName": "AmazonSSMManagedInstanceCore", "PolicyArn": SSM_CORE_ARN}]
    assert role["RolePolicyList"] == [{"PolicyName": "inline", "PolicyDocument": _doc("s3:GetObject")}]
    assert role["PermissionsBoundary"] == {"PermissionsBoundaryType": "PermissionsBoundaryPolicy",
                                           "PermissionsBoundaryArn": boundary["Arn"]}
    assert role["Tags"] == [{"Key": "team", "Value": "ops"}]
    assert "PermissionsBoundary" not in roles[plain] and roles[plain]["AttachedManagedPolicies"] == []
    assert not [p for p in details["Policies"] if p["Arn"].startswith("arn:aws:iam::aws:")], "local policies only"
    (policy,) = [p for p in details["Policies"] if p["Arn"] == boundary["Arn"]]
    assert {k: policy[k] for k in ("PolicyName", "PolicyId", "DefaultVersionId", "AttachmentCount",
                                   "PermissionsBoundaryUsageCount", "IsAttachable")} == {
        "PolicyName": f"{name}-boundary", "PolicyId": boundary["PolicyId"], "DefaultVersionId": "v1",
        "AttachmentCount": 0, "PermissionsBoundaryUsageCount": 1, "IsAttachable": True}
    assert [(v["VersionId"], v["IsDefaultVersion"], v["Document"]) for v in policy["PolicyVersionList"]] == [
        ("v1", True, _doc("ec2:*", "s3:*")), ("v2", False, _doc("ec2:*"))]
    # on the wire every policy document is URL-encoded, as IAM sends them
    documents = re.findall(r"<(AssumeRolePolicyDocument|PolicyDocument|Document)>([^<]*)<",
                           raw["GetAccountAuthorizationDetails"])
    assert documents and all(text.startswith("%7B") for _, text in documents), documents[:3]
    assert {tag for tag, _ in documents} == {"AssumeRolePolicyDocument", "PolicyDocument", "Document"}


@pytest.mark.parametrize("name", ["AmazonSSMManagedInstanceCore", "AdministratorAccess"])
def test_aws_managed_policies_and_their_default_version_can_be_read(aws: Any, ctl: Control, name: str) -> None:
    iam = aws("iam")
    raw = _raw_bodies(iam)
    arn = f"arn:aws:iam::aws:policy/{name}"
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    assert (policy["PolicyName"], policy["Arn"], policy["Path"], policy["IsAttachable"]) == (name, arn, "/", True)
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    assert (version["VersionId"], version["IsDefaultVersion"]) == (policy["DefaultVersionId"], True)
    statements = version["Document"]["Statement"]
    if name == "AdministratorAccess":
        assert statements == [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    else:
        actions = {a for st in statements for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}
        assert {"ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel",
                "ec2messages:GetMessages"} <= actions
    assert re.search(r"<Document>%7B", raw["GetPolicyVersion"]), "URL-encoded on the wire"
