//! `[alarms]` (response classes, retention, the webhook), `[heating]` and `[[maintenance]]`:
//! what the alarm engine and the KPIs need beyond the profiles' rules.
//!
//! The default response classes and their targets (DESIGN §4), each with its source:
//! - `fire` 火警: acknowledged (confirmed) ≤ 60 s, on site ≤ 180 s. GB 25506-2010
//!   消防控制室通用技术要求 asks the control room to confirm an alarm immediately by the
//!   fastest means; Beijing's practice is to confirm within 1 min and be on site within 3 min.
//! - `entrapment` 困人: acknowledged ≤ 180 s, on site ≤ 30 min (local elevator safety
//!   regulations ask rescuers to arrive within 30 min).
//! - `urgent` (other critical and major alarms): acknowledged ≤ 180 s (the "三分钟响应"
//!   commitment of property service plans), on site ≤ 30 min (急修).
//! - `minor`: acknowledged ≤ 24 h (零修 within 24 h), no on-site target.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::build::secret;
use super::raw::{RawAlarms, RawClass, RawHeating, RawHeatingSite, RawMaintenance, RawWebhook};
use super::Errors;
use crate::core::engine::PlannedMaintenance;
use crate::core::rules::{ResponseClass, Severity};
use crate::core::season::{MonthDay, Season};
use crate::model::Inventory;

/// The `[alarms]` section, built.
#[derive(Debug, Clone)]
pub struct AlarmSettings {
    /// Response classes by name: the defaults (fire, entrapment, urgent, minor), overridden
    /// and extended by `[alarms.classes.<name>]`.
    pub classes: HashMap<String, ResponseClass>,
    /// Cleared alarms stay in memory (API, late acknowledgment) this long after clearing.
    pub retain_cleared: Duration,
    /// Alarm notifications over HTTP (`[alarms.webhook]`); `None` = none are sent.
    pub webhook: Option<WebhookSettings>,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            classes: default_classes(),
            retain_cleared: Duration::from_secs(7 * 86_400),
            webhook: None,
        }
    }
}

/// What a webhook request body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The alarm event as JSON (the same object as on the MQTT alarm topic).
    Json,
    /// A chat robot's text message (WeCom 企业微信 / DingTalk 钉钉):
    /// `{"msgtype":"text","text":{"content":"..."}}`.
    Text,
}

/// `[alarms.webhook]`, built.
#[derive(Clone, PartialEq)]
pub struct WebhookSettings {
    /// Robot URLs embed their key (`...?key=...`): `Debug` hides the query.
    pub url: String,
    pub format: WebhookFormat,
    /// Alarms of these severities are sent (default: critical).
    pub severities: Vec<Severity>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Extra attempts after a failed request.
    pub retries: u32,
    /// Longest pause between attempts (backoff doubles up to it).
    pub retry_max: Duration,
}

impl WebhookSettings {
    /// The URL without its query (where robot keys live), for logs and summaries.
    pub fn redacted_url(&self) -> String {
        match self.url.split_once('?') {
            Some((base, _)) => format!("{base}?***"),
            None => self.url.clone(),
        }
    }
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.redacted_url())
            .field("format", &self.format)
            .field("severities", &self.severities)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_max", &self.retry_max)
            .finish()
    }
}

/// The `[heating]` section, built.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatingSettings {
    /// The heating season (rules marked `season = true`, heating compliance).
    pub season: Season,
    /// Indoor temperature at or above which a room counts as compliant (供暖达标).
    pub min_indoor_c: f64,
    /// Sites in other cities (`[heating.sites.<site>]`): their own season, time zone and
    /// minimum; keys they do not set follow `[heating]`.
    pub sites: BTreeMap<String, SiteHeating>,
}

/// One `[heating.sites.<site>]`, with unset keys filled in from `[heating]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteHeating {
    pub season: Season,
    pub min_indoor_c: f64,
}

impl Default for HeatingSettings {
    fn default() -> Self {
        HeatingSettings {
            season: Season::beijing(),
            min_indoor_c: 18.0,
            sites: BTreeMap::new(),
        }
    }
}

