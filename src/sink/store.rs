//! The store sink: readings → `telemetry` lines → batches → InfluxDB v2 write API (with the
//! `influxdb2` crate, gzip on, rustls), plus the `gateway` self-measurement.
//!
//! Two tasks joined by a bounded queue of batches:
//! - the **batcher** takes readings from its channel, encodes them into the current batch and
//!   settles each reading's `Ack` once it is in the batch; a batch is closed at `batch_lines`
//!   lines or after `batch_interval`. It never waits for the store.
//! - the **writer** sends batches in order, retrying connection errors, 5xx, 429, and
//!   401/403/404 (the last three logged as configuration problems: token, org, bucket) with
//!   capped exponential backoff and jitter; any other 4xx means the batch itself is refused,
//!   so it is dropped, counted and logged with the store's answer.
//!
//! Backpressure: when the queue holds `queue_lines` lines (store slow or down), the *oldest*
//! batch is dropped and counted (`store_dropped`): a control room needs the newest data first.
//! The queue is in memory (there is no disk spool): what it drops, and what it still holds
//! when the process is killed, is lost, though those readings' acks were settled when they
//! entered a batch.
//!
//! Shutdown: when the readings channel closes, the batcher closes its last batch; the writer
//! keeps trying to deliver what is queued until `shutdown_grace` has passed, then reports
//! how many lines it could not write.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use influxdb2::api::write::TimestampPrecision;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::config::{GatewaySettings, StoreSettings};
use crate::encode::line::{gateway_key, EventEncoder, Field, FieldWriter, TelemetryEncoder};
use crate::model::event::Event;
use crate::model::{Inventory, Reading};
use crate::stats::{GatewayValue, Stats};

/// Time the writer keeps trying to deliver queued batches after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Batch {
    body: Bytes,
    lines: usize,
}

/// Batches waiting for the writer, bounded by line count.
#[derive(Debug)]
struct Queue {
    inner: Mutex<QueueInner>,
    notify: Notify,
    max_lines: usize,
    /// Cancelled by `close`, so a writer waiting out a backoff notices shutdown at once.
    closing: CancellationToken,
}

