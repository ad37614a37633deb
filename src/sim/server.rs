//! The simulator on the network: one task per endpoint (a TCP listener with Modbus TCP or RTU
//! framing, or a serial line with RTU), a ticker that advances simulated time, and
//! `SimHandle`, through which tests, benchmarks and the `simulate` command steer it. Requests
//! are answered by `Simulator::handle` under one lock (answers are computed, never awaited, so
//! the lock is held for microseconds).
//!
//! Per endpoint the handle counts connections (accepted and open), requests, responses,
//! exceptions and unanswered requests, so a test can prove, for example, that an exception did
//! not cost the client its connection. When every device of a TCP endpoint is `Offline`, its
//! listener is closed (open connections are dropped, new ones refused) and bound again on the
//! same address when one comes back.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_modbus::{ExceptionCode, Response, SlaveRequest};
use tokio_serial::SerialPortBuilderExt;
use tokio_util::sync::CancellationToken;

use super::fault::{Fault, ScriptedFault};
use super::simulator::{Framing, Reply, Simulator};
use super::SimError;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::model::Value;
use crate::source::modbus::map::Table;
use crate::source::modbus::EndpointKind;

/// How often values move unless told otherwise.
pub const DEFAULT_TICK: Duration = Duration::from_millis(500);

/// How the simulator runs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Seeds the values: the same seed gives the same values, tick by tick.
    pub seed: u64,
    /// Every `tick` of real time, simulated time advances by `tick` and values move. `None`:
    /// values move only on `SimHandle::step` (exact tests).
    pub tick: Option<Duration>,
    /// Faults scheduled by simulated time.
    pub script: Vec<ScriptedFault>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 0,
            tick: Some(DEFAULT_TICK),
            script: Vec::new(),
        }
    }
}

/// Where an endpoint is served: a bound listener or a serial line to open.
#[derive(Debug)]
pub enum Transport {
    /// Modbus TCP on this listener.
    Tcp(TcpListener),
    /// RTU frames over TCP on this listener.
    RtuOverTcp(TcpListener),
    /// RTU on the serial line this builder opens (reopened if the line fails).
    Rtu(tokio_serial::SerialPortBuilder),
}

impl Transport {
    fn framing(&self) -> Framing {
        match self {
            Transport::Tcp(_) => Framing::Tcp,
            Transport::RtuOverTcp(_) => Framing::RtuOverTcp,
            Transport::Rtu(_) => Framing::Rtu,
        }
    }
}

/// A transport ready to serve: a listener (with RTU framing or not), or an open serial line
/// and how to reopen it.
enum Ready {
    Tcp(TcpListener, bool),
    Serial(tokio_serial::SerialStream, tokio_serial::SerialPortBuilder),
}

