//! Distributed Map (`ItemProcessor.ProcessorConfig.Mode: DISTRIBUTED`), as the AWS guide "Using
//! Map state in Distributed mode" and the ItemReader / ItemBatcher / ResultWriter pages describe:
//!
//! - Each item (or batch) runs as a child execution of its own (`ExecutionType` STANDARD or
//!   EXPRESS) named `<state machine>/<Label or state name>:<uuid>`, with its own history; the
//!   parent records `MapStateStarted`, `MapRunStarted` (`mapRunArn`), then `MapRunSucceeded`,
//!   `MapRunFailed` (`error`, `cause`) or `MapRunAborted` (the parent stopped).
//! - At most `MaxConcurrency` children run at once (0 or absent: 10,000), a bounded pool that
//!   starts the next child as one finishes. On the virtual clock each pool slot keeps its own
//!   time, so the Map takes as long as its busiest slot.
//! - Any failed child beyond `ToleratedFailureCount` / `ToleratedFailurePercentage` (of items;
//!   a failed batch counts all its items) fails the Map Run with
//!   `States.ExceedToleratedFailureThreshold` — with no tolerance, the first failure does — and
//!   the children still running are stopped. A tolerated failure appears in the results as the
//!   child's description (`Status`, `Error`, `Cause`, …), as AWS returns failed children.
//! - `ItemReader` reads through the engine's [`crate::store::ObjectStore`]: `s3:getObject`
//!   (`InputType` JSON array, JSONL, CSV with `CSVHeaderLocation` FIRST_ROW or GIVEN and
//!   `CSVDelimiter`), `s3:listObjectsV2` (items `{Etag, Key, LastModified, Size,
//!   StorageClass}`); `ReaderConfig.MaxItems(Path)` limits them. A read that fails is
//!   `States.ItemReaderFailed`.
//! - `ItemBatcher`: `MaxItemsPerBatch(Path)`, `MaxInputBytesPerBatch(Path)`, `BatchInput`; a
//!   child's input is `{"BatchInput": …, "Items": [...]}`.
//! - `ResultWriter`: `WriterConfig.Transformation` (COMPACT by default, NONE by default when
//!   exporting, FLATTEN) and `OutputType` (JSON, JSONL); with `Resource` `s3:putObject` and
//!   `Bucket`/`Prefix`, the results go to `<Prefix>/<map run id>/SUCCEEDED_0.json` /
//!   `FAILED_0.json` with a `manifest.json` (`DestinationBucket`, `MapRunArn`, `ResultFiles`),
//!   and the state's result is `{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}`. A write
//!   that fails is `States.ResultWriterFailed`.

use super::map::{map_items, select_items, tolerance};
use super::*;
use crate::model::{Distributed, ItemBatcher, ItemReader};
use crate::store::ObjectStore;

/// AWS runs at most 10,000 child executions of a Distributed Map at once.
pub const DISTRIBUTED_MAP_CONCURRENCY: usize = 10_000;

/// An Express workflow's longest run (AWS quotas: "Maximum execution time: 5 minutes").
pub const EXPRESS_MAX_SECONDS: u64 = 300;
pub(super) const TOLERATED_FAILURE_CAUSE: &str = "The specified tolerated failure threshold was exceeded";
const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";

/// Logs `MapRunAborted` when the Map Run is dropped unfinished (the execution was stopped).
struct AbortGuard {
    exec: Arc<Exec>,
    pc: PathCtx,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if self.armed {
            self.exec.emit(&mut self.pc, "MapRunAborted", Details::None);
        }
    }
}

/// One finished child execution.
struct Child {
    name: String,
    input: Value,
    start_ms: i64,
    result: ExecutionResult,
}