#[derive(Debug, Default)]
struct QueueInner {
    batches: VecDeque<Batch>,
    lines: usize,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueInner> {
        // A poisoned lock means a panic elsewhere while holding it; the data (a queue of
        // byte buffers) is still consistent, so keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a batch, dropping the oldest ones while over capacity; returns lines dropped.
    fn push(&self, b: Batch, stats: &Stats) -> usize {
        let mut dropped = 0;
        {
            let mut q = self.lock();
            q.lines += b.lines;
            q.batches.push_back(b);
            while q.lines > self.max_lines && q.batches.len() > 1 {
                if let Some(old) = q.batches.pop_front() {
                    q.lines -= old.lines;
                    dropped += old.lines;
                }
            }
            stats.store_queue_lines.store(q.lines as u64, Relaxed);
        }
        self.notify.notify_one();
        dropped
    }

    fn close(&self) {
        self.lock().closed = true;
        self.closing.cancel();
        self.notify.notify_one();
    }

    /// The next batch; `None` once closed and empty.
    async fn pop(&self, stats: &Stats) -> Option<Batch> {
        loop {
            {
                let mut q = self.lock();
                if let Some(b) = q.batches.pop_front() {
                    q.lines -= b.lines;
                    stats.store_queue_lines.store(q.lines as u64, Relaxed);
                    return Some(b);
                }
                if q.closed {
                    return None;
                }
            }
            self.notify.notified().await;
        }
    }
}

/// What the store sink takes: readings (`telemetry`) and core events (`device_state`,
/// `alarm`), in the order the core stage handled them.
#[derive(Debug)]
pub enum StoreItem {
    Reading(Reading),
    Event(Arc<Event>),
    /// Lines encoded elsewhere (the periodic KPI points), with their count.
    Lines(Vec<u8>, usize),
}

/// Handle to a running store sink.
#[derive(Debug)]
pub struct StoreSink {
    batcher: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl StoreSink {
    /// Starts the batcher and the writer. The sink runs until `readings` closes; `taken`
    /// is cancelled once every reading sent before the close has been taken and acked.
    /// `clock` stamps the `gateway` self-measurement.
    pub fn spawn(
        store: StoreSettings,
        gateway: GatewaySettings,
        inventory: Arc<Inventory>,
        stats: Arc<Stats>,
        clock: Arc<dyn Clock>,
        readings: mpsc::Receiver<StoreItem>,
        taken: CancellationToken,
    ) -> anyhow::Result<Self> {
        let client = client(&store)?;
        let queue = Arc::new(Queue {
            inner: Mutex::new(QueueInner::default()),
            notify: Notify::new(),
            max_lines: store.queue_lines,
            closing: CancellationToken::new(),
        });
        let batcher = Batcher {
            enc: TelemetryEncoder::new(&inventory),
            events: EventEncoder::default(),
            fields: FieldWriter::default(),
            gateway_key: gateway_key(&gateway.site, &gateway.host),
            inventory,
            stats: stats.clone(),
            queue: queue.clone(),
            buf: Vec::with_capacity(store.batch_lines * 128),
            lines: 0,
            batch_lines: store.batch_lines,
            started: Instant::now(),
            clock,
        };
        let batcher = tokio::spawn(batcher.run(
            readings,
            store.batch_interval,
            gateway.stats_interval,
            taken,
        ));
        let writer = tokio::spawn(write_loop(client, store, queue, stats));
        Ok(StoreSink { batcher, writer })
    }

    /// Waits until both tasks have finished (after the readings channel closed).
    pub async fn join(self) {
        let _ = self.batcher.await;
        let _ = self.writer.await;
    }
}

/// The `influxdb2` client. Gzip is ours, not the crate's: its `write_line_protocol` sends the
/// body as given, and its streaming `write` compresses at the highest level (the benchmark
/// measured that at 17 % of the gateway's CPU) and again on every retry. So the writer
/// compresses each batch once, at a fast level, and this client (used only for writes) sends
/// `Content-Encoding: gzip` with every request.
pub(crate) fn client(store: &StoreSettings) -> anyhow::Result<influxdb2::Client> {
    let mut http = reqwest::ClientBuilder::new()
        .timeout(store.timeout)
        .connect_timeout(store.timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("estate-gateway/", env!("CARGO_PKG_VERSION")));
    if store.gzip {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_ENCODING,
            reqwest::header::HeaderValue::from_static("gzip"),
        );
        http = http.default_headers(headers);
    }
    // The URL was validated by the config (influxdb2 panics on an invalid one).
    url::Url::parse(store.url.expose())?;
    let b = influxdb2::ClientBuilder::with_builder(
        http,
        store.url.expose(),
        &store.org,
        store.token.expose(),
    );
    Ok(b.build()?)
}

/// Writes `lines` (line protocol, ms timestamps) to the store once, outside the sink: for
/// `report --publish`. Errors name the URL, org and bucket and say what to check.
pub async fn write_lines(store: &StoreSettings, lines: Vec<u8>) -> anyhow::Result<()> {
    let client = client(store).map_err(|e| {
        anyhow::anyhow!(
            "cannot build a client for the store at {}: {e:#}",
            store.url
        )
    })?;
    let body = Bytes::from(lines);
    let body = if store.gzip { gzip(&body) } else { body };
    match write_once(&client, store, &body).await {
        Ok(()) => Ok(()),
        Err(WriteError::Retry(msg) | WriteError::Refused(msg)) => Err(anyhow::anyhow!(
            "writing to the store at {} (org `{}`, bucket `{}`) failed: {msg}; check that the store is up and `[store]` is right, then run the command again",
            store.url,
            store.org,
            store.bucket
        )),
    }
}

/// Gzip at level 1: line protocol compresses about 10:1 even so, at a fraction of the CPU.
fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    Bytes::from(enc.finish().unwrap_or_default())
}

struct Batcher {
    enc: TelemetryEncoder,
    events: EventEncoder,
    fields: FieldWriter,
    gateway_key: Vec<u8>,
    inventory: Arc<Inventory>,
    stats: Arc<Stats>,
    queue: Arc<Queue>,
    buf: Vec<u8>,
    lines: usize,
    batch_lines: usize,
    started: Instant,
    /// The gateway's clock (scaled under `demo --speed N`): the `gateway` points' timestamps.
    clock: Arc<dyn Clock>,
}

