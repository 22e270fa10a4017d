//! `/v1/dlqs` and `/v1/jobs`: the dead-letter queues of share groups, as SQS's redrive page
//! shows them — depth and oldest age, the dead letters with their origin and reason — and
//! redrive: requeue to the origin or discard, all or chosen offsets, run as a job whose progress
//! can be followed and which can be cancelled. The work is `sluice_client::dlq`, the code of
//! `sluice dlq`: the same bookkeeping (commits of the group `sluice-dlq`), so a dead letter one
//! of them recorded as handled is skipped by the other. (Two redrives of one DLQ running at the
//! same time — on two nodes, or here and in the CLI — can each write a batch the other has not
//! recorded yet: at least once, as the CLI documents. One node runs one job per DLQ.)

use crate::security::http::Caller;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_client::dlq::{self, Action, Progress, Redrive, Target};
use sluice_client::Client;

use super::{Api, ApiError, ApiJson, ApiPath, ApiQuery};
use crate::broker::now_ms;
use crate::group_config::{DLQ_PREFIX, DLQ_TOPIC};
use crate::limits::{
    MAX_API_JOBS_KEPT, MAX_API_JOBS_RUNNING, MAX_API_REDRIVE_OFFSETS, MAX_API_REDRIVE_RATE,
    MAX_API_SHOW_BYTES, MAX_API_SHOW_DEAD_LETTERS,
};