pub(super) async fn run_distributed(
    exec: &Arc<Exec>,
    st: &State,
    m: &MapState,
    d: &Distributed,
    eff: &Value,
    pc: &mut PathCtx,
) -> Result<Value, Stop> {
    let sm_name = pc.context["StateMachine"]["Name"].as_str().unwrap_or("StateMachine").to_string();
    let label = d.label.clone().unwrap_or_else(|| st.name.to_string());
    let run_id = uuid::Uuid::new_v4().to_string();
    let (region, account) = (&exec.engine.region, &exec.engine.account);
    let run = MapRun {
        arn: format!("arn:aws:states:{region}:{account}:mapRun:{sm_name}/{label}:{run_id}"),
        id: run_id,
        child_machine: format!("{sm_name}/{label}"),
        child_machine_arn: format!("arn:aws:states:{region}:{account}:stateMachine:{sm_name}/{label}"),
    };
    let max = match &m.max_concurrency {
        None => 0,
        Some(s) => exec.seconds(s, eff, pc, "MaxConcurrencyPath")?,
    };
    let limit = if max == 0 {
        DISTRIBUTED_MAP_CONCURRENCY
    } else {
        (max as usize).min(DISTRIBUTED_MAP_CONCURRENCY)
    };
    let tolerated = tolerance(exec, m, eff, pc)?;
    let items = match &d.reader {
        None => Some(map_items(exec, st, m, eff, pc)?),
        Some(_) => None,
    };
    exec.emit(
        pc,
        "MapStateStarted",
        details(
            "mapStateStartedEventDetails",
            vec![("length", json!(items.as_ref().map_or(0, Vec::len)))],
        ),
    );
    exec.emit(
        pc,
        "MapRunStarted",
        details("mapRunStartedEventDetails", vec![("mapRunArn", json!(run.arn))]),
    );
    let mut guard = AbortGuard {
        exec: exec.clone(),
        pc: pc.clone(),
        armed: true,
    };
    let r = map_run(exec, m, d, &run, items, limit, tolerated, eff, pc).await;
    guard.armed = false;
    match &r {
        Ok(_) => {
            exec.emit(pc, "MapRunSucceeded", Details::None);
            exec.emit(pc, "MapStateSucceeded", Details::None);
        }
        Err(Stop::Failed(e)) => exec.emit(
            pc,
            "MapRunFailed",
            details(
                "mapRunFailedEventDetails",
                vec![("error", json!(e.error)), ("cause", json!(e.cause))],
            ),
        ),
        Err(_) => exec.emit(pc, "MapRunAborted", Details::None),
    }
    r
}

struct MapRun {
    arn: String,
    id: String,
    child_machine: String,
    child_machine_arn: String,
}

