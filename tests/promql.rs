//! The PromQL/MetricsQL dashboards (`dashboards/promql/`) against a real VictoriaMetrics that
//! real gateways wrote to.
//!
//! - Statically: each file is a well-formed provisioned Grafana dashboard (a uid unique across
//!   both query languages, `id` null, Chinese titles, English descriptions, gridPos inside the
//!   grid without overlaps, the `estate-victoria` Prometheus data source), and every metric a
//!   query names is `{measurement}_{field}` of `estate-gateway schema` (telemetry: a signal of a
//!   built-in profile), every label it matches a tag of that measurement.
//! - Live: real mosquitto, real VictoriaMetrics, two real gateways (sites 东苑 and 西苑) fed
//!   readings stamped over the last twenty minutes — an entrapment acknowledged in time and
//!   attended, a fire panel fault acknowledged late, a fire pump left in manual (still open),
//!   a cold room — and `report --from … --to … --publish` for a closed period. Then every panel
//!   query and template variable of every PromQL dashboard runs against VictoriaMetrics with
//!   Grafana's variables substituted, at the time of a KPI point written after everything
//!   settled: each must succeed, and each must return data unless it is listed as allowed to be
//!   empty. Values are checked against what `estate-gateway report --format json` says for the
//!   same site and period (month-to-date intactness overall and per category, response
//!   timeliness per category, overall response and repair timeliness, heating compliance and
//!   coverage per building; the published period's total, KPI actuals and scores, and the league
//!   order), against the readings the test sent (indoor temperature count, min and max) and the
//!   alarm events the gateways published on MQTT (active alarms by severity).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::fixture::now_ms;
use crate::support::http::encode_query_value;
use crate::support::{
    http_get, run_cli, wait_until, GatewayProcess, Mosquitto, MqttClient, VictoriaMetrics,
};

/// The provisioned data source (`dashboards/promql/provisioning/datasources/victoria.yaml`).
const DATASOURCE_UID: &str = "estate-victoria";
const FILES: [&str; 4] = [
    "assessment.json",
    "control-room.json",
    "fleet.json",
    "heating-season.json",
];
const SITES: [&str; 2] = ["东苑", "西苑"];
const TZ: &str = "Asia/Shanghai";
const WAIT: Duration = Duration::from_secs(30);

fn promql_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/promql")
}

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(promql_dir().join(file))
        .unwrap_or_else(|e| panic!("dashboards/promql/{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("dashboards/promql/{file}: {e}"))
}

/// Every panel, rows' nested panels included, with whether it sits at the top level.
fn all_panels(d: &Value) -> Vec<(&Value, bool)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push((p, true));
        for n in p["panels"].as_array().into_iter().flatten() {
            out.push((n, false));
        }
    }
    out
}

/// The query of a template variable (`definition`, as Grafana shows it).
fn variable_query(v: &Value) -> &str {
    v["definition"]
        .as_str()
        .or_else(|| v.pointer("/query/query").and_then(Value::as_str))
        .unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Static checks.

/// measurement → (tags, fields), telemetry's fields being the built-in profiles' signals.
fn schema() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let cfg = estate_gateway::config::load_with_env(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/gateway.toml"),
        HashMap::new(),
    )
    .unwrap_or_else(|e| panic!("configs/gateway.toml does not load: {e}"));
    let signals: BTreeSet<String> = cfg
        .profiles
        .values()
        .flat_map(|p| p.signals.iter().map(|s| s.name.clone()))
        .collect();
    estate_gateway::schema::measurements()
        .into_iter()
        .map(|m| {
            let mut fields: BTreeSet<String> = m
                .fields
                .iter()
                .filter(|f| !f.starts_with('<'))
                .cloned()
                .collect();
            if m.name == "telemetry" {
                fields.extend(signals.iter().cloned());
            }
            let tags = m.tags.iter().map(|t| (*t).to_owned()).collect();
            (m.name.to_owned(), (tags, fields))
        })
        .collect()
}

/// PromQL keywords and functions the dashboards may use (anything else followed by `(` or
/// standing alone is taken for a metric name).
const PROMQL_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "sort",
    "sort_desc",
    "time",
    "vector",
    "clamp_min",
    "last_over_time",
    "tlast_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "label_values",
];

/// The metric names and label matchers of one PromQL expression: (metric, labels matched in
/// its selector), plus the labels named in `by (…)` clauses.
fn promql_refs(expr: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let b = expr.as_bytes();
    let mut i = 0;
    let mut metrics = Vec::new();
    let mut by_labels = Vec::new();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // The labels (and a `__name__` list) inside `{…}` starting at `open`; returns the end.
    let selector = |open: usize| -> (Vec<String>, Vec<String>, usize) {
        let end = closing_brace(expr, open);
        let (mut labels, mut names) = (Vec::new(), Vec::new());
        for m in split_matchers(&expr[open + 1..end]) {
            let name: String = m
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "__name__" {
                let value = m.split('"').nth(1).unwrap_or("");
                names.extend(value.split('|').map(str::to_owned));
            } else if !name.is_empty() {
                labels.push(name);
            }
        }
        (labels, names, end + 1)
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            i += expr[i + 1..].find('"').map_or(b.len(), |e| e + 2);
            continue;
        }
        if c == b'[' {
            i += expr[i..].find(']').map_or(b.len(), |e| e + 1);
            continue;
        }
        if c == b'{' {
            // A selector without a metric name: `{__name__=~"a|b", …}`.
            let (labels, names, end) = selector(i);
            metrics.extend(names.into_iter().map(|n| (n, labels.clone())));
            i = end;
            continue;
        }
        if ident(c) && !c.is_ascii_digit() {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let rest = expr[i..].trim_start();
            if word == "by" || word == "without" {
                let open = i + expr[i..].find('(').unwrap_or(0);
                let close = open + expr[open..].find(')').unwrap_or(0);
                by_labels.extend(
                    expr[open + 1..close]
                        .split(',')
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty()),
                );
                i = close + 1;
            } else if rest.starts_with('{') {
                let open = i + expr[i..].find('{').unwrap_or(0);
                let (labels, _, end) = selector(open);
                metrics.push((word.to_owned(), labels));
                i = end;
            } else if !rest.starts_with('(') && !PROMQL_WORDS.contains(&word) {
                metrics.push((word.to_owned(), Vec::new()));
            }
            continue;
        }
        i += 1;
    }
    (metrics, by_labels)
}

