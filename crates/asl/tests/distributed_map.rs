//! Distributed Map, from the AWS guides "Using Map state in Distributed mode", "ItemReader",
//! "ItemBatcher" and "ResultWriter".
mod common;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use opsflow_asl::{model, Engine, MemoryStore, StartOptions, Status, TaskRequest};
use serde_json::{json, Value};

fn processor(states: Value) -> Value {
    let start = states.as_object().unwrap().keys().next().unwrap().clone();
    json!({"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": start, "States": states})
}

fn pass_processor() -> Value {
    processor(json!({"P": {"Type": "Pass", "End": true}}))
}

/// A machine with one Distributed Map state `M` and the given extra fields.
fn dmap(fields: Value) -> Value {
    let mut m = json!({"Type": "Map", "ItemProcessor": pass_processor(), "End": true});
    m.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    json!({"StartAt": "M", "States": {"M": m}})
}

/// Fails items whose `fail` is true, passes the others through.
fn failing_processor() -> Value {
    processor(json!({
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.fail", "BooleanEquals": true, "Next": "F"}], "Default": "Ok"},
        "F": {"Type": "Fail", "Error": "Item.Failed", "Cause": "told to"},
        "Ok": {"Type": "Pass", "End": true}}))
}

#[tokio::test]
async fn each_item_runs_as_a_child_execution_with_its_own_history_and_map_run_events() {
    let def = dmap(json!({"Label": "Fleet", "ItemSelector": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"}}));
    let r = run(def, json!([10, 20, 30])).await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    assert_eq!(r.output, Some(json!([{"i": 0, "v": 10}, {"i": 1, "v": 20}, {"i": 2, "v": 30}])));
    assert_eq!(
        types(&r),
        [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapRunStarted",
            "MapRunSucceeded",
            "MapStateSucceeded",
            "MapStateExited",
            "ExecutionSucceeded"
        ]
    );
    let started = r.events.iter().find(|e| e.event_type == "MapRunStarted").unwrap();
    let run_arn = started.detail("mapRunArn").unwrap();
    assert!(
        run_arn.starts_with("arn:aws:states:us-east-1:123456789012:mapRun:Test/Fleet:"),
        "{run_arn}"
    );
    assert_eq!(r.children.len(), 3);
    for c in &r.children {
        assert!(c
            .execution_arn
            .starts_with("arn:aws:states:us-east-1:123456789012:execution:Test/Fleet:"));
        assert_eq!(c.state_machine_arn, "arn:aws:states:us-east-1:123456789012:stateMachine:Test/Fleet");
        assert_eq!(c.started_by.as_deref(), Some(run_arn));
        assert_eq!(
            types(&c.result),
            ["ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]
        );
    }
}

#[tokio::test]
async fn the_legacy_iterator_with_distributed_mode_runs_distributed_too() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "Iterator": pass_processor(), "End": true}}});
    let r = run(def, json!([1, 2])).await;
    assert_eq!(r.output, Some(json!([1, 2])));
    assert!(types(&r).contains(&"MapRunStarted"));
    assert_eq!(r.children.len(), 2);
}

