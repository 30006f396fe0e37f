//! The `remote_all!` row: fan-outs per second of a 64 B `remote_all!` echo over three server
//! peers, beside three concurrent `remote!` echoes of the same bytes joined with `join_all`
//! (each with its own copy of the payload, which `remote_all!` encodes once), the two
//! alternating in rounds between the same client and servers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use distributed_scope::actix::System;
use distributed_scope::testing::PeerThread;
use distributed_scope::{Bytes as ScopeBytes, Peer, PeerId, RemoteError, remote_all};
use futures_util::future::join_all;

use super::placement::Placement;
use super::{Row, Settings, Throughput, Unit, echo_bytes, progress};

/// Servers of the fan-out.
const PEERS: usize = 3;

async fn echo_all(
    servers: Vec<PeerId>,
    data: ScopeBytes,
) -> Vec<(PeerId, Result<ScopeBytes, RemoteError>)> {
    remote_all!(servers, [data: ScopeBytes] -> ScopeBytes { data }).await
}

/// One fan-out each way: `remote_all!`, or `join_all` of one `remote!` per server.
async fn fan_out(servers: &[PeerId], all: bool) -> anyhow::Result<()> {
    let payload = [7u8; 64];
    let echoes: Vec<Result<ScopeBytes, RemoteError>> = if all {
        let data = ScopeBytes::from(payload.to_vec());
        echo_all(servers.to_vec(), data)
            .await
            .into_iter()
            .map(|(_, echo)| echo)
            .collect()
    } else {
        join_all(
            servers
                .iter()
                .map(|&server| echo_bytes(server, ScopeBytes::from(payload.to_vec()))),
        )
        .await
    };
    ensure!(echoes.len() == servers.len(), "a server's echo is missing");
    for echo in echoes {
        ensure!(echo?[..] == payload, "bad echo");
    }
    Ok(())
}

/// Fan-outs one way for `time`.
async fn series(servers: &[PeerId], all: bool, time: Duration) -> anyhow::Result<Throughput> {
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < time {
        fan_out(servers, all).await?;
        calls += 1;
    }
    Ok(Throughput {
        calls,
        elapsed: started.elapsed(),
    })
}

/// `remote_all!` and the joined calls, alternating in rounds; runs with the client current.
async fn measure(settings: Settings, servers: Vec<PeerId>) -> anyhow::Result<[Throughput; 2]> {
    for _ in 0..settings.warmup {
        fan_out(&servers, true).await?;
        fan_out(&servers, false).await?;
    }
    let time = settings.throughput_time / settings.rounds as u32;
    let zero = Throughput {
        calls: 0,
        elapsed: Duration::ZERO,
    };
    let (mut all, mut joined) = (zero, zero);
    for _ in 0..settings.rounds {
        all = all.add(series(&servers, true, time).await?);
        joined = joined.add(series(&servers, false, time).await?);
    }
    Ok([all, joined])
}

/// Starts the servers (on the servers' core) and a client, and adds the row.
pub(crate) fn rows(
    settings: Settings,
    placement: Placement,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    progress(&format!("remote_all! over {PEERS} peers"));
    let ids: Vec<PeerId> = (0..PEERS)
        .map(|at| PeerId::from_name(&format!("bench-all-{at}")))
        .collect();
    let servers = placement.on_server_core(|| {
        ids.iter()
            .map(|&id| PeerThread::start(Peer::builder(id).listen("127.0.0.1:0")))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let urls = servers
        .iter()
        .map(|server| server.handle().url().context("the server listens"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let [all, joined] = System::new().block_on(async move {
        let client = Peer::builder(PeerId::from_name("bench-all-client"))
            .start()
            .await?;
        for url in &urls {
            client.connect(url).await?;
        }
        let measured = client.run(measure(settings, ids)).await;
        client.stop().await?;
        measured
    })?;
    drop(servers);
    rows.push(
        Row::new(
            format!("remote_all! echo 64 B over {PEERS} peers"),
            Unit::PerSecond,
            all.per_second(),
        )
        .baseline(joined.per_second())
        .note(format!(
            "calls/s: one call = all {PEERS} echoes; baseline: {PEERS} `remote!` joined (join_all)"
        )),
    );
    Ok(())
}
