//! A worked actix service: an HTTP API whose handlers dispatch jobs to supervised worker
//! actors on other peers.
//!
//! - The coordinator is an actix-web `HttpServer` with the peer's endpoint (`/scope`) and a
//!   `POST /jobs` route, both under `JwtMiddleware`. Under `handle.middleware()`, the
//!   handler awaits `RunJob { job }.on(worker)` directly; it takes the caller's principal
//!   with the `Authenticated` extractor and sends each job to the next worker in turn.
//! - Each worker peer runs a `JobRunner` actor under an actix `Supervisor`, registers its
//!   address with `PeerBuilder::data(addr)`, and links to the coordinator with a worker
//!   token. The block (`blocks::jobs::run_job`, in the shared blocks crate) finds the runner
//!   of the peer it runs on with `Scope::current().data::<Addr<JobRunner>>()`.
//! - A client posts jobs with `awc` and prints each dispatch and result. A poison job makes a
//!   runner fail: its supervisor restarts it behind the same address, and the next job on
//!   that worker reports the restart.
//!
//! Each peer runs in its own actix system on its own thread, where production would use a
//! process; links are real loopback WebSockets. Every wait is bounded, and the example checks
//! its results, prints `all 4 jobs done on workers [a, b]` and exits.
//!
//! Run: `cargo run --example jobs`

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::{Context as _, anyhow, ensure};
use blocks::jobs::{Job, JobDone, JobError, JobRunner, RunJob};
use distributed_scope::actix::{Supervisor, System};
use distributed_scope::auth::{JwtAuth, Policy};
use distributed_scope::web::{Authenticated, JwtMiddleware};
use distributed_scope::{Peer, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::timeout;

/// The bound on every wait: a link, a request, a job, a peer stopping.
const LIMIT: Duration = Duration::from_secs(10);

const WORKERS: [&str; 2] = ["a", "b"];

/// Picks the worker of each job, in turn.
#[derive(Default)]
struct RoundRobin(AtomicUsize);

impl RoundRobin {
    fn next(&self) -> &'static str {
        WORKERS[self.0.fetch_add(1, Ordering::Relaxed) % WORKERS.len()]
    }
}

/// The answer to `POST /jobs`: where the job ran, for whom, and how it went.
#[derive(Debug, Serialize, Deserialize)]
struct JobReply {
    worker: String,
    submitted_by: String,
    outcome: Result<JobDone, JobError>,
}

/// `POST /jobs`: runs the posted job on the next worker's runner.
async fn submit(
    Authenticated(client): Authenticated,
    turns: web::Data<RoundRobin>,
    job: web::Json<Job>,
) -> actix_web::Result<web::Json<JobReply>> {
    let worker = turns.next();
    // The peer middleware makes the coordinator's peer current: the handler awaits the
    // block as it would a local call.
    let outcome = RunJob {
        job: job.into_inner(),
    }
    .on(PeerId::from_name(worker))
    .timeout(LIMIT)
    .await
    .map_err(actix_web::error::ErrorBadGateway)?;
    Ok(web::Json(JobReply {
        worker: worker.to_owned(),
        submitted_by: client.subject().to_owned(),
        outcome,
    }))
}

/// The coordinator: its peer and HTTP API in one `HttpServer` on `127.0.0.1:0`. Sends the
/// server's address to `ready`, then serves until `stopping` says so.
async fn coordinator(
    auth: JwtAuth,
    ready: mpsc::Sender<SocketAddr>,
    mut stopping: watch::Receiver<()>,
) -> anyhow::Result<()> {
    // Workers run no block here: every inbound call is refused.
    let peer = Peer::builder(PeerId::from_name("coordinator"))
        .auth(auth.clone(), Policy::deny_all())
        .start()
        .await?;
    let jwt = JwtMiddleware::new(auth)?;
    let turns = web::Data::new(RoundRobin::default());
    let app_peer = peer.clone();
    let server = HttpServer::new(move || {
        App::new()
            // No token, no job and no link: 401 before any handler or upgrade.
            .wrap(jwt.clone())
            .service(app_peer.endpoint("/scope"))
            .service(
                web::resource("/jobs")
                    .wrap(app_peer.middleware())
                    .app_data(turns.clone())
                    .route(web::post().to(submit)),
            )
    })
    .workers(1)
    // Stopping the peer closes the workers' links first, then stops the server.
    .shutdown_signal(peer.shutdown_signal())
    .shutdown_timeout(1)
    .bind("127.0.0.1:0")?;
    let addr = server.addrs()[0];
    let server = actix_web::rt::spawn(server.run());
    println!("coordinator: POST http://{addr}/jobs, peer endpoint ws://{addr}/scope");
    ready.send(addr)?;

    let _shutdown = stopping.changed().await;
    timeout(LIMIT, peer.stop()).await??;
    timeout(LIMIT, server).await???;
    Ok(())
}

/// A worker: a supervised job runner, registered as data of a (supervised) peer linked to
/// the coordinator. Says so on `ready`, then works until `stopping` says so.
async fn worker(
    name: &'static str,
    url: String,
    token: String,
    ready: mpsc::Sender<()>,
    mut stopping: watch::Receiver<()>,
) -> anyhow::Result<()> {
    // A runner that fails is restarted by its supervisor, behind the same address.
    let runner = Supervisor::start(move |_ctx| JobRunner::new(name));
    let peer = Peer::builder(PeerId::from_name(name))
        .data(runner)
        .start_supervised()
        .await?;
    timeout(LIMIT, peer.connect_with_token(&url, &token)).await??;
    println!("worker {name}: job runner started under a supervisor, linked to the coordinator");
    ready.send(())?;

    let _shutdown = stopping.changed().await;
    timeout(LIMIT, peer.stop()).await??;
    Ok(())
}

