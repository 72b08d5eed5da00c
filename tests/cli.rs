//! The `opsflow sfn` command-line contract: one JSON object on stdout, exit 0 / 1 / 2.
use std::process::{Command, Output};

use serde_json::{json, Value};

fn opsflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opsflow"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn temp_file(name: &str, content: &str) -> String {
    let dir = std::env::temp_dir().join(format!("opsflow-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn run_succeeds_with_exit_0_and_the_four_fields() {
    let def = temp_file(
        "ok.asl.json",
        r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"x.$":"$.a"},"End":true}}}"#,
    );
    let o = opsflow(&["sfn", "run", "--definition", &def, "--input", r#"{"a":0}"#]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout_json(&o),
        json!({"status": "SUCCEEDED", "output": {"x": 0}, "error": null, "cause": null})
    );
}

#[test]
fn run_reads_input_from_a_file_and_prints_history_on_request() {
    let def = temp_file("h.asl.json", r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#);
    let input = temp_file("in.json", r#"{"from":"file"}"#);
    let o = opsflow(&["sfn", "run", "--definition", &def, "--input", &format!("@{input}"), "--history"]);
    let v = stdout_json(&o);
    assert_eq!(v["output"], json!({"from": "file"}));
    let types: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]
    );
    assert_eq!(v["events"][1]["stateEnteredEventDetails"]["input"], r#"{"from":"file"}"#);
}

#[test]
fn a_failed_execution_exits_1_with_error_and_cause() {
    let def = temp_file(
        "fail.asl.json",
        r#"{"StartAt":"F","States":{"F":{"Type":"Fail","Error":"Nope","Cause":"because"}}}"#,
    );
    let o = opsflow(&["sfn", "run", "--definition", &def]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout_json(&o),
        json!({"status": "FAILED", "output": null, "error": "Nope", "cause": "because"})
    );
}

#[test]
fn an_invalid_definition_exits_2_naming_state_and_field() {
    let def = temp_file("bad.asl.json", r#"{"StartAt":"P","States":{"P":{"Type":"Pass","Next":"Q"}}}"#);
    for args in [
        vec!["sfn", "run", "--definition", def.as_str()],
        vec!["sfn", "validate", def.as_str()],
    ] {
        let o = opsflow(&args);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("State 'P': field 'Next'"), "{err}");
    }
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(opsflow(&["sfn", "run"]).status.code(), Some(2));
    let def = temp_file("u.asl.json", r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#);
    assert_eq!(
        opsflow(&["sfn", "run", "--definition", &def, "--input", "{not json"]).status.code(),
        Some(2)
    );
    assert_eq!(
        opsflow(&["sfn", "run", "--definition", &def, "--mock-config", "x.json"])
            .status
            .code(),
        Some(2)
    );
}

/// Runs the example workflow with one test case of its mock configuration.
fn volume_resize(case: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "sfn",
        "run",
        "--definition",
        "examples/volume-resize.asl.json",
        "--input",
        r#"{"volumeId":"vol-0abc","sizeGiB":32}"#,
        "--mock-config",
        "examples/volume-resize.mock.json",
        "--test-case",
        case,
    ];
    args.extend_from_slice(extra);
    opsflow(&args)
}

#[test]
fn mock_config_test_cases_drive_task_states() {
    let o = volume_resize("HappyPath", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        stdout_json(&o)["output"],
        json!({"volumeId": "vol-0abc", "sizeGiB": 32, "state": "optimizing", "backoffs": 3})
    );
    let o = volume_resize("NeverFinishes", &["--state-machine-name", "volume-resize"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout_json(&o)["error"], "VolumeResizeFailed");
    let o = volume_resize("HappyPath", &["--state-machine-name", "unknown"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no state machine named 'unknown'"));
}

#[test]
fn validate_accepts_the_repository_definitions() {
    let o = opsflow(&[
        "sfn",
        "validate",
        "examples/volume-resize.asl.json",
        "bench/definitions/counter-loop.asl.json",
        "bench/definitions/map-pass.asl.json",
        "bench/definitions/task-loop.asl.json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}
