#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from the repository's own fixtures and tests.

Writes fuzz/corpus/<target>/seed-<sha1> (not committed: `make fuzz` makes them anew). The
curated seeds and every regression input live in fuzz/seeds/<target>/ (committed).

Sources: every *.asl.json and *.mock.json, the alert fixtures, and the `json!({...})` blocks
and string literals of the Rust tests (those that are plain JSON), from which the definitions,
Choice rules, paths, intrinsic calls and JSONata expressions are picked out.
"""
import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"
SKIP = {"target", ".cache", ".venv", "node_modules", "fuzz", ".git"}


def files(pattern):
    for p in sorted(ROOT.rglob(pattern)):
        if not SKIP.intersection(p.relative_to(ROOT).parts):
            yield p


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{hashlib.sha1(data).hexdigest()}").write_bytes(data)


def json_blocks(text):
    """The `json!({...})` / `json!([...])` bodies of Rust source that are plain JSON."""
    for m in re.finditer(r"json!\(\s*([\[{])", text):
        start, depth, i, in_str = m.start(1), 0, m.start(1), False
        while i < len(text):
            c = text[i]
            if in_str:
                if c == "\\":
                    i += 1
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
                if depth == 0:
                    body = re.sub(r",(\s*[}\]])", r"\1", text[start : i + 1])
                    try:
                        yield json.loads(body)
                    except ValueError:
                        pass
                    break
            i += 1


def string_literals(text):
    for m in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', text):
        try:
            yield json.loads(f'"{m.group(1)}"')
        except ValueError:
            pass


def walk(v):
    yield v
    if isinstance(v, dict):
        for x in v.values():
            yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)


def main():
    docs = []  # every JSON value found
    strings = set()
    for p in files("*.json"):
        try:
            docs.append(json.loads(p.read_text()))
        except ValueError:
            pass
    for p in files("*.rs"):
        text = p.read_text()
        docs.extend(json_blocks(text))
        strings.update(string_literals(text))
    for d in docs:
        for v in walk(d):
            if isinstance(v, str):
                strings.add(v)
    inputs = [json.dumps(d) for d in docs if isinstance(d, dict) and "States" not in d][:40]
    input_of = lambda i: inputs[i % len(inputs)] if inputs else "{}"

    for i, d in enumerate(docs):
        for v in walk(d):
            if isinstance(v, dict) and isinstance(v.get("States"), dict) and "StartAt" in v:
                text = json.dumps(v)
                write("asl_definition", b"\x00" + text.encode())
                write("asl_definition", b"\x02" + text.encode())
            if isinstance(v, dict) and "Next" in v and ("Variable" in v or "Condition" in v or "And" in v or "Or" in v or "Not" in v):
                write("choice_rule", json.dumps(v) + "\x00" + input_of(i))
            if isinstance(v, dict) and "StateMachines" in v:
                write("mock_config", json.dumps(v, indent=1))
            if isinstance(v, dict) and ("Records" in v or "detail-type" in v or "alarmData" in v):
                write("alert_event", json.dumps(v))
            if isinstance(v, dict) and "RequestType" in v:
                write("cfn_request", json.dumps(v))
            if isinstance(v, dict) and ("status_details" in v or "response_code" in v):
                write("command_output", json.dumps(v))
    for j, s in enumerate(sorted(strings)):
        if s.startswith("$") and len(s) < 400:
            write("path_query", s + "\x00" + input_of(j))
        if s.startswith("States.") and "(" in s:
            write("intrinsic", s + "\x00" + input_of(j))
        # (Not the tests' huge ranges: jlens builds a range of up to 10^7 items before its
        # array limit applies, a quarter second each time a mutation keeps it.)
        if s.startswith("{%") and s.endswith("%}") and not re.search(r"\.\.\s*\d{5}", s):
            write("jsonata", s[2:-2] + "\x00" + input_of(j))
        if "OPSFLOW_FS_SIZE_BYTES" in s:
            write("command_output", s)
    for t in sorted(p.name for p in OUT.iterdir()):
        print(f"{t}: {len(list((OUT / t).iterdir()))} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
