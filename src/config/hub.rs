//! The hub's configuration (`estate-gateway hub -c hub.toml`, README "Fleet"): `[hub]` (data
//! file, HTTP listen address, staleness limit), `[mqtt]` (the gateway's section and keys: the
//! hub uses the connection keys and the `alarm_topic`, `kpi_topic` and `assessment_topic`
//! patterns, which must be those of the gateways), `[league]` (red and black lists, the
//! tie-break KPI) and `[estates.<site>]` (name, district, company, dashboard URL).
//!
//! Read like the gateway's file (`typed::deserialize`: every type mistake, unknown keys), each
//! error naming the file, the key and what is valid.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::build::{build_mqtt, GatewaySettings, LogFormat, MqttSettings};
use super::check::resolve;
use super::raw::RawMqtt;
use super::{typed, ConfigError, ConfigErrors, Errors};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHubConfig {
    pub hub: RawHub,
    pub mqtt: RawMqtt,
    pub league: RawLeague,
    pub estates: BTreeMap<String, RawEstate>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawHub {
    pub data_file: String,
    pub listen: String,
    pub stale_after: String,
    pub log_level: String,
    pub log_format: String,
}

impl Default for RawHub {
    fn default() -> Self {
        RawHub {
            data_file: "/var/lib/estate-hub/hub.sqlite".into(),
            listen: "127.0.0.1:8090".into(),
            stale_after: "5m".into(),
            log_level: "info".into(),
            log_format: "text".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RawLeague {
    pub red_top: usize,
    pub red_min_score: Option<f64>,
    pub black_bottom: usize,
    pub black_below: Option<f64>,
    pub tie_kpi: String,
}

impl Default for RawLeague {
    fn default() -> Self {
        RawLeague {
            red_top: 0,
            red_min_score: None,
            black_bottom: 0,
            black_below: None,
            tie_kpi: "response_timeliness".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawEstate {
    pub name: Option<String>,
    pub district: Option<String>,
    pub company: Option<String>,
    pub dashboard_url: Option<String>,
}

/// The league rules (README "Fleet"): red list = the top `red_top` ranked estates and every
/// ranked estate scoring at least `red_min_score`; black list = the bottom `black_bottom` and
/// every ranked estate below `black_below` (never one already on the red list). Ties in the
/// total are broken by the `tie_kpi` score, then by site id.
#[derive(Debug, Clone, PartialEq)]
pub struct LeagueRules {
    pub red_top: usize,
    pub red_min_score: Option<f64>,
    pub black_bottom: usize,
    pub black_below: Option<f64>,
    pub tie_kpi: String,
}

/// An estate's tags from `[estates.<site>]`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EstateTags {
    pub name: Option<String>,
    pub district: Option<String>,
    pub company: Option<String>,
    pub dashboard_url: Option<String>,
}

/// The hub's settings, built and checked.
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub data_file: PathBuf,
    pub listen: SocketAddr,
    pub stale_after: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    pub mqtt: MqttSettings,
    pub league: LeagueRules,
    pub estates: BTreeMap<String, EstateTags>,
}

const VALID: &[(&str, &[&str])] = &[
    (
        "hub",
        &[
            "data_file",
            "listen",
            "stale_after",
            "log_level",
            "log_format",
        ],
    ),
    (
        "league",
        &[
            "red_top",
            "red_min_score",
            "black_bottom",
            "black_below",
            "tie_kpi",
        ],
    ),
    (
        "estates.<site>",
        &["name", "district", "company", "dashboard_url"],
    ),
];

/// Loads and checks a hub configuration; every mistake is reported at once.
pub fn load_hub(path: &Path) -> Result<HubSettings, ConfigErrors> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load_hub_with_env(path, &env)
}

/// `load_hub` with the environment given (tests pass their own).
pub fn load_hub_with_env(
    path: &Path,
    env: &HashMap<String, String>,
) -> Result<HubSettings, ConfigErrors> {
    let file = path.display().to_string();
    let one = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            key: "-".into(),
            message,
        }])
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        one(format!(
            "cannot be read ({e}); pass the hub's TOML file with -c (e.g. configs/hub.toml)"
        ))
    })?;
    let tree: serde_json::Value = toml::from_str::<toml::Value>(&text)
        .map_err(|e| one(format!("is not TOML: {e}")))
        .and_then(|v| serde_json::to_value(v).map_err(|e| one(format!("{e}"))))?;
    let read: typed::Read<RawHubConfig> = typed::deserialize(tree);
    let mut errs = Errors::new(file.clone());
    for m in &read.mistakes {
        errs.push(m.key.clone(), m.message.clone());
    }
    for p in &read.unknown {
        let key = super::key_path(p);
        errs.push(key.clone(), format!("unknown key{}", hint(&key)));
    }
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let settings = build(read.value, &base_dir, env, &mut errs);
    if errs.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors(errs.list))
    }
}

fn hint(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    let section = match parts.as_slice() {
        ["estates", _, _] => "estates.<site>",
        [s, _] => s,
        [s] => {
            return format!(" `{s}`; the sections are [hub], [mqtt], [league] and [estates.<site>]")
        }
        _ => return String::new(),
    };
    VALID
        .iter()
        .find(|(s, _)| *s == section)
        .map(|(s, keys)| format!("; valid in [{s}]: {}", keys.join(", ")))
        .unwrap_or_default()
}