/// Counters of one endpoint since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Connections accepted (a serial line counts once per opening).
    pub connections: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Requests received, to any unit.
    pub requests: u64,
    /// Requests answered with data.
    pub responses: u64,
    /// Requests answered with an exception.
    pub exceptions: u64,
    /// Requests left unanswered (`no_response`, `offline`, unknown unit on RTU).
    pub unanswered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    open_connections: AtomicU64,
    requests: AtomicU64,
    responses: AtomicU64,
    exceptions: AtomicU64,
    unanswered: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> EndpointStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EndpointStats {
            connections: g(&self.connections),
            open_connections: g(&self.open_connections),
            requests: g(&self.requests),
            responses: g(&self.responses),
            exceptions: g(&self.exceptions),
            unanswered: g(&self.unanswered),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct EndpointRt {
    name: String,
    url: String,
    framing: Framing,
    /// The bound address of a TCP endpoint (the real port when the configuration says 0).
    local_addr: Option<SocketAddr>,
    counters: Counters,
    /// Whether the endpoint is down (all its devices offline); watched by its task.
    down: watch::Sender<bool>,
}

#[derive(Debug)]
struct Shared {
    sim: Mutex<Simulator>,
    endpoints: Vec<EndpointRt>,
    tick: Option<Duration>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Simulator> {
        // A panic while holding the lock cannot leave the simulator half-updated in a way
        // that matters more than stopping would; keep serving.
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells endpoint tasks whether their endpoint is down now.
    fn publish(&self) {
        let down: Vec<bool> = {
            let sim = self.lock();
            (0..self.endpoints.len())
                .map(|i| sim.endpoint_down(i))
                .collect()
        };
        for (ep, d) in self.endpoints.iter().zip(down) {
            ep.down.send_if_modified(|cur| {
                let changed = *cur != d;
                *cur = d;
                changed
            });
        }
    }
}

impl Simulator {
    /// Serves the Modbus devices of `cfg` on its endpoints, values seeded by `seed` and moving
    /// every [`DEFAULT_TICK`]. Binds every endpoint before it returns (an error names the
    /// endpoint). Call it inside a Tokio runtime.
    pub async fn start(cfg: &Config, seed: u64) -> Result<SimHandle, SimError> {
        Simulator::start_with(
            cfg,
            SimOptions {
                seed,
                ..SimOptions::default()
            },
        )
        .await
    }

    /// `start` with options (manual stepping, a fault script).
    pub async fn start_with(cfg: &Config, opts: SimOptions) -> Result<SimHandle, SimError> {
        let sim = Simulator::from_config(cfg, opts.seed, &opts.script)?;
        let mut transports = Vec::with_capacity(cfg.modbus.endpoints.len());
        for ep in &cfg.modbus.endpoints {
            let bind_err = |source| SimError::Bind {
                endpoint: ep.name.clone(),
                url: ep.url.clone(),
                source,
            };
            transports.push(match &ep.kind {
                EndpointKind::Tcp { host, port } => Transport::Tcp(
                    TcpListener::bind((host.as_str(), *port))
                        .await
                        .map_err(bind_err)?,
                ),
                EndpointKind::RtuOverTcp { host, port } => Transport::RtuOverTcp(
                    TcpListener::bind((host.as_str(), *port))
                        .await
                        .map_err(bind_err)?,
                ),
                EndpointKind::Rtu {
                    path,
                    baud,
                    parity,
                    data_bits,
                    stop_bits,
                } => Transport::Rtu(crate::source::modbus::endpoint::serial_builder(
                    path, *baud, *parity, *data_bits, *stop_bits,
                )),
            });
        }
        SimHandle::serve(sim, transports, opts.tick)
    }
}

/// A running simulator. Dropping it stops the tasks (connections close); `shutdown` also
/// waits for them.
#[derive(Debug)]
pub struct SimHandle {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// Serves `sim` on `transports` (one per endpoint of `sim`, in order, with the endpoint's
    /// framing); for callers that bind their own listeners (port 0) or build devices without
    /// a configuration. Serial lines are opened here. Call it inside a Tokio runtime.
    pub fn serve(
        sim: Simulator,
        transports: Vec<Transport>,
        tick: Option<Duration>,
    ) -> Result<SimHandle, SimError> {
        if transports.len() != sim.endpoints().len() {
            return Err(SimError::Invalid(format!(
                "{} transports for {} endpoints",
                transports.len(),
                sim.endpoints().len()
            )));
        }
        let mut endpoints = Vec::with_capacity(transports.len());
        let mut ready = Vec::with_capacity(transports.len());
        for (spec, t) in sim.endpoints().iter().zip(transports) {
            if spec.framing != t.framing() {
                return Err(SimError::Invalid(format!(
                    "endpoint `{}` is {}, its transport {}",
                    spec.name,
                    spec.framing.label(),
                    t.framing().label()
                )));
            }
            let local_addr = match &t {
                Transport::Tcp(l) | Transport::RtuOverTcp(l) => l.local_addr().ok(),
                Transport::Rtu(_) => None,
            };
            // Serial lines open before any task starts, so an error leaves nothing running.
            ready.push(match t {
                Transport::Tcp(l) => Ready::Tcp(l, false),
                Transport::RtuOverTcp(l) => Ready::Tcp(l, true),
                Transport::Rtu(builder) => {
                    let port = builder
                        .clone()
                        .open_native_async()
                        .map_err(|e| SimError::Bind {
                            endpoint: spec.name.clone(),
                            url: spec.url.clone(),
                            source: e.into(),
                        })?;
                    Ready::Serial(port, builder)
                }
            });
            endpoints.push(EndpointRt {
                name: spec.name.clone(),
                url: spec.url.clone(),
                framing: spec.framing,
                local_addr,
                counters: Counters::default(),
                down: watch::Sender::new(false),
            });
        }
        let shared = Arc::new(Shared {
            sim: Mutex::new(sim),
            endpoints,
            tick,
        });
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        for (ep, r) in ready.into_iter().enumerate() {
            let (shared2, stop) = (Arc::clone(&shared), shutdown.clone());
            tasks.push(match r {
                Ready::Tcp(l, rtu) => tokio::spawn(serve_tcp(shared2, ep, l, rtu, stop)),
                Ready::Serial(port, builder) => {
                    tokio::spawn(serve_serial(shared2, ep, port, builder, stop))
                }
            });
        }
        if let Some(dt) = tick {
            let (shared2, stop) = (Arc::clone(&shared), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(dt);
                every.tick().await; // the first tick is immediate
                loop {
                    tokio::select! {
                        _ = every.tick() => {
                            shared2.lock().step(dt);
                            shared2.publish();
                        }
                        () = stop.cancelled() => return,
                    }
                }
            }));
        }
        shared.publish();
        Ok(SimHandle {
            shared,
            shutdown,
            tasks,
        })
    }

    /// Serves `units` of one device model as Modbus TCP on `listener` (e.g. bound to port 0)
    /// without a configuration: devices `unit1`, `unit2`, … (by unit id) on endpoint `sim`,
    /// values seeded by `seed` and still until `step` — or set raw with `set_words`. For
    /// poller tests and benchmarks.
    pub fn serve_model(
        listener: TcpListener,
        model: Arc<crate::source::modbus::DeviceModel>,
        units: &[u8],
        seed: u64,
    ) -> Result<SimHandle, SimError> {
        let url = match listener.local_addr() {
            Ok(a) => format!("tcp://{a}"),
            Err(_) => "tcp://?".to_owned(),
        };
        let devices = units
            .iter()
            .map(|&unit| super::DeviceSpec {
                id: format!("unit{unit}"),
                site: "sim".into(),
                name: format!("{} unit {unit}", model.name),
                category: model.category.clone(),
                endpoint: 0,
                unit,
                model: Arc::clone(&model),
            })
            .collect();
        let endpoints = vec![super::EndpointSpec {
            name: "sim".into(),
            url,
            framing: Framing::Tcp,
        }];
        let sim = Simulator::new(endpoints, devices, seed, &[])?;
        SimHandle::serve(sim, vec![Transport::Tcp(listener)], None)
    }

    /// Runs `f` on the simulator (under its lock; keep it short, never await inside).
    pub fn with<R>(&self, f: impl FnOnce(&mut Simulator) -> R) -> R {
        let r = f(&mut self.shared.lock());
        self.shared.publish();
        r
    }

    /// See `Simulator::set_value`.
    pub fn set_value(&self, device: &str, signal: &str, value: Value) -> Result<(), SimError> {
        self.with(|s| s.set_value(device, signal, value))
    }

    /// See `Simulator::get_value`.
    pub fn get_value(&self, device: &str, signal: &str) -> Result<Value, SimError> {
        self.shared.lock().get_value(device, signal)
    }

    /// See `Simulator::wire_value` (what a client decodes now, at the register's resolution).
    pub fn wire_value(&self, device: &str, signal: &str) -> Result<Value, SimError> {
        self.shared.lock().wire_value(device, signal)
    }

    /// See `Simulator::set_fault`.
    pub fn set_fault(&self, device: &str, fault: Fault) -> Result<(), SimError> {
        self.with(|s| s.set_fault(device, fault))
    }

    /// See `Simulator::clear_fault`.
    pub fn clear_fault(&self, device: &str) -> Result<(), SimError> {
        self.with(|s| s.clear_fault(device))
    }

    /// See `Simulator::set_words` (raw register words, e.g. a NaN the gateway must reject).
    pub fn set_words(
        &self,
        device: &str,
        table: Table,
        address: u16,
        words: &[u16],
    ) -> Result<(), SimError> {
        self.with(|s| s.set_words(device, table, address, words))
    }

    /// See `Simulator::set_bits`.
    pub fn set_bits(
        &self,
        device: &str,
        table: Table,
        address: u16,
        bits: &[bool],
    ) -> Result<(), SimError> {
        self.with(|s| s.set_bits(device, table, address, bits))
    }

    /// See `Simulator::read_words`.
    pub fn read_words(
        &self,
        device: &str,
        table: Table,
        address: u16,
        count: u16,
    ) -> Result<Vec<u16>, SimError> {
        self.shared.lock().read_words(device, table, address, count)
    }

    /// Advances simulated time by `dt` now (with `tick: None`, the only way values move).
    pub fn step(&self, dt: Duration) {
        self.with(|s| s.step(dt));
    }

    /// Simulated time since the start.
    pub fn now(&self) -> Duration {
        self.shared.lock().now()
    }

    /// Requests addressed to `device` so far.
    pub fn device_request_count(&self, device: &str) -> Result<u64, SimError> {
        self.shared.lock().device_requests(device)
    }

    /// The counters of the endpoint named `endpoint`.
    pub fn stats(&self, endpoint: &str) -> Option<EndpointStats> {
        self.endpoint(endpoint).map(|e| e.counters.snapshot())
    }

    /// Requests the endpoint named `endpoint` received.
    pub fn request_count(&self, endpoint: &str) -> Option<u64> {
        self.stats(endpoint).map(|s| s.requests)
    }

    /// Connections the endpoint named `endpoint` accepted.
    pub fn connection_count(&self, endpoint: &str) -> Option<u64> {
        self.stats(endpoint).map(|s| s.connections)
    }

    /// The address a TCP endpoint listens on (its real port when configured as 0).
    pub fn local_addr(&self, endpoint: &str) -> Option<SocketAddr> {
        self.endpoint(endpoint).and_then(|e| e.local_addr)
    }

    fn endpoint(&self, name: &str) -> Option<&EndpointRt> {
        self.shared.endpoints.iter().find(|e| e.name == name)
    }

    /// What is served where, for people (`estate-gateway simulate` prints it at start).
    pub fn summary(&self) -> String {
        let sim = self.shared.lock();
        let n = sim.devices().count();
        let mut out =
            format!(
            "Simulating {n} Modbus device{} on {} endpoint{} (seed {}; {}; {} scripted fault{}):\n",
            if n == 1 { "" } else { "s" },
            self.shared.endpoints.len(),
            if self.shared.endpoints.len() == 1 { "" } else { "s" },
            sim.seed(),
            match self.shared.tick {
                Some(t) => format!("values move every {}", humantime::format_duration(t)),
                None => "values move only when stepped".to_owned(),
            },
            sim.scripted_faults(),
            if sim.scripted_faults() == 1 { "" } else { "s" },
        );
        for (i, ep) in self.shared.endpoints.iter().enumerate() {
            let at = match (ep.framing, ep.local_addr) {
                (Framing::Tcp, Some(a)) => format!("tcp://{a}"),
                (Framing::RtuOverTcp, Some(a)) => format!("rtu+tcp://{a}"),
                _ => ep.url.clone(),
            };
            out.push_str(&format!("  {} {at} ({})\n", ep.name, ep.framing.label()));
            // One screen per endpoint: a benchmark's 200 units are summarised.
            const SHOWN: usize = 20;
            let on: Vec<_> = sim.devices().filter(|d| d.endpoint == i).collect();
            for d in on.iter().take(SHOWN) {
                out.push_str(&format!(
                    "    unit {:>3}  {}  {}  [{}] model {}\n",
                    d.unit, d.id, d.name, d.category, d.model.name
                ));
            }
            if on.len() > SHOWN {
                out.push_str(&format!("    … and {} more\n", on.len() - SHOWN));
            }
            if on.is_empty() {
                out.push_str("    (no devices)\n");
            }
        }
        out
    }

    /// Stops serving: closes listeners, connections and serial lines, and waits for the tasks.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The tokio-modbus service of one endpoint: every request goes to `Simulator::handle`.
#[derive(Debug, Clone)]
struct EndpointService {
    shared: Arc<Shared>,
    ep: usize,
}

impl tokio_modbus::server::Service for EndpointService {
    type Request = SlaveRequest<'static>;
    // `None` sends nothing: the client times out.
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: SlaveRequest<'static>) -> Self::Future {
        let c = &self.shared.endpoints[self.ep].counters;
        inc(&c.requests);
        let reply = self.shared.lock().handle(self.ep, req.slave, &req.request);
        std::future::ready(match reply {
            Reply::Response(r) => {
                inc(&c.responses);
                Ok(Some(r))
            }
            Reply::Exception(e) => {
                inc(&c.exceptions);
                Err(e)
            }
            Reply::Silence => {
                inc(&c.unanswered);
                Ok(None)
            }
        })
    }
}

