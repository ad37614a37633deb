//! One endpoint's connection: connecting (TCP, RTU over TCP, RTU on a serial line), one
//! request at a time with a timeout and retries, and the reconnect rules.
//!
//! tokio-modbus answers in two layers (STYLE: slowtec/tokio-modbus `src/lib.rs`):
//! `Err(Error)` means the transport failed (reset, bad frame, CRC or header mismatch) and
//! `Ok(Err(ExceptionCode))` means the device refused the request. A transport error or a
//! timeout leaves the connection in an unknown state — a late answer would be read as the
//! answer to the next request — so the connection is dropped and the next attempt reconnects.
//! An exception is a proper answer: it is counted per code and the connection is kept.
//!
//! While the endpoint cannot be reached, connect attempts are paced by capped exponential
//! backoff with jitter (`reconnect_min` to `reconnect_max`); requests in between fail at once
//! as `Down` without touching the network.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::source::modbus::{Endpoint, EndpointKind};
use crate::stats::{ModbusException, Stats};

/// How a request ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Answer(Response),
    /// The device refused the request (already counted per code).
    Exception(ExceptionCode),
    /// No answer on any attempt.
    NoAnswer(Failure),
    /// The endpoint cannot be reached (connect failed, or waiting to retry).
    Down,
}

/// Why the last attempt of a request got no answer.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    Timeout(Duration),
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(d) => write!(f, "no answer within {}", humantime::format_duration(*d)),
            Failure::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl Failure {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout(_) => "timeout",
            Failure::Transport(_) => "transport",
        }
    }
}

pub(super) struct Link {
    ep: Arc<Endpoint>,
    stats: Arc<Stats>,
    ctx: Option<Context>,
    /// The endpoint could not be reached at the last attempt.
    down: bool,
    /// While down: no connect attempt before this.
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// `pause_between_requests` after the last request ends here.
    quiet_until: Option<Instant>,
    connected_once: bool,
}

impl Link {
    pub(super) fn new(ep: Arc<Endpoint>, stats: Arc<Stats>) -> Self {
        Link {
            backoff: Backoff::new(ep.reconnect_min, ep.reconnect_max),
            ep,
            stats,
            ctx: None,
            down: false,
            retry_at: None,
            quiet_until: None,
            connected_once: false,
        }
    }

    pub(super) fn is_down(&self) -> bool {
        self.down
    }

    /// Sends `req` to `unit`, trying up to `attempts` times on timeout or transport error.
    /// `wait_backoff = false` (writes: an operator is waiting) tries to connect even while the
    /// endpoint is backing off.
    pub(super) async fn call(
        &mut self,
        unit: u8,
        req: &Request<'_>,
        attempts: u32,
        wait_backoff: bool,
    ) -> Outcome {
        let mut last: Option<Failure> = None;
        // A connection that sat idle may have been closed by the peer (a serial server's idle
        // timeout): the first transport error on a reused connection gets one extra attempt.
        let mut stale_retry = true;
        let mut attempt = 0;
        while attempt < attempts.max(1) {
            let fresh = match self.connect(wait_backoff).await {
                Some(fresh) => fresh,
                None => return Outcome::Down,
            };
            if let Some(q) = self.quiet_until {
                sleep_until(q).await;
            }
            let Some(ctx) = self.ctx.as_mut() else {
                return Outcome::Down;
            };
            ctx.set_slave(Slave(unit));
            self.stats.modbus.requests.fetch_add(1, Relaxed);
            let started = Instant::now();
            let res = timeout(self.ep.timeout, ctx.call(req.clone())).await;
            if !self.ep.pause_between_requests.is_zero() {
                self.quiet_until = Some(Instant::now() + self.ep.pause_between_requests);
            }
            match res {
                Ok(Ok(Ok(resp))) => {
                    self.stats.modbus.latency(started.elapsed());
                    return Outcome::Answer(resp);
                }
                Ok(Ok(Err(code))) => {
                    self.stats.modbus.latency(started.elapsed());
                    self.stats
                        .modbus
                        .exception(ModbusException::from_code(u8::from(code)));
                    return Outcome::Exception(code);
                }
                Ok(Err(e)) => {
                    self.stats.modbus.transport_errors.fetch_add(1, Relaxed);
                    self.drop_connection();
                    last = Some(Failure::Transport(e.to_string()));
                    if !fresh && stale_retry {
                        stale_retry = false;
                        continue;
                    }
                }
                Err(_) => {
                    self.stats.modbus.timeouts.fetch_add(1, Relaxed);
                    self.drop_connection();
                    last = Some(Failure::Timeout(self.ep.timeout));
                }
            }
            attempt += 1;
        }
        match last {
            Some(f) => Outcome::NoAnswer(f),
            None => Outcome::Down,
        }
    }

