//! Issue 17 item 5: `estate-gateway doctor -c FILE` against a real mosquitto, a real
//! VictoriaMetrics (the store's write API) and the project's Modbus simulator (`simulate`, a
//! separate process): every row OK and exit 0, the probe point in the store; then with the
//! store stopped, the store row fails with what to fix and the exit code is 1 (the other rows
//! still OK).

use std::process::Output;
use std::time::Duration;

use crate::fixture::WAIT;
use crate::support::{free_port, run_cli, GatewayProcess, Mosquitto, VictoriaMetrics};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The table row (and the `fix:` line after it) of `part` whose target contains `target`.
fn row<'a>(table: &'a str, part: &str, target: &str) -> (&'a str, Option<&'a str>) {
    let lines: Vec<&str> = table.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(part) && l.contains(target))
        .unwrap_or_else(|| panic!("no {part} row for {target} in:\n{table}"));
    let fix = lines
        .get(i + 1)
        .filter(|l| l.trim_start().starts_with("fix: "))
        .copied();
    (lines[i], fix)
}

#[test]
fn doctor_checks_broker_store_and_modbus_then_names_the_fix() {
    let mqtt = Mosquitto::start();
    let mut vm = VictoriaMetrics::start();
    let plant = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
site = "huafu"
host = "gw-doctor"
data_dir = "data"

[mqtt]
url = "{mqtt}"
client_id = "gw-doctor-test"

[store]
url = "{store}"
org = "estate"
bucket = "estate"

[[modbus.endpoints]]
name = "plant"
url = "tcp://127.0.0.1:{plant}"
timeout = "2s"

[[devices]]
id = "HX-1"
name = "1号换热站"
building = "换热站"
category = "heating_loop"
modbus = {{ endpoint = "plant", unit = 1, model = "heating_plc" }}

[[devices]]
id = "FP-1"
name = "消防泵控制柜"
building = "泵房"
category = "fire_equipment"
modbus = {{ endpoint = "plant", unit = 2, model = "fire_pump_panel" }}

[[devices]]
id = "EL-1"
name = "1号楼电梯"
building = "1号楼"
category = "elevator"
"#,
            mqtt = mqtt.url(),
            store = vm.url(),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let mut sim = GatewayProcess::start(&["simulate", "-c", cfg]);
    assert!(
        sim.wait_for_log("Simulating 2 Modbus devices", Duration::from_secs(20)),
        "{}",
        sim.log()
    );

    // Everything up: every row OK, exit 0.
    let out = run_cli(&["doctor", "-c", cfg]);
    let (table, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{table}\n{err}");
    let (broker, fix) = row(&table, "broker", &mqtt.url());
    assert!(broker.contains(" OK "), "{table}");
    assert!(
        broker.contains("connected as `gw-doctor-test-doctor`"),
        "{table}"
    );
    assert!(fix.is_none(), "{table}");
    // The broker saw the doctor's own client subscribe (the gateway's session is untouched).
    assert!(
        mqtt.wait_for_subscription(
            Some("gw-doctor-test-doctor"),
            "estate/+/+/+/telemetry",
            WAIT
        ),
        "{}",
        mqtt.log()
    );
    let (store, _) = row(&table, "store", &vm.url());
    assert!(store.contains(" OK "), "{table}");
    for device in ["HX-1", "FP-1"] {
        let (m, fix) = row(&table, "modbus", device);
        assert!(m.contains(" OK ") && m.contains("read fc0"), "{table}");
        assert!(fix.is_none(), "{table}");
    }
    assert!(
        !table.contains("EL-1"),
        "an MQTT device has no Modbus row:\n{table}"
    );
    assert!(table.contains("4 of 4 checks passed."), "{table}");
    // The probe point reached the store, with the gateway's tags.
    let probe = vm.wait_for_samples(r#"{__name__="gateway_probe_ok"}"#, 1, WAIT);
    assert_eq!(probe[0].label("site"), Some("huafu"));
    assert_eq!(probe[0].label("host"), Some("gw-doctor"));

    // The store stopped: its row fails and says what to do; the rest still works; exit 1.
    vm.stop();
    let out = run_cli(&["doctor", "-c", cfg]);
    let (table, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{table}\n{err}");
    let (store, fix) = row(&table, "store", &vm.url());
    assert!(store.contains(" FAILED "), "{table}");
    let fix = fix.unwrap_or_else(|| panic!("no fix under the store row:\n{table}"));
    assert!(
        fix.contains("start the store or correct store.url") && fix.contains(&vm.url()),
        "{table}"
    );
    assert!(
        row(&table, "broker", &mqtt.url()).0.contains(" OK "),
        "{table}"
    );
    assert!(row(&table, "modbus", "HX-1").0.contains(" OK "), "{table}");
    assert!(table.contains("3 of 4 checks passed."), "{table}");
    assert!(err.contains("1 of 4 checks failed"), "{err}");

    // The simulator gone too: the Modbus rows fail with their fix.
    sim.terminate();
    let out = run_cli(&["doctor", "-c", cfg]);
    let (table, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let (m, fix) = row(&table, "modbus", "HX-1");
    assert!(
        m.contains(" FAILED ") && m.contains("cannot connect"),
        "{table}"
    );
    assert!(
        fix.is_some_and(|f| f.contains(&format!("tcp://127.0.0.1:{plant} is on and reachable"))),
        "{table}"
    );
}
