//! The store sink: readings from the input log → `telemetry` lines, plus the core's events
//! and the KPI points → batches → InfluxDB v2 write API (with the `influxdb2` crate, gzip on,
//! rustls), plus the `gateway` self-measurement.
//!
//! Two tasks:
//! - the **batcher** encodes what the core hands over in memory — events (`device_state`,
//!   `alarm`), KPI lines, the `gateway` points — into batches on a bounded queue (the oldest
//!   dropped and counted when full: these are all in the journal too);
//! - the **writer** is a consumer of the input log (`wal`): from its committed position
//!   (`data_dir/log/store.pos`) it reads readings, encodes them, adds the queued event lines,
//!   and writes a request of up to `batch_lines` lines (waiting up to `batch_interval` for a
//!   fuller one, or sending a partial one once nothing new came for `batch_quiet`). Only after the store answered 2xx does its position move. An outage of any
//!   length within the log's bound costs no memory: the writer just lags, retrying with
//!   capped backoff (`retry_max`, default 1 s, so a recovered store is written to within
//!   about a second), and catches up oldest first. A batch the store refuses as malformed
//!   (400, 413, 422) is split until the refused lines are found; those go to the dead-letter
//!   directory (`data_dir/dead-letter/`), logged and counted, and the rest is written.
//!
//! Shutdown: the writer stops at once when the store is not answering (nothing is lost: the
//! log holds it, the next start sends it); otherwise it finishes the request in hand.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use influxdb2::api::write::TimestampPrecision;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::config::{GatewaySettings, StoreSettings};
use crate::encode::exception::ExceptionFilter;
use crate::encode::line::{gateway_key, EventEncoder, Field, FieldWriter, TelemetryEncoder};
use crate::model::event::Event;
use crate::model::Inventory;
use crate::stats::{GatewayValue, Stats};
use crate::wal::Head;

/// How often, at most, the writer's committed position is written to its file (a crash
/// re-sends at most this much: the same points again, harmless).
const POSITION_EVERY: Duration = Duration::from_millis(200);

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

    /// The next batch if one is queued.
    fn try_pop(&self, stats: &Stats) -> Option<Batch> {
        let mut q = self.lock();
        let b = q.batches.pop_front()?;
        q.lines -= b.lines;
        stats.store_queue_lines.store(q.lines as u64, Relaxed);
        Some(b)
    }

    /// The next batch; `None` once closed and empty.
    #[cfg(test)]
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

/// What the store sink takes in memory: core events (`device_state`, `alarm`), in the order the
/// core stage handled them (readings come from the input log).
#[derive(Debug)]
pub enum StoreItem {
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

/// Where the writer reads readings: the input log, its head, where refused lines go.
#[derive(Debug)]
pub struct LogFeed {
    pub dir: std::path::PathBuf,
    pub head: watch::Receiver<Head>,
    /// Where to keep refused lines (`data_dir/dead-letter`).
    pub dead_letter: std::path::PathBuf,
}

impl StoreSink {
    /// Starts the batcher and the writer. The sink runs until `items` closes (the writer then
    /// finishes what it can without waiting for an unreachable store). `clock` stamps the
    /// `gateway` self-measurement.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        store: StoreSettings,
        gateway: GatewaySettings,
        inventory: Arc<Inventory>,
        stats: Arc<Stats>,
        clock: Arc<dyn Clock>,
        items: mpsc::Receiver<StoreItem>,
        feed: LogFeed,
        exceptions: ExceptionFilter,
    ) -> anyhow::Result<Self> {
        let client = client(&store)?;
        let queue = Arc::new(Queue {
            inner: Mutex::new(QueueInner::default()),
            notify: Notify::new(),
            max_lines: store.queue_lines,
            closing: CancellationToken::new(),
        });
        let batcher = Batcher {
            events: EventEncoder::default(),
            fields: FieldWriter,
            gateway_key: gateway_key(&gateway.site, &gateway.host),
            inventory: inventory.clone(),
            stats: stats.clone(),
            queue: queue.clone(),
            buf: Vec::with_capacity(16 * 1024),
            lines: 0,
            batch_lines: store.batch_lines,
            started: Instant::now(),
            clock: clock.clone(),
        };
        let batcher =
            tokio::spawn(batcher.run(items, store.batch_interval, gateway.stats_interval));
        let pos_path = feed.dir.join(crate::wal::STORE_POS_FILE);
        let position = crate::wal::read_position(&pos_path).max(feed.head.borrow().first_kept);
        stats.log.store_pos.store(position, Relaxed);
        let writer = Writer {
            client,
            reader: crate::wal::Reader::open(&feed.dir, position),
            feed,
            pos_path,
            position,
            saved_position: position,
            saved_at: Instant::now(),
            enc: TelemetryEncoder::new(&inventory).with_exceptions(exceptions),
            inventory,
            store,
            queue,
            stats,
            clock,
            logs: crate::stats::LogLimiter::new(5, 60_000),
            live: None,
            live_from: None,
            live_turn: false,
        };
        let writer = tokio::spawn(writer.run());
        Ok(StoreSink { batcher, writer })
    }

