//! The jobs of `examples/jobs.rs`: a [`JobRunner`] actor on each worker peer, registered as
//! the peer's application data, and the block [`run_job`] (`blocks::jobs::run_job`) that
//! reaches it.
//!
//! The actor lives in this crate because the block names its type
//! (`Scope::current().data::<Addr<JobRunner>>()`), and every binary that runs the block
//! must contain the same block.

use distributed_scope::actix::{Actor, ActorContext, Addr, Context, Handler, Message, Supervised};
use distributed_scope::{Scope, remote_block};
use serde::{Deserialize, Serialize};

/// A job, as clients post it to the coordinator's HTTP API (JSON) and as it travels to a
/// worker (in the block's captures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Count the words of a text: `{"count_words": "..."}`.
    CountWords(String),
    /// Count the primes below a bound: `{"count_primes": 10000}`.
    CountPrimes(u64),
    /// A job the runner cannot survive, standing in for a bug: the runner stops as on a
    /// failure, and its supervisor restarts it.
    Poison,
}

/// A job a worker has run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDone {
    /// The name of the runner that ran it.
    pub runner: String,
    /// The job's result.
    pub output: u64,
    /// Jobs this runner has run, this one included.
    pub jobs_run: u64,
    /// Times the runner's supervisor has restarted it.
    pub restarts: u32,
}

/// Why a job did not run to the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobError {
    /// The peer the block ran on has no [`JobRunner`] registered as data.
    NoRunner,
    /// The runner failed on the job; its supervisor restarts it.
    Crashed {
        /// The runner's name.
        runner: String,
    },
    /// The runner's mailbox did not take the job (it was stopping for good).
    RunnerGone {
        /// The mailbox error.
        reason: String,
    },
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoRunner => f.write_str("no job runner on this peer"),
            Self::Crashed { runner } => write!(
                f,
                "runner {runner} failed on the job; its supervisor restarts it"
            ),
            Self::RunnerGone { reason } => write!(f, "the job runner is gone: {reason}"),
        }
    }
}

impl std::error::Error for JobError {}

/// Runs jobs, one at a time, on a worker peer. Start it under an actix `Supervisor`
/// (`Supervisor::start(|_| JobRunner::new("a"))`) and register its address with
/// `PeerBuilder::data(addr)`: a runner that fails is restarted, behind the same address.
#[derive(Debug)]
pub struct JobRunner {
    name: String,
    jobs_run: u64,
    restarts: u32,
}

impl JobRunner {
    /// A runner that reports itself as `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            jobs_run: 0,
            restarts: 0,
        }
    }
}

impl Actor for JobRunner {
    type Context = Context<Self>;
}

impl Supervised for JobRunner {
    // The supervisor keeps the actor's value across a restart: this is where state that a
    // failure may have corrupted would be reset.
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts += 1;
    }
}

/// Runs a job on a [`JobRunner`].
#[derive(Debug)]
pub struct Execute(pub Job);

impl Message for Execute {
    type Result = Result<JobDone, JobError>;
}

impl Handler<Execute> for JobRunner {
    type Result = Result<JobDone, JobError>;

    fn handle(&mut self, Execute(job): Execute, ctx: &mut Context<Self>) -> Self::Result {
        let output = match job {
            Job::CountWords(text) => text.split_whitespace().count() as u64,
            Job::CountPrimes(below) => (2..below).filter(|&n| is_prime(n)).count() as u64,
            Job::Poison => {
                // Stopping is how an actor fails: the reply still goes out, then the
                // supervisor restarts the runner.
                ctx.stop();
                return Err(JobError::Crashed {
                    runner: self.name.clone(),
                });
            }
        };
        self.jobs_run += 1;
        Ok(JobDone {
            runner: self.name.clone(),
            output,
            jobs_run: self.jobs_run,
            restarts: self.restarts,
        })
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// `blocks::jobs::run_job`: runs `job` on the [`JobRunner`] of the peer this block runs on,
/// found in the peer's application data. Message: `RunJob { job }`.
#[remote_block]
pub async fn run_job(job: Job) -> Result<JobDone, JobError> {
    let Some(runner) = Scope::current().data::<Addr<JobRunner>>() else {
        return Err(JobError::NoRunner);
    };
    match runner.send(Execute(job)).await {
        Ok(done) => done,
        Err(mailbox) => Err(JobError::RunnerGone {
            reason: mailbox.to_string(),
        }),
    }
}
