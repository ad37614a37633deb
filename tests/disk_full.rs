//! A full disk under the journal, for real: the data dir on a small tmpfs of the test's own.
//! The gateway starts on it (restoring states from the journal as it is), serves the live
//! view, says on `/healthz` and in the log that the journal cannot be written, and goes on
//! journaling by itself once there is room again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::fixture::{now_ms, Estate, WAIT};
use crate::support::{http_get, wait_until};

/// A tmpfs of `size` mounted on a directory; unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs to fill it for real and needs root (CAP_SYS_ADMIN) \
             for that: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).expect("create filler");
        let block = vec![0u8; 4096];
        loop {
            if let Err(e) = f.write_all(&block) {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                break;
            }
        }
        // Whatever is left below a block, too.
        while f.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn healthz(base: &str) -> (u16, String) {
    match http_get(&format!("{base}/healthz")) {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

fn device(base: &str, id: &str) -> serde_json::Value {
    let r = http_get(&format!("{base}/api/devices/{id}")).expect("GET device");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

#[test]
fn on_a_full_disk_the_gateway_starts_serves_the_live_view_and_journals_again_when_room_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Declared before the estate: unmounted after the gateway is gone.
    let disk = SmallDisk::mount(dir.path(), "16m");
    let mut estate = Estate::start_with_api_in(dir, "", "");
    let base = estate.api().base.clone();

    // A first run records a state (the elevator in fault), then stops cleanly.
    estate.publish(
        "elevator",
        "E-1-1",
        r#"{"mode": "normal", "fault_code": 7}"#,
    );
    wait_until(WAIT, Duration::from_millis(50), || {
        device(&base, "E-1-1")["state"] == "fault"
    });
    assert_eq!(device(&base, "E-1-1")["state"], "fault");
    estate.gateway.terminate();

    // The disk fills up (another program's logs, say), and the gateway is started again.
    let filler = disk.fill();
    estate.restart_gateway();
    let log_needle = "Cannot open the journal for writing (disk full?)";
    assert!(
        estate.gateway.log().contains(log_needle),
        "{}",
        estate.gateway.log()
    );
    // The live view has the state from the journal; /healthz says what is wrong.
    assert_eq!(device(&base, "E-1-1")["state"], "fault");
    let (status, body) = healthz(&base);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("journal cannot be written"), "{body}");
    // Readings go on into the live view as far as the input log has room (the tail of its
    // last page, here): the engine runs, only the journal is missing them.
    estate.publish(
        "elevator",
        "E-1-1",
        r#"{"mode": "normal", "fault_code": 0}"#,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(estate.gateway.try_wait().is_none(), "the gateway exited");

    // Room again: journaling resumes by itself, the waiting reading is applied and journaled.
    std::fs::remove_file(&filler).expect("remove filler");
    let mut h = (0, String::new());
    wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        h = healthz(&base);
        h.0 == 200
    });
    assert_eq!(h, (200, "ok".to_owned()), "{}", estate.gateway.log());
    assert!(estate
        .gateway
        .wait_for_log("The journal can be written again", WAIT));
    // What arrives now is applied and journaled (whatever waited at the broker before it).
    let ts = now_ms();
    estate.publish(
        "elevator",
        "E-1-1",
        &format!(r#"{{"ts": {ts}, "mode": "normal", "fault_code": 9}}"#),
    );
    wait_until(WAIT, Duration::from_millis(50), || {
        device(&base, "E-1-1")["state"] == "fault"
    });
    assert_eq!(device(&base, "E-1-1")["state"], "fault");
    let journal = estate.journal_path();
    let mut rows = (0i64, 0i64);
    wait_until(WAIT, Duration::from_millis(200), || {
        let Ok(conn) = rusqlite::Connection::open_with_flags(
            &journal,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return false;
        };
        let count = |sql: &str| conn.query_row(sql, [ts], |r| r.get(0)).unwrap_or(0i64);
        rows = (
            count("SELECT COUNT(*) FROM runs WHERE started_ms < ?1"),
            count("SELECT COUNT(*) FROM transitions WHERE device = 'E-1-1' AND to_state = 'fault' AND ts_ms = ?1"),
        );
        rows == (2, 1)
    });
    assert_eq!(
        rows,
        (2, 1),
        "both runs and the new transition are journaled"
    );
    assert!(estate.gateway.try_wait().is_none(), "the gateway exited");
}