    /// Waits until both tasks have finished (after the items channel closed).
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
    // A private CA (besides the system's roots) and a client certificate, both checked by the
    // config.
    if let Some(ca) = &store.ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(ca)? {
            http = http.add_root_certificate(cert);
        }
    }
    if let Some(c) = &store.client_cert {
        let mut pem = c.cert_pem.clone();
        pem.push(b'\n');
        pem.extend_from_slice(c.key_pem.expose().as_bytes());
        http = http.identity(reqwest::Identity::from_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "store.cert_file/store.key_file: the client certificate cannot be used: {e}"
            )
        })?);
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
        self.gateway_point();
        self.close_batch();
        self.queue.close();
        debug!("Store batcher finished.");
    }

    fn take(&mut self, item: StoreItem) {
        match item {
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
            Vec::with_capacity(16 * 1024),
        ));
        let lines = std::mem::take(&mut self.lines);
        let dropped = self.queue.push(Batch { body, lines }, &self.stats);
        if dropped > 0 {
            self.stats.store_dropped.fetch_add(dropped as u64, Relaxed);
            warn!(
                dropped_lines = dropped,
                "Store event queue full (store slow or down); dropped the oldest event lines (the journal has them)."
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

/// The log consumer that writes to the store.
struct Writer {
    client: influxdb2::Client,
    feed: LogFeed,
    reader: crate::wal::Reader,
    pos_path: std::path::PathBuf,
    /// Every record below this lsn is in the store.
    position: u64,
    saved_position: u64,
    saved_at: Instant,
    enc: TelemetryEncoder,
    inventory: Arc<Inventory>,
    store: StoreSettings,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    logs: crate::stats::LogLimiter<&'static str>,
    /// While a backlog drains: a second cursor on the newest records, from `live_from`.
    live: Option<crate::wal::Reader>,
    live_from: Option<u64>,
    live_turn: bool,
}

/// Reads log records into `p` (up to `max` lines) from `reader`, not past `head`; with
/// `track_end` the request's log position follows.
#[allow(clippy::too_many_arguments)]
fn read_records(
    reader: &mut crate::wal::Reader,
    head: &Head,
    p: &mut Pending,
    max: usize,
    enc: &mut TelemetryEncoder,
    inventory: &Inventory,
    logs: &mut crate::stats::LogLimiter<&'static str>,
    clock: &dyn Clock,
    track_end: bool,
) {
    let mut scratch = crate::model::Reading {
        device: 0,
        ts_ms: 0,
        values: Vec::with_capacity(16),
        status: None,
        ack: crate::model::Ack::None,
    };
    while p.lines < max {
        let body = match reader.next(head) {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) => {
                if let Some(n) = logs.allow("corrupt", clock.now_ms()) {
                    error!(error = %e, suppressed = n, "Input log: a corrupt record; skipping the rest of its segment.");
                }
                if reader.skip_segment().is_err() {
                    break;
                }
                continue;
            }
        };
        // Decoded into one reused reading: no allocation per record (string values aside).
        let (lsn, arrival_ms, is_reading) = match crate::wal::record::decode_reading_into(
            body,
            inventory,
            &mut scratch,
        ) {
            Ok(r) => r,
            Err(e) => {
                if let Some(n) = logs.allow("decode", clock.now_ms()) {
                    error!(error = %e, suppressed = n, "Input log: a record that does not decode; skipped.");
                }
                continue;
            }
        };
        if track_end {
            p.end = Some(lsn + 1);
            p.oldest_ms.get_or_insert(arrival_ms);
        }
        if is_reading && enc.encode(inventory, &scratch, &mut p.body) {
            p.lines += 1;
        }
    }
}

/// A request being assembled.
#[derive(Default)]
struct Pending {
    body: Vec<u8>,
    lines: usize,
    /// Lines from the in-memory event queue (not in the log).
    event_lines: usize,
    /// The lsn after the last log record in it (`None`: no record).
    end: Option<u64>,
    /// Arrival time of its oldest record.
    oldest_ms: Option<i64>,
}

enum Wait {
    /// Something new: log records, queued events.
    More,
    /// The time asked for passed with nothing new.
    Timeout,
    Closed,
}

impl Writer {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.store.retry_min, self.store.retry_max);
        let mut failing_since: Option<Instant> = None;
        loop {
            let Some(batch) = self.assemble().await else {
                break;
            };
            // Compressed once, sent as often as it takes.
            let body = Bytes::from(batch.body);
            let wire = if self.store.gzip {
                gzip(&body)
            } else {
                body.clone()
            };
            loop {
                match write_once(&self.client, &self.store, &wire).await {
                    Ok(()) => {
                        self.stats
                            .store_lines
                            .fetch_add(batch.lines as u64, Relaxed);
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
                        self.stats.store_errors.fetch_add(1, Relaxed);
                        self.refused(&body, batch.lines, &msg).await;
                        break;
                    }
                    Err(WriteError::Retry(msg)) => {
                        self.stats.store_errors.fetch_add(1, Relaxed);
                        let delay = backoff.next_delay();
                        if failing_since.is_none() {
                            failing_since = Some(Instant::now());
                            error!(error = %msg, retry_in_ms = delay.as_millis() as u64, "Store write failed; retrying with backoff (readings wait in the input log).");
                        } else {
                            debug!(error = %msg, retry_in_ms = delay.as_millis() as u64, "Store write failed again.");
                        }
                        self.note_lag(batch.oldest_ms);
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = self.queue.closing.cancelled() => {
                                self.stop_unwritten(batch.event_lines);
                                return;
                            }
                        }
                    }
                }
            }
            if let Some(end) = batch.end {
                self.position = end;
                self.stats.log.store_pos.store(end, Relaxed);
            }
            self.save_position(false);
        }
        self.save_position(true);
        debug!("Store writer finished.");
    }

    /// The next request: queued event lines and readings from the log, up to `batch_lines`,
    /// waiting up to `batch_interval` for a fuller one. `None` once shutting down with nothing
    /// left in memory (the log keeps the rest for the next start).
    async fn assemble(&mut self) -> Option<Pending> {
        let mut p = Pending::default();
        let mut started: Option<Instant> = None;
        loop {
            self.fill(&mut p);
            if p.lines > 0 && started.is_none() {
                started = Some(Instant::now());
            }
            if p.lines >= self.store.batch_lines {
                return Some(p);
            }
            let closed = self.queue.lock().closed;
            if closed {
                // Shutting down: send what is in hand once; what the log holds waits.
                return (p.lines > 0).then_some(p);
            }
            let remaining = match started {
                Some(t) => match self.store.batch_interval.checked_sub(t.elapsed()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Some(p),
                },
                None => None,
            };
            // A partial batch also goes once nothing new came for `batch_quiet`: the end of a
            // burst reaches the store at once instead of up to `batch_interval` later.
            let quiet = !self.store.batch_quiet.is_zero() && p.lines > 0;
            let remaining = match remaining {
                Some(r) if quiet && self.store.batch_quiet < r => Some(self.store.batch_quiet),
                r => r,
            };
            self.note_lag(p.oldest_ms);
            match self.wait(remaining).await {
                Wait::More => {}
                Wait::Timeout => {
                    if quiet {
                        // Quiet (or the interval is over): take what came meanwhile, then go.
                        self.fill(&mut p);
                        return Some(p);
                    }
                }
                Wait::Closed => {
                    if p.lines > 0 {
                        return Some(p);
                    }
                    // One last look at what is in memory.
                    self.fill(&mut p);
                    return (p.lines > 0).then_some(p);
                }
            }
        }
    }

    /// Waits for new log records, queued events, the end of `remaining`, or shutdown.
    async fn wait(&mut self, remaining: Option<Duration>) -> Wait {
        let sleep = tokio::time::sleep(remaining.unwrap_or(Duration::from_secs(3600)));
        tokio::select! {
            r = self.feed.head.changed() => {
                if r.is_err() {
                    // The intake is gone: shutting down.
                    return if self.queue.lock().closed { Wait::Closed } else {
                        self.queue.notify.notified().await;
                        Wait::More
                    };
                }
                Wait::More
            }
            _ = self.queue.notify.notified() => Wait::More,
            _ = self.queue.closing.cancelled() => Wait::Closed,
            _ = sleep => Wait::Timeout,
        }
    }

    /// Adds queued event lines and log records to `p` up to `batch_lines`.
    fn fill(&mut self, p: &mut Pending) {
        let max = self.store.batch_lines;
        while p.lines < max {
            match self.queue.try_pop(&self.stats) {
                Some(b) => {
                    p.body.extend_from_slice(&b.body);
                    p.lines += b.lines;
                    p.event_lines += b.lines;
                }
                None => break,
            }
        }
        if self.queue.lock().closed {
            // Shutting down: the log keeps its records for the next start; only what is in
            // memory is written now.
            return;
        }
        let head = *self.feed.head.borrow_and_update();
        // A backlog (the store was away): its oldest records go first, but every other
        // request carries the newest ones, so the dashboards' telemetry is live again while
        // the backlog drains. The position (what every record below is written) follows the
        // backlog; the newest records written meanwhile are only re-sent after a crash.
        if let Some(from) = self.live_from {
            if p.lines == 0 && self.reader.next_lsn() >= from {
                if let Some(live) = self.live.take() {
                    self.reader = live;
                }
                self.live_from = None;
                let at = self.reader.next_lsn();
                if at > self.position {
                    self.position = at;
                    self.stats.log.store_pos.store(at, Relaxed);
                }
            }
        } else if head.next_lsn.saturating_sub(self.reader.next_lsn()) > 4 * max as u64 {
            self.live_from = Some(head.next_lsn);
            self.live = Some(crate::wal::Reader::open(&self.feed.dir, head.next_lsn));
            info!(
                backlog = head.next_lsn - self.reader.next_lsn(),
                "The store is behind: writing the backlog oldest first, with the newest readings in every other request."
            );
        }
        let bounded = crate::wal::Head {
            next_lsn: self
                .live_from
                .map_or(head.next_lsn, |b| b.min(head.next_lsn)),
            ..head
        };
        self.live_turn = !self.live_turn;
        if self.live_turn {
            if let Some(live) = self.live.as_mut() {
                read_records(
                    live,
                    &head,
                    p,
                    max,
                    &mut self.enc,
                    &self.inventory,
                    &mut self.logs,
                    &*self.clock,
                    false,
                );
            }
        }
        read_records(
            &mut self.reader,
            &bounded,
            p,
            max,
            &mut self.enc,
            &self.inventory,
            &mut self.logs,
            &*self.clock,
            true,
        );
        let skipped = self.reader.take_skipped();
        if skipped > 0 {
            self.stats.log.dropped.fetch_add(skipped, Relaxed);
            error!(
                records = skipped,
                "The store never received these readings: the input log deleted them at its bound (log.max_bytes)."
            );
        }
        if p.end.is_none() && p.lines == 0 {
            // Caught up (or nothing yet): the reader's position is the store's.
            let at = self.reader.next_lsn();
            if at > self.position {
                self.position = at;
                self.stats.log.store_pos.store(at, Relaxed);
            }
        }
    }

    fn note_lag(&self, oldest_ms: Option<i64>) {
        let lag = oldest_ms.map_or(0, |t| (self.clock.now_ms() - t).max(0) / 1000);
        self.stats.log.store_lag_s.store(lag as u64, Relaxed);
    }

    fn save_position(&mut self, force: bool) {
        if self.position == self.saved_position {
            if self.stats.log.store_lag_s.load(Relaxed) > 0
                && self.reader.next_lsn() >= self.feed.head.borrow().next_lsn
            {
                self.stats.log.store_lag_s.store(0, Relaxed);
            }
            return;
        }
        if !force && self.saved_at.elapsed() < POSITION_EVERY {
            return;
        }
        match crate::wal::write_position(&self.pos_path, self.position) {
            Ok(()) => {
                self.saved_position = self.position;
                self.saved_at = Instant::now();
            }
            Err(e) => {
                if let Some(n) = self.logs.allow("position", self.clock.now_ms()) {
                    warn!(error = %e, path = %self.pos_path.display(), suppressed = n,
                          "Could not save the store's position in the input log; after a restart some points are written again (harmless).");
                }
            }
        }
    }

    /// The store refused a batch as malformed: split it until the refused lines are found;
    /// write the rest, keep those in the dead-letter directory.
    async fn refused(&mut self, body: &[u8], lines: usize, msg: &str) {
        let all: Vec<&[u8]> = body
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut bad: Vec<&[u8]> = Vec::new();
        let mut stack: Vec<&[&[u8]]> = Vec::new();
        if all.len() > 1 {
            let (a, b) = all.split_at(all.len() / 2);
            stack.push(b);
            stack.push(a);
        } else {
            bad.extend(all.iter().copied());
        }
        let mut written = 0usize;
        while let Some(part) = stack.pop() {
            let mut chunk = Vec::with_capacity(part.iter().map(|l| l.len()).sum());
            for l in part {
                chunk.extend_from_slice(l);
            }
            let chunk = Bytes::from(chunk);
            let wire = if self.store.gzip {
                gzip(&chunk)
            } else {
                chunk.clone()
            };
            match write_once(&self.client, &self.store, &wire).await {
                Ok(()) => written += part.len(),
                Err(WriteError::Refused(_)) if part.len() > 1 => {
                    let (a, b) = part.split_at(part.len() / 2);
                    stack.push(b);
                    stack.push(a);
                }
                Err(WriteError::Refused(_)) => bad.extend(part.iter().copied()),
                // The store went away while splitting: keep the rest as refused rather than
                // block the log on one malformed batch.
                Err(WriteError::Retry(_)) => bad.extend(part.iter().copied()),
            }
        }
        self.stats.store_lines.fetch_add(written as u64, Relaxed);
        self.stats
            .log
            .dead_letter
            .fetch_add(bad.len() as u64, Relaxed);
        if bad.is_empty() {
            warn!(lines, error = %msg,
                  "The store refused a batch as malformed, then accepted each of its parts: nothing was lost.");
            return;
        }
        let file = self.dead_letter(&bad);
        error!(lines, written, refused = bad.len(), error = %msg, file = %file,
               "The store refused a batch as malformed; wrote the lines it accepts and kept the refused lines in the dead-letter file.");
    }

    /// Appends lines to today's dead-letter file; returns its path for the log.
    fn dead_letter(&self, lines: &[&[u8]]) -> String {
        use std::io::Write;
        let dir = &self.feed.dead_letter;
        let day = jiff::Timestamp::from_millisecond(self.clock.now_ms())
            .map(|t| t.strftime("%Y-%m-%d").to_string())
            .unwrap_or_else(|_| "unknown".into());
        let path = dir.join(format!("{day}.lp"));
        let res = std::fs::create_dir_all(dir).and_then(|()| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            for l in lines {
                f.write_all(l)?;
            }
            f.sync_data()
        });
        if let Err(e) = res {
            error!(error = %e, path = %path.display(), "Could not write the dead-letter file.");
        }
        path.display().to_string()
    }

    /// Shutdown while the store is unreachable: the readings wait in the log; queued event
    /// lines (also in the journal) are not written.
    fn stop_unwritten(&mut self, in_hand_events: usize) {
        self.save_position(true);
        let mut q = self.queue.lock();
        let lost = in_hand_events + q.lines;
        q.batches.clear();
        q.lines = 0;
        self.stats.store_queue_lines.store(0, Relaxed);
        drop(q);
        if lost > 0 {
            self.stats.store_dropped.fetch_add(lost as u64, Relaxed);
        }
        let backlog = self
            .feed
            .head
            .borrow()
            .next_lsn
            .saturating_sub(self.position);
        warn!(
            readings_waiting = backlog,
            event_lines_lost = lost,
            "Shutting down while the store is unreachable: the readings wait in the input log and are written after the next start; the event lines (kept in the journal) are not."
        );
    }
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
            events: EventEncoder::default(),
            fields: FieldWriter,
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
