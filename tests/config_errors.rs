//! `check-config` on the shipped example and on broken variants of it: exit 0 with a summary,
//! or exit 2 with every error, each naming the file, the key and what would be valid.

use std::path::{Path, PathBuf};

use crate::support::{repo_path, run_cli, run_cli_with_env};

/// A copy of `configs/gateway.toml` and `configs/devices.csv` in a temp dir, edited by `edit`.
fn variant(edit: impl FnOnce(&str) -> String, csv: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_path("configs/gateway.toml")).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, edit(&text)).unwrap();
    let csv_text = match csv {
        Some(c) => c.to_owned(),
        None => std::fs::read_to_string(repo_path("configs/devices.csv")).unwrap(),
    };
    std::fs::write(dir.path().join("devices.csv"), csv_text).unwrap();
    (dir, path)
}

fn check(path: &Path) -> (i32, String, String) {
    let out = run_cli(&["check-config", "-c", path.to_str().unwrap()]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts exit 2 and that stderr contains every needle.
fn assert_errors(path: &Path, needles: &[&str]) {
    let (code, out, err) = check(path);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
}

#[test]
fn shipped_example_is_valid_and_summarised() {
    let (code, out, err) = check(&repo_path("configs/gateway.toml"));
    assert_eq!(code, 0, "{err}");
    for n in [
        "gateway.toml: OK",
        "devices: 14 from",
        "site huafu: 14",
        "elevator              4  电梯",
        "fire_equipment        3  消防设施",
        "mqtt mqtt://127.0.0.1:1883 as `estate-gateway-huafu`",
        "telemetry estate/{site}/{category}/{device}/telemetry",
        "store: http://127.0.0.1:8086 org `estate` bucket `estate`",
    ] {
        assert!(out.contains(n), "missing {n:?} in:\n{out}");
    }
    assert!(out.lines().count() < 25, "not one screen:\n{out}");
}

#[test]
fn unknown_keys_name_the_key_and_the_valid_ones() {
    let (_d, p) = variant(
        |t| {
            t.replace("[gateway]\n", "[gateway]\ncolour = \"red\"\n")
                .replace("[store]\n", "[store]\ntoken = \"s3cret\"\n")
        },
        None,
    );
    assert_errors(
        &p,
        &[
            "gateway.toml: gateway.colour: unknown key; valid keys here: site, host, data_dir",
            "gateway.toml: store.token: unknown key; secrets are not read from TOML",
            "2 configuration errors",
        ],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let (_d, p) = variant(
        |t| {
            t.replace(
                "telemetry_topic = \"estate/{site}/{category}/{device}/telemetry\"",
                "telemetry_topic = \"estate/{site}/{category}/telemetry\"",
            )
            .replace(
                "url = \"http://127.0.0.1:8086\"",
                "url = \"127.0.0.1:8086\"",
            )
            .replace("category = \"heating_loop\"", "category = \"lift\"")
                + "\n[[devices]]\nid = \"FP-1\"\nname = \"重复\"\nbuilding = \"泵房\"\ncategory = \"fire_equipment\"\n"
                + "\n[[devices]]\nid = \"X-1\"\nname = \"坏\\n名字\"\nbuilding = \"泵房\"\ncategory = \"fire_equipment\"\n"
        },
        Some("id,name,building,category\nG-1,门禁,北门,access_gate\nG-2,门禁,北门\nG-3,门禁,北门,access_gate,extra\n"),
    );
    assert_errors(
        &p,
        &[
            "gateway.toml: mqtt.telemetry_topic: `estate/{site}/{category}/telemetry` has no `{device}` placeholder",
            "gateway.toml: store.url: `127.0.0.1:8086`",
            "e.g. `http://127.0.0.1:8086`",
            "gateway.toml: devices[1].category: unknown category `lift`; known: access_gate, elevator, fire_equipment, heating_loop, indoor_sensor",
            "gateway.toml: devices[2].id: duplicate device id `FP-1` in site `huafu` (first defined at",
            "gateway.toml: devices[3].name: `坏\\n名字` contains the control character '\\n'",
            "devices.csv: line 3: has 3 columns, the header has 4",
            "devices.csv: line 4: has 5 columns, the header has 4",
            "7 configuration errors",
        ],
    );
}

#[test]
fn csv_inventory_mistakes() {
    let (_d, p) = variant(
        |t| t.to_owned(),
        Some("id,name,building,kind\nG-1,门禁,北门,access_gate\n"),
    );
    assert_errors(
        &p,
        &[
            "devices.csv: line 1: unknown column `kind`; valid columns: id, name, building, category, site, interval, heartbeat_timeout, monitored_since, modbus_endpoint, modbus_unit, modbus_model (optional)",
            "devices.csv: line 1: the header has no `category` column",
        ],
    );
    let (_d, p) = variant(
        |t| t.to_owned(),
        Some("id,name,building,category\nG-1,门禁,北门,access_gate\nG-1,门禁2,北门,access_gate\nG-2,门禁,北门,gate\n"),
    );
    assert_errors(
        &p,
        &[
            "devices.csv: line 3, column id: duplicate device id `G-1`",
            "devices.csv: line 4, column category: unknown category `gate`",
        ],
    );
    // A spreadsheet saved as GBK rather than UTF-8.
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("gw.toml");
    std::fs::write(&toml, "devices_csv = \"d.csv\"\n[gateway]\nsite = \"s\"\n").unwrap();
    let mut gbk = b"id,name,building,category\nG-1,".to_vec();
    gbk.extend_from_slice(&[0xc3, 0xc5, 0xbd, 0xfb]); // 门禁 in GBK
    gbk.extend_from_slice(b",b,access_gate\n");
    std::fs::write(dir.path().join("d.csv"), gbk).unwrap();
    assert_errors(&toml, &["d.csv: line 2: is not UTF-8", "CSV UTF-8"]);
}

#[test]
fn environment_overrides_and_their_errors() {
    let path = repo_path("configs/gateway.toml");
    let p = path.to_str().unwrap();
    let out = run_cli_with_env(
        &["check-config", "-c", p],
        &[("ESTATE_GW__STORE__URL", "http://influx.example:9999")],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("store: http://influx.example:9999"));

    let out = run_cli_with_env(
        &["check-config", "-c", p],
        &[("ESTATE_GW__STORE__BATCH_LINES", "many")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the environment: store.batch_lines: expected an integer"),
        "{err}"
    );

    // The secret itself comes from the environment and shows as "set", never its value.
    let out = run_cli_with_env(
        &["check-config", "-c", p],
        &[("ESTATE_GW_STORE_TOKEN", "tok-123")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("token set"), "{text}");
    assert!(!text.contains("tok-123"));
}

#[test]
fn missing_file_and_run_with_a_bad_config_exit_2() {
    let (code, _, err) = check(Path::new("/nonexistent/gateway.toml"));
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/gateway.toml: -: no such file"),
        "{err}"
    );

    let (_d, p) = variant(
        |t| t.replace("log_format = \"text\"", "log_format = \"xml\""),
        None,
    );
    let out = run_cli(&["run", "-c", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("gateway.log_format: `xml` is not a log format; valid: text, json"));
}

#[test]
fn modbus_register_maps_endpoints_and_bindings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    std::fs::write(
        dir.path().join("models/bad_plc.toml"),
        r#"
model = "bad_plc"
category = "heating_loop"
max_registers_per_request = 200

[[registers]]
signal = "supply_temp_c"
table = "holding"
address = 0
type = "f32"

[[registers]]
signal = "return_temp_c"
table = "holding"
address = 1          # overlaps supply_temp_c (0..2)
type = "f32"

[[registers]]
signal = "pressure_mpa"
table = "coil"
address = 3
type = "u16"         # too long for a bit table

[[registers]]
signal = "flow_m3h"
table = "input"
address = 65535
type = "f32"         # runs past the end

[[registers]]
signal = "colour"
table = "holding"
address = 20
type = "u16"

[[registers]]
signal = "fault_code"
table = "input"
address = 30
type = "u16"
order = "ACBD"
writable = true
"#,
    )
    .unwrap();
    let toml = dir.path().join("gw.toml");
    std::fs::write(
        &toml,
        r#"
[gateway]
site = "s"

[modbus]
models_dir = "models"

[[modbus.endpoints]]
name = "plant"
url = "tcp://127.0.0.1:1502"

[[modbus.endpoints]]
name = "bus"
url = "serial:///dev/ttyUSB0"

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
modbus = { endpoint = "plant", unit = 1, model = "heating_plc" }

[[devices]]
id = "HX-3"
name = "3号换热站"
building = "换热站"
category = "heating_loop"
modbus = { endpoint = "nowhere", unit = 0, model = "no_such_model" }

[[devices]]
id = "FP-1"
name = "消防泵"
building = "泵房"
category = "fire_equipment"
modbus = { endpoint = "plant", unit = 5, model = "heating_plc" }
"#,
    )
    .unwrap();
    assert_errors(
        &toml,
        &[
            "bad_plc.toml: max_registers_per_request: 200 is out of range; valid: 1 to 125",
            "bad_plc.toml: registers[1].address: holding 1 (f32 2 words) overlaps `supply_temp_c` at holding 0",
            "bad_plc.toml: registers[2].type: `u16` is too long for the coil table",
            "bad_plc.toml: registers[3].address: f32 (2 words) at 65535 runs past address 65535",
            "bad_plc.toml: registers[4].signal: unknown signal `colour` of category `heating_loop`; known: supply_temp_c",
            "bad_plc.toml: registers[5].order: `ACBD` is not a byte/word order; valid: ABCD, CDAB, BADC, DCBA",
            "gw.toml: modbus.endpoints[1].url: `serial:///dev/ttyUSB0`: scheme `serial` is not supported",
            "gw.toml: devices[1].modbus.unit: unit 1 on endpoint `plant` is already used by",
            "gw.toml: devices[2].modbus.endpoint: unknown endpoint `nowhere`; known: plant",
            "gw.toml: devices[2].modbus.unit: 0 is not a unit id",
            "gw.toml: devices[2].modbus.model: unknown model `no_such_model`; known: fire_pump_panel, heating_plc",
            "gw.toml: devices[3].modbus.model: model `heating_plc` is for category `heating_loop`, the device is `fire_equipment`",
        ],
    );
}

/// Issue 17 item 4: string and 64-bit registers, deadband and max_silence, every mistake named.
#[test]
fn modbus_strings_64_bit_and_report_by_exception() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("models")).unwrap();
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    std::fs::write(
        dir.path().join("profiles/meter.toml"),
        r#"
category = "meter"
label = "表计"
interval = "10s"

[[signals]]
name = "firmware"
type = "string"

[[signals]]
name = "serial"
type = "string"

[[signals]]
name = "energy_wh"
type = "int"

[[signals]]
name = "power_kw"
type = "float"

[[signals]]
name = "running"
type = "bool"
"#,
    )
    .unwrap();
    let model = |body: &str| format!("model = \"m\"\ncategory = \"meter\"\n{body}");
    std::fs::write(
        dir.path().join("models/good_meter.toml"),
        model(
            r#"
[[registers]]
signal = "firmware"
table = "holding"
address = 0
type = "string"
length = 8
order = "BADC"
trim = false
max_silence = "1h"

[[registers]]
signal = "energy_wh"
table = "input"
address = 0
type = "uint64"
order = "CDAB"
deadband = 10
max_silence = "15m"

[[registers]]
signal = "power_kw"
table = "input"
address = 4
type = "int64"
scale = 0.001
deadband = 0.5
"#,
        )
        .replace("model = \"m\"", "model = \"good_meter\""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("models/bad_meter.toml"),
        model(
            r#"
[[registers]]
signal = "firmware"
table = "holding"
address = 0
type = "string"          # no length

[[registers]]
signal = "serial"
table = "holding"
address = 10
type = "u16"             # a string signal needs type string

[[registers]]
signal = "energy_wh"
table = "holding"
address = 20
type = "string"          # an int signal
length = 200             # and too long
writable = true

[[registers]]
signal = "power_kw"
table = "holding"
address = 30
type = "f32"
length = 2               # only strings
trim = false             # only strings
deadband = -1
max_silence = "soon"

[[registers]]
signal = "running"
table = "holding"
address = 40
type = "bool"
deadband = 1             # not a number signal
"#,
        )
        .replace("model = \"m\"", "model = \"bad_meter\""),
    )
    .unwrap();
    let toml = dir.path().join("gw.toml");
    let gw = |model: &str| {
        format!(
            r#"
[gateway]
site = "s"
profiles_dir = "profiles"

[modbus]
models_dir = "models"

[[modbus.endpoints]]
name = "plant"
url = "tcp://127.0.0.1:1502"

[[devices]]
id = "M-1"
name = "1号表"
building = "配电房"
category = "meter"
modbus = {{ endpoint = "plant", unit = 1, model = "{model}" }}
"#
        )
    };
    std::fs::write(&toml, gw("bad_meter")).unwrap();
    assert_errors(
        &toml,
        &[
            "bad_meter.toml: registers[0].type: `string` needs `length = n`, its registers (1 to 125; two characters each)",
            "bad_meter.toml: registers[1].type: `serial` is a string signal; map it with `type = \"string\"` and `length`",
            "bad_meter.toml: registers[2].length: 200 registers: a string is 1 to 125 registers (one read request)",
            "bad_meter.toml: registers[3].length: only `type = \"string\"` takes `length`",
            "bad_meter.toml: registers[3].trim: only `type = \"string\"` takes `trim`",
            "bad_meter.toml: registers[3].deadband: -1 is not a deadband; a finite number, 0 or more",
            "bad_meter.toml: registers[3].max_silence: `soon` is not a duration",
            "bad_meter.toml: registers[4].deadband: `running` is a bool signal: a deadband needs a number",
        ],
    );
    // The good model is valid (bad_meter.toml still in the directory is reported, so it goes).
    std::fs::remove_file(dir.path().join("models/bad_meter.toml")).unwrap();
    std::fs::write(&toml, gw("good_meter")).unwrap();
    let (code, out, err) = check(&toml);
    assert_eq!(code, 0, "{out}\n{err}");
}

/// Issue 13 item 6: a type error no longer hides the others, and booleans are strict.
#[test]
fn type_errors_are_reported_with_every_other_error() {
    let (_d, p) = variant(
        |t| {
            t.replace("batch_lines = 5000", "batch_lines = -3")
                .replace("gzip = true", "gzip = \"yes\"")
                .replace(
                    "modbus = { endpoint = \"pump-room-bus\", unit = 3,",
                    "modbus = { endpoint = \"no-such-bus\", unit = 3,",
                )
                .replace(
                    "modbus = { endpoint = \"plant-room\", unit = 1,",
                    "modbus = { endpoint = \"plant-room\", unit = 300,",
                )
        },
        None,
    );
    let (code, out, err) = check(&p);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    for n in [
        "gateway.toml: store.batch_lines: expected an integer (0 or more), got integer `-3`",
        "gateway.toml: store.gzip: expected a boolean: true or false (without quotes), got string \"yes\"",
        "endpoint `no-such-bus`",
        "unit",
        "300",
        "4 configuration errors",
    ] {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
    // The defaults the wrong keys fell back to say nothing of their own.
    assert!(!err.contains("store.queue_lines"), "{err}");
}

/// Issue 13 item 2: ids and names the store cannot carry exactly are refused, with the
/// reason, together with the other errors.
#[test]
fn names_line_protocol_cannot_carry_are_refused() {
    let (_d, p) = variant(
        |t| {
            t.to_owned()
                + "\n[[devices]]\nid = 'E\\backslash'\nname = \"a\"\nbuilding = \"B\"\ncategory = \"elevator\"\n"
                + "\n[[devices]]\nid = 'E-trailing\\'\nname = \"b\"\nbuilding = \"B\"\ncategory = \"elevator\"\n"
                + "\n[[devices]]\nid = 'E\\\\dbl'\nname = \"c\"\nbuilding = 'B\\1'\ncategory = \"elevator\"\n"
        },
        None,
    );
    let (code, out, err) = check(&p);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    for n in [
        "gateway.toml: devices[2].id: `E\\backslash` contains a backslash",
        "gateway.toml: devices[3].id: `E-trailing\\` contains a backslash",
        "gateway.toml: devices[4].id: `E\\\\dbl` contains a backslash",
        "gateway.toml: devices[4].building: `B\\1` contains a backslash",
        "InfluxDB 1.x stores an escaped backslash doubled",
        "use another character",
        "4 configuration errors",
    ] {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
}

#[test]
fn input_log_settings_and_payloads_too_large_for_a_record_are_refused() {
    let (_d, p) = variant(
        |t| {
            t.replace("max_payload_bytes = 65536", "max_payload_bytes = 20000000")
                + "\n[log]\nmax_bytes = \"1KiB\"\nretention = \"soon\"\ncommit_batch = 0\nsegment_bytes = \"64 parsecs\"\n"
        },
        None,
    );
    assert_errors(
        &p,
        &[
            "gateway.toml: mqtt.max_payload_bytes: 20000000 is more than 8 MiB",
            "gateway.toml: log.retention: `soon` is not a duration",
            "gateway.toml: log.commit_batch: must be more than 0",
            "gateway.toml: log.segment_bytes: `64 parsecs` is not a size",
        ],
    );
}