    /// Makes sure there is a connection: `Some(true)` if it was just made, `Some(false)` if
    /// an open one is reused, `None` if the endpoint cannot be reached now.
    async fn connect(&mut self, wait_backoff: bool) -> Option<bool> {
        if self.ctx.is_some() {
            return Some(false);
        }
        let now = Instant::now();
        if wait_backoff && self.down && self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let ep = &self.ep;
        let res = match timeout(ep.timeout, connect(&ep.kind)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no connection within {}",
                    humantime::format_duration(ep.timeout)
                ),
            )),
        };
        match res {
            Ok(ctx) => {
                self.ctx = Some(ctx);
                self.backoff.reset();
                self.retry_at = None;
                if self.down {
                    self.down = false;
                    self.stats.modbus.endpoints_down.fetch_sub(1, Relaxed);
                    info!(endpoint = %ep.name, url = %ep.url, "Modbus endpoint reachable again.");
                } else if !self.connected_once {
                    info!(endpoint = %ep.name, url = %ep.url, "Connected to the Modbus endpoint.");
                } else {
                    debug!(endpoint = %ep.name, "Reconnected to the Modbus endpoint.");
                }
                self.connected_once = true;
                Some(true)
            }
            Err(e) => {
                self.stats.modbus.connect_failures.fetch_add(1, Relaxed);
                let delay = self.backoff.next_delay();
                self.retry_at = Some(Instant::now() + delay);
                if !self.down {
                    self.down = true;
                    self.stats.modbus.endpoints_down.fetch_add(1, Relaxed);
                    warn!(endpoint = %ep.name, url = %ep.url, error = %e,
                          retry_in = %humantime::format_duration(round_ms(delay)),
                          "Modbus endpoint unreachable; retrying with backoff.");
                } else {
                    debug!(endpoint = %ep.name, error = %e,
                           retry_in = %humantime::format_duration(round_ms(delay)),
                           "Modbus endpoint still unreachable.");
                }
                None
            }
        }
    }

    /// Forgets a connection in an unknown state (dropping it closes the socket or port).
    fn drop_connection(&mut self) {
        if self.ctx.take().is_some() {
            self.stats.modbus.reconnects.fetch_add(1, Relaxed);
        }
    }

    /// Closes the connection cleanly (shutdown), waiting at most briefly.
    pub(super) async fn close(&mut self) {
        if let Some(mut ctx) = self.ctx.take() {
            let _ = timeout(Duration::from_millis(200), ctx.disconnect()).await;
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// One request on a fresh connection, outside the poller (`estate-gateway doctor`): connect
/// within `limit`, send `req` to `unit`, wait up to `limit` for the answer, disconnect.
pub(super) async fn probe(
    kind: &EndpointKind,
    limit: Duration,
    unit: u8,
    req: Request<'static>,
) -> Result<Response, super::ProbeError> {
    use super::ProbeError;
    let mut ctx = match timeout(limit, connect(kind)).await {
        Ok(Ok(ctx)) => ctx,
        Ok(Err(e)) => return Err(ProbeError::Connect(e.to_string())),
        Err(_) => {
            return Err(ProbeError::Connect(format!(
                "no connection within {}",
                humantime::format_duration(round_ms(limit))
            )))
        }
    };
    ctx.set_slave(Slave(unit));
    let res = match timeout(limit, ctx.call(req)).await {
        Ok(Ok(Ok(resp))) => Ok(resp),
        Ok(Ok(Err(code))) => Err(ProbeError::Exception(format!(
            "0x{:02X} {}",
            u8::from(code),
            ModbusException::from_code(u8::from(code)).as_str()
        ))),
        Ok(Err(e)) => Err(ProbeError::Transport(e.to_string())),
        Err(_) => Err(ProbeError::Timeout(limit)),
    };
    let _ = timeout(limit, ctx.disconnect()).await;
    res
}

/// Opens a client context for the endpoint (the unit is set per request).
async fn connect(kind: &EndpointKind) -> io::Result<Context> {
    match kind {
        EndpointKind::Tcp { host, port } => {
            let s = tcp(host, *port).await?;
            Ok(tokio_modbus::client::tcp::attach(s))
        }
        EndpointKind::RtuOverTcp { host, port } => {
            let s = tcp(host, *port).await?;
            Ok(tokio_modbus::client::rtu::attach(s))
        }
        EndpointKind::Rtu {
            path,
            baud,
            parity,
            data_bits,
            stop_bits,
        } => {
            let builder = super::super::endpoint::serial_builder(
                path, *baud, *parity, *data_bits, *stop_bits,
            );
            let port = tokio_serial::SerialStream::open(&builder)
                .map_err(|e| io::Error::other(format!("cannot open {path}: {e}")))?;
            Ok(tokio_modbus::client::rtu::attach(port))
        }
    }
}

async fn tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let s = TcpStream::connect((host, port)).await?;
    // Requests are small and strictly alternate with answers: do not let Nagle hold them.
    s.set_nodelay(true)?;
    Ok(s)
}
