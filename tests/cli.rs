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
        "bench/definitions/distributed-map-batch100.asl.json",
        "bench/definitions/distributed-map-batch1.asl.json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn run_starts_the_state_machines_given_with_state_machine_name_file() {
    let child = temp_file(
        "child.asl.json",
        r#"{"StartAt":"D","States":{"D":{"Type":"Pass","Parameters":{"n.$":"States.MathAdd($.n, $.n)"},"End":true}}}"#,
    );
    let parent = temp_file(
        "parent.asl.json",
        r#"{"StartAt":"S","States":{"S":{"Type":"Task","Resource":"arn:aws:states:::states:startExecution.sync:2",
            "Parameters":{"StateMachineArn":"arn:aws:states:us-east-1:123456789012:stateMachine:Doubler","Input":{"n.$":"$.n"}},
            "OutputPath":"$.Output","End":true}}}"#,
    );
    let spec = format!("Doubler={child}");
    let o = opsflow(&[
        "sfn",
        "run",
        "--definition",
        &parent,
        "--input",
        r#"{"n":4}"#,
        "--state-machine",
        &spec,
        "--history",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    assert_eq!(v["output"], json!({"n": 8}));
    assert_eq!(v["children"][0]["status"], "SUCCEEDED");
    assert_eq!(v["children"][0]["events"][0]["type"], "ExecutionStarted");
    // Without it, the child does not exist.
    let o = opsflow(&["sfn", "run", "--definition", &parent, "--input", r#"{"n":4}"#]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout_json(&o)["error"], "StepFunctions.StateMachineDoesNotExistException");
}

#[test]
fn run_reads_a_distributed_maps_items_from_the_s3_folder() {
    let dir = std::env::temp_dir().join(format!("opsflow-cli-s3-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("fleet")).unwrap();
    std::fs::write(dir.join("fleet/hosts.csv"), "host,zone\na,z1\nb,z2\n").unwrap();
    let def = temp_file(
        "dmap.asl.json",
        r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemReader":{"Resource":"arn:aws:states:::s3:getObject",
            "ReaderConfig":{"InputType":"CSV","CSVHeaderLocation":"FIRST_ROW"},"Parameters":{"Bucket":"fleet","Key":"hosts.csv"}},
            "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},
            "End":true}}}"#,
    );
    let o = opsflow(&["sfn", "run", "--definition", &def, "--s3-dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        stdout_json(&o)["output"],
        json!([{"host": "a", "zone": "z1"}, {"host": "b", "zone": "z2"}])
    );
}

#[test]
fn run_calls_http_tasks_with_the_connections_file() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 8192];
        let n = sock.read(&mut buf).unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).to_string();
        let body = r#"{"ok":true}"#;
        let _ = write!(
            sock,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        req
    });
    let conns = temp_file(
        "connections.json",
        r#"{"arn:aws:events:us-east-1:123456789012:connection/Api/1":{"AuthorizationType":"API_KEY","AuthParameters":{"ApiKeyAuthParameters":{"ApiKeyName":"x-api-key","ApiKeyValue":"k1"}}}}"#,
    );
    let def = temp_file(
        "http.asl.json",
        &format!(
            r#"{{"StartAt":"H","States":{{"H":{{"Type":"Task","Resource":"arn:aws:states:::http:invoke","Parameters":{{"ApiEndpoint":"http://127.0.0.1:{port}/ping","Method":"GET","Authentication":{{"ConnectionArn":"arn:aws:events:us-east-1:123456789012:connection/Api/1"}}}},"OutputPath":"$.ResponseBody","End":true}}}}}}"#
        ),
    );
    let o = opsflow(&["sfn", "run", "--definition", &def, "--connections", &conns]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(stdout_json(&o)["output"], json!({"ok": true}));
    let req = server.join().unwrap().to_ascii_lowercase();
    assert!(req.starts_with("get /ping http/1.1"), "{req}");
    assert!(req.contains("x-api-key: k1"), "{req}");
}

#[test]
fn test_state_prints_the_test_state_response() {
    let def = temp_file(
        "ts.asl.json",
        r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","Parameters":{"FunctionName":"f","Payload.$":"$"},
            "Retry":[{"ErrorEquals":["Throttled"],"MaxAttempts":2}],"OutputPath":"$.Payload","Next":"Done"},"Done":{"Type":"Succeed"}}}"#,
    );
    let o = opsflow(&[
        "sfn",
        "test-state",
        "--definition",
        &def,
        "--input",
        r#"{"a":1}"#,
        "--mock",
        r#"{"result":"{\"Payload\":{\"b\":2}}"}"#,
        "--inspection-level",
        "DEBUG",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v = stdout_json(&o);
    assert_eq!(
        (v["status"].as_str(), v["output"].as_str(), v["nextState"].as_str()),
        (Some("SUCCEEDED"), Some(r#"{"b":2}"#), Some("Done"))
    );
    assert_eq!(v["inspectionData"]["afterParameters"], r#"{"FunctionName":"f","Payload":{"a":1}}"#);
    // A mocked error with retries left: RETRIABLE, exit 1.
    let o = opsflow(&[
        "sfn",
        "test-state",
        "--definition",
        &def,
        "--state-name",
        "T",
        "--mock",
        r#"{"errorOutput":{"error":"Throttled","cause":"busy"}}"#,
        "--state-configuration",
        r#"{"retrierRetryCount":0}"#,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = stdout_json(&o);
    assert_eq!(v["status"], "RETRIABLE");
    assert_eq!(v["inspectionData"]["errorDetails"]["retryIndex"], 0);
    // An unknown state is refused with exit 2.
    let o = opsflow(&["sfn", "test-state", "--definition", &def, "--state-name", "Nope"]);
    assert_eq!(o.status.code(), Some(2));
}
