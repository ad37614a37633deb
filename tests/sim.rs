//! The simulator (`src/sim`) as a real Modbus peer, seen through a client nobody here wrote
//! (tokio-modbus's): every data type and byte/word order as raw words checked against
//! hand-computed constants (so a bug shared by the simulator and the poller's codec cannot
//! hide), writes, faults (no answer, exceptions that keep the connection, forced values,
//! offline), RTU framing over TCP and over a real pseudo-terminal pair made by `socat`, the
//! `simulate` command, and the demo configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use estate_gateway::config::{self, Config};
use estate_gateway::model::Value;
use estate_gateway::sim::{parse_script, Fault, SimHandle, SimOptions, Simulator};
use estate_gateway::source::modbus::map::Table;
use tempfile::TempDir;
use tokio_modbus::client::{rtu, tcp, Context, Reader, Writer};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

use crate::support::{
    find_binary, free_port, repo_path, run_cli, tcp_connects, wait_until, GatewayProcess,
};

/// Every client call gets this long; the simulator answers in microseconds.
const CALL: Duration = Duration::from_secs(5);

/// A configuration in a temp dir: the given Modbus endpoints (name, url), devices (TOML), and
/// extra files (`profiles/*.toml` and `models/*.toml` switch on `profiles_dir`/`models_dir`).
fn write_config(
    endpoints: &[(&str, String)],
    devices: &str,
    files: &[(&str, &str)],
) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let has = |prefix: &str| files.iter().any(|(r, _)| r.starts_with(prefix));
    let mut toml = format!(
        "[gateway]\nsite = \"huafu\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    if has("profiles/") {
        toml.push_str("profiles_dir = \"profiles\"\n");
    }
    toml.push_str("\n[modbus]\n");
    if has("models/") {
        toml.push_str("models_dir = \"models\"\n");
    }
    for (name, url) in endpoints {
        toml.push_str(&format!(
            "\n[[modbus.endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\n"
        ));
    }
    toml.push_str(devices);
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    (dir, path)
}

fn load(path: &Path) -> Config {
    config::load_with_env(path, HashMap::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// Two heating loops on `plant` (units 1, 2), a fire pump panel on `pumps` (unit 1).
const HEATING_AND_FIRE: &str = r#"
[[devices]]
id = "HX-1"
name = "1号换热站"
building = "换热站"
category = "heating_loop"
modbus = { endpoint = "plant", unit = 1, model = "heating_plc" }

[[devices]]
id = "HX-2"
name = "2号换热站"
building = "换热站"
category = "heating_loop"
modbus = { endpoint = "plant", unit = 2, model = "heating_plc" }

[[devices]]
id = "FP-1"
name = "消防泵控制柜"
building = "泵房"
category = "fire_equipment"
modbus = { endpoint = "pumps", unit = 1, model = "fire_pump_panel" }
"#;

/// The built-in estate on two loopback Modbus TCP endpoints (port 0: the simulator binds).
fn heating_and_fire() -> (TempDir, Config) {
    let (dir, path) = write_config(
        &[
            ("plant", "tcp://127.0.0.1:0".into()),
            ("pumps", "tcp://127.0.0.1:0".into()),
        ],
        HEATING_AND_FIRE,
        &[],
    );
    (dir, load(&path))
}

async fn start(cfg: &Config, tick: Option<Duration>, script: &str) -> SimHandle {
    let script = parse_script("faults.toml", script).unwrap();
    Simulator::start_with(
        cfg,
        SimOptions {
            seed: 7,
            tick,
            script,
        },
    )
    .await
    .unwrap()
}

async fn connect(sim: &SimHandle, endpoint: &str, unit: u8) -> Context {
    let addr: SocketAddr = sim.local_addr(endpoint).unwrap();
    tokio::time::timeout(CALL, tcp::connect_slave(addr, Slave(unit)))
        .await
        .unwrap()
        .unwrap()
}

/// Awaits a client call that must complete (transport errors and exceptions are returned).
async fn call<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL, f)
        .await
        .expect("the simulator did not answer")
}