/// `GET /v1/dlqs`: every DLQ topic with its groups, depth, handled count and oldest age.
pub async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let (rows, warnings) = api
        .clients
        .with(&caller, |c| {
            Box::pin(async move { Ok(dlq::list_rows(c).await.map_err(anyhow_error)) })
        })
        .await??;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let now = now_ms();
    Ok(Json(Value::Array(
        rows.iter().map(|r| r.json(now)).collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    /// Include dead letters already requeued or discarded.
    #[serde(default)]
    all: bool,
    /// At most this many (100 by default, at most `MAX_API_SHOW_DEAD_LETTERS`).
    limit: Option<u64>,
}

/// `GET /v1/dlqs/{topic}/records`: the DLQ's unhandled dead letters (with `all`, every one).
pub async fn show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(topic): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_API_SHOW_DEAD_LETTERS {
        return Err(ApiError::invalid(format!(
            "limit is 1 to {MAX_API_SHOW_DEAD_LETTERS}"
        )));
    }
    // Before saying whether the topic exists or is a DLQ (the reads below need READ).
    api.authorize(
        &caller,
        sluice_acl::AclOperation::Describe,
        sluice_acl::ResourceType::Topic,
        &topic,
    )?;
    check_topic(&api, &topic)?;
    let t = topic.clone();
    let (d, sel) = api
        .clients
        .with(&caller, move |c| {
            Box::pin(async move {
                let d = match dlq::resolve(c, &Target::Topic(t.clone())).await {
                    Ok(d) => d,
                    Err(e) => return Ok(Err(anyhow_error(e))),
                };
                let sel = dlq::select(c, &d, q.all, limit, MAX_API_SHOW_BYTES).await;
                Ok(sel.map(|sel| (d, sel)).map_err(anyhow_error))
            })
        })
        .await??;
    let now = now_ms();
    Ok(Json(json!({
        "topic": d.topic,
        "group": d.group,
        "depth": sel.depth,
        "total": sel.total,
        "dead_letters": sel.letters.iter().map(|(l, h)| l.json(*h, now)).collect::<Vec<_>>(),
    })))
}

/// A DLQ call names an existing dead-letter topic: one named `dlq.*`, or one a group's
/// `errors.deadletterqueue.topic.name` names (anything else is refused, so a discard cannot
/// mark an ordinary topic's records handled).
fn check_topic(api: &Api, topic: &str) -> Result<(), ApiError> {
    let metadata = &api.broker.metadata;
    if metadata.topic(topic).is_none() {
        return Err(ApiError::new(
            40401,
            format!("DLQ topic {topic} does not exist"),
        ));
    }
    let configured = || {
        metadata
            .groups_with_configs()
            .iter()
            .any(|(g, _)| metadata.share_settings(g).dlq_topic.as_deref() == Some(topic))
    };
    if !topic.starts_with(DLQ_PREFIX) && !configured() {
        return Err(ApiError::invalid(format!(
            "{topic} is not a dead-letter topic: neither named {DLQ_PREFIX}* nor any share \
             group's {DLQ_TOPIC}"
        )));
    }
    Ok(())
}

/// A `sluice_client::dlq` error (anyhow, with its context) as an API error: a Kafka error keeps
/// its status, anything else is the broker's (50001); the message is the whole chain.
fn anyhow_error(e: anyhow::Error) -> ApiError {
    let code = e
        .downcast_ref::<sluice_client::Error>()
        .map_or(50001, super::error_code);
    ApiError::new(code, format!("{e:#}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// The DLQ partition the offsets are in (needed only when the DLQ has several).
    partition: Option<i32>,
    /// The dead letters to handle; absent or empty: every unhandled one.
    #[serde(default)]
    offsets: Vec<i64>,
    /// A requeue's pace: at most this many dead letters a second (SQS's redrive velocity).
    max_per_second: Option<u32>,
}

/// One redrive, running or finished.
pub struct Job {
    id: u64,
    action: Action,
    topic: String,
    offsets: usize,
    max_per_second: Option<u32>,
    created_ms: i64,
    planned: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
    end: Mutex<Option<JobEnd>>,
}

struct JobEnd {
    finished_ms: i64,
    outcome: dlq::Outcome,
    error: Option<String>,
}

impl Progress for Job {
    fn planned(&self, n: u64) {
        self.planned.store(n, Ordering::Relaxed);
    }

    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

impl Job {
    fn running(&self) -> bool {
        self.end.lock().is_none()
    }

    fn json(&self) -> Value {
        let end = self.end.lock();
        let state = match &*end {
            None if self.stop.load(Ordering::SeqCst) => "cancelling",
            None => "running",
            Some(e) if e.error.is_some() => "failed",
            Some(e) if self.stop.load(Ordering::SeqCst) && e.outcome.done < e.outcome.planned => {
                "cancelled"
            }
            Some(_) => "done",
        };
        let mut v = json!({
            "id": self.id.to_string(),
            "action": self.action.name(),
            "topic": self.topic,
            "state": state,
            "chosen_offsets": self.offsets,
            "max_per_second": self.max_per_second,
            "planned": self.planned.load(Ordering::Relaxed),
            "progressed": self.done.load(Ordering::Relaxed),
            "created_ms": self.created_ms,
        });
        if let Some(e) = &*end {
            v["finished_ms"] = json!(e.finished_ms);
            v[self.action.past()] = json!(e.outcome.done);
            v["skipped_already_handled"] = json!(e.outcome.skipped);
            v["to"] = json!(e.outcome.to);
            v["error"] = json!(e.error);
        }
        v
    }
}

/// The redrive jobs this node ran: the running ones and the last `MAX_API_JOBS_KEPT` finished.
#[derive(Default)]
pub struct Jobs {
    list: Mutex<Vec<Arc<Job>>>,
    next_id: AtomicU64,
}

impl Jobs {
    fn get(&self, id: &str) -> Result<Arc<Job>, ApiError> {
        id.parse::<u64>()
            .ok()
            .and_then(|id| self.list.lock().iter().find(|j| j.id == id).cloned())
            .ok_or_else(|| ApiError::new(40403, format!("no job {id}")))
    }
}

/// `POST /v1/dlqs/{topic}/requeue`.
pub async fn requeue(
    api: State<Arc<Api>>,
    caller: Caller,
    topic: ApiPath<String>,
    body: ApiJson<RedriveRequest>,
) -> Result<Response, ApiError> {
    start(api, caller, topic, body, Action::Requeue).await
}

/// `POST /v1/dlqs/{topic}/discard`.
pub async fn discard(
    api: State<Arc<Api>>,
    caller: Caller,
    topic: ApiPath<String>,
    body: ApiJson<RedriveRequest>,
) -> Result<Response, ApiError> {
    start(api, caller, topic, body, Action::Discard).await
}

/// Starts a redrive job: 202 with the job and its `Location`.
async fn start(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(topic): ApiPath<String>,
    ApiJson(req): ApiJson<RedriveRequest>,
    action: Action,
) -> Result<Response, ApiError> {
    if req.offsets.len() > MAX_API_REDRIVE_OFFSETS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_API_REDRIVE_OFFSETS} offsets per request"
        )));
    }
    if req
        .max_per_second
        .is_some_and(|r| !(1..=MAX_API_REDRIVE_RATE).contains(&r))
    {
        return Err(ApiError::invalid(format!(
            "max_per_second is 1 to {MAX_API_REDRIVE_RATE}"
        )));
    }
    if req.offsets.iter().any(|o| *o < 0) || req.partition.is_some_and(|p| p < 0) {
        return Err(ApiError::invalid("offsets and partition are 0 or more"));
    }
    // Before saying whether the topic exists or is a DLQ (the redrive needs READ).
    api.authorize(
        &caller,
        sluice_acl::AclOperation::Read,
        sluice_acl::ResourceType::Topic,
        &topic,
    )?;
    check_topic(&api, &topic)?;
    // The job keeps redriving after this request: with the caller's login, as the caller.
    let config = api.clients.config(&caller, "sluice-http-api-dlq")?;
    // Resolved before the job starts, so a topic that is no DLQ fails this request.
    let mut client = Client::connect(config).await?;
    let d = dlq::resolve(&mut client, &Target::Topic(topic.clone()))
        .await
        .map_err(anyhow_error)?;
    let offsets: BTreeSet<i64> = req.offsets.iter().copied().collect();
    let job = {
        let mut list = api.jobs.list.lock();
        if list.iter().filter(|j| j.running()).count() >= MAX_API_JOBS_RUNNING {
            return Err(ApiError::new(
                42901,
                format!("{MAX_API_JOBS_RUNNING} redrives are running; wait for one to finish"),
            ));
        }
        if let Some(j) = list.iter().find(|j| j.running() && j.topic == topic) {
            return Err(ApiError::new(
                40904,
                format!("job {} is already redriving {topic}", j.id),
            ));
        }
        let job = Arc::new(Job {
            id: api.jobs.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            action,
            topic: topic.clone(),
            offsets: offsets.len(),
            max_per_second: req.max_per_second,
            created_ms: now_ms(),
            planned: AtomicU64::new(0),
            done: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            end: Mutex::new(None),
        });
        // Keep the running jobs and the newest finished ones.
        while list.len() >= MAX_API_JOBS_KEPT + MAX_API_JOBS_RUNNING {
            match list.iter().position(|j| !j.running()) {
                Some(i) => {
                    list.remove(i);
                }
                None => break,
            }
        }
        list.push(job.clone());
        job
    };
    let req = Redrive {
        action,
        partition: req.partition,
        offsets,
        batch_size: 500,
        max_per_second: req.max_per_second,
    };
    let j = job.clone();
    tokio::spawn(async move {
        let (outcome, result) = dlq::redrive(&mut client, &d, &req, &j.stop, &*j).await;
        let error = result.err().map(|e| format!("{e:#}"));
        if let Some(e) = &error {
            tracing::warn!(topic = %j.topic, error = %e, "DLQ redrive failed");
        }
        *j.end.lock() = Some(JobEnd {
            finished_ms: now_ms(),
            outcome,
            error,
        });
    });
    let location = format!("/v1/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job.json()),
    )
        .into_response())
}