/// The index of the `}` closing the `{` at `open` (braces inside quoted regexes skipped).
fn closing_brace(expr: &str, open: usize) -> usize {
    let mut quoted = false;
    for (i, c) in expr[open..].char_indices() {
        match c {
            '"' => quoted = !quoted,
            '}' if !quoted => return open + i,
            _ => {}
        }
    }
    expr.len()
}

/// `a="x",b=~"y|z"` → the matchers, commas inside quotes kept.
fn split_matchers(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// Checks an expression's metrics and labels against the schema.
fn check_expr(
    at: &str,
    expr: &str,
    schema: &BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
    errs: &mut Vec<String>,
) {
    // A variable's `label_values(selector, label)`: the label counts as a `by` label.
    let (expr, label) = match expr
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|r| r.rsplit_once(','))
    {
        Some((selector, label)) => (selector, Some(label.trim().to_owned())),
        None => (expr, None),
    };
    let (metrics, mut by_labels) = promql_refs(expr);
    by_labels.extend(label);
    if metrics.is_empty() {
        errs.push(format!("{at}: no metric in `{expr}`"));
    }
    let mut tags_used: BTreeSet<&String> = BTreeSet::new();
    for (metric, labels) in &metrics {
        // The measurement is the longest schema name that prefixes `metric` with `_`.
        let found = schema
            .iter()
            .filter(|(m, _)| metric.starts_with(&format!("{m}_")))
            .max_by_key(|(m, _)| m.len());
        let Some((m, (tags, fields))) = found else {
            errs.push(format!(
                "{at}: `{metric}` is no measurement_field of the schema"
            ));
            continue;
        };
        let field = &metric[m.len() + 1..];
        if !fields.contains(field) {
            errs.push(format!(
                "{at}: unknown field `{field}` of measurement {m} (metric `{metric}`)"
            ));
        }
        for l in labels {
            if !tags.contains(l) {
                errs.push(format!(
                    "{at}: `{metric}` has no label `{l}` (tags of {m}: {tags:?})"
                ));
            }
        }
        tags_used.extend(tags.iter());
    }
    for l in &by_labels {
        if !tags_used.contains(l) {
            errs.push(format!("{at}: `by ({l})` is a tag of none of its metrics"));
        }
    }
}

