//! The poller against real peers in this process: tokio-modbus servers over TCP, RTU over TCP
//! and RTU on a pseudo-terminal, serving a small register memory whose units can be made
//! silent or made to refuse requests; plus a listener that accepts and never answers and a
//! port that refuses. Timeouts are 100-200 ms so the whole file runs in a few seconds; tests
//! wait for readings and events, never for a fixed time, except where the length of a window
//! is what is measured.

use std::collections::{HashMap, HashSet};
use std::future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;

use super::{spawn, ModbusHandle, WriteError};
use crate::clock::{Clock, SystemClock};
use crate::model::{
    Device, DeviceIdx, Inventory, Profile, Reading, Signal, SignalType, Status, Value,
};
use crate::source::modbus::map::{Order, RegType, Register, Table};
use crate::source::modbus::plan::Limits;
use crate::source::modbus::{Binding, DeviceModel, Endpoint, EndpointKind, ModbusSettings};
use crate::stats::{ModbusException, Stats};

/// Longest wait for something that should happen within a few polls.
const WAIT: Duration = Duration::from_secs(5);
const SITE: &str = "test";

// Signal indices of the test profile.
const TEMP: u16 = 0;
const FLOW: u16 = 1;
const PUMP: u16 = 2;
const MODE: u16 = 3;
const SETPOINT: u16 = 4;
const AUTO: u16 = 5;
const ALARM: u16 = 6;
const COUNT: u16 = 7;
const LEVEL: u16 = 8;

// ---------------------------------------------------------------------------------------------
// The device model under test.

fn modes() -> Vec<String> {
    ["normal", "inspection", "stopped"]
        .map(str::to_owned)
        .to_vec()
}

fn profile() -> Arc<Profile> {
    let sig = |name: &str, ty: SignalType| Signal {
        name: name.to_owned(),
        ty,
        unit: None,
        label: None,
    };
    Arc::new(Profile::new(
        "test_plc".into(),
        "测试控制器".into(),
        Duration::from_secs(1),
        vec![
            sig("temp_c", SignalType::Float),
            sig("flow_m3h", SignalType::Float),
            sig("pump_running", SignalType::Bool),
            sig("mode", SignalType::Enum(modes())),
            sig("setpoint_c", SignalType::Float),
            sig("auto", SignalType::Bool),
            sig("alarm", SignalType::Bool),
            sig("count", SignalType::Int),
            sig("level", SignalType::Int),
        ],
    ))
}

/// Every table, a big-endian and a word-swapped f32, a bit of a status word, an enum, and
/// writable signals of each kind (f32 = fc16, u16 = fc06, coil = fc05, bit = read-modify-write).
fn model() -> Arc<DeviceModel> {
    let p = profile();
    let reg = |signal: &str, table: Table, address: u16, ty: RegType, writable: bool| {
        let idx = p.signal_index(signal).expect("signal of the test profile");
        let signal_type = p.signal(idx).ty.clone();
        Register {
            signal: signal.to_owned(),
            signal_idx: idx,
            table,
            address,
            ty,
            order: Order::Abcd,
            scale: 1.0,
            offset: 0.0,
            values: matches!(signal_type, SignalType::Enum(_)).then(modes),
            writable,
            min: None,
            max: None,
            signal_type,
            report: None,
        }
    };
    let mut flow = reg("flow_m3h", Table::Holding, 2, RegType::F32, false);
    flow.order = Order::Cdab;
    Arc::new(DeviceModel::new(
        "test_plc".into(),
        "test_plc".into(),
        vec![
            reg("temp_c", Table::Holding, 0, RegType::F32, false),
            flow,
            reg("pump_running", Table::Holding, 10, RegType::Bit(0), true),
            reg("mode", Table::Holding, 11, RegType::U16, false),
            reg("setpoint_c", Table::Holding, 12, RegType::F32, true),
            reg("level", Table::Holding, 14, RegType::U16, true),
            reg("auto", Table::Coil, 0, RegType::Bool, true),
            reg("alarm", Table::Discrete, 0, RegType::Bool, false),
            reg("count", Table::Input, 0, RegType::U16, false),
        ],
        Limits::default(),
    ))
}

/// What `Memory::fill` puts in a unit, as the poller should decode it.
fn expected_values() -> Vec<(u16, Value)> {
    vec![
        (TEMP, Value::Float(55.5)),
        (FLOW, Value::Float(12.25)),
        (PUMP, Value::Bool(false)),
        (MODE, Value::Str("inspection".into())),
        (SETPOINT, Value::Float(60.0)),
        (AUTO, Value::Bool(true)),
        (ALARM, Value::Bool(false)),
        (COUNT, Value::Int(42)),
        (LEVEL, Value::Int(7)),
    ]
}