#[allow(clippy::too_many_arguments)]
async fn map_run(
    exec: &Arc<Exec>,
    m: &MapState,
    d: &Distributed,
    run: &MapRun,
    items: Option<Vec<Value>>,
    limit: usize,
    (tolerated_count, tolerated_pct): (u64, f64),
    eff: &Value,
    pc: &mut PathCtx,
) -> Result<Value, Stop> {
    let items = match (items, &d.reader) {
        (Some(items), _) => items,
        (None, Some(r)) => read_items(exec, r, eff, pc).await?,
        (None, None) => Vec::new(),
    };
    let inputs = select_items(exec, m, items, eff, pc)?;
    let total_items = inputs.len();
    // Child inputs, each with the number of items it carries.
    let children_inputs: Vec<(Value, usize)> = match &d.batcher {
        None => inputs.into_iter().map(|v| (v, 1)).collect(),
        Some(b) => batch(exec, b, inputs, eff, pc)?,
    };

    let engine = Engine {
        inner: exec.engine.clone(),
    };
    let clock = exec.engine.clock;
    let record = exec.record;
    let start = exec.now(pc);
    let keep_inputs = exec.record || transformation(d) == "NONE";
    // AWS: an Express workflow runs for at most five minutes.
    let express_limit = (d.execution_type == "EXPRESS").then_some(EXPRESS_MAX_SECONDS);
    let spawn = |i: usize, input: Value, at: i64| {
        let engine = engine.clone();
        let processor = m.processor.clone();
        let opts = StartOptions {
            name: uuid::Uuid::new_v4().to_string(),
            state_machine_name: run.child_machine.clone(),
            record_history: record,
        };
        async move {
            let name = opts.name.clone();
            let result = engine.run_at(&processor, input.clone(), opts, at, express_limit).await;
            (
                i,
                Child {
                    name,
                    input,
                    start_ms: at,
                    result,
                },
            )
        }
    };
    let n = children_inputs.len();
    let mut sizes = Vec::with_capacity(n);
    let mut queue = children_inputs.into_iter().enumerate();
    // The pool: each child a task of its own (on a multi-threaded runtime they run on every
    // core); dropping the set, when the Map Run fails or the execution stops, aborts them all.
    let mut running = tokio::task::JoinSet::new();
    for (i, (input, size)) in queue.by_ref().take(limit) {
        sizes.push(size);
        running.spawn(spawn(i, input, start));
    }
    let mut done: Vec<Option<Child>> = (0..n).map(|_| None).collect();
    let (mut failed_items, mut end) = (0usize, start);
    while let Some(joined) = running.join_next().await {
        let (i, child) = joined.map_err(|e| {
            Stop::Failed(StatesError::runtime(format!(
                "a child execution of Map Run {} did not finish: {e}",
                run.arn
            )))
        })?;
        let child_end = child.start_ms + child.result.engine_ms;
        end = end.max(child_end);
        if child.result.status != Status::Succeeded {
            failed_items += sizes[i];
            let over = failed_items as u64 > tolerated_count && (failed_items as f64 * 100.0 / total_items.max(1) as f64) > tolerated_pct;
            if over {
                drop(running);
                pc.now_ms = pc.now_ms.max(end);
                record_child(exec, run, child);
                // The cause AWS gives (as its TestState API reports it too).
                return Err(Stop::Failed(StatesError::new(
                    names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                    TOLERATED_FAILURE_CAUSE,
                )));
            }
        }
        if let Some((j, (input, size))) = queue.next() {
            sizes.push(size);
            let at = if clock == Clock::Virtual { child_end } else { exec.now(pc) };
            running.spawn(spawn(j, input, at));
        }
        // A succeeded child's input is needed only to describe it (NONE) or keep its history.
        let mut child = child;
        if !keep_inputs && child.result.status == Status::Succeeded {
            child.input = Value::Null;
        }
        done[i] = Some(child);
    }
    pc.now_ms = pc.now_ms.max(end);
    let children: Vec<Child> = done.into_iter().flatten().collect();
    let out = results(exec, d, run, &children, eff, pc).await;
    for c in children {
        record_child(exec, run, c);
    }
    out
}

/// Keeps a finished child in the parent's result (when the parent keeps its history).
fn record_child(exec: &Exec, run: &MapRun, c: Child) {
    if !exec.record {
        return;
    }
    let execution_arn = child_arn(exec, run, &c.name);
    exec.children.lock().unwrap().push(ChildExecution {
        execution_arn,
        state_machine_arn: run.child_machine_arn.clone(),
        name: c.name,
        started_by: Some(run.arn.clone()),
        start_ms: c.start_ms,
        input: c.input,
        result: c.result,
    });
}

fn child_arn(exec: &Exec, run: &MapRun, name: &str) -> String {
    format!(
        "arn:aws:states:{}:{}:execution:{}:{name}",
        exec.engine.region, exec.engine.account, run.child_machine
    )
}