fn build(
    raw: RawHubConfig,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> HubSettings {
    let h = &raw.hub;
    if h.data_file.trim().is_empty() {
        errs.push(
            "hub.data_file",
            "is empty; name the hub's SQLite file, e.g. `/var/lib/estate-hub/hub.sqlite`",
        );
    }
    let listen = h.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        errs.push(
            "hub.listen",
            format!(
                "`{}` is not an address; write IP:port, e.g. `127.0.0.1:8090` or `0.0.0.0:8090`",
                h.listen
            ),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    let stale_after = errs.duration("hub.stale_after", &h.stale_after);
    if stale_after.is_zero() && !errs.has_key("hub.stale_after") {
        errs.push(
            "hub.stale_after",
            "must be more than 0 (default 5m; a few kpi_intervals)",
        );
    }
    let log_format = match h.log_format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            errs.push(
                "hub.log_format",
                format!("`{other}` is not a log format; valid: text, json"),
            );
            LogFormat::Text
        }
    };
    let mut m = raw.mqtt;
    if m.client_id.is_none() {
        m.client_id = Some("estate-hub".into());
    }
    let gateway = GatewaySettings {
        site: String::new(),
        host: "hub".into(),
        data_dir: base_dir.to_path_buf(),
        log_format,
        log_level: h.log_level.clone(),
        stats_interval: Duration::from_secs(10),
    };
    let mqtt = build_mqtt(&m, &gateway, base_dir, env, errs);
    let l = &raw.league;
    for (key, v) in [
        ("league.red_min_score", l.red_min_score),
        ("league.black_below", l.black_below),
    ] {
        if let Some(v) = v {
            if !(0.0..=100.0).contains(&v) {
                errs.push(key, format!("`{v}` is not a score; valid: 0 to 100"));
            }
        }
    }
    if let (Some(red), Some(black)) = (l.red_min_score, l.black_below) {
        if black > red {
            errs.push(
                "league.black_below",
                format!("({black}) is above `league.red_min_score` ({red}); an estate cannot be on both lists by score"),
            );
        }
    }
    if !super::check::is_identifier(&l.tie_kpi) {
        errs.push(
            "league.tie_kpi",
            format!(
                "`{}` is not a KPI name; write the `name` of an [[assessment.kpi]] of the gateways, e.g. `response_timeliness`",
                l.tie_kpi
            ),
        );
    }
    let mut estates = BTreeMap::new();
    for (site, e) in raw.estates {
        if let Some(u) = &e.dashboard_url {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") => {}
                _ => errs.push(
                    format!("estates.{site}.dashboard_url"),
                    format!("`{u}` is not an http(s) URL; write e.g. `http://10.1.2.3:8080/`"),
                ),
            }
        }
        estates.insert(
            site,
            EstateTags {
                name: e.name,
                district: e.district,
                company: e.company,
                dashboard_url: e.dashboard_url,
            },
        );
    }
    HubSettings {
        data_file: resolve(base_dir, &h.data_file),
        listen,
        stale_after,
        log_level: h.log_level.clone(),
        log_format,
        mqtt,
        league: LeagueRules {
            red_top: l.red_top,
            red_min_score: l.red_min_score,
            black_bottom: l.black_bottom,
            black_below: l.black_below,
            tie_kpi: l.tie_kpi.clone(),
        },
        estates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<HubSettings, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hub.toml");
        std::fs::write(&p, text).unwrap();
        load_hub_with_env(&p, &HashMap::new())
    }

    #[test]
    fn a_full_hub_config_loads() {
        let h = load(
            r#"
[hub]
data_file = "hub.sqlite"
listen = "127.0.0.1:9000"
stale_after = "3m"
[mqtt]
url = "mqtt://10.0.0.1:1883"
[league]
red_top = 3
black_below = 60
[estates."锦绣"]
district = "朝阳区"
company = "甲物业"
dashboard_url = "http://10.1.2.3:8080/"
"#,
        )
        .unwrap();
        assert_eq!(h.stale_after, Duration::from_secs(180));
        assert_eq!(h.mqtt.client_id, "estate-hub");
        assert_eq!(h.mqtt.kpi_topic.filter(), "estate/+/kpi");
        assert_eq!(h.league.red_top, 3);
        assert_eq!(h.league.black_below, Some(60.0));
        assert_eq!(h.league.tie_kpi, "response_timeliness");
        assert_eq!(h.estates["锦绣"].district.as_deref(), Some("朝阳区"));
        assert!(h.data_file.ends_with("hub.sqlite") && h.data_file.is_absolute());
    }

    #[test]
    fn the_example_hub_config_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/hub.toml");
        let h = load_hub_with_env(&p, &HashMap::new()).unwrap();
        assert_eq!((h.league.red_top, h.league.black_below), (3, Some(60.0)));
        assert!(h.estates.contains_key("锦绣花园"));
    }

    #[test]
    fn every_mistake_names_file_key_and_what_is_valid() {
        let e = load(
            r#"
[hub]
listen = "nowhere"
stale_after = "soon"
colour = "red"
[mqtt]
kpi_topic = "estate/kpi"
[league]
red_min_score = 120
black_bottom = "two"
[estates.a]
dashboard_url = "ftp://x"
"#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "hub.toml: hub.listen: `nowhere` is not an address",
            "hub.stale_after: `soon` is not a duration",
            "hub.colour: unknown key; valid in [hub]: data_file, listen, stale_after",
            "mqtt.kpi_topic: `estate/kpi` must hold `{site}`",
            "league.red_min_score: `120` is not a score; valid: 0 to 100",
            "league.black_bottom:",
            "estates.a.dashboard_url: `ftp://x` is not an http(s) URL",
        ] {
            assert!(e.contains(want), "missing {want:?} in\n{e}");
        }
    }
}