impl Batcher {
    async fn run(
        mut self,
        mut readings: mpsc::Receiver<StoreItem>,
        batch_interval: Duration,
        stats_interval: Duration,
        taken: CancellationToken,
    ) {
        let mut flush = tokio::time::interval(batch_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stats_tick = tokio::time::interval(stats_interval);
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Both intervals fire at once at start; skip that first tick of each.
        flush.tick().await;
        stats_tick.tick().await;
        loop {
            tokio::select! {
                r = readings.recv() => match r {
                    Some(r) => {
                        self.take(r);
                        // Drain what is already queued without going back to select!.
                        while self.lines < self.batch_lines {
                            match readings.try_recv() {
                                Ok(r) => self.take(r),
                                Err(_) => break,
                            }
                        }
                        if self.lines >= self.batch_lines {
                            self.close_batch();
                        }
                    }
                    None => break,
                },
                _ = flush.tick() => self.close_batch(),
                _ = stats_tick.tick() => self.gateway_point(),
            }
        }
        taken.cancel();
        self.gateway_point();
        self.close_batch();
        self.queue.close();
        debug!("Store batcher finished.");
    }

    fn take(&mut self, item: StoreItem) {
        match item {
            StoreItem::Reading(r) => {
                if self.enc.encode(&self.inventory, &r, &mut self.buf) {
                    self.lines += 1;
                }
                r.ack.settle();
            }
            StoreItem::Event(e) => {
                if self.events.encode(&self.inventory, &e, &mut self.buf) {
                    self.lines += 1;
                }
            }
            StoreItem::Lines(body, n) => {
                self.buf.extend_from_slice(&body);
                self.lines += n;
            }
        }
    }

    fn close_batch(&mut self) {
        if self.lines == 0 {
            return;
        }
        let body = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(self.batch_lines * 128),
        ));
        let lines = std::mem::take(&mut self.lines);
        let dropped = self.queue.push(Batch { body, lines }, &self.stats);
        if dropped > 0 {
            self.stats.store_dropped.fetch_add(dropped as u64, Relaxed);
            warn!(
                dropped_lines = dropped,
                "Store queue full (store slow or down); dropped the oldest lines."
            );
        }
    }

    /// Appends the `gateway` self-measurement (DESIGN §5) to the current batch.
    fn gateway_point(&mut self) {
        let now_ms = self.clock.now_ms();
        let values = self
            .stats
            .gateway_fields(self.started.elapsed().as_secs(), crate::clock::rss_bytes());
        let fields = values.iter().filter_map(|(k, v)| {
            v.map(|v| {
                let f = match v {
                    GatewayValue::U64(x) => Field::U64(x),
                    GatewayValue::F64(x) => Field::F64(x),
                };
                (k.as_str(), f)
            })
        });
        if self
            .fields
            .line(&mut self.buf, &self.gateway_key, fields, now_ms)
        {
            self.lines += 1;
        }
    }
}

enum WriteError {
    /// Try again later.
    Retry(String),
    /// The store refused this batch; trying again cannot help.
    Refused(String),
}

async fn write_once(
    client: &influxdb2::Client,
    store: &StoreSettings,
    body: &Bytes,
) -> Result<(), WriteError> {
    let res = client
        .write_line_protocol_with_precision(
            &store.org,
            &store.bucket,
            body.clone(),
            TimestampPrecision::Milliseconds,
        )
        .await;
    match res {
        Ok(()) => Ok(()),
        Err(influxdb2::RequestError::Http { status, text }) => {
            let code = status.as_u16();
            let text: String = text.chars().take(300).collect();
            match code {
                401 | 403 => Err(WriteError::Retry(format!(
                    "HTTP {code}: the store refused the token; check `store.token_file` or the variable named by `store.token_env` ({text})"
                ))),
                404 => Err(WriteError::Retry(format!(
                    "HTTP 404: org `{}` or bucket `{}` not found at {} ({text})",
                    store.org, store.bucket, store.url
                ))),
                408 | 429 | 500..=599 => Err(WriteError::Retry(format!("HTTP {code}: {text}"))),
                _ => Err(WriteError::Refused(format!("HTTP {code}: {text}"))),
            }
        }
        Err(e) => Err(WriteError::Retry(format!("{e}"))),
    }
}

