//! `estate-gateway run`: wires sources to sinks and shuts them down in order.
//!
//! Shutdown (SIGINT/SIGTERM cancels `shutdown`): sources stop producing and drop their
//! senders; the store sink takes what is queued, settles the acks, and cancels `taken`; the
//! MQTT source then flushes those PUBACKs and disconnects; the store writer delivers the
//! queued batches (up to its grace period); then `run` returns.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::SystemClock;
use crate::config::Config;
use crate::model::Reading;
use crate::sink::store::StoreSink;
use crate::source::mqtt::MqttSource;
use crate::stats::Stats;

/// Runs the gateway until `shutdown` is cancelled and everything queued is flushed.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Arc<Stats>> {
    let stats = Arc::new(Stats::default());
    let (tx, rx) = mpsc::channel::<Reading>(cfg.ingest.channel_capacity);
    let taken = CancellationToken::new();

    let sink = match &cfg.store {
        Some(store) => {
            info!(url = %store.url, org = %store.org, bucket = %store.bucket,
                  batch_lines = store.batch_lines, gzip = store.gzip, "Writing to the store.");
            Some(StoreSink::spawn(
                store.clone(),
                cfg.gateway.clone(),
                cfg.inventory.clone(),
                stats.clone(),
                rx,
                taken.clone(),
            )?)
        }
        None => {
            warn!("No [store] configured: readings are acknowledged and discarded.");
            let taken = taken.clone();
            tokio::spawn(async move {
                let mut rx = rx;
                while let Some(r) = rx.recv().await {
                    r.ack.settle();
                }
                taken.cancel();
            });
            None
        }
    };

    let source = match &cfg.mqtt {
        Some(m) => {
            let src = MqttSource {
                settings: m.clone(),
                ingest: cfg.ingest.clone(),
                inventory: cfg.inventory.clone(),
                stats: stats.clone(),
                clock: Arc::new(SystemClock),
            };
            Some(tokio::spawn(src.run(
                tx.clone(),
                shutdown.clone(),
                taken.clone(),
            )))
        }
        None => {
            warn!("No [mqtt] configured: no source is running.");
            None
        }
    };
    drop(tx);
    info!(
        devices = cfg.inventory.len(),
        site = %cfg.gateway.site,
        "estate-gateway running."
    );

    shutdown.cancelled().await;
    info!("Shutting down: flushing queued readings.");
    if let Some(s) = source {
        let _ = s.await;
    }
    if let Some(s) = sink {
        s.join().await;
    }
    info!(
        readings = stats.readings.load(Relaxed),
        rejected = stats.rejected_total(),
        store_lines = stats.store_lines.load(Relaxed),
        store_dropped = stats.store_dropped.load(Relaxed),
        "estate-gateway stopped."
    );
    Ok(stats)
}