/// A child as the results of a Map Run describe it (`Transformation: NONE`): ARNs, name, status,
/// `Input` and `Output` as JSON text, dates as ISO-8601 text; `Error` and `Cause` when it failed.
fn describe_child(run: &MapRun, c: &Child) -> Value {
    let r = &c.result;
    let arn = run.arn.replacen(":mapRun:", ":execution:", 1);
    let arn = format!("{}:{}", &arn[..arn.rfind(':').unwrap_or(arn.len())], c.name);
    let mut d = json!({
        "ExecutionArn": arn,
        "Input": c.input.to_string(),
        "InputDetails": {"Included": true},
        "Name": c.name,
        "RedriveCount": 0,
        "RedriveStatus": "NOT_REDRIVABLE",
        "StartDate": format_ms(c.start_ms),
        "StateMachineArn": run.child_machine_arn,
        "Status": r.status.as_str(),
        "StopDate": format_ms(c.start_ms + r.engine_ms),
    });
    if let Some(out) = &r.output {
        d["Output"] = json!(out.to_string());
        d["OutputDetails"] = json!({"Included": true});
        d["RedriveStatusReason"] = json!("Execution is SUCCEEDED and cannot be redriven");
    }
    if let Some(e) = &r.error {
        d["Error"] = json!(e);
    }
    if let Some(cause) = &r.cause {
        d["Cause"] = json!(cause);
    }
    d
}

/// The Map's result: the children's results transformed, or (exporting) where they were written.
/// `WriterConfig.Transformation`: COMPACT by default, NONE by default when exporting to S3.
fn transformation(d: &Distributed) -> &str {
    let writer = d.writer.as_ref();
    let export = writer.and_then(|w| w.params.as_ref());
    writer
        .and_then(|w| w.transformation.as_deref())
        .unwrap_or(if export.is_some() { "NONE" } else { "COMPACT" })
}

async fn results(exec: &Arc<Exec>, d: &Distributed, run: &MapRun, children: &[Child], eff: &Value, pc: &PathCtx) -> Result<Value, Stop> {
    let writer = d.writer.as_ref();
    let export = writer.and_then(|w| w.params.as_ref());
    let transformation = transformation(d);
    let transform = |cs: &mut dyn Iterator<Item = &Child>| -> Vec<Value> {
        let mut out = Vec::new();
        for c in cs {
            match (&c.result.output, transformation) {
                // A failed child is returned unchanged, as with NONE.
                (None, _) | (_, "NONE") => out.push(describe_child(run, c)),
                (Some(Value::Array(a)), "FLATTEN") => out.extend(a.iter().cloned()),
                (Some(v), _) => out.push(v.clone()),
            }
        }
        out
    };
    let Some(params) = export else {
        return Ok(Value::Array(transform(&mut children.iter())));
    };
    let params = eval_args(exec, params, eff, pc, "ResultWriter")?;
    let bucket = params.get("Bucket").and_then(Value::as_str).unwrap_or_default().to_string();
    let prefix = params
        .get("Prefix")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let writer_failed = |m: String| Stop::Failed(StatesError::new(RESULT_WRITER_FAILED, m));
    let store = exec
        .engine
        .store
        .clone()
        .ok_or_else(|| writer_failed("No object store is configured for ResultWriter (EngineBuilder::object_store)".into()))?;
    let dir = if prefix.is_empty() {
        run.id.clone()
    } else {
        format!("{prefix}/{}", run.id)
    };
    let jsonl = writer.is_some_and(|w| w.output_type == "JSONL");
    let mut files = Map::new();
    for status in ["FAILED", "PENDING", "SUCCEEDED"] {
        let mut list = Vec::new();
        let entries = transform(
            &mut children
                .iter()
                .filter(|c| (c.result.status == Status::Succeeded) == (status == "SUCCEEDED") && status != "PENDING"),
        );
        if !entries.is_empty() {
            let body = if jsonl {
                entries.iter().map(|e| e.to_string() + "\n").collect::<String>()
            } else {
                Value::Array(entries).to_string()
            };
            let key = format!("{dir}/{status}_0.json");
            let size = body.len();
            store.put_object(&bucket, &key, body.into_bytes()).await.map_err(writer_failed)?;
            list.push(json!({"Key": key, "Size": size}));
        }
        files.insert(status.to_string(), Value::Array(list));
    }
    let manifest = json!({"DestinationBucket": bucket, "MapRunArn": run.arn, "ResultFiles": files});
    let key = format!("{dir}/manifest.json");
    store
        .put_object(&bucket, &key, manifest.to_string().into_bytes())
        .await
        .map_err(writer_failed)?;
    Ok(json!({"MapRunArn": run.arn, "ResultWriterDetails": {"Bucket": bucket, "Key": key}}))
}