async fn write_loop(
    client: influxdb2::Client,
    store: StoreSettings,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
) {
    let mut backoff = Backoff::new(store.retry_min, store.retry_max);
    let mut deadline: Option<Instant> = None;
    let mut failing_since: Option<Instant> = None;
    while let Some(batch) = queue.pop(&stats).await {
        // Compressed once, sent as often as it takes.
        let body = if store.gzip {
            gzip(&batch.body)
        } else {
            batch.body.clone()
        };
        loop {
            if deadline.is_none() && queue.lock().closed {
                deadline = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            match write_once(&client, &store, &body).await {
                Ok(()) => {
                    stats.store_lines.fetch_add(batch.lines as u64, Relaxed);
                    if let Some(since) = failing_since.take() {
                        info!(
                            outage_s = since.elapsed().as_secs(),
                            "Store writes succeed again."
                        );
                    }
                    backoff.reset();
                    break;
                }
                Err(WriteError::Refused(msg)) => {
                    stats.store_errors.fetch_add(1, Relaxed);
                    stats.store_dropped.fetch_add(batch.lines as u64, Relaxed);
                    error!(lines = batch.lines, error = %msg, "Store refused a batch; dropped it.");
                    break;
                }
                Err(WriteError::Retry(msg)) => {
                    stats.store_errors.fetch_add(1, Relaxed);
                    let delay = backoff.next_delay();
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        error!(error = %msg, retry_in_ms = delay.as_millis() as u64, "Store write failed; retrying with backoff.");
                    } else {
                        debug!(error = %msg, retry_in_ms = delay.as_millis() as u64, "Store write failed again.");
                    }
                    if let Some(d) = deadline {
                        if Instant::now() + delay > d {
                            give_up(&queue, &stats, batch.lines);
                            return;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        // Shutdown began while waiting: retry now, within the grace period.
                        _ = queue.closing.cancelled(), if deadline.is_none() => {}
                    }
                }
            }
        }
    }
    debug!("Store writer finished.");
}

/// Shutdown while the store is unreachable: count and report what cannot be written.
fn give_up(queue: &Queue, stats: &Stats, in_hand: usize) {
    let mut q = queue.lock();
    let lost = in_hand + q.lines;
    q.batches.clear();
    q.lines = 0;
    stats.store_queue_lines.store(0, Relaxed);
    stats.store_dropped.fetch_add(lost as u64, Relaxed);
    error!(
        lines = lost,
        "Shutting down while the store is unreachable; these lines were not written."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lines: usize) -> Batch {
        Batch {
            body: Bytes::from(vec![b'x'; lines]),
            lines,
        }
    }

    fn queue(max_lines: usize) -> Queue {
        Queue {
            inner: Mutex::new(QueueInner::default()),
            notify: Notify::new(),
            max_lines,
            closing: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn queue_drops_oldest_when_full_and_drains_after_close() {
        let stats = Stats::default();
        let q = queue(10);
        assert_eq!(q.push(batch(4), &stats), 0);
        assert_eq!(q.push(batch(5), &stats), 0);
        assert_eq!(stats.store_queue_lines.load(Relaxed), 9);
        // 4 + 5 + 3 = 12 > 10: the oldest (4 lines) goes.
        assert_eq!(q.push(batch(3), &stats), 4);
        assert_eq!(stats.store_queue_lines.load(Relaxed), 8);
        q.close();
        assert_eq!(q.pop(&stats).await.unwrap().lines, 5);
        assert_eq!(q.pop(&stats).await.unwrap().lines, 3);
        assert!(q.pop(&stats).await.is_none());
        assert_eq!(stats.store_queue_lines.load(Relaxed), 0);
    }

    /// A clock that always reads the same time.
    #[derive(Debug)]
    struct FixedClock(i64);

    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn gateway_points_are_stamped_by_the_gateways_clock() {
        // A time far from the wall clock's, as a scaled demo clock may read.
        const AT: i64 = 1_800_000_000_123;
        let inventory = Arc::new(Inventory::new(Vec::new()));
        let mut b = Batcher {
            enc: TelemetryEncoder::new(&inventory),
            events: EventEncoder::default(),
            fields: FieldWriter::default(),
            gateway_key: gateway_key("a", "h"),
            inventory,
            stats: Arc::new(Stats::default()),
            queue: Arc::new(queue(100)),
            buf: Vec::new(),
            lines: 0,
            batch_lines: 10,
            started: Instant::now(),
            clock: Arc::new(FixedClock(AT)),
        };
        b.gateway_point();
        assert_eq!(b.lines, 1);
        let line = String::from_utf8(b.buf.clone()).expect("utf-8");
        assert!(line.starts_with("gateway,"), "{line}");
        assert!(line.ends_with(&format!(" {AT}\n")), "{line}");
    }

    #[tokio::test]
    async fn a_single_oversized_batch_is_kept() {
        let stats = Stats::default();
        let q = queue(10);
        assert_eq!(q.push(batch(50), &stats), 0);
        assert_eq!(q.pop(&stats).await.unwrap().lines, 50);
    }
}