/// Polls `check` without blocking the runtime (the simulator runs on it) until it holds or
/// `timeout` passes; true when it held.
async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// A test category with one signal per type and order, and a model that maps them all.
const TYPES_PROFILE: &str = r#"
category = "test_types"
label = "数据类型测试"
interval = "1s"

[[signals]]
name = "f32_abcd"
type = "float"
[[signals]]
name = "f32_cdab"
type = "float"
[[signals]]
name = "f32_badc"
type = "float"
[[signals]]
name = "f32_dcba"
type = "float"
[[signals]]
name = "i16"
type = "int"
[[signals]]
name = "u16"
type = "int"
[[signals]]
name = "i32_abcd"
type = "int"
[[signals]]
name = "i32_cdab"
type = "int"
[[signals]]
name = "i32_badc"
type = "int"
[[signals]]
name = "i32_dcba"
type = "int"
[[signals]]
name = "u32"
type = "int"
[[signals]]
name = "u64_abcd"
type = "int"
[[signals]]
name = "u64_cdab"
type = "int"
[[signals]]
name = "i64_badc"
type = "int"
[[signals]]
name = "f64_dcba"
type = "float"
[[signals]]
name = "f64_abcd"
type = "float"
[[signals]]
name = "scaled"
type = "float"
[[signals]]
name = "bit3"
type = "bool"
[[signals]]
name = "bit0"
type = "bool"
[[signals]]
name = "flag"
type = "bool"
[[signals]]
name = "mode"
type = "enum"
values = ["a", "b", "c"]
[[signals]]
name = "coil_a"
type = "bool"
[[signals]]
name = "coil_b"
type = "bool"
[[signals]]
name = "di"
type = "bool"
[[signals]]
name = "in_f32"
type = "float"
"#;

const TYPES_MODEL: &str = r#"
model = "all_types"
category = "test_types"

[[registers]]
signal = "f32_abcd"
table = "holding"
address = 0
type = "f32"
order = "ABCD"
[[registers]]
signal = "f32_cdab"
table = "holding"
address = 2
type = "f32"
order = "CDAB"
[[registers]]
signal = "f32_badc"
table = "holding"
address = 4
type = "f32"
order = "BADC"
[[registers]]
signal = "f32_dcba"
table = "holding"
address = 6
type = "f32"
order = "DCBA"
[[registers]]
signal = "i16"
table = "holding"
address = 8
type = "i16"
[[registers]]
signal = "u16"
table = "holding"
address = 9
type = "u16"
[[registers]]
signal = "i32_abcd"
table = "holding"
address = 10
type = "i32"
order = "ABCD"
[[registers]]
signal = "i32_cdab"
table = "holding"
address = 12
type = "i32"
order = "CDAB"
[[registers]]
signal = "i32_badc"
table = "holding"
address = 14
type = "i32"
order = "BADC"
[[registers]]
signal = "i32_dcba"
table = "holding"
address = 16
type = "i32"
order = "DCBA"
[[registers]]
signal = "u32"
table = "holding"
address = 18
type = "u32"
[[registers]]
signal = "u64_abcd"
table = "holding"
address = 20
type = "u64"
order = "ABCD"
[[registers]]
signal = "u64_cdab"
table = "holding"
address = 24
type = "u64"
order = "CDAB"
[[registers]]
signal = "i64_badc"
table = "holding"
address = 28
type = "i64"
order = "BADC"
[[registers]]
signal = "f64_dcba"
table = "holding"
address = 32
type = "f64"
order = "DCBA"
[[registers]]
signal = "f64_abcd"
table = "holding"
address = 36
type = "f64"
order = "ABCD"
[[registers]]
signal = "scaled"
table = "holding"
address = 40
type = "u16"
scale = 0.1
offset = -50.0
[[registers]]
signal = "bit3"
table = "holding"
address = 41
type = "bit"
bit = 3
[[registers]]
signal = "bit0"
table = "holding"
address = 41
type = "bit"
bit = 0
[[registers]]
signal = "flag"
table = "holding"
address = 42
type = "bool"
[[registers]]
signal = "mode"
table = "holding"
address = 43
type = "u16"
values = ["a", "b", "c"]
[[registers]]
signal = "coil_a"
table = "coil"
address = 0
type = "bool"
[[registers]]
signal = "coil_b"
table = "coil"
address = 1
type = "bool"
[[registers]]
signal = "di"
table = "discrete"
address = 0
type = "bool"
[[registers]]
signal = "in_f32"
table = "input"
address = 0
type = "f32"
order = "CDAB"
"#;