async fn peak_concurrency(items: usize, max_concurrency: u64) -> usize {
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, p) = (now.clone(), peak.clone());
    let engine = Engine::builder()
        .lambda("work", move |req: TaskRequest| {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let running = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok(req.payload)
            }
        })
        .build();
    let mut def = dmap(json!({"MaxConcurrency": max_concurrency}));
    def["States"]["M"]["ItemProcessor"] =
        processor(json!({"W": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:work", "End": true}}));
    let r = run_with(&engine, def, Value::Array((0..items).map(|i| json!(i)).collect())).await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    assert_eq!(r.output.unwrap().as_array().unwrap().len(), items);
    peak.load(Ordering::SeqCst)
}

#[tokio::test]
async fn max_concurrency_bounds_the_children_running_at_once() {
    let peak = peak_concurrency(30, 4).await;
    assert!((2..=4).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn more_children_than_the_inline_limit_of_40_run_at_once() {
    let peak = peak_concurrency(100, 0).await;
    assert!(peak > 40, "peak {peak}");
}

#[tokio::test]
async fn an_untolerated_child_failure_fails_the_map_run_with_exceed_tolerated_failure_threshold() {
    let mut def = dmap(json!({}));
    def["States"]["M"]["ItemProcessor"] = failing_processor();
    let r = run(def, json!([{"fail": false}, {"fail": true}])).await;
    assert_eq!(r.error.as_deref(), Some("States.ExceedToleratedFailureThreshold"));
    let t = types(&r);
    assert_eq!(t[t.len() - 3..], ["MapRunFailed", "MapStateFailed", "ExecutionFailed"]);
    let failed = r.events.iter().find(|e| e.event_type == "MapRunFailed").unwrap();
    assert_eq!(failed.error(), Some("States.ExceedToleratedFailureThreshold"));
    assert_eq!(r.cause.as_deref(), Some("The specified tolerated failure threshold was exceeded"));
}

#[tokio::test]
async fn tolerated_failures_leave_the_failed_childs_description_in_the_results() {
    let mut def = dmap(json!({"ToleratedFailureCount": 1}));
    def["States"]["M"]["ItemProcessor"] = failing_processor();
    let r = run(def.clone(), json!([{"fail": false}, {"fail": true}])).await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    let out = r.output.unwrap();
    assert_eq!(out[0], json!({"fail": false}));
    assert_eq!(
        (out[1]["Status"].as_str(), out[1]["Error"].as_str(), out[1]["Cause"].as_str()),
        (Some("FAILED"), Some("Item.Failed"), Some("told to"))
    );
    assert_eq!(out[1]["Input"], json!("{\"fail\":true}"));
    // Two failures are one too many.
    let r = run(def, json!([{"fail": true}, {"fail": true}])).await;
    assert_eq!(r.error.as_deref(), Some("States.ExceedToleratedFailureThreshold"));
}

#[tokio::test]
async fn a_failed_batch_counts_all_its_items_against_the_tolerated_percentage() {
    let mut def = dmap(json!({"ToleratedFailurePercentage": 40, "ItemBatcher": {"MaxItemsPerBatch": 2}}));
    // A batch fails when any of its items says so.
    def["States"]["M"]["ItemProcessor"] = processor(json!({
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.Items[0].fail", "BooleanEquals": true, "Next": "F"}], "Default": "Ok"},
        "F": {"Type": "Fail", "Error": "Batch.Failed"},
        "Ok": {"Type": "Pass", "End": true}}));
    let items = |failing: usize| Value::Array((0..5).map(|i| json!({"fail": i == failing})).collect());
    // The last batch holds one item: 1 of 5 failed (20%) is tolerated.
    assert_eq!(run(def.clone(), items(4)).await.status, Status::Succeeded);
    // The first batch holds two: 2 of 5 (40%) is not above 40%, still tolerated.
    assert_eq!(run(def.clone(), items(0)).await.status, Status::Succeeded);
    def["States"]["M"]["ToleratedFailurePercentage"] = json!(39);
    assert_eq!(
        run(def, items(0)).await.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
}

#[tokio::test]
async fn item_batcher_groups_items_with_the_batch_input() {
    let def = dmap(json!({"ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"job.$": "$.job"}}, "ItemsPath": "$.items"}));
    let r = run(def, json!({"job": "j1", "items": [1, 2, 3]})).await;
    assert_eq!(
        r.output,
        Some(json!([{"BatchInput": {"job": "j1"}, "Items": [1, 2]}, {"BatchInput": {"job": "j1"}, "Items": [3]}]))
    );
    assert_eq!(r.children.len(), 2);
    // A byte limit splits batches too: each item counts its JSON text and a separator (7 bytes here).
    let def = dmap(json!({"ItemBatcher": {"MaxInputBytesPerBatch": 14}}));
    let r = run(def, json!(["aaaa", "bbbb", "cccc"])).await;
    assert_eq!(r.output, Some(json!([{"Items": ["aaaa", "bbbb"]}, {"Items": ["cccc"]}])));
}

fn store_engine(store: &Arc<MemoryStore>) -> Engine {
    Engine::builder().object_store(store.clone()).build()
}

fn reader(resource: &str, params: Value, config: Value) -> Value {
    dmap(json!({"ItemReader": {"Resource": resource, "Parameters": params, "ReaderConfig": config}}))
}

#[tokio::test]
async fn item_reader_reads_a_json_array_and_json_lines_with_max_items() {
    let store = Arc::new(MemoryStore::new());
    store.insert("data", "items.json", r#"[{"a":1},{"a":2},{"a":3}]"#);
    store.insert("data", "items.jsonl", "{\"a\":1}\n{\"a\":2}\n\n");
    let engine = store_engine(&store);
    let def = reader(
        "arn:aws:states:::s3:getObject",
        json!({"Bucket": "data", "Key.$": "$.key"}),
        json!({"InputType": "JSON", "MaxItems": 2}),
    );
    let r = run_with(&engine, def, json!({"key": "items.json"})).await;
    assert_eq!(r.output, Some(json!([{"a": 1}, {"a": 2}])), "{:?}", r.cause);
    let def = reader(
        "arn:aws:states:::s3:getObject",
        json!({"Bucket": "data", "Key": "items.jsonl"}),
        json!({"InputType": "JSONL"}),
    );
    assert_eq!(run_with(&engine, def, json!({})).await.output, Some(json!([{"a": 1}, {"a": 2}])));
}

#[tokio::test]
async fn item_reader_reads_csv_rows_as_objects_of_strings() {
    let store = Arc::new(MemoryStore::new());
    store.insert("data", "rows.csv", "id,name\n1,\"Smith, J\"\n2,\"say \"\"hi\"\"\"\n");
    store.insert("data", "bare.csv", "1|a\n2|b");
    let engine = store_engine(&store);
    let def = reader(
        "arn:aws:states:::s3:getObject",
        json!({"Bucket": "data", "Key": "rows.csv"}),
        json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}),
    );
    assert_eq!(
        run_with(&engine, def, json!({})).await.output,
        Some(json!([{"id": "1", "name": "Smith, J"}, {"id": "2", "name": "say \"hi\""}]))
    );
    let def = reader(
        "arn:aws:states:::s3:getObject",
        json!({"Bucket": "data", "Key": "bare.csv"}),
        json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["n", "l"], "CSVDelimiter": "PIPE"}),
    );
    assert_eq!(
        run_with(&engine, def, json!({})).await.output,
        Some(json!([{"n": "1", "l": "a"}, {"n": "2", "l": "b"}]))
    );
}

#[tokio::test]
async fn item_reader_lists_objects_under_a_prefix() {
    let store = Arc::new(MemoryStore::new());
    store.insert("logs", "2026/a.log", "aaa");
    store.insert("logs", "2026/b.log", "b");
    store.insert("logs", "2025/c.log", "c");
    let def = reader(
        "arn:aws:states:::s3:listObjectsV2",
        json!({"Bucket": "logs", "Prefix": "2026/"}),
        json!({}),
    );
    let out = run_with(&store_engine(&store), def, json!({})).await.output.unwrap();
    let keys: Vec<_> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["Key"].as_str().unwrap(), o["Size"].as_u64().unwrap()))
        .collect();
    assert_eq!(keys, [("2026/a.log", 3), ("2026/b.log", 1)]);
    assert_eq!(out[0]["StorageClass"], "STANDARD");
    assert_eq!(out[0]["Etag"], "\"47bce5c74f589f4867dbd57e9ca9f808\""); // md5("aaa")
}

#[tokio::test]
async fn an_item_reader_that_cannot_read_is_item_reader_failed() {
    let store = Arc::new(MemoryStore::new());
    let def = reader(
        "arn:aws:states:::s3:getObject",
        json!({"Bucket": "data", "Key": "missing.json"}),
        json!({"InputType": "JSON"}),
    );
    let r = run_with(&store_engine(&store), def.clone(), json!({})).await;
    assert_eq!(r.error.as_deref(), Some("States.ItemReaderFailed"));
    assert!(types(&r).contains(&"MapRunFailed"));
    // Without any object store, too.
    assert_eq!(run(def, json!({})).await.error.as_deref(), Some("States.ItemReaderFailed"));
}

#[tokio::test]
async fn result_writer_exports_results_with_a_manifest_and_returns_where() {
    let store = Arc::new(MemoryStore::new());
    let mut def = dmap(json!({"ToleratedFailureCount": 1,
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "out", "Prefix": "jobs"}}}));
    def["States"]["M"]["ItemProcessor"] = failing_processor();
    let r = run_with(
        &store_engine(&store),
        def,
        json!([{"fail": false}, {"fail": true}, {"fail": false}]),
    )
    .await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    let out = r.output.unwrap();
    let run_arn = out["MapRunArn"].as_str().unwrap();
    let run_id = run_arn.rsplit(':').next().unwrap();
    assert_eq!(
        out["ResultWriterDetails"],
        json!({"Bucket": "out", "Key": format!("jobs/{run_id}/manifest.json")})
    );
    let read = |k: &str| -> Value { serde_json::from_slice(&store.get("out", k).unwrap_or_else(|| panic!("{k} not written"))).unwrap() };
    let manifest = read(&format!("jobs/{run_id}/manifest.json"));
    assert_eq!(manifest["DestinationBucket"], "out");
    assert_eq!(manifest["MapRunArn"], run_arn);
    assert_eq!(manifest["ResultFiles"]["PENDING"], json!([]));
    let succeeded_key = format!("jobs/{run_id}/SUCCEEDED_0.json");
    assert_eq!(manifest["ResultFiles"]["SUCCEEDED"][0]["Key"], succeeded_key);
    let succeeded = read(&succeeded_key);
    assert_eq!(
        manifest["ResultFiles"]["SUCCEEDED"][0]["Size"].as_u64().unwrap() as usize,
        store.get("out", &succeeded_key).unwrap().len()
    );
    // Exported results are described whole (Transformation NONE): input and output as JSON text.
    assert_eq!(succeeded.as_array().unwrap().len(), 2);
    assert_eq!(succeeded[0]["Status"], "SUCCEEDED");
    assert_eq!(succeeded[0]["Output"], "{\"fail\":false}");
    let failed = read(&format!("jobs/{run_id}/FAILED_0.json"));
    assert_eq!(
        (failed[0]["Status"].as_str(), failed[0]["Error"].as_str()),
        (Some("FAILED"), Some("Item.Failed"))
    );
}

#[tokio::test]
async fn writer_config_flatten_returns_array_outputs_flattened() {
    let mut def = dmap(json!({"ResultWriter": {"WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSON"}}}));
    def["States"]["M"]["ItemProcessor"] =
        processor(json!({"P": {"Type": "Pass", "Parameters": {"v.$": "States.Array($, $)"}, "OutputPath": "$.v", "End": true}}));
    assert_eq!(run(def, json!([1, 2])).await.output, Some(json!([1, 1, 2, 2])));
}

