//! A TCP proxy in front of moto that can be taken down (every connection
//! cut, new ones refused) and brought back, or made to drop a share of new
//! connections: the store outages of the fault campaign.

use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    addr: SocketAddr,
    /// Per mille of new connections to drop; 1000 is "down".
    drop_per_mille: Arc<AtomicU32>,
    /// Bumped to cut every open connection.
    generation: watch::Sender<u64>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let drop_per_mille = Arc::new(AtomicU32::new(0));
        let (generation, _) = watch::channel(0u64);
        let proxy = Self {
            addr,
            drop_per_mille: drop_per_mille.clone(),
            generation: generation.clone(),
        };
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let dropped =
                    rand::rng().random_range(0..1000) < drop_per_mille.load(Ordering::Relaxed);
                if dropped {
                    drop(inbound);
                    continue;
                }
                let mut cut = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
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
    }
}