/// A TCP endpoint: serve while up; while down (all devices offline) close the listener.
async fn serve_tcp(
    shared: Arc<Shared>,
    ep: usize,
    first: TcpListener,
    rtu_framing: bool,
    stop: CancellationToken,
) {
    let name = shared.endpoints[ep].name.clone();
    let addr = shared.endpoints[ep].local_addr;
    let mut down = shared.endpoints[ep].down.subscribe();
    let mut listener = Some(first);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        if *down.borrow_and_update() {
            listener = None;
            tokio::select! {
                _ = down.wait_for(|d| !*d) => {}
                () = stop.cancelled() => return,
            }
            tracing::info!(endpoint = %name, "Simulated endpoint is back; listening again.");
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match rebind(addr).await {
                Ok(l) => {
                    backoff.reset();
                    l
                }
                Err(e) => {
                    tracing::warn!(endpoint = %name, error = %e, "Cannot listen again; retrying.");
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            },
        };
        let svc = EndpointService {
            shared: Arc::clone(&shared),
            ep,
        };
        tokio::select! {
            () = accept_loop(l, rtu_framing, svc) => {}
            _ = down.wait_for(|d| *d) => {
                tracing::info!(endpoint = %name, "Simulated endpoint offline: listener closed, connections dropped.");
            }
            () = stop.cancelled() => return,
        }
    }
}

