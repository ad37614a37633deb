//! Issue 17 item 3: the Debian package and the systemd unit.
//!
//! - `deb_package_installs_the_documented_layout`: `scripts/package-deb --dev` (cargo-deb over
//!   the debug binary `cargo test` built, stripped) → `dpkg-deb -x` into a throwaway root: the
//!   binary at /usr/bin runs, configs/ under /etc/estate-gateway as conffiles (and the shipped
//!   configuration passes `check-config` with the shipped binary), the unit in
//!   /usr/lib/systemd/system passes `systemd-analyze verify` and is `Type=notify` with a
//!   watchdog, the maintainer scripts create the system user and the state directory.
//! - `systemd_notify_ready_watchdog_and_stopping`: the real binary under a fake service manager
//!   (a unix datagram socket as `$NOTIFY_SOCKET`, `$WATCHDOG_USEC`): READY=1 after start,
//!   WATCHDOG=1 pings while it runs, STOPPING=1 on SIGTERM.
//!
//! A missing cargo-deb, dpkg-deb or systemd-analyze is a failure naming the install command.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::DEVICES;
use crate::support::{repo_path, GatewayProcess, Mosquitto};

fn run(cmd: &mut Command) -> std::process::Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn require(tool: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{tool} is missing: {install}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn deb_package_installs_the_documented_layout() {
    require(
        "dpkg-deb",
        "apt-get install dpkg (scripts/install-test-deps)",
    );
    require(
        "systemd-analyze",
        "apt-get install systemd (scripts/install-test-deps)",
    );
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("estate-gateway.deb");

    // The script the README documents, in its test mode (no release build).
    let out = Command::new(repo_path("scripts/package-deb"))
        .args(["--dev", "-o"])
        .arg(&deb)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_BIN_EXE_estate-gateway"))
                .parent()
                .and_then(Path::parent)
                .unwrap(),
        )
        .output()
        .expect("run scripts/package-deb");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(3),
        "cargo-deb is missing: cargo install cargo-deb --locked (scripts/install-test-deps)\n{stderr}"
    );
    assert!(out.status.success(), "scripts/package-deb: {stderr}");
    assert!(deb.is_file(), "no package at {}", deb.display());

    // The control part: name, dependencies, conffiles, maintainer scripts.
    let ctl = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctl));
    let control = read(&ctl.join("control"));
    assert!(control.contains("Package: estate-gateway"), "{control}");
    assert!(
        control.contains("Depends: ") && control.contains("adduser"),
        "{control}"
    );
    let conffiles = read(&ctl.join("conffiles"));
    for f in [
        "/etc/estate-gateway/gateway.toml",
        "/etc/estate-gateway/devices.csv",
        "/etc/estate-gateway/models/heating_plc.toml",
        "/etc/estate-gateway/profiles/elevator.toml",
    ] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} not a conffile:\n{conffiles}"
        );
    }
    let postinst = read(&ctl.join("postinst"));
    assert!(
        postinst.contains("adduser --system") && postinst.contains(" estate-gateway\n"),
        "postinst does not create the system user:\n{postinst}"
    );
    assert!(
        postinst.contains("-o estate-gateway -g estate-gateway /var/lib/estate-gateway"),
        "postinst does not create the state directory:\n{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-helper enable estate-gateway.service"),
        "postinst does not enable the unit:\n{postinst}"
    );
    let postrm = read(&ctl.join("postrm"));
    assert!(
        postrm.contains("rm -rf /var/lib/estate-gateway"),
        "{postrm}"
    );
    for script in ["postinst", "postrm", "prerm"] {
        let p = ctl.join(script);
        assert!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o111 != 0,
            "{script} not executable"
        );
        run(Command::new("sh").arg("-n").arg(&p));
    }

    // The data part, installed into a throwaway root.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let bin = root.join("usr/bin/estate-gateway");
    assert!(
        std::fs::metadata(&bin).unwrap().permissions().mode() & 0o755 == 0o755,
        "binary not 0755"
    );
    let version = run(Command::new(&bin).arg("--version"));
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );
    // Stripped: no .debug_info or .symtab section left.
    let sections = run(Command::new("objdump").arg("-h").arg(&bin));
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(
        !sections.contains(".debug_info") && !sections.contains(".symtab"),
        "binary not stripped:\n{sections}"
    );
    let etc = root.join("etc/estate-gateway");
    for f in [
        "gateway.toml",
        "devices.csv",
        "demo.toml",
        "models/heating_plc.toml",
        "models/fire_pump_panel.toml",
        "profiles/access_gate.toml",
        "profiles/elevator.toml",
        "profiles/fire_equipment.toml",
        "profiles/heating_loop.toml",
        "profiles/indoor_sensor.toml",
    ] {
        assert_eq!(
            read(&etc.join(f)),
            read(&repo_path("configs").join(f)),
            "/etc/estate-gateway/{f} is not configs/{f}"
        );
    }
    // The shipped configuration is valid for the shipped binary, and keeps its journal in
    // the unit's state directory.
    let check = run(Command::new(&bin)
        .args(["check-config", "-c"])
        .arg(etc.join("gateway.toml")));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(": OK"),
        "{check:?}"
    );
    assert!(read(&etc.join("gateway.toml")).contains("data_dir = \"/var/lib/estate-gateway\""));

    let unit_path = root.join("usr/lib/systemd/system/estate-gateway.service");
    let unit = read(&unit_path);
    assert_eq!(unit, read(&repo_path("packaging/estate-gateway.service")));
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "ExecStart=/usr/bin/estate-gateway run -c /etc/estate-gateway/gateway.toml",
        "User=estate-gateway",
        "StateDirectory=estate-gateway",
        "LimitNOFILE=65536",
        "TimeoutStopSec=",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "unit lacks {line}:\n{unit}"
        );
    }
    // systemd's own parser: the unit as installed, with its binary at the throwaway root.
    let verify_dir = dir.path().join("verify");
    std::fs::create_dir(&verify_dir).unwrap();
    let verify_unit = verify_dir.join("estate-gateway.service");
    std::fs::write(
        &verify_unit,
        unit.replace("/usr/bin/estate-gateway", bin.to_str().unwrap()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&verify_unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr).into_owned()
        + &String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && !said.contains("estate-gateway.service"),
        "systemd-analyze verify: {}\n{said}",
        verify.status
    );
}