/// `Parameters` (JSONPath, against the effective input) or `Arguments` (JSONata).
fn eval_args(exec: &Exec, a: &Assign, eff: &Value, pc: &PathCtx, field: &str) -> Result<Value, StatesError> {
    match a {
        Assign::Path(t) => t.eval(&exec.scope(eff, pc)),
        Assign::Jsonata(t) => t.eval(&exec.jenv(pc, &Seen::of(eff)), field),
    }
}

async fn read_items(exec: &Arc<Exec>, r: &ItemReader, eff: &Value, pc: &PathCtx) -> Result<Vec<Value>, Stop> {
    let params = eval_args(exec, &r.params, eff, pc, "ItemReader")?;
    let failed = |m: String| Stop::Failed(StatesError::new(ITEM_READER_FAILED, m));
    let store: Arc<dyn ObjectStore> = exec
        .engine
        .store
        .clone()
        .ok_or_else(|| failed("No object store is configured for ItemReader (EngineBuilder::object_store)".into()))?;
    let bucket = params.get("Bucket").and_then(Value::as_str).unwrap_or_default();
    let mut items = if r.input_type.as_deref() == Some("MANIFEST") {
        let key = params.get("Key").and_then(Value::as_str).unwrap_or_default();
        read_inventory(&*store, bucket, key).await.map_err(failed)?
    } else if r.get_object {
        let key = params.get("Key").and_then(Value::as_str).unwrap_or_default();
        let body = store.get_object(bucket, key).await.map_err(failed)?;
        let text = String::from_utf8(body).map_err(|_| failed(format!("s3://{bucket}/{key} is not UTF-8 text")))?;
        parse_items(&text, r).map_err(|m| failed(format!("s3://{bucket}/{key}: {m}")))?
    } else {
        let prefix = params.get("Prefix").and_then(Value::as_str).unwrap_or_default();
        store
            .list_objects(bucket, prefix)
            .await
            .map_err(failed)?
            .into_iter()
            .map(|o| json!({"Etag": o.etag, "Key": o.key, "LastModified": o.last_modified_ms / 1000, "Size": o.size, "StorageClass": "STANDARD"}))
            .collect()
    };
    if let Some(max) = &r.max_items {
        let max = exec.seconds(max, eff, pc, "MaxItemsPath")?;
        if max > 0 {
            items.truncate(max as usize);
        }
    }
    Ok(items)
}

/// The objects an S3 inventory lists: its `manifest.json` (`destinationBucket`, `fileFormat`
/// CSV, `fileSchema`, `files[].key`), then each data file (gzipped CSV without a header), one
/// item per row with the schema's fields as strings (e.g. `{"Bucket", "Key", "Size"}`).
async fn read_inventory(store: &dyn ObjectStore, bucket: &str, key: &str) -> Result<Vec<Value>, String> {
    let body = store.get_object(bucket, key).await?;
    let manifest: Value = serde_json::from_slice(&body).map_err(|e| format!("s3://{bucket}/{key} is not an S3 inventory manifest: {e}"))?;
    if manifest.get("fileFormat").and_then(Value::as_str) != Some("CSV") {
        return Err(format!("s3://{bucket}/{key}: only CSV inventories can be read (fileFormat CSV)"));
    }
    let schema: Vec<String> = manifest
        .get("fileSchema")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("s3://{bucket}/{key} has no fileSchema"))?
        .split(',')
        .map(|f| f.trim().to_string())
        .collect();
    let destination = manifest
        .get("destinationBucket")
        .and_then(Value::as_str)
        .map_or(bucket, |b| b.strip_prefix("arn:aws:s3:::").unwrap_or(b))
        .to_string();
    let mut items = Vec::new();
    for file in manifest.get("files").and_then(Value::as_array).into_iter().flatten() {
        let Some(data_key) = file.get("key").and_then(Value::as_str) else {
            return Err(format!("s3://{bucket}/{key}: a file has no key"));
        };
        let raw = store.get_object(&destination, data_key).await?;
        let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| format!("s3://{destination}/{data_key} is not gzip: {e}"))?;
            out
        } else {
            raw
        };
        let text = String::from_utf8(bytes).map_err(|_| format!("s3://{destination}/{data_key} is not UTF-8 text"))?;
        for row in csv_rows(&text, ',').map_err(|m| format!("s3://{destination}/{data_key}: {m}"))? {
            items.push(Value::Object(
                schema.iter().cloned().zip(row.into_iter().map(Value::String)).collect(),
            ));
        }
    }
    Ok(items)
}

