//! Issue 13, "a hostile world": names the store cannot carry exactly are refused by
//! `check-config`, everything else comes back from real line-protocol parsers exactly.

use std::time::Duration;

use estate_gateway::encode::line::{series_key, Field, FieldWriter};

use crate::support::{InfluxDb1, VictoriaMetrics};

/// Names `check-config` accepts that line protocol must escape (space, comma, equals sign,
/// quotes, `#`, CJK, a Unicode line separator, emoji, leading and trailing spaces).
const NAMES: &[&str] = &[
    "a,b=c d\"e",
    "华府 1号楼",
    "#x",
    " lead",
    "trail ",
    "=eq",
    "q\"uote'",
    "ls\u{2028}sep",
    "🚒 pump",
    "E,",
];

/// The lines our encoder writes for one point per name (as device id and building).
fn lines() -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = FieldWriter::default();
    for (i, name) in NAMES.iter().enumerate() {
        assert_eq!(
            estate_gateway::encode::line::tag_problem(name),
            None,
            "{name:?}"
        );
        let key = series_key(
            "telemetry",
            &[
                ("building", name),
                ("category", "elevator"),
                ("device", name),
                ("site", "华府"),
            ],
        );
        let note = format!("{name} \\ \"quoted\"");
        w.line(
            &mut out,
            &key,
            [("v", Field::F64(i as f64)), ("note", Field::Str(&note))],
            1_700_000_000_000 + i as i64,
        );
    }
    out
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn escaped_names_come_back_exactly_from_victoria_metrics_and_influxdb() {
    let body = lines();

    let vm = VictoriaMetrics::start();
    let r = crate::support::http_post(
        &format!("{}/api/v2/write?precision=ms", vm.url()),
        &[],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let series = vm.wait_for_samples("telemetry_v", NAMES.len(), Duration::from_secs(10));
    let mut devices: Vec<String> = series
        .iter()
        .filter_map(|s| s.label("device").map(str::to_owned))
        .collect();
    devices.sort();
    assert_eq!(devices, sorted(NAMES));
    for s in &series {
        assert_eq!(s.label("device"), s.label("building"));
    }

    let influx = InfluxDb1::start();
    let (status, text) = influx.write(&body);
    assert_eq!(status, 204, "InfluxDB refused our lines: {text}");
    assert_eq!(influx.tag_values("telemetry", "device"), sorted(NAMES));
    assert_eq!(influx.tag_values("telemetry", "building"), sorted(NAMES));
    let mut notes: Vec<String> = NAMES.iter().map(|n| format!("{n} \\ \"quoted\"")).collect();
    notes.sort();
    assert_eq!(influx.string_values("telemetry", "note"), notes);
}
