//! The Modbus poller against a Modbus server that no one here wrote: Debian's `python3-pymodbus`
//! (`tests/peers/pymodbus_server.py`, run by `/usr/bin/python3`), serving register blocks whose
//! values this file knows. The gateway binary polls it over TCP next to a real mosquitto and a
//! real VictoriaMetrics behind the recording proxy, and the tests check:
//!
//! - every type and byte/word order decodes exactly: f32 in ABCD, CDAB, BADC and DCBA, negative
//!   i16/i32/i64, u16/u32/u64, f64, bits of a status word, a scaled and offset register, an enum,
//!   coils and discrete inputs, input registers; the same values reach VictoriaMetrics with the
//!   device's tags;
//! - a heating loop polled with the built-in `heating_plc` model is a `telemetry` point of
//!   exactly the shape of an MQTT heating-loop reading (issue 3, "done when");
//! - a write through `POST /api/devices/{id}/write` lands in the server's registers, as the
//!   server itself logs them, and the next polls read it back: an f32 setpoint (fc16), a coil
//!   (fc05), one bit of a status word (read-modify-write, fc03 + fc06) and a negative i16 (401
//!   without the token, 403 for a signal the map does not allow);
//! - exception responses (illegal data address, device busy) are counted per code and the
//!   connection is kept, the other requests of the plan still read.
//!
//! A missing pymodbus is a failure naming the install command, never a skip.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fixture::{start_gateway, SITE, WAIT};
use crate::support::{
    free_port, http_post, kill_child, parse_line, read_lossy, repo_path, tail, wait_until,
    FieldVal, GatewayProcess, Mosquitto, ParsedPoint, RecordingProxy, VictoriaMetrics,
    READY_TIMEOUT,
};

/// Debian's interpreter: python3-pymodbus installs into its dist-packages, so a pyenv or venv
/// `python3` earlier on `PATH` would not find it.
const PYTHON: &str = "/usr/bin/python3";

const PYMODBUS_HINT: &str = "run scripts/install-test-deps (apt-get install python3-pymodbus \
     python3-serial-asyncio); pymodbus must import in /usr/bin/python3, not in a pyenv python3";

const TOKEN: &str = "pymodbus-peer-token";

/// VictoriaMetrics stores a sample as a decimal (an integer mantissa and a power of ten) and
/// does not keep every digit of a float64: the f32 123.456 (exactly 123.45600128173828 as f64)
/// comes back as 123.4560012817, 12345.678901234 as 12345.67890123. The exact comparison is at
/// the store's write API (the lines the recording proxy saw); in VictoriaMetrics the values
/// agree to this relative precision.
const VM_PRECISION: f64 = 1e-12;

/// The Modbus-side devices' poll interval.
const INTERVAL: &str = "500ms";

// ---------------------------------------------------------------------------------------------
// The pymodbus server as a child process.
// ---------------------------------------------------------------------------------------------

/// `tests/peers/pymodbus_server.py` on a free port; killed on drop.
struct PymodbusServer {
    child: Child,
    port: u16,
    /// Its stdout lines (READY, CONNECTED, DISCONNECTED, WRITE).
    out: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    stderr_path: std::path::PathBuf,
    /// Held open: the script exits when its stdin closes (if this process dies unkilled).
    _stdin: ChildStdin,
}

impl PymodbusServer {
    fn start() -> PymodbusServer {
        check_pymodbus();
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("pymodbus-")
            .tempdir()
            .unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let script = repo_path("tests/peers/pymodbus_server.py");
        // -I: isolated from PYTHONPATH, PYTHONHOME and the user's site-packages (a pyenv's
        // environment must not leak into Debian's interpreter).
        let mut child = Command::new(PYTHON)
            .arg("-I")
            .arg(&script)
            .arg(port.to_string())
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PYTHON} {}: {e}", script.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let mut server = PymodbusServer {
            child,
            port,
            out,
            _dir: dir,
            stderr_path,
            _stdin: stdin,
        };
        // Readiness is the server's own READY line, not a probe connection: the exceptions test
        // counts the connections the server saw.
        let mut exited = None;
        let ready = wait_until(READY_TIMEOUT, Duration::from_millis(20), || {
            exited = server.child.try_wait().ok().flatten();
            server.lines().iter().any(|l| l.starts_with("READY ")) || exited.is_some()
        });
        assert!(
            ready && exited.is_none(),
            "the pymodbus server did not become ready on port {port} (exit: {exited:?}); \
             if pymodbus is missing: {PYMODBUS_HINT}\nstdout:\n{}\nstderr:\n{}",
            server.lines().join("\n"),
            tail(&server.stderr(), 40)
        );
        server
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lines_starting(&self, prefix: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }
}