/// Receives one datagram, or `None` at `timeout`.
fn recv(sock: &UnixDatagram, timeout: Duration) -> Option<String> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn systemd_notify_ready_watchdog_and_stopping() {
    let mqtt = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
site = "{site}"
data_dir = "data"

[mqtt]
url = "{url}"
client_id = "gw-notify"
{DEVICES}
"#,
            site = crate::fixture::SITE,
            url = mqtt.url()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut gw = GatewayProcess::start_with_env(
        &["run", "-c", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            // Pings every 200 ms.
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let ready = recv(&sock, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no READY=1 within 20 s:\n{}", gw.log()));
    assert!(ready.starts_with("READY=1\nSTATUS=running: "), "{ready:?}");
    // READY comes once everything is started, after the log says so.
    assert!(gw.log().contains("estate-gateway running."), "{}", gw.log());

    // The core stage ticks: pings at about 200 ms.
    let mut pings = 0;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        match recv(&sock, Duration::from_secs(1)) {
            Some(m) => {
                assert_eq!(m, "WATCHDOG=1\n");
                pings += 1;
            }
            None => break,
        }
    }
    assert!(
        (5..=15).contains(&pings),
        "{pings} watchdog pings in 2 s (expected about 10)"
    );

    let status = gw.terminate();
    assert!(status.success(), "{status}: {}", gw.log());
    let mut rest = Vec::new();
    while let Some(m) = recv(&sock, Duration::from_millis(200)) {
        rest.push(m);
    }
    assert!(
        rest.iter().any(|m| m == "STOPPING=1\n"),
        "no STOPPING=1 after SIGTERM: {rest:?}"
    );
    eprintln!("READY after {:?}; {pings} pings in 2 s", started.elapsed());
}