/// The items of an object: a JSON array (or the array `ItemsPointer` points to), JSON Lines, or
/// CSV rows as objects of strings.
fn parse_items(text: &str, r: &ItemReader) -> Result<Vec<Value>, String> {
    match r.input_type.as_deref() {
        Some("JSONL") => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {} is not JSON: {e}", i + 1)))
            .collect(),
        Some("CSV") => {
            let mut rows = csv_rows(text, r.csv_delimiter)?.into_iter();
            let headers = match &r.csv_headers {
                Some(h) => h.clone(),
                None => rows.next().ok_or("the CSV file has no header row")?,
            };
            rows.map(|row| {
                if row.len() > headers.len() {
                    return Err(format!("a row has {} fields but there are {} headers", row.len(), headers.len()));
                }
                Ok(Value::Object(
                    headers.iter().cloned().zip(row.into_iter().map(Value::String)).collect(),
                ))
            })
            .collect()
        }
        _ => {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
            let v = match &r.items_pointer {
                Some(p) => v.pointer(p).cloned().ok_or_else(|| format!("ItemsPointer '{p}' selects nothing"))?,
                None => v,
            };
            match v {
                Value::Array(a) => Ok(a),
                _ => Err("the JSON does not hold an array".into()),
            }
        }
    }
}

/// RFC 4180 rows: quoted fields may hold the delimiter, newlines and doubled quotes.
fn csv_rows(text: &str, delim: char) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            c if c == delim => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    if any {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// Groups item inputs into batch inputs `{"BatchInput", "Items"}`.
pub(super) fn batch(exec: &Exec, b: &ItemBatcher, inputs: Vec<Value>, eff: &Value, pc: &PathCtx) -> Result<Vec<(Value, usize)>, Stop> {
    let max_items = match &b.max_items {
        Some(s) => exec.seconds(s, eff, pc, "MaxItemsPerBatchPath")? as usize,
        None => usize::MAX,
    };
    let max_bytes = match &b.max_bytes {
        Some(s) => exec.seconds(s, eff, pc, "MaxInputBytesPerBatchPath")? as usize,
        None => MAX_PAYLOAD_BYTES,
    }
    .min(MAX_PAYLOAD_BYTES);
    let batch_input = b
        .batch_input
        .as_ref()
        .map(|a| eval_args(exec, a, eff, pc, "BatchInput"))
        .transpose()?;
    let (max_items, max_bytes) = (max_items.max(1), max_bytes.max(1));
    let mut out = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut bytes = 0;
    let flush = |current: &mut Vec<Value>, out: &mut Vec<(Value, usize)>| {
        if current.is_empty() {
            return;
        }
        let items = std::mem::take(current);
        let n = items.len();
        let mut v = json!({"Items": items});
        if let Some(bi) = &batch_input {
            v["BatchInput"] = bi.clone();
        }
        out.push((v, n));
    };
    for item in inputs {
        let len = json_len(&item) + 1;
        if !current.is_empty() && (current.len() >= max_items || bytes + len > max_bytes) {
            flush(&mut current, &mut out);
            bytes = 0;
        }
        bytes += len;
        current.push(item);
    }
    flush(&mut current, &mut out);
    Ok(out)
}
