//! A TCP proxy on loopback that can stop forwarding without closing anything: a silent
//! partition, healed by forwarding again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Proxies to `target` while `blackhole` is false; returns the proxy's `ws://` URL.
pub async fn partition_proxy(target: SocketAddr, blackhole: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    actix_rt::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            actix_rt::spawn(forward(ri, wo, blackhole.clone()));
            actix_rt::spawn(forward(ro, wi, blackhole.clone()));
        }
    });
    format!("ws://{addr}/")
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    blackhole: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        // Partitioned: bytes vanish, and nobody closes anything.
        if !blackhole.load(Ordering::SeqCst) && to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy on loopback that can cut every connection through it (both ends see them
/// close) and refuse new ones until healed; it remembers the `ds-resume` header of each
/// upgrade that went through it.
#[derive(Clone)]
pub struct CutProxy(Arc<CutState>);

struct CutState {
    url: String,
    cut: AtomicBool,
    forwarders: std::sync::Mutex<Vec<actix_rt::task::JoinHandle<()>>>,
    resume_headers: std::sync::Mutex<Vec<String>>,
}

impl CutProxy {
    /// Proxies to `target`, from a task of the current actix system.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Self(Arc::new(CutState {
            url: format!("ws://{addr}/"),
            cut: AtomicBool::new(false),
            forwarders: std::sync::Mutex::new(Vec::new()),
            resume_headers: std::sync::Mutex::new(Vec::new()),
        }));
        let state = proxy.0.clone();
        actix_rt::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                // Cut: the connection is closed at once.
                if state.cut.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                let upstream = actix_rt::spawn(forward_watching(ri, wo, state.clone()));
                let downstream = actix_rt::spawn(forward(ro, wi, Arc::new(AtomicBool::new(false))));
                state
                    .forwarders
                    .lock()
                    .unwrap()
                    .extend([upstream, downstream]);
            }
        });
        proxy
    }

    /// The proxy's `ws://` URL.
    pub fn url(&self) -> String {
        self.0.url.clone()
    }

    /// Closes every connection through the proxy and refuses new ones until [`heal`].
    pub fn cut(&self) {
        self.0.cut.store(true, Ordering::SeqCst);
        for forwarder in self.0.forwarders.lock().unwrap().drain(..) {
            forwarder.abort();
        }
    }

    /// Takes new connections again.
    pub fn heal(&self) {
        self.0.cut.store(false, Ordering::SeqCst);
    }

    /// The `ds-resume` header values of the upgrades that went through, oldest first.
    pub fn resume_headers(&self) -> Vec<String> {
        self.0.resume_headers.lock().unwrap().clone()
    }
}

/// [`forward`] from a client, noting the `ds-resume` header of its upgrade request.
async fn forward_watching(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<CutState>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 << 10];
    let mut first = true;
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        if std::mem::take(&mut first) {
            let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
            if let Some(value) = head.lines().find_map(|line| {
                line.strip_prefix("ds-resume: ")
                    .or_else(|| line.strip_prefix("ds-resume:"))
            }) {
                state
                    .resume_headers
                    .lock()
                    .unwrap()
                    .push(value.trim().to_owned());
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