#[tokio::test]
async fn every_type_and_byte_order_reads_as_hand_computed_words() {
    let (_dir, path) = write_config(
        &[("lab", "tcp://127.0.0.1:0".into())],
        r#"
[[devices]]
id = "T-1"
name = "类型测试"
building = "实验室"
category = "test_types"
modbus = { endpoint = "lab", unit = 17, model = "all_types" }
"#,
        &[
            ("profiles/test_types.toml", TYPES_PROFILE),
            ("models/all_types.toml", TYPES_MODEL),
        ],
    );
    let cfg = load(&path);
    let sim = start(&cfg, None, "").await;
    let values = [
        ("f32_abcd", Value::Float(25.0)),
        ("f32_cdab", Value::Float(25.0)),
        ("f32_badc", Value::Float(25.0)),
        ("f32_dcba", Value::Float(25.0)),
        ("i16", Value::Int(-2)),
        ("u16", Value::Int(40_000)),
        ("i32_abcd", Value::Int(-100_000)),
        ("i32_cdab", Value::Int(-100_000)),
        ("i32_badc", Value::Int(-100_000)),
        ("i32_dcba", Value::Int(-100_000)),
        ("u32", Value::Int(3_000_000_000)),
        ("u64_abcd", Value::Int(0x0102_0304_0506_0708)),
        ("u64_cdab", Value::Int(0x0102_0304_0506_0708)),
        ("i64_badc", Value::Int(-2)),
        ("f64_dcba", Value::Float(1.5)),
        ("f64_abcd", Value::Float(-2.5)),
        ("scaled", Value::Float(55.5)),
        ("bit3", Value::Bool(true)),
        ("bit0", Value::Bool(false)),
        ("flag", Value::Bool(true)),
        ("mode", Value::Str("c".into())),
        ("coil_a", Value::Bool(true)),
        ("coil_b", Value::Bool(false)),
        ("di", Value::Bool(true)),
        ("in_f32", Value::Float(-1.5)),
    ];
    for (signal, v) in &values {
        sim.set_value("T-1", signal, v.clone()).unwrap();
    }
    #[rustfmt::skip]
    let expected: [u16; 44] = [
        0x41C8, 0x0000,                 // f32 ABCD 25.0 = 0x41C80000
        0x0000, 0x41C8,                 // f32 CDAB
        0xC841, 0x0000,                 // f32 BADC
        0x0000, 0xC841,                 // f32 DCBA
        0xFFFE,                         // i16 -2
        0x9C40,                         // u16 40000
        0xFFFE, 0x7960,                 // i32 ABCD -100000 = 0xFFFE7960
        0x7960, 0xFFFE,                 // i32 CDAB
        0xFEFF, 0x6079,                 // i32 BADC
        0x6079, 0xFEFF,                 // i32 DCBA
        0xB2D0, 0x5E00,                 // u32 3000000000 = 0xB2D05E00
        0x0102, 0x0304, 0x0506, 0x0708, // u64 ABCD 0x0102030405060708
        0x0708, 0x0506, 0x0304, 0x0102, // u64 CDAB (words reversed)
        0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF, // i64 BADC -2 = 0xFFFFFFFFFFFFFFFE
        0x0000, 0x0000, 0x0000, 0xF83F, // f64 DCBA 1.5 = 0x3FF8000000000000
        0xC004, 0x0000, 0x0000, 0x0000, // f64 ABCD -2.5 = 0xC004000000000000
        0x041F,                         // 55.5 = 1055 × 0.1 − 50
        0x0008,                         // bit 3 set, bit 0 clear
        0x0001,                         // bool in a register
        0x0002,                         // enum "c" = raw 2
    ];
    let mut ctx = connect(&sim, "lab", 17).await;
    let words = call(ctx.read_holding_registers(0, 44))
        .await
        .unwrap()
        .unwrap();
    for (i, (got, want)) in words.iter().zip(expected.iter()).enumerate() {
        assert_eq!(got, want, "holding {i}: {got:#06X} != {want:#06X}");
    }
    assert_eq!(words.len(), 44);
    let coils = call(ctx.read_coils(0, 2)).await.unwrap().unwrap();
    assert_eq!(coils, vec![true, false]);
    let di = call(ctx.read_discrete_inputs(0, 1)).await.unwrap().unwrap();
    assert_eq!(di, vec![true]);
    let input = call(ctx.read_input_registers(0, 2)).await.unwrap().unwrap();
    assert_eq!(input, vec![0x0000, 0xBFC0]); // f32 CDAB -1.5 = 0xBFC00000
                                             // And back: what the simulator holds is what was set.
    for (signal, v) in &values {
        assert_eq!(&sim.get_value("T-1", signal).unwrap(), v, "{signal}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn built_in_models_serve_realistic_moving_values() {
    let (_dir, cfg) = heating_and_fire();
    let sim = start(&cfg, Some(Duration::from_millis(20)), "").await;
    let heating = cfg.models["heating_plc"].clone();
    let fire = cfg.models["fire_pump_panel"].clone();
    let decode =
        |model: &estate_gateway::source::modbus::DeviceModel, signal: &str, words: &[u16]| {
            let r = model.register(signal).unwrap();
            r.decode_words(&words[usize::from(r.address)..]).unwrap()
        };
    let float = |v: Value| match v {
        Value::Float(f) => f,
        other => panic!("{other:?}"),
    };
    let mut ctx = connect(&sim, "plant", 1).await;
    let first = call(ctx.read_holding_registers(0, 14))
        .await
        .unwrap()
        .unwrap();
    let supply = float(decode(&heating, "supply_temp_c", &first));
    let ret = float(decode(&heating, "return_temp_c", &first));
    assert!((50.0..60.0).contains(&supply), "supply {supply}");
    assert!((30.0..50.0).contains(&ret), "return {ret}");
    assert!((0.35..=0.45).contains(&float(decode(&heating, "pressure_mpa", &first))));
    assert!((20.0..=40.0).contains(&float(decode(&heating, "flow_m3h", &first))));
    assert_eq!(decode(&heating, "pump_running", &first), Value::Bool(true));
    assert_eq!(decode(&heating, "fault_code", &first), Value::Int(0));
    assert_eq!(
        decode(&heating, "supply_setpoint_c", &first),
        Value::Float(55.0)
    );
    // Values move with the ticks.
    let moved = {
        let mut moved = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = call(ctx.read_holding_registers(0, 4))
                .await
                .unwrap()
                .unwrap();
            if now[..4] != first[..4] {
                moved = true;
                break;
            }
        }
        moved
    };
    assert!(moved, "supply and return did not move");

    let mut pumps = connect(&sim, "pumps", 1).await;
    let input = call(pumps.read_input_registers(0, 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decode(&fire, "fault_count", &input), Value::Int(0));
    let p = float(decode(&fire, "pressure_mpa", &input));
    assert!((0.6..=0.7).contains(&p), "fire main pressure {p}");
    assert_eq!(decode(&fire, "power", &input), Value::Str("main".into()));
    assert_eq!(
        call(pumps.read_coils(0, 1)).await.unwrap().unwrap(),
        vec![true]
    );
    assert_eq!(
        call(pumps.read_discrete_inputs(0, 1))
            .await
            .unwrap()
            .unwrap(),
        vec![false]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_from_a_client_change_the_simulated_values() {
    let (_dir, cfg) = heating_and_fire();
    let sim = start(&cfg, None, "").await;
    let mut pumps = connect(&sim, "pumps", 1).await;
    call(pumps.write_single_coil(0, false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.get_value("FP-1", "pump_auto").unwrap(),
        Value::Bool(false)
    );
    call(pumps.write_multiple_coils(0, &[true]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.get_value("FP-1", "pump_auto").unwrap(),
        Value::Bool(true)
    );

    let mut plant = connect(&sim, "plant", 2).await;
    // 60.0f32 = 0x42700000
    call(plant.write_multiple_registers(12, &[0x4270, 0x0000]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.get_value("HX-2", "supply_setpoint_c").unwrap(),
        Value::Float(60.0)
    );
    assert_eq!(
        sim.get_value("HX-1", "supply_setpoint_c").unwrap(),
        Value::Float(55.0)
    );
    call(plant.write_single_register(11, 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.get_value("HX-2", "fault_code").unwrap(), Value::Int(3));
    let back = call(plant.read_holding_registers(11, 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, vec![3, 0x4270, 0x0000]);
    // A write past the device's memory is refused with an exception.
    assert_eq!(
        call(plant.write_single_register(1000, 1)).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn exceptions_are_answered_and_keep_the_connection() {
    let (_dir, cfg) = heating_and_fire();
    let sim = start(&cfg, None, "").await;
    let mut ctx = connect(&sim, "plant", 1).await;
    sim.set_fault("HX-1", Fault::Exception(ExceptionCode::ServerDeviceBusy))
        .unwrap();
    assert_eq!(
        call(ctx.read_holding_registers(0, 14)).await.unwrap(),
        Err(ExceptionCode::ServerDeviceBusy)
    );
    // Addresses past the device's memory; an unknown unit behind the TCP gateway.
    ctx.set_slave(Slave(2));
    assert_eq!(
        call(ctx.read_holding_registers(100, 2)).await.unwrap(),
        Err(ExceptionCode::IllegalDataAddress)
    );
    ctx.set_slave(Slave(9));
    assert_eq!(
        call(ctx.read_holding_registers(0, 2)).await.unwrap(),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    sim.clear_fault("HX-1").unwrap();
    ctx.set_slave(Slave(1));
    let words = call(ctx.read_holding_registers(0, 14))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(words.len(), 14);
    let stats = sim.stats("plant").unwrap();
    assert_eq!(stats.connections, 1, "{stats:?}");
    assert_eq!(stats.open_connections, 1, "{stats:?}");
    assert_eq!(stats.requests, 4, "{stats:?}");
    assert_eq!(stats.exceptions, 3, "{stats:?}");
    assert_eq!(stats.responses, 1, "{stats:?}");
    assert_eq!(sim.device_request_count("HX-1").unwrap(), 2);
    drop(ctx);
    assert!(
        eventually(Duration::from_secs(5), || {
            sim.stats("plant").unwrap().open_connections == 0
        })
        .await,
        "the closed connection is still counted open"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_silent_unit_times_out_while_its_neighbours_answer() {
    let (_dir, cfg) = heating_and_fire();
    let sim = start(&cfg, None, "").await;
    sim.set_fault("HX-1", Fault::NoResponse).unwrap();
    let mut ctx = connect(&sim, "plant", 1).await;
    let r =
        tokio::time::timeout(Duration::from_millis(300), ctx.read_holding_registers(0, 2)).await;
    assert!(r.is_err(), "a silent unit answered: {r:?}");
    ctx.set_slave(Slave(2));
    let words = call(ctx.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(words.len(), 2);
    let stats = sim.stats("plant").unwrap();
    assert_eq!(
        (stats.unanswered, stats.responses, stats.connections),
        (1, 1, 1)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn value_faults_force_a_reading_and_scripts_run_on_simulated_time() {
    let (_dir, cfg) = heating_and_fire();
    let sim = start(
        &cfg,
        None,
        r#"
        [[fault]]
        device = "HX-1"
        at = "30s"
        for = "5m"
        kind = "value"
        signal = "supply_temp_c"
        value = 20.0

        [[fault]]
        device = "FP-1"
        at = "1m"
        kind = "exception"
        code = "server_device_failure"
        "#,
    )
    .await;
    sim.set_fault(
        "FP-1",
        Fault::Value {
            signal: "pressure_mpa".into(),
            value: Value::Float(0.12),
        },
    )
    .unwrap();
    let mut pumps = connect(&sim, "pumps", 1).await;
    let input = call(pumps.read_input_registers(1, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(input, vec![12]); // 0.12 MPa at 0.01 MPa per count
    let mut plant = connect(&sim, "plant", 1).await;
    let before = call(plant.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(before, vec![0x41A0, 0x0000]);
    sim.step(Duration::from_secs(30));
    let during = call(plant.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(during, vec![0x41A0, 0x0000]); // 20.0f32 = 0x41A00000
    sim.step(Duration::from_secs(30));
    assert_eq!(
        call(pumps.read_input_registers(0, 3)).await.unwrap(),
        Err(ExceptionCode::ServerDeviceFailure)
    );
    sim.step(Duration::from_secs(300));
    let after = call(plant.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(after, vec![0x41A0, 0x0000]);
    assert_eq!(sim.now(), Duration::from_secs(360));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_offline_endpoint_closes_and_refuses_then_comes_back() {
    let (_dir, cfg) = heating_and_fire();
    let sim = start(&cfg, None, "").await;
    let addr = sim.local_addr("pumps").unwrap();
    let mut ctx = connect(&sim, "pumps", 1).await;
    call(ctx.read_coils(0, 1)).await.unwrap().unwrap();
    sim.set_fault("FP-1", Fault::Offline).unwrap();
    // The open connection is closed...
    let mut closed = false;
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_millis(200), ctx.read_coils(0, 1)).await {
            Ok(Err(_transport)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(closed, "the connection survived the device going offline");
    // ...and new ones are refused.
    assert!(
        eventually(Duration::from_secs(5), || !tcp_connects(addr.port())).await,
        "still accepting connections while offline"
    );
    sim.clear_fault("FP-1").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || tcp_connects(addr.port())).await,
        "not listening again after the fault cleared"
    );
    let mut ctx = connect(&sim, "pumps", 1).await;
    assert_eq!(
        call(ctx.read_coils(0, 1)).await.unwrap().unwrap(),
        vec![true]
    );
    // The other endpoint never noticed.
    let mut plant = connect(&sim, "plant", 1).await;
    call(plant.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    sim.shutdown().await;
    assert!(!tcp_connects(addr.port()), "still listening after shutdown");
}

#[tokio::test]
async fn rtu_frames_over_tcp() {
    let port = free_port();
    let (_dir, path) = write_config(
        &[("serial-server", format!("rtu+tcp://127.0.0.1:{port}"))],
        &HEATING_AND_FIRE
            .replace("endpoint = \"plant\"", "endpoint = \"serial-server\"")
            .replace(
                "endpoint = \"pumps\", unit = 1",
                "endpoint = \"serial-server\", unit = 5",
            ),
        &[],
    );
    let cfg = load(&path);
    let sim = start(&cfg, None, "").await;
    sim.set_value("HX-2", "supply_temp_c", Value::Float(25.0))
        .unwrap();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut ctx = rtu::attach_slave(stream, Slave(2));
    let words = call(ctx.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(words, vec![0x41C8, 0x0000]);
    ctx.set_slave(Slave(5));
    assert_eq!(
        call(ctx.read_coils(0, 1)).await.unwrap().unwrap(),
        vec![true]
    );
    call(ctx.write_single_coil(0, false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.get_value("FP-1", "pump_auto").unwrap(),
        Value::Bool(false)
    );
    // On an RTU framing, a unit nobody has is silence, not an exception.
    ctx.set_slave(Slave(9));
    let r = tokio::time::timeout(Duration::from_millis(300), ctx.read_coils(0, 1)).await;
    assert!(r.is_err(), "unit 9 answered: {r:?}");
    assert_eq!(sim.stats("serial-server").unwrap().unanswered, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_model_served_raw_on_a_given_listener() {
    let (_dir, cfg) = heating_and_fire();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim =
        SimHandle::serve_model(listener, cfg.models["heating_plc"].clone(), &[1, 2, 3], 9).unwrap();
    // Raw words the gateway must reject: a NaN supply temperature on unit 2.
    sim.set_words("unit2", Table::Holding, 0, &[0x7FC0, 0x0000])
        .unwrap();
    sim.step(Duration::from_secs(1));
    let mut ctx = connect(&sim, "sim", 2).await;
    let w = call(ctx.read_holding_registers(0, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w, vec![0x7FC0, 0x0000]);
    ctx.set_slave(Slave(3));
    let w = call(ctx.read_holding_registers(12, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w, vec![0x425C, 0x0000]); // setpoint 55.0
    ctx.set_slave(Slave(4));
    assert_eq!(
        call(ctx.read_holding_registers(0, 2)).await.unwrap(),
        Err(ExceptionCode::GatewayTargetDevice)
    );
    sim.shutdown().await;
}

/// `socat` joining two pseudo-terminals, linked as `a` and `b` in a temp dir; killed on drop.
struct PtyPair {
    child: Child,
    dir: TempDir,
}

impl PtyPair {
    fn start() -> PtyPair {
        let socat = find_binary("socat");
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let child = Command::new(socat)
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        let pair = PtyPair { child, dir };
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                a.exists() && b.exists()
            }),
            "socat did not create the pty links"
        );
        pair
    }

    fn path(&self, end: &str) -> PathBuf {
        self.dir.path().join(end)
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn rtu_on_a_serial_line_made_of_a_pty_pair() {
    let pty = PtyPair::start();
    let (_dir, path) = write_config(
        &[(
            "pump-room-bus",
            format!(
                "rtu://{}?baud=19200&parity=E&data_bits=8&stop_bits=1",
                pty.path("a").display()
            ),
        )],
        r#"
[[devices]]
id = "HX-1"
name = "1号换热站"
building = "换热站"
category = "heating_loop"
modbus = { endpoint = "pump-room-bus", unit = 1, model = "heating_plc" }

[[devices]]
id = "FP-1"
name = "消防泵控制柜"
building = "泵房"
category = "fire_equipment"
modbus = { endpoint = "pump-room-bus", unit = 3, model = "fire_pump_panel" }
"#,
        &[],
    );
    let cfg = load(&path);
    let sim = start(&cfg, None, "").await;
    sim.set_value("HX-1", "flow_m3h", Value::Float(25.0))
        .unwrap();
    let port = tokio_serial::SerialPortBuilderExt::open_native_async(
        tokio_serial::new(pty.path("b").to_string_lossy(), 19200)
            .parity(tokio_serial::Parity::Even),
    )
    .unwrap();
    let mut ctx = rtu::attach_slave(port, Slave(1));
    let words = call(ctx.read_holding_registers(6, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(words, vec![0x0000, 0x41C8]); // flow, f32 CDAB 25.0
    call(ctx.write_multiple_registers(12, &[0x4270, 0x0000]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sim.get_value("HX-1", "supply_setpoint_c").unwrap(),
        Value::Float(60.0)
    );
    ctx.set_slave(Slave(3));
    let input = call(ctx.read_input_registers(0, 3)).await.unwrap().unwrap();
    assert_eq!(input[2], 0, "power = main");
    sim.set_fault("FP-1", Fault::Exception(ExceptionCode::ServerDeviceBusy))
        .unwrap();
    assert_eq!(
        call(ctx.read_input_registers(0, 3)).await.unwrap(),
        Err(ExceptionCode::ServerDeviceBusy)
    );
    ctx.set_slave(Slave(1));
    call(ctx.read_holding_registers(0, 14))
        .await
        .unwrap()
        .unwrap();
    let stats = sim.stats("pump-room-bus").unwrap();
    assert_eq!(
        (stats.requests, stats.exceptions, stats.connections),
        (5, 1, 1)
    );
    sim.shutdown().await;
}

#[test]
fn simulate_command_serves_the_config_until_sigterm() {
    let (plant, pumps) = (free_port(), free_port());
    let (dir, path) = write_config(
        &[
            ("plant", format!("tcp://127.0.0.1:{plant}")),
            ("pumps", format!("tcp://127.0.0.1:{pumps}")),
        ],
        HEATING_AND_FIRE,
        &[],
    );
    let script = dir.path().join("faults.toml");
    std::fs::write(
        &script,
        "[[fault]]\ndevice = \"FP-1\"\nkind = \"exception\"\ncode = \"server_device_busy\"\n",
    )
    .unwrap();
    let mut sim = GatewayProcess::start(&[
        "simulate",
        "-c",
        path.to_str().unwrap(),
        "--seed",
        "3",
        "--script",
        script.to_str().unwrap(),
    ]);
    assert!(
        sim.wait_for_log(
            "Simulating 3 Modbus devices on 2 endpoints",
            Duration::from_secs(10)
        ),
        "{}",
        sim.log()
    );
    let log = sim.log();
    assert!(
        log.contains(&format!("plant tcp://127.0.0.1:{plant} (Modbus TCP)")),
        "{log}"
    );
    assert!(
        log.contains("unit   1  HX-1  1号换热站  [heating_loop] model heating_plc"),
        "{log}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut ctx = tokio::time::timeout(
            CALL,
            tcp::connect_slave(SocketAddr::from(([127, 0, 0, 1], plant)), Slave(2)),
        )
        .await
        .unwrap()
        .unwrap();
        let w = call(ctx.read_holding_registers(12, 2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(w, vec![0x425C, 0x0000]); // setpoint 55.0f32 = 0x425C0000
        let mut ctx = tokio::time::timeout(
            CALL,
            tcp::connect_slave(SocketAddr::from(([127, 0, 0, 1], pumps)), Slave(1)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            call(ctx.read_coils(0, 1)).await.unwrap(),
            Err(ExceptionCode::ServerDeviceBusy)
        );
    });
    let status = sim.terminate();
    assert!(status.success(), "{status:?}\n{}", sim.log());
    assert!(!tcp_connects(plant));

    // A bad script is a usage error (exit 2) naming the file, the entry and the key.
    std::fs::write(
        &script,
        "[[fault]]\ndevice = \"FP-9\"\nkind = \"offline\"\n",
    )
    .unwrap();
    let out = run_cli(&[
        "simulate",
        "-c",
        path.to_str().unwrap(),
        "--script",
        script.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("faults.toml: fault[0].device: `FP-9` is not a simulated device; served: HX-1, HX-2, FP-1"),
        "{err}"
    );
}

#[test]
fn demo_config_is_valid_and_serves_modbus_on_loopback() {
    let out = run_cli(&[
        "check-config",
        "-c",
        repo_path("configs/demo.toml").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "site jinxiu: 23",
        "heat-station-1 tcp://127.0.0.1:15020 (3 devices",
        "fire-pump-room tcp://127.0.0.1:15021 (2 devices",
        "mqtt mqtt://127.0.0.1:1883",
        "store: http://127.0.0.1:8428",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