async fn rebind(addr: Option<SocketAddr>) -> io::Result<TcpListener> {
    match addr {
        Some(a) => TcpListener::bind(a).await,
        None => Err(io::Error::other("the endpoint's address is unknown")),
    }
}

/// Accepts and serves connections until dropped (dropping it closes every connection: the
/// tokio-modbus server cancels its connection tasks when its `serve` future is dropped).
async fn accept_loop(l: TcpListener, rtu_framing: bool, svc: EndpointService) {
    let on_connected = |stream: TcpStream, peer: SocketAddr| {
        let svc = svc.clone();
        async move {
            let c = &svc.shared.endpoints[svc.ep].counters;
            inc(&c.connections);
            inc(&c.open_connections);
            tracing::debug!(endpoint = %svc.shared.endpoints[svc.ep].name, peer = %peer, "Simulator accepted a connection.");
            let conn = Counted {
                stream,
                shared: Arc::clone(&svc.shared),
                ep: svc.ep,
            };
            Ok(Some((svc, conn)))
        }
    };
    let on_error = |e: io::Error| {
        tracing::debug!(error = %e, "Simulated connection ended with an error.");
    };
    let name = svc.shared.endpoints[svc.ep].name.clone();
    // `serve` returns only when accepting fails (e.g. out of file descriptors).
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let failed = |e: io::Error, backoff: &mut Backoff| {
        tracing::warn!(endpoint = %name, error = %e, "Simulator cannot accept connections; retrying.");
        backoff.next_delay()
    };
    if rtu_framing {
        let server = tokio_modbus::server::rtu_over_tcp::Server::new(l);
        loop {
            if let Err(e) = server.serve(&on_connected, on_error).await {
                tokio::time::sleep(failed(e, &mut backoff)).await;
            }
        }
    } else {
        let server = tokio_modbus::server::tcp::Server::new(l);
        loop {
            if let Err(e) = server.serve(&on_connected, on_error).await {
                tokio::time::sleep(failed(e, &mut backoff)).await;
            }
        }
    }
}

