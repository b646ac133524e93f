//! A TCP proxy in front of moto that can be taken down (every connection
//! cut, new ones refused) and brought back, or made to drop a share of new
//! connections: the store outages of the fault campaign. It can also let
//! one request through and lose its answer: the client never learns that
//! its write happened.

use rand::Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    addr: SocketAddr,
    /// Per mille of new connections to drop; 1000 is "down".
    drop_per_mille: Arc<AtomicU32>,
    /// Bumped to cut every open connection.
    generation: watch::Sender<u64>,
    /// A marker of the next request whose answer is lost, and how many
    /// answers were lost so far.
    lose: Arc<Mutex<Option<&'static str>>>,
    lost: Arc<AtomicU32>,
    /// New connections are accepted and never answered.
    hang: Arc<AtomicBool>,
}

impl TcpProxy {
    /// A proxy in front of the suite's moto (fails without it).
    pub async fn before_moto() -> Self {
        crate::require_moto();
        let moto = std::env::var("AWS_ENDPOINT_URL").expect("moto");
        let moto: SocketAddr = moto
            .trim_start_matches("http://")
            .parse()
            .expect("moto address");
        Self::start(moto).await.expect("proxy")
    }

    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let drop_per_mille = Arc::new(AtomicU32::new(0));
        let (generation, _) = watch::channel(0u64);
        let lose: Arc<Mutex<Option<&'static str>>> = Arc::default();
        let lost = Arc::new(AtomicU32::new(0));
        let hang = Arc::new(AtomicBool::new(false));
        let proxy = Self {
            addr,
            drop_per_mille: drop_per_mille.clone(),
            generation: generation.clone(),
            lose: lose.clone(),
            lost: lost.clone(),
            hang: hang.clone(),
        };
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if hang.load(Ordering::Relaxed) {
                    // Held open, never read from nor answered, until cut.
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let _held = inbound;
                        let _ = cut.changed().await;
                    });
                    continue;
                }
                let dropped =
                    rand::rng().random_range(0..1000) < drop_per_mille.load(Ordering::Relaxed);
                if dropped {
                    drop(inbound);
                    continue;
                }
                let mut cut = generation.subscribe();
                let (lose, lost) = (lose.clone(), lost.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = pump(inbound, outbound, lose, lost) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(proxy)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every open connection and refuses new ones.
    pub fn down(&self) {
        self.drop_per_mille.store(1000, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Drops this share of new connections (0.0 to 1.0), cutting open ones.
    pub fn flaky(&self, share: f64) {
        self.drop_per_mille
            .store((share.clamp(0.0, 1.0) * 1000.0) as u32, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn up(&self) {
        self.drop_per_mille.store(0, Ordering::Relaxed);
        if self.hang.swap(false, Ordering::Relaxed) {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Cuts every open connection; new ones are accepted and never
    /// answered (a store that hangs rather than fails).
    pub fn hang(&self) {
        self.hang.store(true, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
    }

    /// The next request that contains `marker` (for example
    /// `secretsmanager.UpdateSecretVersionStage`, from its `X-Amz-Target`
    /// header) reaches the server, which answers; the answer is thrown
    /// away and the connection cut.
    pub fn lose_next_answer_to(&self, marker: &'static str) {
        if let Ok(mut lose) = self.lose.lock() {
            *lose = Some(marker);
        }
    }

    /// How many answers were lost so far.
    pub fn answers_lost(&self) -> u32 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Copies both ways; once a request carrying the armed marker went
/// through, the server's answer is read, dropped, and both sides closed.
async fn pump(
    inbound: TcpStream,
    outbound: TcpStream,
    lose: Arc<Mutex<Option<&'static str>>>,
    lost: Arc<AtomicU32>,
) {
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let losing = Arc::new(AtomicBool::new(false));
    let marked = losing.clone();
    let upstream = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buffer[..n];
            if let Ok(mut armed) = lose.lock()
                && let Some(marker) = *armed
                && chunk
                    .windows(marker.len())
                    .any(|window| window == marker.as_bytes())
            {
                *armed = None;
                marked.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let downstream = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if losing.load(Ordering::SeqCst) {
                // The server has answered: the write happened. The client
                // hears nothing but a closed connection.
                lost.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends the connection.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
