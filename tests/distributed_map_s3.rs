//! A Distributed Map whose ItemReader and ResultWriter go to the local cloud's S3 through the
//! CLI's S3 object store: the engine's plug for opsflow's local pipeline.

use std::sync::Arc;

use opsflow::local::LocalCloud;
use opsflow::object_store::S3Store;
use opsflow_asl::{model, Engine, StartOptions, Status};
use opsflow_aws::Clients;
use serde_json::{json, Value};

async fn put(clients: &Clients, bucket: &str, key: &str, body: &str) {
    clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
}

async fn get(clients: &Clients, bucket: &str, key: &str) -> Value {
    let out = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e:?}"));
    serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_map_reads_items_from_and_writes_results_to_the_local_clouds_s3() {
    let cloud = tokio::task::spawn_blocking(LocalCloud::start).await.unwrap().expect("local cloud");
    let clients = Clients::for_endpoint(&cloud.endpoint).await.unwrap();
    clients.s3.create_bucket().bucket("fleet").send().await.unwrap();
    put(
        &clients,
        "fleet",
        "in/hosts.json",
        r#"[{"host": "a"}, {"host": "b"}, {"host": "c"}]"#,
    )
    .await;
    put(&clients, "fleet", "logs/1.log", "x").await;
    put(&clients, "fleet", "logs/2.log", "yy").await;
    let engine = Engine::builder().object_store(Arc::new(S3Store::new(clients.s3.clone()))).build();
    let processor = json!({"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});

    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map",
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"}, "Parameters": {"Bucket": "fleet", "Key": "in/hosts.json"}},
        "ItemBatcher": {"MaxItemsPerBatch": 2},
        "ItemProcessor": processor,
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "fleet", "Prefix": "out"}},
        "End": true}}});
    let sm = Arc::new(model::parse_value(&def).unwrap());
    let r = engine.run(&sm, json!({}), StartOptions::default()).await;
    assert_eq!(r.status, Status::Succeeded, "{:?} {:?}", r.error, r.cause);
    let details = &r.output.unwrap()["ResultWriterDetails"];
    assert_eq!(details["Bucket"], "fleet");
    let manifest = get(&clients, "fleet", details["Key"].as_str().unwrap()).await;
    let succeeded = get(&clients, "fleet", manifest["ResultFiles"]["SUCCEEDED"][0]["Key"].as_str().unwrap()).await;
    let outputs: Vec<Value> = succeeded
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_str(d["Output"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        outputs,
        [json!({"Items": [{"host": "a"}, {"host": "b"}]}), json!({"Items": [{"host": "c"}]})]
    );

    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map",
        "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": "fleet", "Prefix": "logs/"}},
        "ItemSelector": {"key.$": "$$.Map.Item.Value.Key", "size.$": "$$.Map.Item.Value.Size"},
        "ItemProcessor": processor, "End": true}}});
    let sm = Arc::new(model::parse_value(&def).unwrap());
    let r = engine.run(&sm, json!({}), StartOptions::default()).await;
    assert_eq!(
        r.output,
        Some(json!([{"key": "logs/1.log", "size": 1}, {"key": "logs/2.log", "size": 2}])),
        "{:?}",
        r.cause
    );

    // A missing object is States.ItemReaderFailed, with S3's own error code in the cause.
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map",
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"}, "Parameters": {"Bucket": "fleet", "Key": "nope.json"}},
        "ItemProcessor": processor, "End": true}}});
    let sm = Arc::new(model::parse_value(&def).unwrap());
    let r = engine.run(&sm, json!({}), StartOptions::default()).await;
    assert_eq!(r.error.as_deref(), Some("States.ItemReaderFailed"));
    assert!(r.cause.unwrap().contains("NoSuchKey"));
}