impl HeatingSettings {
    /// The season (and with it the site's time zone) and indoor minimum of `site`: its
    /// `[heating.sites.<site>]` override, else `[heating]`.
    pub fn for_site(&self, site: &str) -> (&Season, f64) {
        match self.sites.get(site) {
            Some(s) => (&s.season, s.min_indoor_c),
            None => (&self.season, self.min_indoor_c),
        }
    }
}

/// The default response classes (see the module docs for the sources).
pub fn default_classes() -> HashMap<String, ResponseClass> {
    let class = |name: &str, ack_s: i64, on_site_s: Option<i64>, source: &str| {
        (
            name.to_owned(),
            ResponseClass {
                name: name.to_owned(),
                ack_target_ms: ack_s * 1000,
                on_site_target_ms: on_site_s.map(|s| s * 1000),
                source: source.to_owned(),
            },
        )
    };
    [
        class(
            "fire",
            60,
            Some(180),
            "GB 25506-2010 消防控制室通用技术要求: confirm an alarm immediately by the fastest means; Beijing practice: confirm within 1 min, on site within 3 min",
        ),
        class(
            "entrapment",
            180,
            Some(30 * 60),
            "local elevator safety regulations: rescuers on site within 30 min of an entrapment (困人)",
        ),
        class(
            "urgent",
            180,
            Some(30 * 60),
            "property service plans: 三分钟响应 (acknowledge within 3 min); 急修 on site within 30 min",
        ),
        class(
            "minor",
            24 * 3600,
            None,
            "property service plans: 零修 handled within 24 h",
        ),
    ]
    .into_iter()
    .collect()
}