impl Drop for PymodbusServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- pymodbus server (port {}) stdout tail ---\n{}\n--- stderr tail ---\n{}",
                self.port,
                tail(&self.lines().join("\n"), 30),
                tail(&self.stderr(), 30)
            );
        }
        kill_child(&mut self.child);
    }
}

/// Fails (never skips) when Debian's interpreter cannot import pymodbus's server and client.
fn check_pymodbus() {
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} not found: {PYMODBUS_HINT}"
    );
    let out = Command::new(PYTHON)
        .args(["-I", "-c", "import pymodbus.server, pymodbus.client"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}; {PYMODBUS_HINT}"));
    assert!(
        out.status.success(),
        "pymodbus does not import in {PYTHON}: {PYMODBUS_HINT}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// What the server holds (unit 1) and what the gateway must make of it.
// ---------------------------------------------------------------------------------------------

/// One signal of the test's `modbus_types` profile and model.
struct Sig {
    name: &'static str,
    /// The profile's `type` (float, int, bool, enum).
    kind: &'static str,
    table: &'static str,
    address: u16,
    ty: &'static str,
    /// More `[[registers]]` keys (order, bit, scale, offset, values).
    extra: &'static str,
    /// The field the gateway must write.
    expected: FieldVal,
}

const WRITABLE: &str = "writable = true";

const MODES: &str = r#"values = ["auto", "manual", "off"]"#;

fn f32v(x: f32) -> FieldVal {
    // The exact f64 of the f32 the server encoded, not the decimal literal.
    FieldVal::F64(f64::from(x))
}

/// The signal with `deadband` and `max_silence = "1h"`: only in the first point.
const QUIET: &str = "quiet_f32";

/// Unit 1 of the server, as `HOLDING_1`, `INPUT_1`, `COILS_1` and `DISCRETE_1` of
/// `pymodbus_server.py` define it.
fn types_signals() -> Vec<Sig> {
    use FieldVal::{Bool, Str, F64, I64};
    let s = |name, kind, table, address, ty, extra, expected| Sig {
        name,
        kind,
        table,
        address,
        ty,
        extra,
        expected,
    };
    vec![
        s(
            "temp_abcd",
            "float",
            "holding",
            0,
            "f32",
            r#"order = "ABCD""#,
            f32v(55.25),
        ),
        s(
            "temp_cdab",
            "float",
            "holding",
            2,
            "f32",
            r#"order = "CDAB""#,
            f32v(-12.5),
        ),
        s(
            "temp_badc",
            "float",
            "holding",
            4,
            "f32",
            r#"order = "BADC""#,
            f32v(25.0),
        ),
        s(
            "temp_dcba",
            "float",
            "holding",
            6,
            "f32",
            r#"order = "DCBA""#,
            f32v(-1234.5678),
        ),
        // 123.456 is 0x42F6E979: four different non-zero bytes, so every misplaced byte shows.
        s(
            "f32_abcd",
            "float",
            "holding",
            8,
            "f32",
            r#"order = "ABCD""#,
            f32v(123.456),
        ),
        s(
            "f32_cdab",
            "float",
            "holding",
            10,
            "f32",
            r#"order = "CDAB""#,
            f32v(123.456),
        ),
        s(
            "f32_badc",
            "float",
            "holding",
            12,
            "f32",
            r#"order = "BADC""#,
            f32v(123.456),
        ),
        s(
            "f32_dcba",
            "float",
            "holding",
            14,
            "f32",
            r#"order = "DCBA""#,
            f32v(123.456),
        ),
        s("i16_neg", "int", "holding", 16, "i16", WRITABLE, I64(-2)),
        s("i16_min", "int", "holding", 17, "i16", "", I64(-32768)),
        s(
            "i32_abcd",
            "int",
            "holding",
            18,
            "i32",
            r#"order = "ABCD""#,
            I64(-100_000),
        ),
        s(
            "i32_cdab",
            "int",
            "holding",
            20,
            "i32",
            r#"order = "CDAB""#,
            I64(-100_000),
        ),
        s(
            "i32_badc",
            "int",
            "holding",
            22,
            "i32",
            r#"order = "BADC""#,
            I64(-123_456_789),
        ),
        s(
            "i32_dcba",
            "int",
            "holding",
            24,
            "i32",
            r#"order = "DCBA""#,
            I64(-123_456_789),
        ),
        s("u16_max", "int", "holding", 26, "u16", "", I64(65535)),
        s(
            "u32_abcd",
            "int",
            "holding",
            27,
            "u32",
            r#"order = "ABCD""#,
            I64(4_000_000_000),
        ),
        s(
            "u32_cdab",
            "int",
            "holding",
            29,
            "u32",
            r#"order = "CDAB""#,
            I64(3_000_000_001),
        ),
        // Status word 0xA005: bits 0, 2, 13 and 15 set.
        s(
            "status_bit0",
            "bool",
            "holding",
            31,
            "bit",
            "bit = 0",
            Bool(true),
        ),
        s(
            "status_bit1",
            "bool",
            "holding",
            31,
            "bit",
            "bit = 1\nwritable = true",
            Bool(false),
        ),
        s(
            "status_bit2",
            "bool",
            "holding",
            31,
            "bit",
            "bit = 2",
            Bool(true),
        ),
        s(
            "status_bit13",
            "bool",
            "holding",
            31,
            "bit",
            "bit = 13",
            Bool(true),
        ),
        s(
            "status_bit15",
            "bool",
            "holding",
            31,
            "bit",
            "bit = 15",
            Bool(true),
        ),
        // value = raw × scale + offset, in f64, as the README documents it.
        s(
            "scaled_u16",
            "float",
            "holding",
            32,
            "u16",
            "scale = 0.1\noffset = -40.0",
            F64(653.0 * 0.1 + -40.0),
        ),
        s(
            "scaled_i16",
            "float",
            "holding",
            33,
            "i16",
            "scale = 0.01",
            F64(-125.0 * 0.01),
        ),
        s(
            "mode",
            "enum",
            "holding",
            34,
            "u16",
            MODES,
            Str("off".into()),
        ),
        s(
            "f64_abcd",
            "float",
            "holding",
            35,
            "f64",
            r#"order = "ABCD""#,
            F64(-0.1),
        ),
        s(
            "f64_cdab",
            "float",
            "holding",
            39,
            "f64",
            r#"order = "CDAB""#,
            F64(12345.678901234),
        ),
        s(
            "i64_abcd",
            "int",
            "holding",
            43,
            "i64",
            r#"order = "ABCD""#,
            I64(-9_000_000_000_123),
        ),
        s(
            "u64_dcba",
            "int",
            "holding",
            47,
            "u64",
            r#"order = "DCBA""#,
            I64(1_234_567_890_123_456_789),
        ),
        s("reg_bool", "bool", "holding", 51, "bool", "", Bool(true)),
        // Issue 17 item 4: text registers and the int64/uint64 names.
        s(
            "firmware",
            "string",
            "holding",
            52,
            "string",
            "length = 6",
            Str("FW 2.1.7".into()),
        ),
        s(
            "plc_name",
            "string",
            "holding",
            58,
            "string",
            "length = 6\norder = \"BADC\"",
            Str("HX-PLC-7".into()),
        ),
        s(
            "i64_cdab",
            "int",
            "holding",
            64,
            "int64",
            r#"order = "CDAB""#,
            I64(-1_234_567_890_123_456),
        ),
        s(
            "u64_abcd",
            "int",
            "holding",
            68,
            "uint64",
            "",
            I64(9_000_000_000_000_000_001),
        ),
        // Report by exception: the same value every poll, stored once an hour.
        s(
            QUIET,
            "float",
            "holding",
            72,
            "f32",
            "deadband = 0.5\nmax_silence = \"1h\"",
            f32v(21.5),
        ),
        s(
            "in_f32_cdab",
            "float",
            "input",
            0,
            "f32",
            r#"order = "CDAB""#,
            f32v(-12.5),
        ),
        s("in_i16", "int", "input", 2, "i16", "", I64(-2)),
        s(
            "in_u32_badc",
            "int",
            "input",
            3,
            "u32",
            r#"order = "BADC""#,
            I64(123_456),
        ),
        s("coil_0", "bool", "coil", 0, "bool", "", Bool(true)),
        s("coil_1", "bool", "coil", 1, "bool", WRITABLE, Bool(false)),
        s("coil_2", "bool", "coil", 2, "bool", "", Bool(true)),
        s("coil_17", "bool", "coil", 17, "bool", "", Bool(true)),
        s("di_0", "bool", "discrete", 0, "bool", "", Bool(false)),
        s("di_1", "bool", "discrete", 1, "bool", "", Bool(true)),
        s("di_9", "bool", "discrete", 9, "bool", "", Bool(true)),
    ]
}

/// Unit 3 (the same values as unit 1) read through a model with two registers past the
/// server's blocks (80 registers, 24 bits): each poll gets exception 0x02 twice.
const HOLES_MODEL: &str = r#"
model = "modbus_holes"
category = "modbus_types"

[[registers]]
signal = "temp_abcd"
table = "holding"
address = 0
type = "f32"

[[registers]]
signal = "u16_max"
table = "holding"
address = 500        # past the 80-register block: illegal data address
type = "u16"

[[registers]]
signal = "in_i16"
table = "input"
address = 2
type = "i16"

[[registers]]
signal = "coil_0"
table = "coil"
address = 0
type = "bool"

[[registers]]
signal = "coil_17"
table = "coil"
address = 100        # past the 24-coil block: illegal data address
type = "bool"
"#;

/// The built-in `heating_plc` model's values on unit 2 (`HOLDING_2` of the script).
fn heating_expected(setpoint: f64) -> BTreeMap<String, FieldVal> {
    [
        ("supply_temp_c", FieldVal::F64(55.5)),
        ("return_temp_c", FieldVal::F64(41.25)),
        ("pressure_mpa", FieldVal::F64(420.0 * 0.001)),
        ("flow_m3h", FieldVal::F64(12.75)),
        ("pump_running", FieldVal::Bool(true)),
        ("fault_code", FieldVal::I64(3)),
        ("supply_setpoint_c", FieldVal::F64(setpoint)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn profile_toml(sigs: &[Sig]) -> String {
    let mut t =
        String::from("category = \"modbus_types\"\nlabel = \"pymodbus 测试\"\ninterval = \"1s\"\n");
    for s in sigs {
        t.push_str(&format!(
            "\n[[signals]]\nname = \"{}\"\ntype = \"{}\"\n",
            s.name, s.kind
        ));
        if s.kind == "enum" {
            t.push_str(MODES);
            t.push('\n');
        }
    }
    t
}

fn model_toml(sigs: &[Sig]) -> String {
    let mut t = String::from("model = \"modbus_types\"\ncategory = \"modbus_types\"\n");
    for s in sigs {
        t.push_str(&format!(
            "\n[[registers]]\nsignal = \"{}\"\ntable = \"{}\"\naddress = {}\ntype = \"{}\"\n{}\n",
            s.name, s.table, s.address, s.ty, s.extra
        ));
    }
    t
}

// ---------------------------------------------------------------------------------------------
// The estate: pymodbus, mosquitto, VictoriaMetrics behind the proxy, the gateway.
// ---------------------------------------------------------------------------------------------

/// Field order is drop order: the gateway stops first.
struct PeerEstate {
    gateway: GatewayProcess,
    pymodbus: PymodbusServer,
    mqtt: Mosquitto,
    vm: VictoriaMetrics,
    proxy: RecordingProxy,
    http_port: u16,
    _dir: tempfile::TempDir,
}

impl PeerEstate {
    fn start() -> PeerEstate {
        let pymodbus = PymodbusServer::start();
        let mqtt = Mosquitto::start();
        let vm = VictoriaMetrics::start();
        let proxy = RecordingProxy::start(Some(vm.url()));
        let dir = tempfile::tempdir().unwrap();
        let sigs = types_signals();
        std::fs::create_dir(dir.path().join("profiles")).unwrap();
        std::fs::create_dir(dir.path().join("models")).unwrap();
        std::fs::write(
            dir.path().join("profiles/modbus_types.toml"),
            profile_toml(&sigs),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("models/modbus_types.toml"),
            model_toml(&sigs),
        )
        .unwrap();
        std::fs::write(dir.path().join("models/modbus_holes.toml"), HOLES_MODEL).unwrap();
        std::fs::write(dir.path().join("api.token"), format!("{TOKEN}\n")).unwrap();
        let http_port = free_port();
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[gateway]
site = "{SITE}"
host = "test-host"
data_dir = "data"
stats_interval = "1s"
profiles_dir = "profiles"

[mqtt]
url = "{mqtt}"
client_id = "gw-test"
reconnect_min = "100ms"
reconnect_max = "1s"

[store]
url = "{store}"
org = "estate"
bucket = "estate"
batch_interval = "200ms"
retry_min = "100ms"
retry_max = "1s"

[http]
listen = "127.0.0.1:{http_port}"
api_token_file = "api.token"

[modbus]
models_dir = "models"

[[modbus.endpoints]]
name = "pymodbus"
url = "{modbus}"
timeout = "3s"     # generous: the tests assert that no request timed out
retries = 1

[[devices]]
id = "TYPES-1"
name = "类型测试"
building = "测试楼"
category = "modbus_types"
modbus = {{ endpoint = "pymodbus", unit = 1, model = "modbus_types" }}
interval = "{INTERVAL}"

[[devices]]
id = "HX-9"
name = "9号换热站"
building = "换热站"
category = "heating_loop"
modbus = {{ endpoint = "pymodbus", unit = 2, model = "heating_plc" }}
interval = "{INTERVAL}"

[[devices]]
id = "HOLES-1"
name = "地址越界"
building = "测试楼"
category = "modbus_types"
modbus = {{ endpoint = "pymodbus", unit = 3, model = "modbus_holes" }}
interval = "{INTERVAL}"

[[devices]]
id = "BUSY-1"
name = "总是忙"
building = "测试楼"
category = "heating_loop"
modbus = {{ endpoint = "pymodbus", unit = 4, model = "heating_plc" }}
interval = "{INTERVAL}"

[[devices]]
id = "HL-2"
name = "2号换热站"
building = "换热站"
category = "heating_loop"
"#,
                mqtt = mqtt.url(),
                store = proxy.url(),
                modbus = pymodbus.url(),
            ),
        )
        .unwrap();
        let mut gateway = start_gateway(&config, &mqtt);
        assert!(
            gateway.wait_for_log("HTTP API listening.", WAIT),
            "no HTTP server:\n{}",
            gateway.log()
        );
        PeerEstate {
            gateway,
            pymodbus,
            mqtt,
            vm,
            proxy,
            http_port,
            _dir: dir,
        }
    }

    /// The `telemetry` points of one device the store accepted, in order.
    fn telemetry(&self, device: &str) -> Vec<ParsedPoint> {
        self.proxy
            .lines()
            .iter()
            .map(|l| parse_line(l))
            .filter(|p| {
                p.measurement == "telemetry"
                    && p.tags.get("device").map(String::as_str) == Some(device)
            })
            .collect()
    }

    /// Waits until `device` has at least `n` telemetry points; panics with the log otherwise.
    fn wait_for_telemetry(&self, device: &str, n: usize) -> Vec<ParsedPoint> {
        let ok = wait_until(WAIT, Duration::from_millis(50), || {
            self.telemetry(device).len() >= n
        });
        assert!(
            ok,
            "{device}: fewer than {n} telemetry points; gateway log:\n{}",
            tail(&self.gateway.log(), 60)
        );
        self.telemetry(device)
    }

    /// The newest `gateway` self-measurement point.
    fn gateway_point(&self) -> Option<ParsedPoint> {
        self.proxy
            .lines()
            .iter()
            .rev()
            .map(|l| parse_line(l))
            .find(|p| p.measurement == "gateway")
    }

    /// Waits for a `gateway` point that satisfies `check`; panics with the last one otherwise.
    fn wait_for_gateway_point(&self, check: impl Fn(&ParsedPoint) -> bool) -> ParsedPoint {
        let mut last = None;
        let ok = wait_until(WAIT, Duration::from_millis(50), || {
            last = self.gateway_point();
            last.as_ref().is_some_and(&check)
        });
        assert!(ok, "no such gateway point; the last one: {last:#?}");
        last.unwrap()
    }

    fn write(&self, device: &str, body: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let url = format!(
            "http://127.0.0.1:{}/api/devices/{device}/write",
            self.http_port
        );
        let r = http_post(&url, &headers, body.as_bytes()).unwrap();
        let json = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()));
        (r.status, json)
    }
}

/// A `gateway` counter field (written as an unsigned integer).
fn counter(p: &ParsedPoint, field: &str) -> u64 {
    match p.field(field) {
        FieldVal::U64(n) => *n,
        FieldVal::I64(n) => u64::try_from(*n).unwrap(),
        other => panic!("{field} is {other:?}, not a counter"),
    }
}

/// The field types of a point (for comparing shapes, not values).
fn field_types(p: &ParsedPoint) -> BTreeMap<String, &'static str> {
    p.fields
        .iter()
        .map(|(k, v)| {
            let ty = match v {
                FieldVal::I64(_) => "int",
                FieldVal::U64(_) => "uint",
                FieldVal::F64(_) => "float",
                FieldVal::Str(_) => "string",
                FieldVal::Bool(_) => "bool",
            };
            (k.clone(), ty)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_type_and_order_from_pymodbus_decodes_exactly() {
    let estate = PeerEstate::start();
    // An MQTT heating loop with the same values as the Modbus one (HX-9).
    estate.mqtt.publish(
        &format!("estate/{SITE}/heating_loop/HL-2/telemetry"),
        br#"{"supply_temp_c": 55.5, "return_temp_c": 41.25, "pressure_mpa": 0.42, "flow_m3h": 12.75, "pump_running": true, "fault_code": 3, "supply_setpoint_c": 50.0}"#,
        1,
    );

    let sigs = types_signals();
    let expected: BTreeMap<String, FieldVal> = sigs
        .iter()
        .map(|s| (s.name.to_owned(), s.expected.clone()))
        .collect();
    // Two polls: the values are read again, not remembered (but the unchanged QUIET is only
    // in the first: report by exception).
    let points = estate.wait_for_telemetry("TYPES-1", 2);
    for (i, p) in points.iter().enumerate() {
        let mut expected = expected.clone();
        if i > 0 {
            expected.remove(QUIET);
        }
        assert_eq!(
            p.tags,
            BTreeMap::from([
                ("site".to_owned(), SITE.to_owned()),
                ("building".to_owned(), "测试楼".to_owned()),
                ("category".to_owned(), "modbus_types".to_owned()),
                ("device".to_owned(), "TYPES-1".to_owned()),
            ])
        );
        // Field by field first, so a failure names the signal.
        for (name, want) in &expected {
            assert_eq!(
                p.fields.get(name),
                Some(want),
                "signal {name}: decoded {:?}, want {want:?}",
                p.fields.get(name)
            );
        }
        assert_eq!(&p.fields, &expected, "extra fields in {p:?}");
        assert!(p.timestamp.is_some());
    }

    // The built-in heating_plc model over Modbus, and an MQTT heating loop: the same point.
    let modbus = estate.wait_for_telemetry("HX-9", 1).remove(0);
    let mqtt = estate.wait_for_telemetry("HL-2", 1).remove(0);
    assert_eq!(modbus.fields, heating_expected(50.0), "{modbus:?}");
    assert_eq!(modbus.measurement, mqtt.measurement);
    assert_eq!(
        modbus.tags.keys().collect::<Vec<_>>(),
        mqtt.tags.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        modbus.tags.keys().collect::<Vec<_>>(),
        ["building", "category", "device", "site"]
    );
    for tag in ["site", "building", "category"] {
        assert_eq!(modbus.tag(tag), mqtt.tag(tag), "tag {tag}");
    }
    assert_eq!(field_types(&modbus), field_types(&mqtt));
    // With the same values sent, even the values are equal (0.42 MPa: 420 × 0.001).
    assert_eq!(modbus.fields, mqtt.fields);
    assert!(modbus.timestamp.is_some() && mqtt.timestamp.is_some());

    // And in VictoriaMetrics: one series per numeric field with the device's labels. (It keeps
    // booleans as 1/0 and does not store strings.)
    let numeric: Vec<&Sig> = sigs
        .iter()
        .filter(|s| !matches!(s.expected, FieldVal::Str(_)))
        .collect();
    let series = estate.vm.wait_for_samples(
        r#"{__name__=~"telemetry_.*",device="TYPES-1"}"#,
        (numeric.len() - 1) * points.len() + 1,
        WAIT,
    );
    for s in &numeric {
        let name = format!("telemetry_{}", s.name);
        let found = series
            .iter()
            .find(|x| x.name() == name)
            .unwrap_or_else(|| panic!("no {name} in VictoriaMetrics: {series:#?}"));
        assert_eq!(found.label("site"), Some(SITE));
        assert_eq!(found.label("building"), Some("测试楼"));
        assert_eq!(found.label("category"), Some("modbus_types"));
        assert_eq!(found.metric.len(), 5, "{found:?}"); // __name__ and the four tags
        let want = s.expected.as_f64();
        assert!(!found.values.is_empty());
        for v in &found.values {
            assert!(
                (v - want).abs() <= want.abs() * VM_PRECISION,
                "{name} in VictoriaMetrics: {v:?}, want {want:?}"
            );
        }
        if s.name == QUIET {
            assert_eq!(
                found.values.len(),
                1,
                "{name} stored more than once: {found:?}"
            );
        } else {
            assert!(found.values.len() >= points.len(), "{found:?}");
        }
    }
    let hx =
        estate
            .vm
            .wait_for_samples(r#"{__name__="telemetry_flow_m3h",device="HX-9"}"#, 1, WAIT);
    assert_eq!(hx[0].values[0], 12.75);
    assert_eq!(hx[0].label("category"), Some("heating_loop"));

    // No exception or decode error on the requests of these devices: only HOLES-1 and BUSY-1
    // (on the same endpoint) are refused.
    let g = estate.wait_for_gateway_point(|g| counter(g, "modbus_polls") >= 4);
    assert_eq!(counter(&g, "modbus_decode_errors"), 0);
    assert_eq!(counter(&g, "modbus_timeouts"), 0);
}

#[test]
fn a_write_through_the_api_lands_in_the_pymodbus_registers() {
    let estate = PeerEstate::start();
    let first = estate.wait_for_telemetry("HX-9", 1).remove(0);
    assert_eq!(first.field("supply_setpoint_c"), &FieldVal::F64(50.0));
    let good = r#"{"signal": "supply_setpoint_c", "value": 52.5, "by": "测试员"}"#;

    // No token: 401, nothing written.
    let (status, body) = estate.write("HX-9", good, None);
    assert_eq!(status, 401, "{body}");
    // A signal the register map does not allow: 403, nothing written.
    let (status, body) = estate.write(
        "HX-9",
        r#"{"signal": "supply_temp_c", "value": 20.0, "by": "测试员"}"#,
        Some(TOKEN),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not writable"),
        "{body}"
    );
    assert!(estate.pymodbus.lines_starting("WRITE").is_empty());

    let (status, body) = estate.write("HX-9", good, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["by"], "测试员");
    assert_eq!(body["value"], 52.5);

    // The server saw one write: fc16 of 52.5 as f32 ABCD (0x4252 0x0000) at holding 12.
    let mut writes = Vec::new();
    wait_until(WAIT, Duration::from_millis(20), || {
        writes = estate.pymodbus.lines_starting("WRITE");
        !writes.is_empty()
    });
    assert_eq!(
        writes,
        [format!(
            "WRITE unit=2 table=holding address=12 values={},0",
            0x4252
        )]
    );
    // The next polls read it back from the server.
    let ok = wait_until(WAIT, Duration::from_millis(50), || {
        estate
            .telemetry("HX-9")
            .last()
            .is_some_and(|p| p.fields.get("supply_setpoint_c") == Some(&FieldVal::F64(52.5)))
    });
    assert!(ok, "{:#?}", estate.telemetry("HX-9"));
    assert_eq!(
        estate.telemetry("HX-9").last().unwrap().fields,
        heating_expected(52.5)
    );
    let log = estate.gateway.log();
    let line = log
        .lines()
        .find(|l| l.contains("Modbus write.") && l.contains("signal=supply_setpoint_c"))
        .unwrap_or_else(|| panic!("no write logged:\n{log}"));
    assert!(
        line.contains("测试员") && line.contains("result=ok"),
        "{line}"
    );
    let series = estate.vm.wait_for_samples(
        r#"{__name__="telemetry_supply_setpoint_c",device="HX-9"}"#,
        2,
        WAIT,
    );
    assert!(series[0].values.contains(&52.5), "{series:#?}");

    // Writes of the other kinds, to unit 1: a coil (fc05), one bit of the status word (fc03
    // read, then fc06 of the word with the bit changed: 0xA005 → 0xA007) and a negative i16
    // (fc06 of 0xFED4).
    for (signal, value) in [
        ("coil_1", "true"),
        ("status_bit1", "true"),
        ("i16_neg", "-300"),
    ] {
        let (status, body) = estate.write(
            "TYPES-1",
            &format!(r#"{{"signal": "{signal}", "value": {value}, "by": "测试员"}}"#),
            Some(TOKEN),
        );
        assert_eq!(status, 200, "{signal}: {body}");
    }
    let mut writes = Vec::new();
    wait_until(WAIT, Duration::from_millis(20), || {
        writes = estate.pymodbus.lines_starting("WRITE unit=1");
        writes.len() >= 3
    });
    assert_eq!(
        writes,
        [
            "WRITE unit=1 table=coil address=1 values=1".to_owned(),
            format!("WRITE unit=1 table=holding address=31 values={}", 0xA007),
            format!("WRITE unit=1 table=holding address=16 values={}", 0xFED4),
        ]
    );
    let mut want: BTreeMap<String, FieldVal> = types_signals()
        .into_iter()
        .map(|s| (s.name.to_owned(), s.expected))
        .collect();
    want.insert("coil_1".into(), FieldVal::Bool(true));
    want.insert("status_bit1".into(), FieldVal::Bool(true));
    want.insert("i16_neg".into(), FieldVal::I64(-300));
    // Stored once an hour (report by exception): not in the later points.
    want.remove(QUIET);
    let ok = wait_until(WAIT, Duration::from_millis(50), || {
        estate
            .telemetry("TYPES-1")
            .last()
            .is_some_and(|p| p.fields == want)
    });
    assert!(ok, "{:#?}", estate.telemetry("TYPES-1").last());
}

#[test]
fn pymodbus_exceptions_are_counted_and_the_connection_is_kept() {
    let estate = PeerEstate::start();
    // HOLES-1: each poll has two requests past the blocks (0x02) and three good ones.
    let points = estate.wait_for_telemetry("HOLES-1", 4);
    let want: BTreeMap<String, FieldVal> = [
        ("temp_abcd", f32v(55.25)),
        ("in_i16", FieldVal::I64(-2)),
        ("coil_0", FieldVal::Bool(true)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for p in &points {
        assert_eq!(p.fields, want, "{p:?}");
    }

    let g = estate.wait_for_gateway_point(|g| {
        counter(g, "modbus_exception_illegal_data_address") >= 8
            && counter(g, "modbus_exception_server_device_busy") >= 4
    });
    // Only those two codes; no transport trouble: the one connection was kept throughout.
    for (field, value) in &g.fields {
        if field.starts_with("modbus_exception_")
            && !field.ends_with("illegal_data_address")
            && !field.ends_with("server_device_busy")
        {
            assert_eq!(value, &FieldVal::U64(0), "{field}");
        }
    }
    for field in [
        "modbus_timeouts",
        "modbus_transport_errors",
        "modbus_reconnects",
        "modbus_connect_failures",
        "modbus_decode_errors",
        "modbus_devices_offline",
        "modbus_endpoints_down",
    ] {
        assert_eq!(counter(&g, field), 0, "{field} in {g:#?}");
    }
    assert!(counter(&g, "modbus_poll_failures") >= 8, "{g:#?}");
    assert_eq!(estate.pymodbus.lines_starting("CONNECTED").len(), 1);
    assert!(estate.pymodbus.lines_starting("DISCONNECTED").is_empty());

    // The busy unit answers (so it stays online: no status point) but sends no values.
    assert!(estate.telemetry("BUSY-1").is_empty());
    // The other devices on the endpoint keep their values.
    let hx = estate.wait_for_telemetry("HX-9", 2);
    assert_eq!(hx.last().unwrap().fields, heating_expected(50.0));

    let log = estate.gateway.log();
    assert!(
        log.contains("exception 0x02") && log.contains("exception 0x06"),
        "{}",
        tail(&log, 40)
    );
}
