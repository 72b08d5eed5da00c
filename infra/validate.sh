#!/usr/bin/env bash
# opsflow: offline checks of the deployment files (called by `make test`).
#
#   infra/validate.sh             install what is missing, then run every check
#   infra/validate.sh install     only install (idempotent)
#
# Checks (none talks to AWS; nothing is deployed):
#   1. cfn-lint on infra/template.yaml, infra/member-account.yaml (the member accounts' StackSet
#      template) and infra/examples/*.yaml (errors, warnings and informational findings all fail).
#   2. sam validate --lint (cfn-lint through SAM) and sam validate (the SAM translator), run
#      with dummy credentials and HTTP(S)_PROXY pointing at a closed local port, so any
#      attempt to reach AWS (or SAM's PyPI version check) fails instead of leaking out.
#   3. asl-validator on statemachines/*.asl.json and statemachines/procedures/*.asl.json as deployed (it accepts `${Name}` Resource
#      placeholders by design), and again on a copy with the placeholders replaced by example
#      Lambda ARNs, so its ARN format check runs too.
#   4. IAM: no wildcard action (grep on the YAML, then every statement of the SAM-transformed
#      template: no `*`/`?` in actions, no NotAction, every action known to cfn-lint's IAM
#      data); lists the statements that need Resource "*". No role gets
#      AWSLambdaBasicExecutionRole or writes logs on Resource "*" (each function has its own
#      role, scoped to its own log group).
#   5. Consistency: the state machine's DefinitionSubstitutions match the `${...}` placeholders
#      of its ASL file; every function's Binary is a binary of the functions package, which
#      is a member of the Cargo workspace; samconfig.toml environments default/dev/prod
#      (build and deploy agree on FunctionArchitecture).
#
# Tools: aws-sam-cli and cfn-lint pinned in infra/requirements-validate.txt, installed into
# their own venv (default $REPO/.cache/validate-venv, override with OPSFLOW_VALIDATE_VENV):
# aws-sam-cli pins boto3/botocore, click and pydantic exactly, and those pins conflict with the
# local cloud's venv ($REPO/.venv: moto and boto3==1.44.5), so sharing it would break one or
# the other. asl-validator pinned in infra/package.json, installed with `npm ci` into
# infra/node_modules. Both reinstall only when their pins change (stamp files).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="${OPSFLOW_VALIDATE_VENV:-$REPO/.cache/validate-venv}"
PY="$VENV/bin/python"
REQS="$HERE/requirements-validate.txt"
TEMPLATE="$HERE/template.yaml"
PIP_TIMEOUT="${VALIDATE_PIP_TIMEOUT:-900}"
NPM_TIMEOUT="${VALIDATE_NPM_TIMEOUT:-300}"
CHECK_TIMEOUT="${VALIDATE_CHECK_TIMEOUT:-300}"