/// A serial endpoint: serve the line; if it fails (the other end went away), reopen it.
async fn serve_serial(
    shared: Arc<Shared>,
    ep: usize,
    first: tokio_serial::SerialStream,
    builder: tokio_serial::SerialPortBuilder,
    stop: CancellationToken,
) {
    let name = shared.endpoints[ep].name.clone();
    let mut port = Some(first);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let p = match port.take() {
            Some(p) => p,
            None => match builder.clone().open_native_async() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(endpoint = %name, error = %e, "Cannot open the serial line; retrying.");
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            },
        };
        let opened = tokio::time::Instant::now();
        let c = &shared.endpoints[ep].counters;
        inc(&c.connections);
        inc(&c.open_connections);
        let svc = EndpointService {
            shared: Arc::clone(&shared),
            ep,
        };
        let server = tokio_modbus::server::rtu::Server::new(p);
        let outcome = tokio::select! {
            r = server.serve_forever(svc) => Some(r),
            () = stop.cancelled() => None,
        };
        c.open_connections.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            None => return,
            Some(r) => {
                // A line that served a while starts the backoff afresh; one that fails at
                // once (the other end is gone) is retried less and less often.
                if opened.elapsed() > Duration::from_secs(10) {
                    backoff.reset();
                }
                tracing::warn!(endpoint = %name, outcome = ?r, "Serial line closed; reopening.");
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// A connection that counts itself out of `open_connections` when it closes.
#[derive(Debug)]
struct Counted {
    stream: TcpStream,
    shared: Arc<Shared>,
    ep: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared.endpoints[self.ep]
            .counters
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