#[test]
fn promql_dashboards_are_well_formed_and_match_the_store_schema() {
    let schema = schema();
    let mut errs = Vec::new();
    // Uids are unique across both query languages (one Grafana may load both folders).
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    let flux_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    for e in std::fs::read_dir(&flux_dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let d: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            uids.insert(
                d["uid"].as_str().unwrap_or("").to_owned(),
                p.file_name().unwrap().to_string_lossy().into_owned(),
            );
        }
    }
    let has_cjk = |s: &str| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    for file in FILES {
        let d = load(file);
        let at = format!("promql/{file}");
        match d["uid"].as_str() {
            Some(u) if !u.is_empty() => {
                if let Some(other) = uids.insert(u.to_owned(), at.clone()) {
                    errs.push(format!("{at}: uid `{u}` is also the uid of {other}"));
                }
            }
            _ => errs.push(format!("{at}: no uid")),
        }
        if !d["id"].is_null() {
            errs.push(format!(
                "{at}: `id` must be null in a provisioned dashboard"
            ));
        }
        if !d["title"].as_str().is_some_and(has_cjk) {
            errs.push(format!("{at}: the title is not Chinese"));
        }
        let vars = d
            .pointer("/templating/list")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !vars.iter().any(|v| v["name"] == "site") {
            errs.push(format!("{at}: no `site` variable"));
        }
        for v in &vars {
            let vat = format!("{at} › variable `{}`", v["name"].as_str().unwrap_or("?"));
            if v["datasource"]["uid"] != DATASOURCE_UID {
                errs.push(format!("{vat}: datasource uid is not {DATASOURCE_UID}"));
            }
            check_expr(&vat, variable_query(v), &schema, &mut errs);
        }
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
        for (p, top) in all_panels(&d) {
            let title = p["title"].as_str().unwrap_or("");
            let pat = format!("{at} › panel \"{title}\"");
            if !has_cjk(title) {
                errs.push(format!("{pat}: the title is not Chinese"));
            }
            match p["id"].as_u64() {
                Some(id) if !ids.insert(id) => errs.push(format!("{pat}: id {id} is used twice")),
                None => errs.push(format!("{pat}: no numeric id")),
                _ => {}
            }
            let g = |k: &str| p["gridPos"][k].as_u64();
            match (g("x"), g("y"), g("w"), g("h")) {
                (Some(x), Some(y), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {
                    if top {
                        for (other, [ox, oy, ow, oh]) in &boxes {
                            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                                errs.push(format!("{pat}: gridPos overlaps panel \"{other}\""));
                            }
                        }
                        boxes.push((title.to_owned(), [x, y, w, h]));
                    }
                }
                _ => errs.push(format!(
                    "{pat}: gridPos needs x, y, w > 0, h > 0, x + w ≤ 24"
                )),
            }
            if p["type"] == "row" {
                continue;
            }
            let english = p["description"]
                .as_str()
                .is_some_and(|s| s.chars().filter(char::is_ascii_alphabetic).count() >= 10);
            if !english {
                errs.push(format!("{pat}: no English description"));
            }
            let ds_ok = |v: &Value| {
                v["datasource"]["uid"] == DATASOURCE_UID && v["datasource"]["type"] == "prometheus"
            };
            if !ds_ok(p) {
                errs.push(format!(
                    "{pat}: datasource is {}, not prometheus {DATASOURCE_UID}",
                    p["datasource"]
                ));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                errs.push(format!("{pat}: no targets"));
            }
            for t in &targets {
                let tat = format!("{pat} › target {}", t["refId"].as_str().unwrap_or("?"));
                if !ds_ok(t) {
                    errs.push(format!(
                        "{tat}: datasource is not prometheus {DATASOURCE_UID}"
                    ));
                }
                match t["expr"].as_str() {
                    Some(e) => check_expr(&tat, e, &schema, &mut errs),
                    None => errs.push(format!("{tat}: no expr")),
                }
            }
        }
    }
    assert!(
        errs.is_empty(),
        "{} problem(s) in dashboards/promql/ (see `estate-gateway schema`):\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

#[test]
fn promql_schema_check_names_unknown_metrics_and_labels() {
    let schema = schema();
    let mut errs = Vec::new();
    check_expr(
        "x",
        r#"sum by (scope_id) (last_over_time(intactness_rate_mnth{site="$site",scop="site"}[1h]))"#,
        &schema,
        &mut errs,
    );
    check_expr("y", r#"heatng_compliance{site="a"}"#, &schema, &mut errs);
    check_expr(
        "z",
        r#"{__name__=~"telemetry_indoor_temp_c|telemetry_nope",site="$site"}"#,
        &schema,
        &mut errs,
    );
    assert_eq!(
        errs,
        [
            "x: unknown field `rate_mnth` of measurement intactness (metric `intactness_rate_mnth`)",
            "x: `intactness_rate_mnth` has no label `scop` (tags of intactness: {\"scope\", \"scope_id\", \"site\"})",
            "y: `heatng_compliance` is no measurement_field of the schema",
            "z: unknown field `nope` of measurement telemetry (metric `telemetry_nope`)",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The live test: two gateways, VictoriaMetrics, every panel query.

/// A test device: id, category, building.
const DEVICES: [(&str, &str, &str); 5] = [
    ("E-1-1", "elevator", "1号楼"),
    ("F-1", "fire_equipment", "泵房"),
    ("HL-1", "heating_loop", "换热站"),
    ("T-0101", "indoor_sensor", "1号楼"),
    ("T-0201", "indoor_sensor", "2号楼"),
];
/// Seconds between two readings of a device; the readings cover [t0, t0 + SPAN_MIN minutes].
const EVERY_S: i64 = 30;
const SPAN_MIN: i64 = 15;

/// `ms` as RFC 3339 in the sites' time zone, with milliseconds when it has any.
fn rfc3339(ms: i64) -> String {
    let tz = jiff::tz::TimeZone::get(TZ).unwrap();
    let z = jiff::Timestamp::from_millisecond(ms).unwrap().to_zoned(tz);
    if ms % 1000 == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
    }
}

/// Local midnight of the first of the month of `ms`.
fn month_start(ms: i64) -> i64 {
    let tz = jiff::tz::TimeZone::get(TZ).unwrap();
    let date = jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .to_zoned(tz.clone())
        .date()
        .first_of_month();
    date.to_zoned(tz).unwrap().timestamp().as_millisecond()
}

fn gateway_config(
    dir: &Path,
    i: usize,
    site: &str,
    mqtt: &Mosquitto,
    vm: &VictoriaMetrics,
    t0: i64,
) -> PathBuf {
    let devices: String = DEVICES
        .iter()
        .map(|(id, category, building)| {
            format!(
                "[[devices]]\nid = \"{id}\"\nname = \"{id}\"\nbuilding = \"{building}\"\ncategory = \"{category}\"\ninterval = \"{EVERY_S}s\"\nheartbeat_timeout = \"1h\"\nmonitored_since = \"{since}\"\n\n",
                since = rfc3339(t0)
            )
        })
        .collect();
    let text = format!(
        r#"
[gateway]
site = "{site}"
host = "h{i}"
data_dir = {data:?}
stats_interval = "2s"

[mqtt]
url = "{mqtt}"
client_id = "gw-promql-{i}"
reconnect_min = "100ms"
reconnect_max = "1s"

[store]
url = "{store}"
org = "estate"
bucket = "estate"
batch_interval = "200ms"
retry_min = "100ms"
retry_max = "1s"

[assessment]
kpi_interval = "2s"

# In season all year, so the heating points are written whatever the date.
[heating]
season_start = "01-01"
season_end = "12-31"
timezone = "{TZ}"

{devices}"#,
        data = dir.join(format!("data{i}")).display().to_string(),
        mqtt = mqtt.url(),
        store = vm.url(),
    );
    let path = dir.join(format!("gw{i}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// One fact of the scenario, in time order.
enum Fact {
    Reading {
        site: &'static str,
        device: &'static str,
        category: &'static str,
        payload: Value,
    },
    /// An operator acknowledges the alarm of this device and rule (found on MQTT).
    Ack {
        site: &'static str,
        device: &'static str,
        rule: &'static str,
    },
}

/// The scenario: per site and device, a reading every 30 s over [t0, t0 + 15 min]; 东苑 has an
/// entrapment (acknowledged after 60 s, attended in inspection mode, freed after 3 min), a fire
/// panel fault acknowledged after 5 min and cleared after 6, a fire pump in manual from minute
/// 12 to the end (still open), and a cold room in 2号楼 for the first 5 minutes; 西苑 has one
/// elevator fault acknowledged after 30 s and cleared after 2 min.
fn scenario(t0: i64) -> Vec<(i64, Fact)> {
    let mut facts = Vec::new();
    let min = |m: f64| t0 + (m * 60_000.0) as i64;
    for (s, site) in SITES.into_iter().enumerate() {
        let east = s == 0;
        for k in 0..=(SPAN_MIN * 60 / EVERY_S) {
            let ts = t0 + k * EVERY_S * 1000;
            let off = (ts - t0) as f64 / 60_000.0;
            let within = |a: f64, b: f64| (a..b).contains(&off);
            for (device, category, _) in DEVICES {
                let payload = match category {
                    "elevator" => {
                        let trapped = east && within(2.0, 5.0);
                        let fault = if !east && within(2.0, 4.0) { 5 } else { 0 };
                        let mode = if east && within(4.0, 5.0) {
                            "inspection"
                        } else {
                            "normal"
                        };
                        json!({"mode": mode, "fault_code": fault, "entrapment": trapped, "floor": 1 + k % 6,
                               "door_fault": false, "running": !trapped})
                    }
                    "fire_equipment" => json!({
                        "fire_alarm": false,
                        "fault_count": i64::from(east && within(3.0, 9.0)),
                        "pump_auto": !(east && off >= 12.0),
                        "pressure_mpa": 0.45,
                        "power": "main"}),
                    "heating_loop" => json!({
                        "supply_temp_c": 55.0 + (k % 4) as f64 * 0.5, "return_temp_c": 42.0 + (k % 3) as f64 * 0.5,
                        "pressure_mpa": 0.4, "flow_m3h": 12.0, "pump_running": true, "fault_code": 0,
                        "supply_setpoint_c": 55.0}),
                    _ => {
                        let t = if device == "T-0201" {
                            if east && off < 5.0 {
                                17.0
                            } else {
                                19.0 + (k % 2) as f64 * 0.5
                            }
                        } else {
                            20.5 + (k % 3) as f64 * 0.25
                        };
                        json!({"indoor_temp_c": t, "humidity_pct": 40.0, "battery_pct": 90.0})
                    }
                };
                let mut payload = payload;
                payload["ts"] = ts.into();
                facts.push((
                    ts,
                    Fact::Reading {
                        site,
                        device,
                        category,
                        payload,
                    },
                ));
            }
        }
        if east {
            facts.push((
                min(3.0),
                Fact::Ack {
                    site,
                    device: "E-1-1",
                    rule: "entrapment",
                },
            ));
            facts.push((
                min(8.0),
                Fact::Ack {
                    site,
                    device: "F-1",
                    rule: "fault",
                },
            ));
        } else {
            facts.push((
                min(2.5),
                Fact::Ack {
                    site,
                    device: "E-1-1",
                    rule: "fault",
                },
            ));
        }
    }
    // Acknowledgments after the readings of the same instant.
    facts.sort_by_key(|(ts, f)| (*ts, matches!(f, Fact::Ack { .. })));
    facts
}

/// The alarm events the gateways published: (site, payload).
fn alarm_events(watcher: &MqttClient) -> Vec<(String, Value)> {
    watcher
        .messages()
        .iter()
        .filter_map(|m| {
            let site = m
                .topic
                .strip_prefix("estate/")?
                .split('/')
                .next()?
                .to_owned();
            m.topic.contains("/alarms/").then(|| (site, m.json()))
        })
        .filter(|(_, v)| v["type"] == "alarm")
        .collect()
}

fn find_alarm(
    watcher: &MqttClient,
    site: &str,
    device: &str,
    rule: &str,
    event: &str,
) -> Option<Value> {
    alarm_events(watcher)
        .into_iter()
        .find(|(s, v)| {
            s == site && v["device"] == device && v["rule"] == rule && v["event"] == event
        })
        .map(|(_, v)| v)
}

/// The alarms active at `at_ms` (id → severity), from the events on MQTT: raised at or before,
/// not cleared at or before.
fn active_ids(watcher: &MqttClient, site: &str, at_ms: i64) -> BTreeMap<String, String> {
    let mut last: BTreeMap<String, (i64, String, String)> = BTreeMap::new();
    for (s, v) in alarm_events(watcher) {
        let ts = v["ts"].as_i64().unwrap_or(i64::MAX);
        let event = v["event"].as_str().unwrap_or("").to_owned();
        if s != site || ts > at_ms || !["raised", "cleared"].contains(&event.as_str()) {
            continue;
        }
        let id = v["id"].as_str().unwrap().to_owned();
        let severity = v["severity"].as_str().unwrap().to_owned();
        let e = last
            .entry(id)
            .or_insert((ts, event.clone(), severity.clone()));
        if ts >= e.0 {
            *e = (ts, event, severity);
        }
    }
    last.into_iter()
        .filter(|(_, (_, event, _))| event == "raised")
        .map(|(id, (_, _, severity))| (id, severity))
        .collect()
}

/// Active alarms at `at_ms` by severity (see [`active_ids`]).
fn active_from_events(watcher: &MqttClient, site: &str, at_ms: i64) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for severity in active_ids(watcher, site, at_ms).into_values() {
        *out.entry(severity).or_default() += 1;
    }
    out
}

/// Whether an alarm active at `at_ms` had been acknowledged by then.
fn acknowledged_active(watcher: &MqttClient, site: &str, at_ms: i64) -> bool {
    let active = active_ids(watcher, site, at_ms);
    alarm_events(watcher).iter().any(|(s, v)| {
        s == site
            && v["event"] == "acknowledged"
            && v["ts"].as_i64().is_some_and(|ts| ts <= at_ms)
            && v["id"].as_str().is_some_and(|id| active.contains_key(id))
    })
}

/// One series of an instant query: its labels and value.
#[derive(Debug, Clone)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", String::as_str)
    }
}

/// GET on VictoriaMetrics' Prometheus API; panics unless it answers 200 with status success.
fn vm_get(vm: &VictoriaMetrics, path: &str, params: &[(&str, String)]) -> Value {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
        .collect();
    // nocache: the test backfills; Grafana's queries would see the same once VictoriaMetrics
    // has reset its cache for the old samples (it does on ingesting them).
    let url = format!("{}{path}?{}&nocache=1", vm.url(), query.join("&"));
    let r = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("GET {path} {params:?}: not JSON ({e}): {}", r.text()));
    assert!(
        r.status == 200 && v["status"] == "success",
        "{path} {params:?} failed ({}): {}",
        r.status,
        r.text()
    );
    v
}

fn instant(vm: &VictoriaMetrics, expr: &str, at_s: f64) -> Vec<Sample> {
    let v = vm_get(
        vm,
        "/api/v1/query",
        &[("query", expr.to_owned()), ("time", format!("{at_s:.3}"))],
    );
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    if v["data"]["resultType"] == "scalar" {
        let x = result
            .get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        return vec![Sample {
            labels: BTreeMap::new(),
            value: x,
        }];
    }
    result
        .iter()
        .map(|r| Sample {
            labels: r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect(),
            value: r["value"][1].as_str().unwrap().parse().unwrap(),
        })
        .collect()
}

/// Grafana's relative time (`now`, `now-24h`, `now+3M`) as an offset in seconds.
fn relative_s(spec: &str) -> i64 {
    let rest = spec
        .strip_prefix("now")
        .unwrap_or_else(|| panic!("time {spec:?}"));
    if rest.is_empty() {
        return 0;
    }
    let (sign, n) = rest.split_at(1);
    let (num, unit) = n.split_at(n.len() - 1);
    let num: i64 = num.parse().unwrap_or_else(|_| panic!("time {spec:?}"));
    let unit_s = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => panic!("time {spec:?}"),
    };
    if sign == "-" {
        -num * unit_s
    } else {
        num * unit_s
    }
}

/// What one dashboard's queries returned: (panel title, refId) → series.
type Results = BTreeMap<(String, String), Vec<Sample>>;

/// Runs every template variable and panel query of `file` as Grafana would with the dashboard's
/// default time range ending at `now_s`, the variables set to `vars` (a multi-value variable not
/// given is "All": `.*`). Instant targets go to /api/v1/query at the range's end, the others to
/// /api/v1/query_range over the range. Checks that each succeeds and that the variable queries
/// offer `vars`' values; returns the instant results and the number of series of range ones.
fn run_dashboard(
    vm: &VictoriaMetrics,
    file: &str,
    now_s: f64,
    vars: &[(&str, &str)],
) -> (Results, BTreeMap<(String, String), usize>) {
    let d = load(file);
    let from = relative_s(d["time"]["from"].as_str().unwrap());
    let to = relative_s(d["time"]["to"].as_str().unwrap());
    let range_s = to - from;
    // $__interval: the range over about 1000 points, not below the data source's 60 s.
    let interval_s = (range_s / 1000).max(60);
    // The range starts a whole number of steps before its end, so that the last step of a range
    // query is the end itself (the KPI points of this short test lie in its last seconds).
    let end = now_s + to as f64;
    let start = end - ((range_s + interval_s - 1) / interval_s * interval_s) as f64;
    let substitute = |q: &str| {
        let mut q = q
            .replace("$__range", &format!("{range_s}s"))
            .replace("$__interval", &format!("{interval_s}s"));
        for v in d["templating"]["list"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap();
            let value = vars
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(".*".to_owned(), |(_, x)| (*x).to_owned());
            q = q.replace(&format!("${name}"), &value);
        }
        q
    };
    // Template variables: `label_values(selector, label)` through the label values API.
    for v in d["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let q = variable_query(v);
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{file} variable {name}: {q}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let got = vm_get(
            vm,
            &format!("/api/v1/label/{}/values", label.trim()),
            &[
                ("match[]", substitute(selector.trim())),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
            ],
        );
        let values: Vec<&str> = got["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if let Some((_, want)) = vars.iter().find(|(n, _)| *n == name) {
            assert!(
                values.contains(want),
                "{file} variable `{name}` ({q}) offers {values:?}, not {want:?}"
            );
        }
        assert!(
            !values.is_empty(),
            "{file} variable `{name}` ({q}) offers nothing"
        );
    }
    let mut results = Results::new();
    let mut ranges = BTreeMap::new();
    for (p, _) in all_panels(&d) {
        let title = p["title"].as_str().unwrap().to_owned();
        for t in p["targets"].as_array().into_iter().flatten() {
            let ref_id = t["refId"].as_str().unwrap().to_owned();
            let expr = substitute(t["expr"].as_str().unwrap());
            assert!(
                !expr.contains('$'),
                "{file} › {title} › {ref_id}: unsubstituted variable in {expr}"
            );
            if t["instant"] == true {
                results.insert((title.clone(), ref_id), instant(vm, &expr, end));
            } else {
                let v = vm_get(
                    vm,
                    "/api/v1/query_range",
                    &[
                        ("query", expr),
                        ("start", format!("{start:.3}")),
                        ("end", format!("{end:.3}")),
                        ("step", format!("{interval_s}s")),
                    ],
                );
                let n = v["data"]["result"].as_array().map_or(0, Vec::len);
                ranges.insert((title.clone(), ref_id), n);
            }
        }
    }
    (results, ranges)
}

fn report_json(config: &Path, args: &[&str]) -> Value {
    let mut all = vec!["report", "-c", config.to_str().unwrap(), "--format", "json"];
    all.extend_from_slice(args);
    let out = run_cli(&all);
    assert!(
        out.status.success(),
        "report {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Asserts that `series` holds exactly `want` (label value of `key` → value; a `None` value:
/// no series for it).
fn assert_by_label(at: &str, series: &[Sample], key: &str, want: &BTreeMap<String, Option<f64>>) {
    let got: BTreeMap<String, f64> = series
        .iter()
        .map(|s| (s.label(key).to_owned(), s.value))
        .collect();
    assert_eq!(
        got.len(),
        series.len(),
        "{at}: several series per {key}: {series:?}"
    );
    for (k, w) in want {
        match (w, got.get(k)) {
            (Some(w), Some(g)) => {
                assert!(close(*w, *g), "{at}: {key}={k} is {g}, the report says {w}")
            }
            (None, None) => {}
            (w, g) => panic!("{at}: {key}={k} is {g:?}, the report says {w:?}"),
        }
    }
    for k in got.keys() {
        assert!(
            want.contains_key(k),
            "{at}: {key}={k} is not in the report: {want:?}"
        );
    }
}

fn single(at: &str, series: &[Sample]) -> f64 {
    assert_eq!(series.len(), 1, "{at}: expected one series: {series:?}");
    series[0].value
}

/// `report`'s `{name: x}` map as name → Option<f64>, `field` of each entry (or the entry).
fn report_map(v: &Value, field: Option<&str>) -> BTreeMap<String, Option<f64>> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| (k.clone(), field.map_or(x, |f| &x[f]).as_f64()))
        .collect()
}

/// What a site's report and events say, for deciding which panels must show data.
struct Expect {
    active_alarms: bool,
    acknowledged_active: bool,
    response: bool,
    response_times: bool,
    arrival: bool,
    repair: bool,
}

/// Whether a panel target must return data (all must succeed; these may be empty when the
/// figures they show do not exist).
fn required(file: &str, title: &str, ref_id: &str, e: &Expect) -> bool {
    match (file, title) {
        // No monthly or quarterly scorecard in this test (periods are custom).
        ("assessment.json", "月度总分" | "季度总分" | "月度指标实际值" | "季度指标实际值") => {
            false
        }
        // The mean indoor temperature is the mean of hourly means: the test's quarter of an
        // hour closes no hour.
        ("heating-season.json", "本月平均室温") => ref_id != "A",
        (_, "活动告警数" | "活动告警（全部小区）") => e.active_alarms,
        (_, "活动告警列表") => e.active_alarms && (ref_id != "C" || e.acknowledged_active),
        // Devices by state: "not intact" exists only when some device is not intact.
        (_, "各类设备当前状态") => ref_id == "A",
        (_, "响应及时率（本月）") => e.response,
        (_, "响应时间 p50/p90（本月）") => {
            if ["A", "E"].contains(&ref_id) {
                e.response
            } else {
                e.response_times
            }
        }
        (_, "响应时间趋势 p50/p90") => e.response_times,
        (_, "到场及时率（本月）") => e.arrival,
        (_, "修复及时率（本月）") => e.repair,
        (_, "到场/修复时间（本月）") => e.arrival || e.repair,
        (_, "到场/修复及时率趋势") => {
            if ref_id == "A" {
                e.arrival
            } else {
                e.repair
            }
        }
        ("fleet.json", "各小区概况") => match ref_id {
            "C" => e.response,
            "D" => e.repair,
            "E" => e.active_alarms,
            _ => true,
        },
        _ => true,
    }
}

fn check_required(
    file: &str,
    results: &Results,
    ranges: &BTreeMap<(String, String), usize>,
    e: &Expect,
    site: &str,
) {
    let mut empty = Vec::new();
    for ((title, ref_id), r) in results {
        if r.is_empty() && required(file, title, ref_id, e) {
            empty.push(format!("{title} › {ref_id} (instant)"));
        }
    }
    for ((title, ref_id), n) in ranges {
        if *n == 0 && required(file, title, ref_id, e) {
            empty.push(format!("{title} › {ref_id} (range)"));
        }
    }
    assert!(
        empty.is_empty(),
        "{file} for {site}: no data from\n  {}",
        empty.join("\n  ")
    );
}

#[test]
fn promql_dashboards_answer_from_victoria_metrics_as_the_report_says() {
    let dir = tempfile::tempdir().unwrap();
    let mqtt = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let watcher = MqttClient::connect(mqtt.port());
    watcher.subscribe("estate/+/alarms/#", 1);

    // Readings stamped over the last twenty minutes, on whole minutes.
    let t0 = (now_ms() - 20 * 60_000) / 60_000 * 60_000;
    let t_end = t0 + SPAN_MIN * 60_000;
    let configs: Vec<PathBuf> = SITES
        .iter()
        .enumerate()
        .map(|(i, site)| gateway_config(dir.path(), i, site, &mqtt, &vm, t0))
        .collect();
    let mut gateways: Vec<GatewayProcess> = configs
        .iter()
        .map(|c| {
            let mut g = GatewayProcess::start(&["run", "-c", c.to_str().unwrap()]);
            assert!(
                g.wait_for_log("Subscribed to telemetry and status topics.", WAIT),
                "gateway did not subscribe:\n{}",
                g.log()
            );
            g
        })
        .collect();

    let device = MqttClient::connect(mqtt.port());
    let mut indoor: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for (ts, fact) in scenario(t0) {
        match fact {
            Fact::Reading {
                site,
                device: id,
                category,
                payload,
            } => {
                if category == "indoor_sensor" {
                    let building = DEVICES.iter().find(|d| d.0 == id).unwrap().2;
                    indoor
                        .entry((site, building))
                        .or_default()
                        .push(payload["indoor_temp_c"].as_f64().unwrap());
                }
                device.publish(
                    &format!("estate/{site}/{category}/{id}/telemetry"),
                    payload.to_string(),
                    1,
                );
            }
            Fact::Ack {
                site,
                device: id,
                rule,
            } => {
                let mut raised = None;
                wait_until(WAIT, Duration::from_millis(20), || {
                    raised = find_alarm(&watcher, site, id, rule, "raised");
                    raised.is_some()
                });
                let raised =
                    raised.unwrap_or_else(|| panic!("{site} {id}: no `{rule}` alarm raised"));
                let body = json!({"id": raised["id"], "by": "值班员", "ts": ts});
                device.publish(&format!("estate/{site}/alarms/ack"), body.to_string(), 1);
            }
        }
    }
    // Everything applied: the alarms cleared and the pump's delayed alarm raised, every
    // indoor reading stored.
    for (site, id, rule, event) in [
        ("东苑", "E-1-1", "entrapment", "cleared"),
        ("东苑", "F-1", "fault", "cleared"),
        ("东苑", "F-1", "pump_manual", "raised"),
        ("西苑", "E-1-1", "fault", "cleared"),
        ("东苑", "E-1-1", "entrapment", "acknowledged"),
        ("东苑", "F-1", "fault", "acknowledged"),
        ("西苑", "E-1-1", "fault", "acknowledged"),
    ] {
        assert!(
            wait_until(WAIT, Duration::from_millis(50), || find_alarm(
                &watcher, site, id, rule, event
            )
            .is_some()),
            "{site} {id} {rule}: no `{event}` event; events: {:#?}",
            alarm_events(&watcher)
        );
    }
    let sent: usize = indoor.values().map(Vec::len).sum();
    let stored = vm.wait_for_samples("telemetry_indoor_temp_c", sent, WAIT);
    assert_eq!(
        crate::support::total_samples(&stored),
        sent,
        "indoor readings stored"
    );

    // Then a KPI computation after everything settled (max_lateness is 2 s), and stop: the
    // last KPI point of each site is the one the dashboards show.
    std::thread::sleep(Duration::from_secs(3));
    let settled = now_ms();
    for site in SITES {
        let q =
            format!(r#"tlast_over_time(intactness_rate_month{{site="{site}",scope="site"}}[1h])"#);
        let fresh = wait_until(WAIT, Duration::from_millis(200), || {
            vm.flush();
            instant(&vm, &q, now_ms() as f64 / 1000.0)
                .first()
                .is_some_and(|s| s.value * 1000.0 > settled as f64)
        });
        assert!(fresh, "no KPI point of {site} after {settled}");
    }
    for g in &mut gateways {
        assert!(g.terminate().success(), "{}", g.log());
    }
    vm.flush();
    let kpi_at: BTreeMap<&str, i64> = SITES
        .iter()
        .map(|site| {
            let q = format!(
                r#"tlast_over_time(intactness_rate_month{{site="{site}",scope="site"}}[1h])"#
            );
            let s = instant(&vm, &q, now_ms() as f64 / 1000.0);
            (*site, (single(&q, &s) * 1000.0).round() as i64)
        })
        .collect();

    // The reports: month to date up to each site's last KPI point, and the closed period
    // [t0, t_end) published as assessment points.
    let (from, to) = (rfc3339(t0), rfc3339(t_end));
    let period = format!("{from}/{to}");
    let mut month = BTreeMap::new();
    let mut scored = BTreeMap::new();
    for (site, config) in SITES.iter().zip(&configs) {
        let at = kpi_at[site];
        month.insert(
            *site,
            report_json(
                config,
                &["--from", &rfc3339(month_start(at)), "--to", &rfc3339(at)],
            ),
        );
        let card = report_json(config, &["--from", &from, "--to", &to, "--publish"]);
        assert_eq!(card["score"]["period"]["label"], period.as_str());
        scored.insert(*site, card);
    }
    vm.flush();

    for site in SITES {
        let at_s = kpi_at[site] as f64 / 1000.0;
        let m = &month[site];
        let active = active_from_events(&watcher, site, kpi_at[site]);
        let expect = Expect {
            active_alarms: !active.is_empty(),
            acknowledged_active: acknowledged_active(&watcher, site, kpi_at[site]),
            response: m["response"]["timely_rate"].is_number(),
            response_times: m["response"]["p50_s"].is_number(),
            arrival: m["arrival"]["timely_rate"].is_number(),
            repair: m["repair"]["timely_rate"].is_number(),
        };
        println!(
            "{site}: KPI point at {}, month report {m:#}",
            rfc3339(kpi_at[site])
        );

        // Control room.
        let (r, ranges) = run_dashboard(&vm, "control-room.json", at_s, &[("site", site)]);
        check_required("control-room.json", &r, &ranges, &expect, site);
        let get = |title: &str, ref_id: &str| r[&(title.to_owned(), ref_id.to_owned())].clone();
        let at = format!("{site} control-room");
        let mtd = single(&at, &get("全站完好率", "B"));
        let want = m["intactness"]["overall"].as_f64().unwrap();
        assert!(
            close(mtd, want),
            "{at}: month-to-date intactness {mtd}, the report says {want}"
        );
        assert_by_label(
            &at,
            &get("本月完好率（按类别）", "A"),
            "scope_id",
            &report_map(&m["intactness"]["by_category"], None),
        );
        let rates = get("响应及时率（本月）", "A");
        let mut by_category = report_map(&m["response"]["by_category"], Some("timely_rate"));
        by_category.retain(|_, v| v.is_some());
        assert_by_label(
            &format!("{at} response timeliness"),
            &rates,
            "category",
            &by_category,
        );
        // The state counts and the instant rate agree (nothing is in maintenance at the end).
        let intact = single(&at, &get("设备状态合计", "A"));
        let not_intact = single(&at, &get("设备状态合计", "B"));
        assert_eq!(
            intact + not_intact,
            DEVICES.len() as f64,
            "{at}: devices by state"
        );
        let instant_rate = single(&at, &get("全站完好率", "A"));
        assert!(
            close(instant_rate, intact / (intact + not_intact)),
            "{at}: instant {instant_rate} vs {intact}/{}",
            intact + not_intact
        );
        let by_severity: BTreeMap<String, f64> = get("活动告警数", "A")
            .iter()
            .map(|s| (s.label("severity").to_owned(), s.value))
            .collect();
        let want: BTreeMap<String, f64> =
            active.iter().map(|(k, v)| (k.clone(), *v as f64)).collect();
        assert_eq!(
            by_severity, want,
            "{at}: active alarms by severity (from the MQTT events)"
        );
        assert_eq!(
            get("活动告警列表", "A").len(),
            active.values().sum::<usize>(),
            "{at}: active alarm rows"
        );

        // Heating season.
        let (r, ranges) = run_dashboard(&vm, "heating-season.json", at_s, &[("site", site)]);
        check_required("heating-season.json", &r, &ranges, &expect, site);
        let get = |title: &str, ref_id: &str| r[&(title.to_owned(), ref_id.to_owned())].clone();
        let at = format!("{site} heating-season");
        assert_by_label(
            &at,
            &get("供暖达标率（本月，按楼栋）", "A"),
            "building",
            &report_map(&m["heating"]["by_building"], Some("compliance")),
        );
        assert_by_label(
            &at,
            &get("测温覆盖率（本月，按楼栋）", "A"),
            "building",
            &report_map(&m["heating"]["by_building"], Some("coverage")),
        );
        let sent: BTreeMap<String, &Vec<f64>> = indoor
            .iter()
            .filter(|((s, _), _)| *s == site)
            .map(|((_, b), v)| ((*b).to_owned(), v))
            .collect();
        let stat = |f: &dyn Fn(&Vec<f64>) -> f64| {
            sent.iter()
                .map(|(b, v)| (b.clone(), Some(f(v))))
                .collect::<BTreeMap<_, _>>()
        };
        assert_by_label(
            &format!("{at} readings"),
            &get("室内温度统计（按楼栋）", "D"),
            "building",
            &stat(&|v| v.len() as f64),
        );
        assert_by_label(
            &format!("{at} min"),
            &get("室内温度统计（按楼栋）", "A"),
            "building",
            &stat(&|v| v.iter().copied().fold(f64::INFINITY, f64::min)),
        );
        assert_by_label(
            &format!("{at} max"),
            &get("室内温度统计（按楼栋）", "C"),
            "building",
            &stat(&|v| v.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        );

        // Assessment of the published period.
        let (r, ranges) = run_dashboard(
            &vm,
            "assessment.json",
            at_s,
            &[("site", site), ("period", &period)],
        );
        check_required("assessment.json", &r, &ranges, &expect, site);
        let get = |title: &str, ref_id: &str| r[&(title.to_owned(), ref_id.to_owned())].clone();
        let at = format!("{site} assessment");
        let card = &scored[site]["score"];
        let total = single(&at, &get("总分", "A"));
        let want = card["total"].as_f64().unwrap();
        assert!(
            close(total, want),
            "{at}: total {total}, the report says {want}"
        );
        let kpis = |field: &str| -> BTreeMap<String, Option<f64>> {
            card["kpis"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| (k["name"].as_str().unwrap().to_owned(), k[field].as_f64()))
                .collect()
        };
        assert_by_label(
            &format!("{at} actual"),
            &get("考核指标明细", "A"),
            "kpi",
            &kpis("actual"),
        );
        assert_by_label(
            &format!("{at} score"),
            &get("考核指标明细", "C"),
            "kpi",
            &kpis("score"),
        );
        assert_by_label(
            &format!("{at} weight"),
            &get("考核指标明细", "D"),
            "kpi",
            &kpis("weight"),
        );
    }

    // The fleet, after both sites' last points.
    let fleet_at = kpi_at.values().max().unwrap() + 1000;
    let expect = Expect {
        active_alarms: SITES
            .iter()
            .any(|s| !active_from_events(&watcher, s, kpi_at[s]).is_empty()),
        acknowledged_active: false,
        response: SITES
            .iter()
            .any(|s| month[s]["response"]["timely_rate"].is_number()),
        response_times: true,
        arrival: true,
        repair: SITES
            .iter()
            .any(|s| month[s]["repair"]["timely_rate"].is_number()),
    };
    let (r, ranges) = run_dashboard(
        &vm,
        "fleet.json",
        fleet_at as f64 / 1000.0,
        &[("period", &period)],
    );
    check_required("fleet.json", &r, &ranges, &expect, "all sites");
    let get = |title: &str, ref_id: &str| r[&(title.to_owned(), ref_id.to_owned())].clone();
    let per_site = |f: &dyn Fn(&str) -> Option<f64>| {
        SITES
            .iter()
            .map(|s| ((*s).to_owned(), f(s)))
            .collect::<BTreeMap<_, _>>()
    };
    assert_by_label(
        "fleet intactness",
        &get("各小区概况", "B"),
        "site",
        &per_site(&|s| month[s]["intactness"]["overall"].as_f64()),
    );
    assert_by_label(
        "fleet response",
        &get("各小区概况", "C"),
        "site",
        &per_site(&|s| month[s]["response"]["timely_rate"].as_f64()),
    );
    assert_by_label(
        "fleet repair",
        &get("各小区概况", "D"),
        "site",
        &per_site(&|s| month[s]["repair"]["timely_rate"].as_f64()),
    );
    let active_count = |s: &str| {
        let n: usize = active_from_events(&watcher, s, kpi_at[s]).values().sum();
        (n > 0).then_some(n as f64)
    };
    assert_by_label(
        "fleet active alarms",
        &get("各小区概况", "E"),
        "site",
        &per_site(&active_count),
    );
    // The league: every site, by the published totals, highest first.
    let league = get("考核排名（总分）", "A");
    let totals = per_site(&|s| scored[s]["score"]["total"].as_f64());
    assert_by_label("league", &league, "site", &totals);
    let mut want: Vec<(&str, f64)> = SITES.iter().map(|s| (*s, totals[*s].unwrap())).collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert!(
        want[0].1 > want[1].1,
        "the scenario should give the sites different totals: {want:?}"
    );
    let order: Vec<&str> = league.iter().map(|s| s.label("site")).collect();
    assert_eq!(
        order,
        want.iter().map(|w| w.0).collect::<Vec<_>>(),
        "league order"
    );
}