#[tokio::test]
async fn stopping_the_execution_aborts_the_map_run() {
    let engine = Engine::builder()
        .lambda("never", |_req: TaskRequest| async move {
            std::future::pending::<()>().await;
            Ok(json!(null))
        })
        .build();
    let mut def = dmap(json!({}));
    def["States"]["M"]["ItemProcessor"] =
        processor(json!({"W": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:never", "End": true}}));
    let mut running = engine.start(machine(def), json!([1, 2]), StartOptions::default());
    while let Some(e) = running.events.recv().await {
        if e.event_type == "MapRunStarted" {
            break;
        }
    }
    running.handle.stop(Some("Stopped"), None);
    let r = tokio::time::timeout(Duration::from_secs(5), running.result).await.unwrap().unwrap();
    assert_eq!(r.status, Status::Aborted);
    let t = types(&r);
    assert_eq!(t[t.len() - 2..], ["MapRunAborted", "ExecutionAborted"]);
}

#[test]
fn distributed_fields_are_checked_at_load_time() {
    let inline = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemBatcher": {"MaxItemsPerBatch": 2},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}});
    let errs = model::parse_value(&inline).unwrap_err();
    assert!(errs.iter().any(|e| e.to_string().contains("ItemBatcher")), "{errs:?}");
    let too_many = dmap(json!({"MaxConcurrency": 10001}));
    assert!(model::parse_value(&too_many).is_err());
    let mut no_type = dmap(json!({}));
    no_type["States"]["M"]["ItemProcessor"]["ProcessorConfig"] = json!({"Mode": "DISTRIBUTED"});
    assert!(model::parse_value(&no_type).is_err());
    assert!(model::parse_value(&dmap(json!({"MaxConcurrency": 10000}))).is_ok());
}

#[tokio::test]
async fn a_local_folder_stands_in_for_s3_buckets() {
    let root = std::env::temp_dir().join(format!("opsflow-asl-store-{}", uuid_like()));
    std::fs::create_dir_all(root.join("in/batch")).unwrap();
    std::fs::write(root.join("in/batch/items.json"), "[1, 2]").unwrap();
    let engine = Engine::builder()
        .object_store(Arc::new(opsflow_asl::LocalDirStore::new(&root)))
        .build();
    let mut def = reader(
        "arn:aws:states:::s3:getObject",
        json!({"Bucket": "in", "Key": "batch/items.json"}),
        json!({"InputType": "JSON"}),
    );
    def["States"]["M"]["ResultWriter"] =
        json!({"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "out", "Prefix": "p"}});
    let r = run_with(&engine, def, json!({})).await;
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.cause);
    let key = r.output.unwrap()["ResultWriterDetails"]["Key"].as_str().unwrap().to_string();
    let manifest: Value = serde_json::from_slice(&std::fs::read(root.join("out").join(&key)).unwrap()).unwrap();
    let succeeded = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"].as_str().unwrap();
    let results: Value = serde_json::from_slice(&std::fs::read(root.join("out").join(succeeded)).unwrap()).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(&root).unwrap();
}

fn uuid_like() -> String {
    format!(
        "{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn item_reader_reads_an_s3_inventory_through_its_manifest() {
    use std::io::Write;
    let store = Arc::new(MemoryStore::new());
    let manifest = json!({"sourceBucket": "src", "destinationBucket": "arn:aws:s3:::inv", "version": "2016-11-30",
        "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size",
        "files": [{"key": "src/cfg/data/a.csv.gz", "size": 1}, {"key": "src/cfg/data/b.csv", "size": 1}]});
    store.insert("inv", "src/cfg/2026-12-06T00-00Z/manifest.json", manifest.to_string());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"\"src\",\"logs/1.log\",\"10\"\n\"src\",\"logs/2.log\",\"20\"\n")
        .unwrap();
    store.insert("inv", "src/cfg/data/a.csv.gz", gz.finish().unwrap());
    store.insert("inv", "src/cfg/data/b.csv", "\"src\",\"logs/3.log\",\"30\"\n");
    let def = reader(
        "arn:aws:states:::s3:getObject",
        json!({"Bucket": "inv", "Key": "src/cfg/2026-12-06T00-00Z/manifest.json"}),
        json!({"InputType": "MANIFEST"}),
    );
    let r = run_with(&store_engine(&store), def, json!({})).await;
    assert_eq!(
        r.output,
        Some(json!([
            {"Bucket": "src", "Key": "logs/1.log", "Size": "10"},
            {"Bucket": "src", "Key": "logs/2.log", "Size": "20"},
            {"Bucket": "src", "Key": "logs/3.log", "Size": "30"}
        ])),
        "{:?}",
        r.cause
    );
}

#[tokio::test]
async fn items_pointer_selects_the_array_inside_a_json_object() {
    let store = Arc::new(MemoryStore::new());
    store.insert("data", "doc.json", r#"{"meta": {}, "data": {"hosts": ["a", "b"]}}"#);
    let def = reader(
        "arn:aws:states:::s3:getObject",
        json!({"Bucket": "data", "Key": "doc.json"}),
        json!({"InputType": "JSON", "ItemsPointer": "/data/hosts"}),
    );
    assert_eq!(
        run_with(&store_engine(&store), def, json!({})).await.output,
        Some(json!(["a", "b"]))
    );
}

#[tokio::test]
async fn an_express_child_runs_for_at_most_five_minutes() {
    let waiting = |execution_type: &str, seconds: u64| {
        let mut def = dmap(json!({}));
        def["States"]["M"]["ItemProcessor"] = json!({"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type},
            "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": seconds, "End": true}}});
        def
    };
    let r = run(waiting("EXPRESS", 400), json!([1])).await;
    assert_eq!(r.error.as_deref(), Some("States.ExceedToleratedFailureThreshold"));
    assert_eq!(r.children[0].result.status, Status::TimedOut);
    assert_eq!(r.children[0].result.engine_ms, 300_000);
    assert_eq!(run(waiting("EXPRESS", 299), json!([1])).await.status, Status::Succeeded);
    assert_eq!(run(waiting("STANDARD", 400), json!([1])).await.status, Status::Succeeded);
}