fn f32_words(x: f32) -> [u16; 2] {
    let b = x.to_be_bytes();
    [
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ]
}

fn sorted(mut v: Vec<(u16, Value)>) -> Vec<(u16, Value)> {
    v.sort_by_key(|(i, _)| *i);
    v
}

fn value(r: &Reading, signal: u16) -> Option<&Value> {
    r.values.iter().find(|(i, _)| *i == signal).map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------------------
// The peer: a register memory behind a tokio-modbus server.

#[derive(Debug, Default)]
struct Memory {
    holding: HashMap<(u8, u16), u16>,
    input: HashMap<(u8, u16), u16>,
    coils: HashMap<(u8, u16), bool>,
    discrete: HashMap<(u8, u16), bool>,
    /// Units that never answer.
    silent: HashSet<u8>,
    /// (unit, function code) a unit ignores without answering (no exception either).
    ignore: HashSet<(u8, u8)>,
    /// (unit, function code, start address) → the exception to answer with.
    refuse: HashMap<(u8, u8, u16), ExceptionCode>,
    /// Requests received per unit.
    requests: HashMap<u8, usize>,
}

impl Memory {
    /// The values of `expected_values` in `unit`.
    fn fill(&mut self, unit: u8) {
        let [a, b] = f32_words(55.5);
        self.holding.insert((unit, 0), a);
        self.holding.insert((unit, 1), b);
        let [hi, lo] = f32_words(12.25);
        self.holding.insert((unit, 2), lo); // CDAB: low word first
        self.holding.insert((unit, 3), hi);
        // Bits 5 and 7 belong to other signals; a write of bit 0 must keep them.
        self.holding.insert((unit, 10), 0b1010_0000);
        self.holding.insert((unit, 11), 1);
        let [a, b] = f32_words(60.0);
        self.holding.insert((unit, 12), a);
        self.holding.insert((unit, 13), b);
        self.holding.insert((unit, 14), 7);
        self.coils.insert((unit, 0), true);
        self.discrete.insert((unit, 0), false);
        self.input.insert((unit, 0), 42);
    }

    fn answer(
        &mut self,
        unit: u8,
        req: Request<'static>,
    ) -> Result<Option<Response>, ExceptionCode> {
        *self.requests.entry(unit).or_default() += 1;
        if self.silent.contains(&unit) {
            return Ok(None);
        }
        let fc = req.function_code().value();
        if self.ignore.contains(&(unit, fc)) {
            return Ok(None);
        }
        let start = match &req {
            Request::ReadCoils(a, _)
            | Request::ReadDiscreteInputs(a, _)
            | Request::ReadHoldingRegisters(a, _)
            | Request::ReadInputRegisters(a, _)
            | Request::WriteSingleCoil(a, _)
            | Request::WriteSingleRegister(a, _)
            | Request::WriteMultipleRegisters(a, _) => *a,
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        if let Some(e) = self.refuse.get(&(unit, fc, start)) {
            return Err(*e);
        }
        let words = |m: &HashMap<(u8, u16), u16>, n: u16| -> Vec<u16> {
            (start..start + n)
                .map(|a| m.get(&(unit, a)).copied().unwrap_or(0))
                .collect()
        };
        let bits = |m: &HashMap<(u8, u16), bool>, n: u16| -> Vec<bool> {
            (start..start + n)
                .map(|a| m.get(&(unit, a)).copied().unwrap_or(false))
                .collect()
        };
        Ok(Some(match req {
            Request::ReadCoils(_, n) => Response::ReadCoils(bits(&self.coils, n)),
            Request::ReadDiscreteInputs(_, n) => {
                Response::ReadDiscreteInputs(bits(&self.discrete, n))
            }
            Request::ReadHoldingRegisters(_, n) => {
                Response::ReadHoldingRegisters(words(&self.holding, n))
            }
            Request::ReadInputRegisters(_, n) => {
                Response::ReadInputRegisters(words(&self.input, n))
            }
            Request::WriteSingleCoil(a, v) => {
                self.coils.insert((unit, a), v);
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteSingleRegister(a, v) => {
                self.holding.insert((unit, a), v);
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, ws) => {
                for (i, w) in ws.iter().enumerate() {
                    self.holding.insert((unit, a + i as u16), *w);
                }
                Response::WriteMultipleRegisters(a, ws.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        }))
    }
}

#[derive(Debug, Clone)]
struct Sim(Arc<Mutex<Memory>>);

impl Service for Sim {
    type Request = SlaveRequest<'static>;
    /// `None`: no answer at all (a silent unit).
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: SlaveRequest<'static>) -> Self::Future {
        let mut mem = self.0.lock().unwrap();
        future::ready(mem.answer(req.slave, req.request))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Tcp,
    RtuOverTcp,
}

/// A Modbus server on a loopback port, stopped on drop.
struct Peer {
    addr: SocketAddr,
    mem: Arc<Mutex<Memory>>,
    /// TCP connections accepted so far.
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    async fn start(framing: Framing) -> Peer {
        Peer::start_on("127.0.0.1:0".parse().unwrap(), framing).await
    }

    async fn start_on(addr: SocketAddr, framing: Framing) -> Peer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mem = Arc::new(Mutex::new(Memory::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let sim = Sim(mem.clone());
        let conns = connections.clone();
        let on_connected = move |stream: TcpStream, _: SocketAddr| {
            conns.fetch_add(1, Relaxed);
            let sim = sim.clone();
            async move { Ok::<_, std::io::Error>(Some((sim, stream))) }
        };
        let task = match framing {
            Framing::Tcp => tokio::spawn(async move {
                let server = tokio_modbus::server::tcp::Server::new(listener);
                let _ = server.serve(&on_connected, |_e| {}).await;
            }),
            Framing::RtuOverTcp => tokio::spawn(async move {
                let server = tokio_modbus::server::rtu_over_tcp::Server::new(listener);
                let _ = server.serve(&on_connected, |_e| {}).await;
            }),
        };
        Peer {
            addr,
            mem,
            connections,
            task,
        }
    }

    fn mem(&self) -> MutexGuard<'_, Memory> {
        self.mem.lock().unwrap()
    }

    fn kind(&self, framing: Framing) -> EndpointKind {
        let (host, port) = ("127.0.0.1".to_owned(), self.addr.port());
        match framing {
            Framing::Tcp => EndpointKind::Tcp { host, port },
            Framing::RtuOverTcp => EndpointKind::RtuOverTcp { host, port },
        }
    }
}

/// A listener that accepts connections and never answers; stopped on drop.
struct Mute {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Mute {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn mute() -> Mute {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    Mute { addr, task }
}

/// A loopback address nothing listens on (connections are refused).
async fn refusing() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn tcp(addr: SocketAddr) -> EndpointKind {
    EndpointKind::Tcp {
        host: "127.0.0.1".into(),
        port: addr.port(),
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway side.

#[derive(Debug)]
struct FixedClock(i64);

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

fn endpoint(name: &str, kind: EndpointKind, timeout_ms: u64, retries: u32) -> Endpoint {
    Endpoint {
        name: name.to_owned(),
        url: kind.to_string(),
        kind,
        timeout: Duration::from_millis(timeout_ms),
        retries,
        pause_between_requests: Duration::ZERO,
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_secs(1),
    }
}

/// A device and, when it is polled, its binding (`ModbusSettings::bindings`).
fn device(id: &str, binding: Option<(usize, u8)>, interval_ms: u64) -> (Device, Option<Binding>) {
    let interval = Duration::from_millis(interval_ms);
    let device = Device {
        id: id.to_owned(),
        name: format!("{id} 测试"),
        site: SITE.to_owned(),
        building: "1号楼".to_owned(),
        category: "test_plc".to_owned(),
        profile: profile(),
        rules: Default::default(),
        interval,
        heartbeat_timeout: interval * 3,
        polled: binding.is_some(),
    };
    let binding = binding.map(|(endpoint, unit)| Binding {
        endpoint,
        unit,
        model: model(),
    });
    (device, binding)
}

struct Gateway {
    rx: mpsc::Receiver<Reading>,
    stats: Arc<Stats>,
    handle: ModbusHandle,
    inventory: Arc<Inventory>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

fn start(
    endpoints: Vec<Endpoint>,
    devices: Vec<(Device, Option<Binding>)>,
    offline_after: u32,
    clock: Arc<dyn Clock>,
) -> Gateway {
    let bindings = devices
        .iter()
        .enumerate()
        .filter_map(|(i, (_, b))| Some((i as DeviceIdx, b.clone()?)))
        .collect();
    let inventory = Arc::new(Inventory::new(
        devices.into_iter().map(|(d, _)| d).collect(),
    ));
    let stats = Arc::new(Stats::default());
    let (tx, rx) = mpsc::channel(4096);
    let shutdown = CancellationToken::new();
    let settings = ModbusSettings {
        endpoints,
        offline_after,
        bindings,
    };
    let (handle, tasks) = spawn(
        &settings,
        inventory.clone(),
        stats.clone(),
        clock,
        tx,
        shutdown.clone(),
    );
    Gateway {
        rx,
        stats,
        handle,
        inventory,
        shutdown,
        tasks,
    }
}

impl Gateway {
    async fn reading(&mut self) -> Reading {
        timeout(WAIT, self.rx.recv())
            .await
            .expect("a reading in time")
            .expect("the poller is running")
    }

    /// The next reading that satisfies `f` (others are skipped).
    async fn reading_where(&mut self, f: impl Fn(&Reading) -> bool) -> Reading {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .expect("the awaited reading in time")
                .expect("the poller is running");
            if f(&r) {
                return r;
            }
        }
    }

    fn id(&self, r: &Reading) -> String {
        self.inventory.get(r.device).id.clone()
    }

    /// Stops the poller and checks that every task ends promptly.
    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            timeout(Duration::from_millis(500), t)
                .await
                .expect("endpoint task stops promptly on shutdown")
                .expect("endpoint task did not panic");
        }
    }

    fn m(&self) -> &crate::stats::ModbusStats {
        &self.stats.modbus
    }
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn polls_decode_every_table_and_order_over_tcp_and_rtu_over_tcp() {
    const T0: i64 = 1_795_400_000_000;
    for framing in [Framing::Tcp, Framing::RtuOverTcp] {
        let peer = Peer::start(framing).await;
        peer.mem().fill(1);
        let mut gw = start(
            vec![endpoint("plant", peer.kind(framing), 500, 0)],
            vec![device("HX-1", Some((0, 1)), 50)],
            3,
            Arc::new(FixedClock(T0)),
        );
        let r = gw.reading().await;
        assert_eq!(r.device, 0);
        assert_eq!(
            r.ts_ms, T0,
            "ts is the clock's time at the start of the poll"
        );
        assert_eq!(r.status, None);
        assert_eq!(sorted(r.values), expected_values(), "{framing:?}");
        // One request per planned block: coils, discrete inputs, input and holding registers.
        assert_eq!(gw.stats.modbus.requests.load(Relaxed) % 4, 0);
        assert!(gw.stats.modbus.latency_totals().1 >= 4);
        assert!(load(&gw.stats.readings) >= 1);

        // A raw enum value with no name drops that signal only, counted.
        peer.mem().holding.insert((1, 11), 9);
        let r = gw.reading_where(|r| value(r, MODE).is_none()).await;
        assert_eq!(r.values.len(), expected_values().len() - 1);
        assert!(load(&gw.m().decode_errors) >= 1);
        assert_eq!(
            load(&gw.m().poll_failures),
            0,
            "a decode error is not a poll failure"
        );
        assert_eq!(peer.connections.load(Relaxed), 1);
        gw.stop().await;
    }
}

#[tokio::test]
async fn rtu_on_a_serial_line() {
    // A pseudo-terminal pair stands in for a USB-RS485 adapter: the server on the master
    // side, the poller opens the slave side by its path like `rtu:///dev/ttyUSB0`.
    // A machine without pseudo-terminals fails this test loudly rather than skipping it.
    let (master, slave) = tokio_serial::SerialStream::pair()
        .expect("create a pseudo-terminal pair (/dev/ptmx) for the RTU test");
    let path = tokio_serial::SerialPort::name(&slave).expect("the pty's path");
    // The pair's own slave handle holds a lock that would keep the poller out (serial ports
    // are opened exclusively); closing it leaves the master hung up until the poller opens
    // the slave, so the server starts reading once the poller has sent its first request.
    drop(slave);
    let mem = Arc::new(Mutex::new(Memory::default()));
    mem.lock().unwrap().fill(3);
    let kind = EndpointKind::Rtu {
        path,
        baud: 19200,
        parity: crate::source::modbus::Parity::Even,
        data_bits: 8,
        stop_bits: 1,
    };
    let mut gw = start(
        vec![endpoint("bus", kind, 1000, 0)],
        vec![device("FP-1", Some((0, 3)), 50)],
        3,
        Arc::new(SystemClock),
    );
    let deadline = Instant::now() + WAIT;
    while load(&gw.m().requests) == 0 {
        assert!(
            Instant::now() < deadline,
            "the poller never opened the port"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = tokio::spawn(
        tokio_modbus::server::rtu::Server::new(master).serve_forever(Sim(mem.clone())),
    );
    let r = gw.reading().await;
    assert_eq!(r.status, None);
    assert_eq!(sorted(r.values), expected_values());
    let r = gw.reading().await;
    assert_eq!(r.values.len(), expected_values().len());
    assert_eq!(load(&gw.m().connect_failures), 0);
    gw.stop().await;
    server.abort();
}

#[tokio::test]
async fn offline_after_failed_polls_then_online_with_values() {
    let peer = Peer::start(Framing::Tcp).await;
    {
        let mut m = peer.mem();
        m.fill(1);
        m.silent.insert(1);
    }
    let mut gw = start(
        vec![endpoint("plant", peer.kind(Framing::Tcp), 100, 0)],
        vec![device("HX-1", Some((0, 1)), 100)],
        2,
        Arc::new(SystemClock),
    );
    // Silent polls send nothing until the second one: then one offline status.
    let r = gw.reading().await;
    assert_eq!(r.status, Some(Status::Offline));
    assert!(r.values.is_empty());
    assert_eq!(load(&gw.m().devices_offline), 1);
    assert!(load(&gw.m().timeouts) >= 2);
    assert!(load(&gw.m().poll_failures) >= 2);
    // A timeout drops the connection (a late answer must not be taken for the next one).
    assert!(load(&gw.m().reconnects) >= 2);
    assert_eq!(
        load(&gw.m().endpoints_down),
        0,
        "the endpoint itself is fine"
    );

    peer.mem().silent.remove(&1);
    let r = gw.reading().await;
    assert_eq!(r.status, Some(Status::Online));
    assert_eq!(sorted(r.values), expected_values());
    let r = gw.reading().await;
    assert_eq!(r.status, None, "online is reported once");
    assert_eq!(load(&gw.m().devices_offline), 0);
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_endpoint_backs_off_and_recovers() {
    let addr = refusing().await;
    let mut ep = endpoint("pump-room", tcp(addr), 100, 1);
    ep.reconnect_min = Duration::from_millis(300);
    ep.reconnect_max = Duration::from_millis(300);
    let mut gw = start(
        vec![ep],
        vec![device("A", Some((0, 1)), 30), device("B", Some((0, 2)), 30)],
        3,
        Arc::new(SystemClock),
    );
    let mut offline = HashSet::new();
    while offline.len() < 2 {
        let r = gw.reading().await;
        assert_eq!(r.status, Some(Status::Offline));
        offline.insert(gw.id(&r));
    }
    // Each due device counted a failed poll, but the endpoint was not hammered: connects
    // follow the backoff, not the polls.
    let polls = load(&gw.m().polls);
    let connects = load(&gw.m().connect_failures);
    assert!(polls >= 6, "{polls} polls");
    assert!(
        connects * 3 <= polls,
        "{connects} connects for {polls} polls"
    );
    assert_eq!(load(&gw.m().endpoints_down), 1);
    assert_eq!(load(&gw.m().devices_offline), 2);

    // A write while the endpoint is down fails cleanly.
    let w = gw
        .handle
        .write(SITE, "A", "level", Value::Int(3), "alice")
        .await;
    assert!(matches!(w, Err(WriteError::Unreachable(_))), "{w:?}");

    // The endpoint comes up on the same port: both devices come back online.
    let peer = Peer::start_on(addr, Framing::Tcp).await;
    peer.mem().fill(1);
    peer.mem().fill(2);
    let mut online = HashSet::new();
    while online.len() < 2 {
        let r = gw.reading_where(|r| r.status == Some(Status::Online)).await;
        online.insert(gw.id(&r));
        assert_eq!(sorted(r.values), expected_values());
    }
    assert_eq!(load(&gw.m().endpoints_down), 0);
    assert_eq!(load(&gw.m().devices_offline), 0);
    gw.stop().await;
}

#[tokio::test]
async fn exceptions_are_counted_per_code_and_keep_the_connection() {
    let peer = Peer::start(Framing::Tcp).await;
    {
        let mut m = peer.mem();
        m.fill(1);
        m.refuse
            .insert((1, 3, 0), ExceptionCode::IllegalDataAddress);
        m.refuse.insert((1, 4, 0), ExceptionCode::ServerDeviceBusy);
    }
    // offline_after = 1: any poll counted as failed for offline purposes would show.
    let mut gw = start(
        vec![endpoint("plant", peer.kind(Framing::Tcp), 200, 2)],
        vec![device("HX-1", Some((0, 1)), 30)],
        1,
        Arc::new(SystemClock),
    );
    for _ in 0..3 {
        let r = gw.reading().await;
        assert_eq!(r.status, None, "a device that answers is online");
        // What it did answer is sent: the coil and the discrete input.
        assert_eq!(
            sorted(r.values),
            vec![(AUTO, Value::Bool(true)), (ALARM, Value::Bool(false))]
        );
    }
    let m = gw.m();
    assert!(m.exceptions(ModbusException::IllegalDataAddress) >= 3);
    assert!(m.exceptions(ModbusException::ServerDeviceBusy) >= 3);
    assert_eq!(m.exceptions(ModbusException::Other), 0);
    assert!(
        load(&m.poll_failures) >= 3,
        "a partly failed poll is counted"
    );
    assert_eq!(load(&m.reconnects), 0);
    assert_eq!(load(&m.timeouts), 0);
    // Exceptions are answers: never retried.
    let polls = load(&m.polls);
    assert!(load(&m.requests) <= 4 * polls);
    assert_eq!(peer.connections.load(Relaxed), 1, "the connection is kept");

    // 0x0B from a serial gateway means the device behind it is silent: that is a failed poll.
    peer.mem()
        .refuse
        .insert((1, 1, 0), ExceptionCode::GatewayTargetDevice);
    let r = gw.reading_where(|r| r.status.is_some()).await;
    assert_eq!(r.status, Some(Status::Offline));
    assert!(r.values.is_empty());
    assert!(gw.m().exceptions(ModbusException::GatewayTargetDevice) >= 1);
    assert_eq!(peer.connections.load(Relaxed), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_request_the_device_ignores_does_not_hide_the_rest_of_the_plan() {
    let peer = Peer::start(Framing::Tcp).await;
    {
        let mut m = peer.mem();
        m.fill(1);
        // Discrete inputs (second in the plan) are silently ignored by this device.
        m.ignore.insert((1, 2));
    }
    let mut gw = start(
        vec![endpoint("plant", peer.kind(Framing::Tcp), 100, 0)],
        vec![device("HX-1", Some((0, 1)), 50)],
        1,
        Arc::new(SystemClock),
    );
    for _ in 0..2 {
        let r = gw.reading().await;
        assert_eq!(r.status, None);
        let mut want = expected_values();
        want.retain(|(i, _)| *i != ALARM);
        assert_eq!(sorted(r.values), want);
    }
    assert!(load(&gw.m().timeouts) >= 2);
    assert!(load(&gw.m().poll_failures) >= 2);
    gw.stop().await;
}

#[tokio::test]
async fn writes_round_trip_including_a_bit_of_a_register() {
    let peer = Peer::start(Framing::Tcp).await;
    peer.mem().fill(1);
    let mut gw = start(
        vec![endpoint("plant", peer.kind(Framing::Tcp), 200, 1)],
        vec![device("HX-1", Some((0, 1)), 50), device("MQ-1", None, 1000)],
        3,
        Arc::new(SystemClock),
    );
    gw.reading().await;
    let h = gw.handle.clone();
    let w = |signal: &'static str, v: Value| {
        let h = h.clone();
        async move { h.write(SITE, "HX-1", signal, v, "alice").await }
    };

    // f32 → fc16 (two registers), u16 → fc06, coil → fc05.
    assert_eq!(w("setpoint_c", Value::Float(58.5)).await, Ok(()));
    assert_eq!(w("level", Value::Int(300)).await, Ok(()));
    assert_eq!(w("auto", Value::Bool(false)).await, Ok(()));
    {
        let m = peer.mem();
        let [a, b] = f32_words(58.5);
        assert_eq!((m.holding[&(1, 12)], m.holding[&(1, 13)]), (a, b));
        assert_eq!(m.holding[&(1, 14)], 300);
        assert!(!m.coils[&(1, 0)]);
    }
    // A bit of a register: read, change bit 0, write back; bits 5 and 7 are kept.
    assert_eq!(w("pump_running", Value::Bool(true)).await, Ok(()));
    assert_eq!(peer.mem().holding[&(1, 10)], 0b1010_0001);
    assert_eq!(w("pump_running", Value::Bool(false)).await, Ok(()));
    assert_eq!(peer.mem().holding[&(1, 10)], 0b1010_0000);

    // Polls see the written values: writes go between polls on the same connection.
    let r = gw
        .reading_where(|r| value(r, SETPOINT) == Some(&Value::Float(58.5)))
        .await;
    assert_eq!(value(&r, LEVEL), Some(&Value::Int(300)));
    assert_eq!(value(&r, AUTO), Some(&Value::Bool(false)));
    assert_eq!(peer.connections.load(Relaxed), 1);

    // Refused by the device.
    peer.mem()
        .refuse
        .insert((1, 6, 14), ExceptionCode::IllegalDataValue);
    assert!(matches!(
        w("level", Value::Int(301)).await,
        Err(WriteError::Exception(e)) if e.contains("0x03")
    ));
    assert_eq!(load(&gw.m().writes), 6);
    assert_eq!(load(&gw.m().write_failures), 1);

    // Checked before anything is sent.
    let e = |site: &'static str, id: &'static str, signal: &'static str, v: Value| {
        let h = h.clone();
        async move { h.write(site, id, signal, v, "bob").await.unwrap_err() }
    };
    assert_eq!(
        e(SITE, "NOPE", "level", Value::Int(1)).await,
        WriteError::UnknownDevice("NOPE".into())
    );
    assert_eq!(
        e("elsewhere", "HX-1", "level", Value::Int(1)).await,
        WriteError::UnknownDevice("HX-1".into())
    );
    assert_eq!(
        e(SITE, "MQ-1", "level", Value::Int(1)).await,
        WriteError::NotModbus("MQ-1".into())
    );
    assert!(matches!(
        e(SITE, "HX-1", "nope", Value::Int(1)).await,
        WriteError::UnknownSignal { .. }
    ));
    assert!(matches!(
        e(SITE, "HX-1", "temp_c", Value::Float(1.0)).await,
        WriteError::NotWritable { .. }
    ));
    assert!(matches!(
        e(SITE, "HX-1", "level", Value::Int(70_000)).await,
        WriteError::BadValue { .. }
    ));
    assert!(matches!(
        e(SITE, "HX-1", "pump_running", Value::Str("on".into())).await,
        WriteError::BadValue { .. }
    ));
    assert_eq!(
        load(&gw.m().writes),
        6,
        "refused writes never reach the device"
    );

    let stopped = gw.handle.clone();
    gw.stop().await;
    assert!(matches!(
        stopped
            .write(SITE, "HX-1", "level", Value::Int(1), "alice")
            .await,
        Err(WriteError::Unavailable(_))
    ));
    assert!(matches!(
        ModbusHandle::default()
            .write(SITE, "HX-1", "level", Value::Int(1), "alice")
            .await,
        Err(WriteError::UnknownDevice(_))
    ));
}

#[tokio::test]
async fn a_silent_unit_does_not_starve_a_healthy_unit_on_the_same_endpoint() {
    let peer = Peer::start(Framing::Tcp).await;
    {
        let mut m = peer.mem();
        m.fill(1);
        m.fill(2);
        m.silent.insert(2);
    }
    const INTERVAL: u64 = 150;
    const TIMEOUT: u64 = 100;
    const RETRIES: u32 = 1;
    let mut gw = start(
        vec![endpoint("bus", peer.kind(Framing::Tcp), TIMEOUT, RETRIES)],
        vec![
            device("healthy", Some((0, 1)), INTERVAL),
            device("silent", Some((0, 2)), INTERVAL),
        ],
        3,
        Arc::new(SystemClock),
    );
    let window = Duration::from_millis(1500);
    let end = Instant::now() + window;
    let mut healthy: Vec<i64> = Vec::new();
    let mut silent_offline = false;
    while let Ok(Some(r)) = tokio::time::timeout_at(end, gw.rx.recv()).await {
        match gw.id(&r).as_str() {
            "healthy" => healthy.push(r.ts_ms),
            _ => silent_offline |= r.status == Some(Status::Offline),
        }
    }
    assert!(silent_offline, "the silent unit is reported offline");
    // The healthy unit waits at most for one silent poll: its own timeouts.
    let bound = INTERVAL as i64 + i64::from(1 + RETRIES) * TIMEOUT as i64 + 50;
    let max_gap = healthy.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        max_gap <= bound,
        "gap {max_gap} ms > {bound} ms: {healthy:?}"
    );
    // And keeps its rate (no drift): 1.5 s / 150 ms = 10 polls.
    assert!(
        healthy.len() >= 9,
        "{} readings: {healthy:?}",
        healthy.len()
    );
    // The silent unit was backed off: without backoff 10 polls × 2 attempts = 20 requests.
    let silent_requests = peer.mem().requests[&2];
    assert!(
        silent_requests <= 12,
        "{silent_requests} requests to the silent unit"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_healthy_endpoints_keep_their_interval_beside_a_mute_and_a_refusing_one() {
    const INTERVAL: i64 = 100;
    let mute = mute().await;
    let refused = refusing().await;
    let mut peers = Vec::new();
    for _ in 0..50 {
        let p = Peer::start(Framing::Tcp).await;
        p.mem().fill(1);
        peers.push(p);
    }
    let mut endpoints = vec![
        endpoint("mute", tcp(mute.addr), 200, 1),
        endpoint("refused", tcp(refused), 200, 1),
    ];
    let mut devices = vec![
        device("mute", Some((0, 1)), INTERVAL as u64),
        device("refused", Some((1, 1)), INTERVAL as u64),
    ];
    for (i, p) in peers.iter().enumerate() {
        endpoints.push(endpoint(&format!("ep{i}"), p.kind(Framing::Tcp), 200, 1));
        devices.push(device(&format!("D{i}"), Some((i + 2, 1)), INTERVAL as u64));
    }
    let mut gw = start(endpoints, devices, 3, Arc::new(SystemClock));
    let end = Instant::now() + Duration::from_millis(1500);
    let mut ts: HashMap<u32, Vec<i64>> = HashMap::new();
    let mut offline = HashSet::new();
    while let Ok(Some(r)) = tokio::time::timeout_at(end, gw.rx.recv()).await {
        if r.status == Some(Status::Offline) {
            offline.insert(gw.id(&r));
        }
        if !r.values.is_empty() {
            ts.entry(r.device).or_default().push(r.ts_ms);
        }
    }
    assert_eq!(
        offline,
        HashSet::from(["mute".to_owned(), "refused".to_owned()])
    );
    for d in 2..52u32 {
        let t = ts.get(&d).map(Vec::as_slice).unwrap_or(&[]);
        // Loose bounds (a loaded 2-core machine delays tasks): a healthy device held up by the
        // mute one (200 ms timeouts) would fall far outside them; timing itself is benchmarked.
        assert!(t.len() >= 10, "device {d}: {} readings in 1.5 s", t.len());
        let mean = (t[t.len() - 1] - t[0]) as f64 / (t.len() - 1) as f64;
        assert!(
            (mean - INTERVAL as f64).abs() <= INTERVAL as f64 * 0.3,
            "device {d}: mean interval {mean:.1} ms: {t:?}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_abandons_a_poll_and_closes_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (asked_tx, asked) = oneshot::channel();
    let (closed_tx, closed) = oneshot::channel();
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        let _ = asked_tx.send(n);
        // Never answer; report when the gateway closes the connection.
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = closed_tx.send(());
    });
    // A 10 s timeout: the poll would block the task that long without the shutdown token.
    let gw = start(
        vec![endpoint("slow", tcp(addr), 10_000, 0)],
        vec![device("HX-1", Some((0, 1)), 100)],
        3,
        Arc::new(SystemClock),
    );
    let n = timeout(WAIT, asked).await.unwrap().unwrap();
    assert!(n > 0, "a request was sent");
    gw.stop().await;
    timeout(Duration::from_secs(1), closed)
        .await
        .expect("the connection is closed on shutdown")
        .unwrap();
    peer.await.unwrap();
}

#[tokio::test]
async fn pause_between_requests_spaces_a_poll() {
    let peer = Peer::start(Framing::Tcp).await;
    peer.mem().fill(1);
    let mut ep = endpoint("bus", peer.kind(Framing::Tcp), 200, 0);
    ep.pause_between_requests = Duration::from_millis(40);
    let mut gw = start(
        vec![ep],
        vec![device("HX-1", Some((0, 1)), 10)],
        3,
        Arc::new(SystemClock),
    );
    gw.reading().await;
    let t0 = Instant::now();
    gw.reading().await;
    gw.reading().await;
    // Two polls of 4 requests each, 40 ms apart: at least 7 pauses.
    assert!(
        t0.elapsed() >= Duration::from_millis(7 * 40),
        "{:?}",
        t0.elapsed()
    );
    gw.stop().await;
}