/// The client: posts `jobs` to the coordinator at `addr` as `token`'s subject, prints what
/// happened to each, and returns the replies.
async fn client(addr: SocketAddr, token: &str, jobs: Vec<Job>) -> anyhow::Result<Vec<JobReply>> {
    let url = format!("http://{addr}/jobs");
    let anonymous = awc::Client::builder().timeout(LIMIT).finish();
    let refused = anonymous
        .post(&url)
        .send_json(&jobs[0])
        .await
        .map_err(|error| anyhow!("POST /jobs: {error}"))?;
    println!("POST /jobs without a token -> {}", refused.status());
    ensure!(refused.status() == 401, "expected 401 without a token");

    let http = awc::Client::builder()
        .timeout(LIMIT)
        .bearer_auth(token)
        .finish();
    let mut replies = Vec::new();
    for job in jobs {
        let body = serde_json::to_string(&job)?;
        let mut response = http
            .post(&url)
            .send_json(&job)
            .await
            .map_err(|error| anyhow!("POST /jobs {body}: {error}"))?;
        ensure!(
            response.status().is_success(),
            "POST /jobs {body}: {}",
            response.status()
        );
        let reply: JobReply = response.json().await.context("the reply to POST /jobs")?;
        match &reply.outcome {
            Ok(done) => println!(
                "{} POST /jobs {body} -> worker {}: {} (runner {}: job {}, restarts {})",
                reply.submitted_by,
                reply.worker,
                done.output,
                done.runner,
                done.jobs_run,
                done.restarts
            ),
            Err(error) => println!(
                "{} POST /jobs {body} -> worker {}: {error}",
                reply.submitted_by, reply.worker
            ),
        }
        replies.push(reply);
    }
    Ok(replies)
}

fn main() -> anyhow::Result<()> {
    run()
}

/// Starts the coordinator and the workers, runs the client against them, stops everything
/// and checks what happened.
fn run() -> anyhow::Result<()> {
    let auth = JwtAuth::hs256(b"the jobs example's secret, 32 bytes or more").with_issuer("jobs");
    let hour = Duration::from_secs(3600);
    // Dropped or sent to: every peer stops.
    let (shutdown, stopping) = watch::channel(());

    let (ready, coordinator_ready) = mpsc::channel();
    let mut threads = vec![spawn("coordinator", {
        let (auth, stopping) = (auth.clone(), stopping.clone());
        move || coordinator(auth, ready, stopping)
    })?];
    let addr = coordinator_ready.recv_timeout(LIMIT)?;

    let url = format!("ws://{addr}/scope");
    let (ready, workers_ready) = mpsc::channel();
    for name in WORKERS {
        // The token binds the worker's peer id (`PeerId::from_name(name)`) through its
        // `peers` claim: nobody else can link as this worker.
        let token = auth.issue_with_peers(&format!("worker-{name}"), &["worker"], &[name], hour)?;
        let (url, ready, stopping) = (url.clone(), ready.clone(), stopping.clone());
        threads.push(spawn(name, move || {
            worker(name, url, token, ready, stopping)
        })?);
        workers_ready.recv_timeout(LIMIT)?;
    }

    let jobs = vec![
        Job::CountWords("the quick brown fox jumps over the lazy dog".to_owned()),
        Job::CountPrimes(10_000),
        Job::Poison,
        Job::CountWords("actors all the way down".to_owned()),
        Job::CountPrimes(100_000),
    ];
    let token = auth.issue("alice", &["client"], hour)?;
    let replies = System::new()
        .block_on(async move { timeout(LIMIT * 3, client(addr, &token, jobs)).await? })?;

    shutdown.send(())?;
    for thread in threads {
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    }

    // Four jobs ran, on both workers; the poison job failed runner a, whose supervisor
    // restarted it: its next job says so.
    let done: Vec<&JobDone> = replies
        .iter()
        .filter_map(|reply| reply.outcome.as_ref().ok())
        .collect();
    let outputs: Vec<u64> = done.iter().map(|done| done.output).collect();
    ensure!(
        outputs == [9, 1229, 5, 9592],
        "unexpected outputs {outputs:?}"
    );
    ensure!(
        matches!(&replies[2].outcome, Err(JobError::Crashed { runner }) if runner == "a"),
        "the poison job: {:?}",
        replies[2].outcome
    );
    ensure!(
        done[3].restarts == 1,
        "runner a was not restarted: {:?}",
        done[3]
    );
    let workers: BTreeSet<&str> = done.iter().map(|done| done.runner.as_str()).collect();
    let workers: Vec<&str> = workers.into_iter().collect();
    println!(
        "all {} jobs done on workers [{}]",
        done.len(),
        workers.join(", ")
    );
    Ok(())
}

/// Runs `node` in an actix system of its own on a thread of its own (in production, a
/// process of its own).
fn spawn<F, Fut>(
    name: &str,
    node: F,
) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<()>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || System::new().block_on(node()))
}

#[cfg(test)]
mod tests {
    // `cargo test` runs the example end to end (`[[example]] test = true` in Cargo.toml).
    #[test]
    fn every_job_runs_on_a_worker_and_a_failed_runner_is_restarted() {
        super::run().unwrap();
    }
}