pub(super) fn build_alarms(
    a: &RawAlarms,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> AlarmSettings {
    let mut classes = default_classes();
    for (name, c) in &a.classes {
        if let Some(class) = build_class(name, c, classes.get(name), errs) {
            classes.insert(name.clone(), class);
        }
    }
    let retain_cleared = errs.duration("alarms.retain_cleared", &a.retain_cleared);
    let webhook = a
        .webhook
        .as_ref()
        .map(|w| build_webhook(w, base_dir, env, errs));
    AlarmSettings {
        classes,
        retain_cleared,
        webhook,
    }
}

fn build_class(
    name: &str,
    c: &RawClass,
    default: Option<&ResponseClass>,
    errs: &mut Errors,
) -> Option<ResponseClass> {
    let key = format!("alarms.classes.{name}");
    let before = errs.len();
    if !super::profiles::is_identifier(name) {
        errs.push(
            &key,
            format!("`{name}` is not a valid class name; use lower-case letters, digits and `_`, e.g. `lift_rescue`"),
        );
    }
    let positive = |errs: &mut Errors, field: &str, s: &str| -> i64 {
        let k = format!("{key}.{field}");
        let d = errs.duration(&k, s);
        if d.is_zero() && !errs.has_key(&k) {
            errs.push(&k, "must be more than 0, e.g. `3m`");
        }
        d.as_millis() as i64
    };
    let ack_target_ms = match (&c.ack_target, default) {
        (Some(s), _) => positive(errs, "ack_target", s),
        (None, Some(d)) => d.ack_target_ms,
        (None, None) => {
            errs.push(
                format!("{key}.ack_target"),
                "is missing; a new class needs its acknowledgment target, e.g. ack_target = \"3m\"",
            );
            0
        }
    };
    let on_site_target_ms = match (&c.on_site_target, default) {
        (Some(s), _) if s.trim() == "none" => None,
        (Some(s), _) => Some(positive(errs, "on_site_target", s)),
        (None, d) => d.and_then(|d| d.on_site_target_ms),
    };
    let source = match (&c.source, default) {
        (Some(s), _) => s.clone(),
        (None, Some(d)) if c.ack_target.is_none() && c.on_site_target.is_none() => d.source.clone(),
        _ => format!("set in {}", errs.file()),
    };
    (errs.len() == before).then(|| ResponseClass {
        name: name.to_owned(),
        ack_target_ms,
        on_site_target_ms,
        source,
    })
}

fn build_webhook(
    w: &RawWebhook,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> WebhookSettings {
    let set: Vec<&str> = [
        ("url", w.url.is_some()),
        ("url_file", w.url_file.is_some()),
        ("url_env", w.url_env.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.then_some(k))
    .collect();
    let (key, url) = match (set.len(), &w.url, &w.url_file, &w.url_env) {
        (0, ..) => {
            errs.push(
                "alarms.webhook.url",
                "is missing; set `url_file` (a file holding the robot URL) or `url_env` (the environment variable holding it), or `url`",
            );
            ("alarms.webhook.url", String::new())
        }
        (1, Some(u), _, _) => ("alarms.webhook.url", u.trim().to_owned()),
        (1, _, Some(f), _) => {
            let s = secret(errs, "alarms.webhook.url_file", Some(f), "", base_dir, env);
            ("alarms.webhook.url_file", s.expose().to_owned())
        }
        (1, _, _, Some(name)) => {
            let v = env
                .get(name)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default();
            if v.is_empty() {
                errs.push(
                    "alarms.webhook.url_env",
                    format!("the environment variable `{name}` is not set or empty; set it to the webhook URL, or use `url_file`"),
                );
            }
            ("alarms.webhook.url_env", v)
        }
        _ => {
            errs.push(
                format!("alarms.webhook.{}", set[1]),
                format!(
                    "is set together with `{}`; give the URL one way: url, url_file or url_env",
                    set[0]
                ),
            );
            ("alarms.webhook.url", String::new())
        }
    };
    if !url.is_empty() {
        let shown = if key == "alarms.webhook.url" {
            format!("`{url}`")
        } else {
            "the URL".to_owned()
        };
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(_) => errs.push(
                key,
                format!("{shown} is not an http(s) URL with a host; write e.g. `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`"),
            ),
            Err(e) => errs.push(
                key,
                format!("{shown} is not a URL ({e}); write e.g. `https://oapi.dingtalk.com/robot/send?access_token=...`"),
            ),
        }
    }
    let format = match w.format.as_str() {
        "json" => WebhookFormat::Json,
        "text" => WebhookFormat::Text,
        other => {
            errs.push(
                "alarms.webhook.format",
                format!("`{other}` is not a webhook format; valid: json (the alarm event), text (WeCom/DingTalk robot text message)"),
            );
            WebhookFormat::Json
        }
    };
    let mut severities = Vec::new();
    for (i, s) in w.severities.iter().enumerate() {
        match Severity::parse(s) {
            Some(sev) if !severities.contains(&sev) => severities.push(sev),
            Some(_) => {}
            None => errs.push(
                format!("alarms.webhook.severities[{i}]"),
                format!("`{s}` is not a severity; valid: critical, major, minor"),
            ),
        }
    }
    if w.severities.is_empty() {
        errs.push(
            "alarms.webhook.severities",
            "is empty; list the severities to send, e.g. [\"critical\", \"major\"], or remove [alarms.webhook]",
        );
    }
    let timeout = errs.duration("alarms.webhook.timeout", &w.timeout);
    if timeout.is_zero() && !errs.has_key("alarms.webhook.timeout") {
        errs.push("alarms.webhook.timeout", "must be more than 0 (default 5s)");
    }
    let retry_max = errs.duration("alarms.webhook.retry_max", &w.retry_max);
    if retry_max.is_zero() && !errs.has_key("alarms.webhook.retry_max") {
        errs.push(
            "alarms.webhook.retry_max",
            "must be more than 0 (default 60s)",
        );
    }
    WebhookSettings {
        url,
        format,
        severities,
        timeout,
        retries: w.retries,
        retry_max,
    }
}

pub(super) fn build_heating(h: &RawHeating, errs: &mut Errors) -> HeatingSettings {
    let (season, min_indoor_c) = build_season(
        "heating",
        &h.season_start,
        &h.season_end,
        &h.timezone,
        h.min_indoor_c,
        &Season::beijing(),
        errs,
    );
    let mut sites = BTreeMap::new();
    for (site, o) in &h.sites {
        let key = format!("heating.sites.{site}");
        super::build::check_name(errs, &key, site, true);
        let s = build_site_heating(&key, o, &season, min_indoor_c, errs);
        sites.insert(site.clone(), s);
    }
    HeatingSettings {
        season,
        min_indoor_c,
        sites,
    }
}

fn build_site_heating(
    key: &str,
    o: &RawHeatingSite,
    base: &Season,
    base_min: f64,
    errs: &mut Errors,
) -> SiteHeating {
    let start = o
        .season_start
        .clone()
        .unwrap_or_else(|| base.start.to_string());
    let end = o.season_end.clone().unwrap_or_else(|| base.end.to_string());
    let tz = o.timezone.clone().unwrap_or_else(|| base.tz_name.clone());
    let (season, min_indoor_c) = build_season(
        key,
        &start,
        &end,
        &tz,
        o.min_indoor_c.unwrap_or(base_min),
        base,
        errs,
    );
    SiteHeating {
        season,
        min_indoor_c,
    }
}

/// A season and an indoor minimum under `prefix` (`heating` or `heating.sites.<site>`).
fn build_season(
    prefix: &str,
    start: &str,
    end: &str,
    tz: &str,
    min_indoor_c: f64,
    fallback: &Season,
    errs: &mut Errors,
) -> (Season, f64) {
    let day = |errs: &mut Errors, key: &str, s: &str| match MonthDay::parse(s) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(key, e);
            None
        }
    };
    let start = day(errs, &format!("{prefix}.season_start"), start);
    let end = day(errs, &format!("{prefix}.season_end"), end);
    let season = match Season::new(
        start.unwrap_or(fallback.start),
        end.unwrap_or(fallback.end),
        tz,
    ) {
        Ok(s) => s,
        Err(e) => {
            errs.push(format!("{prefix}.timezone"), e);
            fallback.clone()
        }
    };
    if !(min_indoor_c.is_finite() && (0.0..=30.0).contains(&min_indoor_c)) {
        errs.push(
            format!("{prefix}.min_indoor_c"),
            format!(
                "`{min_indoor_c}` is not an indoor minimum; write degrees Celsius between 0 and 30, e.g. 18.0 (the common standard)",
            ),
        );
    }
    (season, min_indoor_c)
}