/// `GET /v1/jobs`: the redrive jobs, newest first.
pub async fn jobs(State(api): State<Arc<Api>>, caller: Caller) -> Json<Value> {
    // Only jobs on DLQ topics the caller may see.
    let ctx = caller.context("HttpApi");
    let list: Vec<Value> = api
        .jobs
        .list
        .lock()
        .iter()
        .rev()
        .filter(|j| {
            crate::security::authz::permits(
                &api.broker,
                &ctx,
                sluice_acl::AclOperation::Describe,
                sluice_acl::ResourceType::Topic,
                &j.topic,
            )
        })
        .map(|j| j.json())
        .collect();
    Json(Value::Array(list))
}

/// `GET /v1/jobs/{id}`.
pub async fn job(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let job = api.jobs.get(&id)?;
    api.authorize(
        &caller,
        sluice_acl::AclOperation::Describe,
        sluice_acl::ResourceType::Topic,
        &job.topic,
    )?;
    Ok(Json(job.json()))
}

/// `DELETE /v1/jobs/{id}`: cancels a running job (it stops after the batch in flight, which is
/// recorded as handled); 202 with the job.
pub async fn cancel(
    State(api): State<Arc<Api>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let job = api.jobs.get(&id)?;
    // Starting the job needed READ on its topic; so does stopping it.
    api.authorize(
        &caller,
        sluice_acl::AclOperation::Read,
        sluice_acl::ResourceType::Topic,
        &job.topic,
    )?;
    if job.running() {
        job.stop.store(true, Ordering::SeqCst);
    }
    Ok((StatusCode::ACCEPTED, Json(job.json())).into_response())
}