log() { echo "validate: $*" >&2; }
die() { log "$*"; exit 1; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

install_python() {
  local want stamp="$VENV/.opsflow-validate.stamp"
  want="$( { cat "$REQS"; python3 --version 2>&1; } | sha256sum | cut -d' ' -f1)"
  if [ -x "$PY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "python tools up to date ($VENV)"
    return 0
  fi
  if [ ! -x "$PY" ]; then
    log "creating venv $VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
  fi
  log "pip install -r ${REQS#"$REPO"/} (up to ${PIP_TIMEOUT}s)"
  # PIP_* settings from the environment (index, find-links, cert) are honoured by pip itself.
  timeout "$PIP_TIMEOUT" "$PY" -m pip install --disable-pip-version-check -q -r "$REQS" >&2
  echo "$want" > "$stamp"
}

install_node() {
  command -v npm >/dev/null || die "npm not found (Node.js is needed for asl-validator)"
  local want stamp="$HERE/node_modules/.opsflow-validate.stamp"
  want="$( { cat "$HERE/package.json" "$HERE/package-lock.json"; node --version; } | sha256sum | cut -d' ' -f1)"
  if [ -x "$HERE/node_modules/.bin/asl-validator" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "node tools up to date (infra/node_modules)"
    return 0
  fi
  log "npm ci in infra/ (up to ${NPM_TIMEOUT}s)"
  (cd "$HERE" && timeout "$NPM_TIMEOUT" npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$stamp"
}

# Environment for every tool run: no real credentials or config, a fixed Region, and a proxy
# on a closed local port so that any network call fails fast and visibly.
offline() {
  env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL \
    AWS_ACCESS_KEY_ID=validate-offline AWS_SECRET_ACCESS_KEY=validate-offline \
    AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
    AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
    AWS_EC2_METADATA_DISABLED=true \
    SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR="$REPO/.cache/sam-cli" \
    HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 \
    https_proxy=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy= \
    timeout "$CHECK_TIMEOUT" "$@"
}

FAILED=()
PASSED=()
run_check() {  # name, command...
  local name="$1" start end rc=0
  shift
  echo
  echo "==> $name"
  start=$(date +%s)
  "$@" || rc=$?
  end=$(date +%s)
  if [ "$rc" = 0 ]; then
    echo "ok: $name ($((end - start))s)"
    PASSED+=("$name")
  else
    echo "FAIL: $name (exit $rc, $((end - start))s)"
    FAILED+=("$name")
  fi
}

# --- the checks --------------------------------------------------------------------------------

# Helper code for checks 3-5 (Python, in the validation venv: cfn-lint's parser and IAM data,
# SAM's translator).
CHECKS_PY=""
write_checks_py() {
  CHECKS_PY="$(mktemp "${TMPDIR:-/tmp}/opsflow-validate.XXXXXX.py")"
  TMP_FILES+=("$CHECKS_PY")
  cat > "$CHECKS_PY" <<'PYEOF'
"""opsflow infra/validate.sh helpers: python3 CHECKS.py <mode> <repo> [args]."""
import glob
import json
import os
import re
import sys
import tomllib

REPO = sys.argv[2]
TEMPLATE = os.path.join(REPO, "infra", "template.yaml")
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def load_yaml(path):
    from cfnlint.decode import decode

    tpl, errors = decode(path)
    if errors:
        raise SystemExit(f"{path}: cannot parse: {errors}")
    return tpl


def substitute(src, dst):
    """Writes src with every ${Name} replaced by an example Lambda ARN."""
    text = open(src, encoding="utf-8").read()
    names = sorted(set(PLACEHOLDER.findall(text)))
    for name in names:
        fn = re.sub(r"FunctionArn$", "", name)
        arn = f"arn:aws:lambda:us-east-1:123456789012:function:opsflow-{fn}"
        text = text.replace("${" + name + "}", arn)
    open(dst, "w", encoding="utf-8").write(text)
    print(f"  {os.path.relpath(src, REPO)}: {len(names)} placeholder(s) -> example ARNs")


# ---- IAM ----------------------------------------------------------------------------------------

def iam_service_map():
    from cfnlint.data import AdditionalSpecs
    from cfnlint.helpers import load_resource

    return load_resource(AdditionalSpecs, "Policies.json")


def statements_of(doc):
    """Statements of a policy document, through Fn::If branches."""
    if not isinstance(doc, dict):
        return
    stmts = doc.get("Statement", [])
    for s in stmts if isinstance(stmts, list) else [stmts]:
        yield from expand_if(s)


def expand_if(node):
    if isinstance(node, dict) and list(node) == ["Fn::If"]:
        for branch in node["Fn::If"][1:]:
            yield from expand_if(branch)
    elif isinstance(node, dict) and node.get("Ref") == "AWS::NoValue":
        return
    elif isinstance(node, dict):
        yield node


def policy_documents(resources):
    """(where, document) for every identity policy and trust policy in a template."""
    for name, res in sorted(resources.items()):
        props = res.get("Properties", {}) or {}
        rtype = res.get("Type", "")
        if rtype == "AWS::IAM::Role":
            yield f"{name} (trust)", props.get("AssumeRolePolicyDocument")
            for p in props.get("Policies", []) or []:
                for q in expand_if(p):
                    yield f"{name}/{q.get('PolicyName', '?')}", q.get("PolicyDocument")
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            yield name, props.get("PolicyDocument")


def action_problems(action, service_map):
    if not isinstance(action, str):
        return [f"action {action!r} is not a literal string"]
    if "*" in action or "?" in action:
        return [f"wildcard action {action!r}"]
    if ":" not in action:
        return [f"action {action!r} is not service:action"]
    service, verb = action.split(":", 1)
    svc = service_map.get(service.lower())
    if svc is None:
        return [f"unknown service in action {action!r}"]
    if verb.lower() not in {a.lower() for a in svc.get("Actions", {})}:
        return [f"unknown action {action!r}"]
    return []


def check_template_iam(resources, service_map, label, verbose=True):
    problems, star = [], []
    for where, doc in policy_documents(resources):
        for st in statements_of(doc):
            if "NotAction" in st:
                problems.append(f"{label}: {where}: NotAction is not allowed")
            actions = st.get("Action", [])
            actions = actions if isinstance(actions, list) else [actions]
            for a in actions:
                problems += [f"{label}: {where}: {p}" for p in action_problems(a, service_map)]
            res = st.get("Resource")
            if res == "*" or res == ["*"]:
                star.append(f"{where}: {', '.join(map(str, actions))}")
    if verbose:
        for s in star:
            print(f"  Resource \"*\" (no resource-level permissions): {label}: {s}")
    return problems


LOG_WRITES = {"logs:createloggroup", "logs:createlogstream", "logs:putlogevents"}


def log_scope_problems(resources, label):
    """Function roles write logs only to named log groups: no AWSLambdaBasicExecutionRole
    (logs:* writes on every log group), no log writes on Resource "*"."""
    problems = []
    for name, res in sorted(resources.items()):
        if res.get("Type") != "AWS::IAM::Role":
            continue
        props = res.get("Properties", {}) or {}
        for m in props.get("ManagedPolicyArns", []) or []:
            if "AWSLambdaBasicExecutionRole" in json.dumps(m):
                problems.append(f"{label}: {name}: AWSLambdaBasicExecutionRole (logs on every log group)")
        for where, doc in policy_documents({name: res}):
            for st in statements_of(doc):
                actions = st.get("Action", [])
                actions = actions if isinstance(actions, list) else [actions]
                res_ = st.get("Resource")
                if res_ in ("*", ["*"]) and LOG_WRITES & {str(a).lower() for a in actions}:
                    problems.append(f"{label}: {where}: log writes on Resource \"*\"")
    return problems


def translated_template():
    from samcli.lib.translate.sam_template_validator import SamTemplateValidator
    from samcli.yamlhelper import yaml_parse

    class NoIamCalls:
        def load(self):
            raise RuntimeError("the SAM translator wanted to list managed policies from IAM")

    sam = yaml_parse(open(TEMPLATE, encoding="utf-8").read())
    out = SamTemplateValidator(sam, NoIamCalls(), region="us-east-1").get_translated_template_if_valid()
    return out if isinstance(out, dict) else yaml_parse(out)


def mode_iam(files):
    service_map = iam_service_map()

    # Self-test: the check must be able to fail.
    bad = {"R": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": {
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Allow", "Action": ["ec2:Describe*", "ec2:NoSuchCall"], "Resource": "*"},
            {"Fn::If": ["C", {"Effect": "Allow", "NotAction": "iam:PassRole", "Resource": "*"}, {"Ref": "AWS::NoValue"}]},
        ]}}]}}}
    found = check_template_iam(bad, service_map, "self-test", verbose=False)
    if len(found) != 4:
        raise SystemExit(f"self-test: expected 4 problems, found {found}")

    bad_logs = {"R": {"Type": "AWS::IAM::Role", "Properties": {
        "ManagedPolicyArns": ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
        "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [
            {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"}]}}]}}}
    found = log_scope_problems(bad_logs, "self-test")
    if len(found) != 2:
        raise SystemExit(f"self-test: expected 2 log-scope problems, found {found}")

    problems = []
    translated = translated_template()
    roles = sorted(k for k, v in translated["Resources"].items() if v["Type"] == "AWS::IAM::Role")
    print(f"  SAM-transformed template: {len(roles)} roles")
    for r in roles:
        props = translated["Resources"][r]["Properties"]
        actions = sorted({a for _, d in policy_documents({r: translated["Resources"][r]}) if not _.endswith("(trust)")
                          for s in statements_of(d)
                          for a in (s.get("Action") if isinstance(s.get("Action"), list) else [s.get("Action")])})
        managed = [m.rsplit("/", 1)[-1] if isinstance(m, str) else json.dumps(m) for m in props.get("ManagedPolicyArns", [])]
        print(f"    {r}: {', '.join(actions) or '(no inline permissions)'}"
              + (f"  [+ managed: {', '.join(managed)}]" if managed else ""))
    problems += check_template_iam(translated["Resources"], service_map, "infra/template.yaml")
    problems += log_scope_problems(translated["Resources"], "infra/template.yaml")
    for f in files:
        tpl = load_yaml(f)
        problems += check_template_iam(tpl.get("Resources", {}), service_map, os.path.relpath(f, REPO))
    for p in problems:
        print(f"  {p}")
    if problems:
        raise SystemExit(1)
    print(f"  no wildcard, unknown or NotAction actions in {1 + len(files)} template(s);"
          " function roles write logs only to their own log groups")


# ---- consistency --------------------------------------------------------------------------------

def function_binaries(pkg_dir):
    manifest = tomllib.load(open(os.path.join(pkg_dir, "Cargo.toml"), "rb"))
    names = {b["name"] for b in manifest.get("bin", []) if "name" in b}
    if manifest.get("package", {}).get("autobins", True):
        names |= {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(pkg_dir, "src", "bin", "*.rs"))}
        names |= {os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(pkg_dir, "src", "bin", "*", "main.rs"))}
    return manifest, names


def mode_consistency():
    problems = []
    tpl = load_yaml(TEMPLATE)
    resources = tpl["Resources"]
    glob_fn = tpl.get("Globals", {}).get("Function", {})
    infra = os.path.dirname(TEMPLATE)

    # State machines: DefinitionSubstitutions <-> placeholders.
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = res["Properties"]
        uri = props.get("DefinitionUri")
        if not isinstance(uri, str):
            problems.append(f"{name}: DefinitionUri must be a local file")
            continue
        path = os.path.normpath(os.path.join(infra, uri))
        if not os.path.isfile(path):
            problems.append(f"{name}: DefinitionUri {uri} does not exist")
            continue
        used = set(PLACEHOLDER.findall(open(path, encoding="utf-8").read()))
        given = set(props.get("DefinitionSubstitutions", {}))
        if used - given:
            problems.append(f"{name}: placeholders without a substitution: {sorted(used - given)}")
        if given - used:
            problems.append(f"{name}: substitutions the ASL does not use: {sorted(given - used)}")
        print(f"  {name}: {os.path.relpath(path, REPO)}: {len(used)} placeholders, {len(given)} substitutions")

    # Functions: Binary <-> the Cargo package's binaries.
    built = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        meta = res.get("Metadata", {})
        code = res["Properties"].get("CodeUri", glob_fn.get("CodeUri"))
        binary = meta.get("BuildProperties", {}).get("Binary")
        if meta.get("BuildMethod") != "rust-cargolambda" or not binary or not isinstance(code, str):
            problems.append(f"{name}: needs Metadata.BuildMethod rust-cargolambda, BuildProperties.Binary and a local CodeUri")
            continue
        built.setdefault(os.path.normpath(os.path.join(infra, code)), {})[binary] = name
    workspace = tomllib.load(open(os.path.join(REPO, "Cargo.toml"), "rb")).get("workspace", {})
    members = {os.path.normpath(os.path.join(REPO, m)) for m in workspace.get("members", [])}
    for pkg_dir, by_binary in sorted(built.items()):
        rel = os.path.relpath(pkg_dir, REPO)
        if not os.path.isfile(os.path.join(pkg_dir, "Cargo.toml")):
            problems.append(f"CodeUri {rel}: no Cargo.toml")
            continue
        if pkg_dir not in members:
            problems.append(f"CodeUri {rel}: not a member of the Cargo workspace (Cargo.toml [workspace] members)")
        _, binaries = function_binaries(pkg_dir)
        for binary, fn in sorted(by_binary.items()):
            if binary not in binaries:
                problems.append(f"{fn}: Binary {binary!r} is not a binary of {rel} (has {sorted(binaries)})")
        # The cold-start benchmark's hello-world baseline is built, never deployed.
        unused = binaries - set(by_binary) - {"hello"}
        if unused:
            problems.append(f"{rel}: binaries without a function in the template: {sorted(unused)}")
        print(f"  {rel}: {len(by_binary)} functions <-> binaries {sorted(binaries)}")

    # samconfig.toml.
    params = tpl.get("Parameters", {})
    required = {k for k, v in params.items() if "Default" not in v}
    cfg = tomllib.load(open(os.path.join(REPO, "samconfig.toml"), "rb"))
    if str(cfg.get("version")) != "0.1":
        problems.append("samconfig.toml: version must be 0.1")
    for env, stack, confirm in (("default", "opsflow", False), ("dev", "opsflow-dev", False), ("prod", "opsflow-prod", True)):
        e = cfg.get(env, {})
        dep = e.get("deploy", {}).get("parameters", {})
        build = e.get("build", {}).get("parameters", {})
        where = f"samconfig.toml [{env}]"
        if dep.get("stack_name", e.get("global", {}).get("parameters", {}).get("stack_name")) != stack:
            problems.append(f"{where}: stack_name must be {stack}")
        if "CAPABILITY_IAM" not in str(dep.get("capabilities", "")):
            problems.append(f"{where}: deploy capabilities must include CAPABILITY_IAM")
        if dep.get("resolve_s3") is not True:
            problems.append(f"{where}: deploy resolve_s3 must be true")
        if bool(dep.get("confirm_changeset")) != confirm:
            problems.append(f"{where}: confirm_changeset must be {str(confirm).lower()}")
        if build.get("template_file") != "infra/template.yaml":
            problems.append(f"{where}: build template_file must be infra/template.yaml")
        built_tpl = os.path.join(build.get("build_dir", ".aws-sam/build"), "template.yaml")
        if os.path.normpath(dep.get("template_file", built_tpl)) != os.path.normpath(built_tpl):
            problems.append(f"{where}: deploy template_file must be the built template {built_tpl}")
        overrides = dep.get("parameter_overrides", [])
        overrides = overrides if isinstance(overrides, list) else overrides.split()
        keys = {o.split("=", 1)[0] for o in overrides}
        if keys - set(params):
            problems.append(f"{where}: parameter_overrides name unknown parameters {sorted(keys - set(params))}")
        if required - keys:
            problems.append(f"{where}: parameter_overrides miss required parameters {sorted(required - keys)}")
        arch = {}
        for section, values in (("build", build.get("parameter_overrides", [])), ("deploy", overrides)):
            values = values if isinstance(values, list) else values.split()
            arch[section] = next((v.split("=", 1)[1] for v in values if v.startswith("FunctionArchitecture=")),
                                 params.get("FunctionArchitecture", {}).get("Default"))
        if arch["build"] != arch["deploy"]:
            problems.append(f"{where}: FunctionArchitecture {arch['build']} in build but {arch['deploy']} in deploy")
        print(f"  {where}: stack {stack}, {arch['deploy']}, overrides {sorted(keys)}")

    for p in problems:
        print(f"  {p}")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "substitute":
        substitute(sys.argv[3], sys.argv[4])
    elif mode == "iam":
        mode_iam(sys.argv[3:])
    elif mode == "consistency":
        mode_consistency()
    else:
        raise SystemExit(f"unknown mode {mode}")
PYEOF
}

check_cfn_lint() {
  (cd "$REPO" && offline "$VENV/bin/cfn-lint" --include-checks I -- infra/template.yaml infra/member-account.yaml infra/examples/*.yaml) || return 1
  echo "  cfn-lint $("$VENV/bin/cfn-lint" --version | awk '{print $2}'): no errors, warnings or informational findings"
}

check_sam_validate_lint() {
  (cd "$REPO" && offline "$VENV/bin/sam" validate --lint --template-file infra/template.yaml)
}

check_sam_validate_translate() {
  (cd "$REPO" && offline "$VENV/bin/sam" validate --template-file infra/template.yaml)
}

check_asl() {
  local f copy rc=0
  local validator="$HERE/node_modules/.bin/asl-validator"
  local files=("$REPO"/statemachines/*.asl.json "$REPO"/statemachines/procedures/*.asl.json)
  [ -e "${files[0]}" ] || { echo "  no statemachines/*.asl.json"; return 1; }
  for f in "${files[@]}"; do
    # As deployed: Resource "${PlanFunctionArn}" matches asl-validator's substitution pattern.
    timeout "$CHECK_TIMEOUT" "$validator" --json-path "$f" || rc=1
    # As Step Functions sees it after DefinitionSubstitutions: real ARNs, ARN check included.
    copy="$(mktemp "${TMPDIR:-/tmp}/opsflow-asl.XXXXXX.json")"
    TMP_FILES+=("$copy")
    "$PY" "$CHECKS_PY" substitute "$REPO" "$f" "$copy" || rc=1
    timeout "$CHECK_TIMEOUT" "$validator" --json-path "$copy" || rc=1
  done
  return "$rc"
}

# The grep the brief asks for: catches `Action: "*"`, `Action: ec2:*`, `- "ec2:Describe*"` and
# flow lists on the raw YAML. The semantic check below covers what the SAM transform adds.
WILDCARD_ACTION_INLINE='^[[:space:]]*(-[[:space:]]*)?["'"'"']?(Not)?Action["'"'"']?[[:space:]]*:.*(["'"'"'[:space:],[]\*|[a-z0-9-]+:[A-Za-z0-9]*[*?])'
WILDCARD_ACTION_ITEM='^[[:space:]]*-[[:space:]]*["'"'"']?[a-z0-9-]+:[A-Za-z0-9]*[*?]'
grep_wildcard_actions() {  # files... -> prints offending lines, 0 if any found
  { grep -nHE "$WILDCARD_ACTION_INLINE" "$@" || true
    grep -nHE "$WILDCARD_ACTION_ITEM" "$@" | grep -vE ':[0-9]+:[[:space:]]*-[[:space:]]*["'"'"']?arn:' || true
  } | sort -u | grep .
}

check_iam() {
  # The grep must be able to fail: feed it known-bad lines first.
  local bad
  bad="$(mktemp "${TMPDIR:-/tmp}/opsflow-iam.XXXXXX.yaml")"
  TMP_FILES+=("$bad")
  printf '%s\n' 'Action: "*"' '  "Action": "*",' '  Action: ec2:*' '  - ec2:Describe*' \
    "  - 's3:Get*'" '  Action: [ec2:DescribeInstances, iam:*]' '  Resource: "*"' '  - arn:*:ssm:*:*:document/x' > "$bad"
  if [ "$(grep_wildcard_actions "$bad" | wc -l)" != 6 ]; then
    echo "  grep self-test: expected 6 matches in:"; grep_wildcard_actions "$bad" || true
    return 1
  fi
  local files=("$TEMPLATE" "$HERE"/member-account.yaml "$HERE"/examples/*.yaml) found
  if found="$(grep_wildcard_actions "${files[@]}")"; then
    echo "  wildcard actions found:"; echo "$found"
    return 1
  fi
  echo "  grep: no wildcard action in ${#files[@]} YAML file(s)"
  (cd "$REPO" && offline "$PY" "$CHECKS_PY" iam "$REPO" "$HERE"/member-account.yaml "$HERE"/examples/*.yaml) || return 1
}

check_consistency() {
  (cd "$REPO" && offline "$PY" "$CHECKS_PY" consistency "$REPO")
}

main() {
  local t0 t1 t2
  t0=$(date +%s)
  install_python
  install_node
  t1=$(date +%s)
  [ "${1:-}" = install ] && { log "installed in $((t1 - t0))s"; return 0; }
  mkdir -p "$REPO/.cache/sam-cli"

  echo "opsflow infra validation (offline): aws-sam-cli $("$VENV/bin/sam" --version | awk '{print $NF}'),"\
       "cfn-lint $("$VENV/bin/cfn-lint" --version | awk '{print $2}'),"\
       "asl-validator $("$HERE/node_modules/.bin/asl-validator" --version)"
  write_checks_py
  run_check "cfn-lint infra/template.yaml infra/member-account.yaml infra/examples/*.yaml" check_cfn_lint
  run_check "sam validate --lint (cfn-lint via SAM, offline)" check_sam_validate_lint
  run_check "sam validate (SAM translator, offline)" check_sam_validate_translate
  run_check "asl-validator statemachines/{,procedures/}*.asl.json (as deployed and substituted)" check_asl
  run_check "IAM: no wildcard or unknown actions" check_iam
  run_check "consistency: ASL substitutions, function binaries, samconfig.toml" check_consistency
  t2=$(date +%s)

  echo
  echo "validate: ${#PASSED[@]} passed, ${#FAILED[@]} failed (install check $((t1 - t0))s, checks $((t2 - t1))s)"
  if [ "${#FAILED[@]}" -gt 0 ]; then
    printf 'validate: FAILED: %s\n' "${FAILED[@]}"
    return 1
  fi
}

TMP_FILES=()
cleanup() { [ "${#TMP_FILES[@]}" -gt 0 ] && rm -f "${TMP_FILES[@]}"; return 0; }
trap cleanup EXIT

case "${1:-}" in
  ""|install) main "$@" ;;
  *) sed -n '2,6p' "$0" >&2; exit 2 ;;
esac