pub(super) fn build_maintenance(
    list: &[RawMaintenance],
    default_site: &str,
    inventory: &Inventory,
    errs: &mut Errors,
) -> Vec<PlannedMaintenance> {
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let key = |f: &str| format!("maintenance[{i}].{f}");
        let before = errs.len();
        let site = m
            .site
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(default_site);
        let device = if m.device.is_empty() {
            errs.push(
                key("device"),
                "is missing; give the device id, e.g. \"E-3-1\"",
            );
            None
        } else if site.is_empty() {
            errs.push(
                key("site"),
                "is missing and `gateway.site` is not set; give the window's site",
            );
            None
        } else {
            let found = inventory.lookup(site, &m.device);
            if found.is_none() {
                let mut sites: Vec<&str> = inventory
                    .devices()
                    .iter()
                    .map(|d| d.site.as_str())
                    .collect();
                sites.sort_unstable();
                sites.dedup();
                errs.push(
                    key("device"),
                    format!(
                        "no device `{}` in site `{site}` ([[devices]] and devices_csv); sites with devices: {}",
                        m.device,
                        if sites.is_empty() { "none".to_owned() } else { sites.join(", ") }
                    ),
                );
            }
            found
        };
        let ts = |errs: &mut Errors, f: &str, s: &str| match s.trim().parse::<jiff::Timestamp>() {
            Ok(t) => Some(t.as_millisecond()),
            Err(_) => {
                errs.push(
                    key(f),
                    if s.is_empty() {
                        "is missing; write an RFC 3339 time with its offset, e.g. \"2026-12-01T09:00:00+08:00\"".to_owned()
                    } else {
                        format!("`{s}` is not an RFC 3339 time with an offset; write e.g. \"2026-12-01T09:00:00+08:00\"")
                    },
                );
                None
            }
        };
        let start = ts(errs, "start", &m.start);
        let end = ts(errs, "end", &m.end);
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                errs.push(
                    key("end"),
                    format!(
                        "`{}` is not after start `{}`; a window must end after it starts",
                        m.end, m.start
                    ),
                );
            }
        }
        if m.reason.trim().is_empty() {
            errs.push(
                key("reason"),
                "is missing; say why (it is journaled with the window), e.g. \"电梯年检\"",
            );
        }
        if errs.len() > before {
            continue;
        }
        if let (Some(device), Some(start_ms), Some(end_ms)) = (device, start, end) {
            out.push(PlannedMaintenance {
                device,
                start_ms,
                end_ms,
                reason: m.reason.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::{load_text, messages};
    use super::*;
    use crate::core::rules::{Clear, Trigger};
    use crate::model::Value;

    fn errors(toml: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> String {
        let e = load_text(toml, files, env).expect_err("invalid");
        e.0.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn assert_has(all: &str, needles: &[&str]) {
        for n in needles {
            assert!(all.contains(n), "missing {n:?} in:\n{all}");
        }
    }

    #[test]
    fn defaults_classes_heating_and_topics() {
        let cfg = load_text("[gateway]\nsite = \"a\"\n[mqtt]\n", &[], &[]).expect("valid");
        let c = &cfg.alarms.classes;
        let targets = |n: &str| (c[n].ack_target_ms, c[n].on_site_target_ms);
        assert_eq!(targets("fire"), (60_000, Some(180_000)));
        assert_eq!(targets("entrapment"), (180_000, Some(1_800_000)));
        assert_eq!(targets("urgent"), (180_000, Some(1_800_000)));
        assert_eq!(targets("minor"), (86_400_000, None));
        assert!(c["fire"].source.contains("GB 25506-2010"));
        assert_eq!(c.len(), 4);
        assert_eq!(cfg.alarms.retain_cleared, Duration::from_secs(7 * 86_400));
        assert!(cfg.alarms.webhook.is_none());
        assert_eq!(cfg.heating, HeatingSettings::default());
        assert_eq!(cfg.heating.season, Season::beijing());
        assert!(cfg.maintenance.is_empty());
        let m = cfg.mqtt.expect("mqtt");
        assert_eq!(m.alarm_topic.render("s", "c", "d"), "estate/s/alarms/c/d");
        assert_eq!(m.state_topic.render("s", "c", "d"), "estate/s/state/c/d");
        assert_eq!(
            m.ack_topic.matches_site("estate/s/alarms/ack"),
            Some(Some("s"))
        );
        assert_eq!(m.ack_topic.filter(), "estate/+/alarms/ack");
        assert_eq!(
            m.on_site_topic.matches_site("estate/s/alarms/on_site"),
            Some(Some("s"))
        );
        assert_eq!(m.on_site_topic.matches_site("estate/s/alarms/ack"), None);
    }

    #[test]
    fn classes_are_overridden_and_added_and_profiles_may_use_them() {
        let cfg = load_text(
            r#"
[gateway]
site = "a"
profiles_dir = "profiles"
[alarms]
retain_cleared = "2d"
[alarms.classes.entrapment]
on_site_target = "15m"
source = "合同"
[alarms.classes.minor]
ack_target = "12h"
[alarms.classes.urgent]
on_site_target = "none"
[alarms.classes.lift_rescue]
ack_target = "2m"
on_site_target = "20m"
"#,
            &[(
                "profiles/pump.toml",
                "interval = \"10s\"\n[[signals]]\nname = \"running\"\ntype = \"bool\"\n[[alarms]]\nname = \"stopped\"\nsignal = \"running\"\nop = \"==\"\nvalue = false\nseverity = \"major\"\nclass = \"lift_rescue\"\nmessage = \"{name}停\"\n",
            )],
            &[],
        )
        .expect("valid");
        let c = &cfg.alarms.classes;
        assert_eq!(c["entrapment"].ack_target_ms, 180_000);
        assert_eq!(c["entrapment"].on_site_target_ms, Some(900_000));
        assert_eq!(c["entrapment"].source, "合同");
        assert_eq!(c["minor"].ack_target_ms, 12 * 3_600_000);
        assert!(c["minor"].source.starts_with("set in "));
        assert_eq!(c["urgent"].on_site_target_ms, None);
        assert_eq!(c["lift_rescue"].ack_target_ms, 120_000);
        assert_eq!(c["fire"], default_classes()["fire"]);
        assert_eq!(cfg.alarms.retain_cleared, Duration::from_secs(2 * 86_400));
        assert_eq!(cfg.profiles["pump"].rules.alarms[0].class, "lift_rescue");
    }

    #[test]
    fn webhook_url_from_the_environment_or_a_file_and_hidden_in_debug() {
        let url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET";
        let cfg = load_text(
            "[alarms.webhook]\nurl_env = \"HOOK\"\nformat = \"text\"\nseverities = [\"critical\", \"major\"]\n",
            &[],
            &[("HOOK", url)],
        )
        .expect("valid");
        let w = cfg.alarms.webhook.expect("webhook");
        assert_eq!(w.url, url);
        assert_eq!(w.format, WebhookFormat::Text);
        assert_eq!(w.severities, [Severity::Critical, Severity::Major]);
        assert_eq!(
            (w.timeout, w.retries, w.retry_max),
            (Duration::from_secs(5), 5, Duration::from_secs(60))
        );
        let debug = format!("{w:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("send?***"), "{debug}");

        let cfg = load_text(
            "[alarms.webhook]\nurl_file = \"hook.url\"\n",
            &[(
                "hook.url",
                "https://oapi.dingtalk.com/robot/send?access_token=t\n",
            )],
            &[],
        )
        .expect("valid");
        let w = cfg.alarms.webhook.expect("webhook");
        assert_eq!(w.url, "https://oapi.dingtalk.com/robot/send?access_token=t");
        assert_eq!(
            (w.format, w.severities.as_slice()),
            (WebhookFormat::Json, &[Severity::Critical][..])
        );
    }

    #[test]
    fn heating_season_is_parsed_and_its_mistakes_named() {
        let cfg = load_text(
            "[heating]\nseason_start = \"10-20\"\nseason_end = \"04-20\"\ntimezone = \"Asia/Harbin\"\nmin_indoor_c = 16\n",
            &[],
            &[],
        )
        .expect("valid");
        let h = &cfg.heating;
        assert_eq!(h.season.start, MonthDay { month: 10, day: 20 });
        assert_eq!(h.season.end, MonthDay { month: 4, day: 20 });
        assert_eq!(h.season.tz_name, "Asia/Harbin");
        assert_eq!(h.min_indoor_c, 16.0);

        let all = errors(
            "[heating]\nseason_start = \"11/15\"\nseason_end = \"02-29\"\ntimezone = \"Beijing\"\nmin_indoor_c = 45.0\n",
            &[],
            &[],
        );
        assert_has(
            &all,
            &[
                "heating.season_start: `11/15` is not a month and day; valid: MM-DD such as 11-15",
                "heating.season_end: `02-29`: February 29 does not exist every year",
                "heating.timezone: `Beijing` is not an IANA time zone; valid: names such as Asia/Shanghai",
                "heating.min_indoor_c: `45` is not an indoor minimum; write degrees Celsius between 0 and 30",
            ],
        );
    }

    const DEVICES: &str = r#"
[gateway]
site = "a"
[[devices]]
id = "E-1"
name = "1号梯"
building = "1号楼"
category = "elevator"
[[devices]]
id = "E-2"
name = "2号梯"
building = "2号楼"
category = "elevator"
[devices.alarms.entrapment]
delay = "5s"
message = "{name}困人！"
[devices.alarms.fault]
severity = "minor"
[devices.alarms.offline]
enabled = false
[[devices]]
id = "HX-1"
name = "换热站"
building = "站"
category = "heating_loop"
[devices.alarms.low_supply_temp]
value = 50
[devices.alarms.pressure_low]
clear_value = 0.2
"#;

    #[test]
    fn overrides_apply_to_one_device_only() {
        let cfg = load_text(DEVICES, &[], &[]).expect("valid");
        let inv = &cfg.inventory;
        let (e1, e2, hx) = (inv.get(0), inv.get(1), inv.get(2));
        let profile = &cfg.profiles["elevator"];
        assert!(
            Arc::ptr_eq(&e1.rules, &profile.rules),
            "unchanged devices share the profile's rules"
        );
        assert!(!Arc::ptr_eq(&e2.rules, &profile.rules));
        let names: Vec<&str> = e2.rules.alarms.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["entrapment", "fault"]);
        let ent = &e2.rules.alarms[0];
        assert_eq!(
            (ent.delay_ms, ent.message.as_str()),
            (5_000, "{name}困人！")
        );
        assert_eq!(ent.class, "entrapment");
        // The class followed the severity (urgent → minor) since none was given.
        let fault = &e2.rules.alarms[1];
        assert_eq!(
            (fault.severity, fault.class.as_str()),
            (Severity::Minor, "minor")
        );
        // The profile itself is untouched.
        assert_eq!(profile.rules.alarms.len(), 3);
        assert_eq!(profile.rules.alarms[0].delay_ms, 0);

        let rule = |n: &str| hx.rules.alarms.iter().find(|r| r.name == n).expect("rule");
        match &rule("low_supply_temp").trigger {
            Trigger::Condition { when, clear } => {
                assert_eq!(when.value, Value::Float(50.0));
                // A new value keeps the hysteresis (2.0).
                assert_eq!(clear, &Clear::Bound(Value::Float(52.0)));
                assert!(when.season);
            }
            Trigger::Offline => panic!("condition rule expected"),
        }
        match &rule("pressure_low").trigger {
            Trigger::Condition { clear, .. } => assert_eq!(clear, &Clear::Bound(Value::Float(0.2))),
            Trigger::Offline => panic!("condition rule expected"),
        }
    }

    #[test]
    fn planned_maintenance_is_resolved_and_checked() {
        let toml = format!(
            "{DEVICES}\n[[maintenance]]\ndevice = \"E-2\"\nstart = \"2026-12-01T09:00:00+08:00\"\nend = \"2026-12-01T17:00:00+08:00\"\nreason = \"电梯年检\"\n\n[[maintenance]]\ndevice = \"HX-1\"\nsite = \"a\"\nstart = \"2026-12-02T01:00:00Z\"\nend = \"2026-12-02T02:00:00Z\"\nreason = \"换泵\"\n"
        );
        let cfg = load_text(&toml, &[], &[]).expect("valid");
        assert_eq!(
            cfg.maintenance,
            [
                PlannedMaintenance {
                    device: 1,
                    start_ms: 1_796_086_800_000, // 2026-12-01T01:00:00Z
                    end_ms: 1_796_115_600_000,
                    reason: "电梯年检".into(),
                },
                PlannedMaintenance {
                    device: 2,
                    start_ms: 1_796_173_200_000, // 2026-12-02T01:00:00Z
                    end_ms: 1_796_176_800_000,
                    reason: "换泵".into(),
                },
            ]
        );

        let toml = format!(
            "{DEVICES}\n[[maintenance]]\ndevice = \"EL-3\"\nstart = \"2026-12-01 09:00\"\nend = \"2026-12-01T17:00:00+08:00\"\nreason = \"年检\"\n\n[[maintenance]]\ndevice = \"E-1\"\nsite = \"b\"\nstart = \"2026-12-01T09:00:00+08:00\"\nend = \"2026-12-01T08:00:00+08:00\"\ncolour = \"red\"\n"
        );
        let all = errors(&toml, &[], &[]);
        assert_has(
            &all,
            &[
                "maintenance[0].device: no device `EL-3` in site `a` ([[devices]] and devices_csv); sites with devices: a",
                "maintenance[0].start: `2026-12-01 09:00` is not an RFC 3339 time with an offset; write e.g. \"2026-12-01T09:00:00+08:00\"",
                "maintenance[1].device: no device `E-1` in site `b`",
                "maintenance[1].end: `2026-12-01T08:00:00+08:00` is not after start `2026-12-01T09:00:00+08:00`",
                "maintenance[1].reason: is missing",
                "maintenance[1].colour: unknown key; valid keys here: device, site, start, end, reason",
            ],
        );
        assert_eq!(all.lines().count(), 6, "{all}");
    }

    /// One gateway file (and a profile next to it) with a mistake in every new section: all
    /// of them are reported at once, each with its file, key and what would be valid.
    #[test]
    fn one_config_with_many_mistakes_reports_all_of_them() {
        let toml = format!(
            r#"{DEVICES}
[mqtt]
alarm_topic = "estate/{{site}}/alarms/{{category}}"
state_topic = "estate/{{site}}/state/{{category}}/{{device}}"
ack_topic = "estate/{{site}}/ack/{{device}}"
on_site_topic = "estate/{{site}}/state/x/y"

[alarms]
retain_cleared = "a week"
[alarms.classes.Rescue]
ack_target = "1m"
[alarms.classes.new_one]
on_site_target = "0s"
[alarms.webhook]
url = "ftp://robot"
url_env = "HOOK"
format = "markdown"
severities = ["critical", "high"]
timeout = "0s"

[heating]
season_start = "13-01"

[[maintenance]]
device = "E-1"
start = "yesterday"
end = "2026-12-01T17:00:00+08:00"
reason = "检修"

[[devices]]
id = "E-9"
name = "9号梯"
building = "9号楼"
category = "elevator"
[devices.alarms.entrapment]
class = "rescue"
value = 1
colour = "red"
[devices.alarms.offline]
hysteresis = 1.0
message = "{{name}} {{value}}"
[devices.alarms.door_stuck]
enabled = false
"#
        );
        let e = load_text(&toml, &[], &[]).expect_err("invalid");
        let files: Vec<&str> = e.0.iter().map(|e| e.file.as_str()).collect();
        assert!(
            files.iter().all(|f| f.ends_with("gateway.toml")),
            "{files:?}"
        );
        let all = messages(e).join("\n");
        assert_has(
            &all,
            &[
                "mqtt.alarm_topic: `estate/{site}/alarms/{category}` has no `{device}` placeholder",
                "mqtt.ack_topic: `estate/{site}/ack/{device}` has `{device}`; the only placeholder here is `{site}`",
                "mqtt.on_site_topic: overlaps `mqtt.state_topic`",
                "alarms.retain_cleared: `a week` is not a duration",
                "alarms.classes.Rescue: `Rescue` is not a valid class name",
                "alarms.classes.new_one.ack_target: is missing; a new class needs its acknowledgment target",
                "alarms.classes.new_one.on_site_target: must be more than 0",
                "alarms.webhook.url_env: is set together with `url`; give the URL one way: url, url_file or url_env",
                "alarms.webhook.format: `markdown` is not a webhook format; valid: json (the alarm event), text",
                "alarms.webhook.severities[1]: `high` is not a severity; valid: critical, major, minor",
                "alarms.webhook.timeout: must be more than 0",
                "heating.season_start: `13-01` is not a month and day; valid: MM-DD such as 11-15",
                "maintenance[0].start: `yesterday` is not an RFC 3339 time",
                "devices[3].alarms.entrapment.class: unknown response class `rescue`; defined: entrapment, fire, minor, urgent",
                "devices[3].alarms.entrapment.value: `1` is an integer, but `entrapment` is a bool signal; write true or false",
                "devices[3].alarms.entrapment.colour: unknown key; valid keys here: enabled, severity, class, delay, value, hysteresis, clear_value, message",
                "devices[3].alarms.offline.hysteresis: does not apply to `offline`, an offline rule",
                "devices[3].alarms.offline.message: `{value}` has nothing to show in an offline rule",
                "devices[3].alarms.door_stuck: unknown alarm rule `door_stuck`; the rules of profile `elevator`: entrapment, fault, offline",
            ],
        );
        assert_eq!(all.lines().count(), 19, "{all}");

        let all = errors("[alarms.webhook]\nformat = \"text\"\n", &[], &[]);
        assert_has(&all, &["alarms.webhook.url: is missing; set `url_file`"]);
        let all = errors("[alarms.webhook]\nurl = \"ftp://robot\"\n", &[], &[]);
        assert_has(
            &all,
            &["alarms.webhook.url: `ftp://robot` is not an http(s) URL with a host"],
        );
        let all = errors("[alarms.webhook]\nurl_env = \"NOPE\"\n", &[], &[]);
        assert_has(
            &all,
            &["alarms.webhook.url_env: the environment variable `NOPE` is not set or empty"],
        );
    }

    #[test]
    fn a_user_profile_with_a_bad_rule_names_its_file() {
        let all = errors(
            "[gateway]\nsite = \"a\"\nprofiles_dir = \"profiles\"\n",
            &[(
                "profiles/elevator.toml",
                "interval = \"10s\"\n[[signals]]\nname = \"mode\"\ntype = \"enum\"\nvalues = [\"normal\", \"inspection\"]\n[[alarms]]\nname = \"insp\"\nsignal = \"mode\"\nop = \">\"\nvalue = \"inspection\"\nseverity = \"minor\"\nmessage = \"{name}\"\n",
            )],
            &[],
        );
        assert_has(
            &all,
            &["profiles/elevator.toml: alarms[0].op: `>` does not apply to enum signal `mode`; valid for enum signal `mode`: ==, !="],
        );
    }
}
