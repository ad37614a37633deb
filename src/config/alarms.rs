//! `[alarms]`: response classes, retention of cleared alarms, the webhook, and the escalation
//! of unanswered alarms (`[[alarms.classes.<class>.escalation]]` chains and the named webhooks
//! `[alarms.webhooks.<name>]` they notify): what the alarm engine, the core stage and the sinks
//! need beyond the profiles' rules (`[heating]` is in `heating`, `[[maintenance]]` in
//! `maintenance`).
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
//!
//! Repair (restore) targets (DESIGN §4): entrapment freed ≤ 30 min, 急修 (`urgent`, and
//! `fire`, whose reset the plans treat as an urgent repair) ≤ 24 h, 零修 (`minor`) ≤ 72 h.
//! A site's `three_minute_promise` (三分钟服务承诺: staff at the place within three minutes
//! of a request) sets the on-site target of the classes it names to 180 s.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::check::{is_identifier, secret, SecretUrl};
use super::raw::{RawAlarms, RawClass, RawEscalationStep, RawWebhook, RawWebhookTarget};
use super::Errors;
use crate::model::escalation::{Step, Target, Until};
use crate::model::rules::{ResponseClass, Severity};

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
    /// Named webhook targets of escalation steps (`[alarms.webhooks.<name>]`; their
    /// `severities` are empty: they get only the escalations that name them).
    pub webhooks: BTreeMap<String, WebhookSettings>,
    /// Per response class, its chain of escalation steps
    /// (`[[alarms.classes.<name>.escalation]]`); classes without one are absent.
    pub escalation: HashMap<String, Vec<Step>>,
    /// Per site (`""`: every site without its own entry), the classes whose on-site target is
    /// three minutes (`three_minute_promise`, 三分钟服务承诺).
    pub three_minute_promise: HashMap<String, Vec<String>>,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            classes: default_classes(),
            retain_cleared: Duration::from_secs(7 * 86_400),
            webhook: None,
            webhooks: BTreeMap::new(),
            escalation: HashMap::new(),
            three_minute_promise: HashMap::new(),
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
    /// Robot URLs embed their key (`...?key=...`): prints redacted (`super::check::SecretUrl`).
    pub url: SecretUrl,
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
        self.url.to_string()
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

/// The default response classes (see the module docs for the sources).
pub fn default_classes() -> HashMap<String, ResponseClass> {
    const MIN: i64 = 60;
    const HOUR: i64 = 3600;
    let class =
        |name: &str, ack_s: i64, on_site_s: Option<i64>, repair_s: Option<i64>, source: &str| {
            (
                name.to_owned(),
                ResponseClass {
                    name: name.to_owned(),
                    ack_target_ms: ack_s * 1000,
                    on_site_target_ms: on_site_s.map(|s| s * 1000),
                    repair_target_ms: repair_s.map(|s| s * 1000),
                    source: source.to_owned(),
                },
            )
        };
    [
        class(
            "fire",
            60,
            Some(3 * MIN),
            Some(24 * HOUR),
            "GB 25506-2010 消防控制室通用技术要求: confirm an alarm immediately by the fastest means; Beijing practice: confirm within 1 min, on site within 3 min; restored as 急修 within 24 h",
        ),
        class(
            "entrapment",
            3 * MIN,
            Some(30 * MIN),
            Some(30 * MIN),
            "local elevator safety regulations: rescuers on site within 30 min of an entrapment (困人), passengers freed within 30 min",
        ),
        class(
            "urgent",
            3 * MIN,
            Some(30 * MIN),
            Some(24 * HOUR),
            "property service plans: 三分钟响应 (acknowledge within 3 min); 急修 on site within 30 min, repaired within 24 h",
        ),
        class(
            "minor",
            24 * HOUR,
            None,
            Some(72 * HOUR),
            "property service plans: 零修 handled within 24 h, repaired within 72 h",
        ),
    ]
    .into_iter()
    .collect()
}

/// `mqtt`: whether `[mqtt]` is configured (an `mqtt:` escalation target needs it).
pub(super) fn build_alarms(
    a: &RawAlarms,
    mqtt: bool,
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
    let mut webhooks = BTreeMap::new();
    for (name, w) in &a.webhooks {
        let key = format!("alarms.webhooks.{name}");
        if !is_identifier(name) {
            errs.push(
                &key,
                format!("`{name}` is not a valid webhook name; use lower-case letters, digits and `_`, e.g. `duty_manager`"),
            );
        }
        let fields = target_fields(w);
        webhooks.insert(
            name.clone(),
            build_target(&key, &fields, base_dir, env, errs),
        );
    }
    let mut escalation = HashMap::new();
    for (name, c) in &a.classes {
        if c.escalation.is_empty() {
            continue;
        }
        let key = format!("alarms.classes.{name}.escalation");
        let chain: Vec<Step> = c
            .escalation
            .iter()
            .enumerate()
            .filter_map(|(i, s)| build_step(&format!("{key}[{i}]"), s, a, mqtt, errs))
            .collect();
        if chain.len() == c.escalation.len() {
            escalation.insert(name.clone(), chain);
        }
    }
    let mut three_minute_promise = HashMap::new();
    let mut promise = |key: String, site: String, list: &[String]| {
        for (i, c) in list.iter().enumerate() {
            if !classes.contains_key(c) {
                let mut known: Vec<&str> = classes.keys().map(String::as_str).collect();
                known.sort_unstable();
                errs.push(
                    format!("{key}[{i}]"),
                    format!("`{c}` is not a response class; known: {}", known.join(", ")),
                );
            }
        }
        if !list.is_empty() {
            three_minute_promise.insert(site, list.to_vec());
        }
    };
    promise(
        "alarms.three_minute_promise".into(),
        String::new(),
        &a.three_minute_promise,
    );
    for (site, s) in &a.sites {
        promise(
            format!("alarms.sites.{site}.three_minute_promise"),
            site.clone(),
            &s.three_minute_promise,
        );
    }
    AlarmSettings {
        classes,
        retain_cleared,
        webhook,
        webhooks,
        escalation,
        three_minute_promise,
    }
}

/// One escalation step; `None` (errors recorded under `key`) when it is not valid.
fn build_step(
    key: &str,
    s: &RawEscalationStep,
    a: &RawAlarms,
    mqtt: bool,
    errs: &mut Errors,
) -> Option<Step> {
    let before = errs.len();
    let after_ms = match &s.after {
        Some(d) => errs.duration(&format!("{key}.after"), d).as_millis() as i64,
        None => {
            errs.push(
                format!("{key}.after"),
                "is missing; write how long after the raise the step is due, e.g. after = \"60s\"",
            );
            0
        }
    };
    let until = match s.until.as_deref().map(str::trim) {
        None => Until::Ack,
        Some(u) => Until::parse(u).unwrap_or_else(|| {
            errs.push(
                format!("{key}.until"),
                format!("`{u}` is not a stop condition; valid: ack (stops once acknowledged), on_site (stops once someone is on site)"),
            );
            Until::Ack
        }),
    };
    let nkey = format!("{key}.notify");
    let notify = match s.notify.as_deref().map(str::trim) {
        None | Some("") => {
            errs.push(
                &nkey,
                "is missing; write `webhook:<name>` (a [alarms.webhooks.<name>]) or `mqtt:<topic>`, e.g. notify = \"webhook:duty_manager\"",
            );
            None
        }
        Some(n) => match Target::parse(n) {
            Some(Target::Webhook(name)) if a.webhooks.contains_key(&name) => {
                Some(Target::Webhook(name))
            }
            Some(Target::Webhook(name)) => {
                let known: Vec<&str> = a.webhooks.keys().map(String::as_str).collect();
                let defined = if known.is_empty() {
                    "none are defined".to_owned()
                } else {
                    format!("defined: {}", known.join(", "))
                };
                errs.push(
                    &nkey,
                    format!("`{n}` names no [alarms.webhooks.{name}]; {defined} (add one with its url, url_file or url_env)"),
                );
                None
            }
            Some(Target::Mqtt(topic)) => {
                if let Some(problem) = topic_problem(&topic) {
                    errs.push(&nkey, format!("`{n}`: {problem}"));
                } else if !mqtt {
                    errs.push(
                        &nkey,
                        format!("`{n}` needs [mqtt] (the gateway publishes escalations on its MQTT connection); configure [mqtt] or use a webhook target"),
                    );
                }
                Some(Target::Mqtt(topic))
            }
            None => {
                errs.push(
                    &nkey,
                    format!("`{n}` is not a target; write `webhook:<name>` (a [alarms.webhooks.<name>]) or `mqtt:<topic>`"),
                );
                None
            }
        },
    };
    let message = match &s.message {
        Some(m) => {
            if let Err(e) = crate::core::escalation::check_template(m) {
                errs.push(format!("{key}.message"), e);
            }
            m.clone()
        }
        None => crate::core::escalation::DEFAULT_MESSAGE.to_owned(),
    };
    (errs.len() == before).then_some(Step {
        after_ms,
        until,
        notify: notify?,
        message,
    })
}

/// Why `topic` cannot be published to, if it cannot.
fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("the topic is empty; write e.g. `mqtt:estate/escalations`")
    } else if topic.contains(['+', '#']) {
        Some("a topic to publish to has no wildcards (`+`, `#`)")
    } else if topic.chars().any(char::is_control) {
        Some("the topic has control characters")
    } else if topic.len() > 65_535 {
        Some("the topic is longer than 65535 bytes")
    } else {
        None
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
    if !is_identifier(name) {
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
    let repair_target_ms = match (&c.repair_target, default) {
        (Some(s), _) if s.trim() == "none" => None,
        (Some(s), _) => Some(positive(errs, "repair_target", s)),
        (None, d) => d.and_then(|d| d.repair_target_ms),
    };
    let source = match (&c.source, default) {
        (Some(s), _) => s.clone(),
        (None, Some(d))
            if c.ack_target.is_none()
                && c.on_site_target.is_none()
                && c.repair_target.is_none() =>
        {
            d.source.clone()
        }
        _ => format!("set in {}", errs.file()),
    };
    (errs.len() == before).then(|| ResponseClass {
        name: name.to_owned(),
        ack_target_ms,
        on_site_target_ms,
        repair_target_ms,
        source,
    })
}

/// The keys `[alarms.webhook]` and `[alarms.webhooks.<name>]` share.
struct TargetFields<'a> {
    url: &'a Option<String>,
    url_file: &'a Option<String>,
    url_env: &'a Option<String>,
    format: &'a str,
    timeout: &'a str,
    retries: u32,
    retry_max: &'a str,
}

fn target_fields(w: &RawWebhookTarget) -> TargetFields<'_> {
    TargetFields {
        url: &w.url,
        url_file: &w.url_file,
        url_env: &w.url_env,
        format: &w.format,
        timeout: &w.timeout,
        retries: w.retries,
        retry_max: &w.retry_max,
    }
}

fn build_webhook(
    w: &RawWebhook,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> WebhookSettings {
    let fields = TargetFields {
        url: &w.url,
        url_file: &w.url_file,
        url_env: &w.url_env,
        format: &w.format,
        timeout: &w.timeout,
        retries: w.retries,
        retry_max: &w.retry_max,
    };
    let mut settings = build_target("alarms.webhook", &fields, base_dir, env, errs);
    for (i, s) in w.severities.iter().enumerate() {
        match Severity::parse(s) {
            Some(sev) if !settings.severities.contains(&sev) => settings.severities.push(sev),
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
    settings
}

/// A webhook's URL, format, timeout and retries (`prefix`: `alarms.webhook` or
/// `alarms.webhooks.<name>`); `severities` empty.
fn build_target(
    prefix: &str,
    w: &TargetFields<'_>,
    base_dir: &Path,
    env: &HashMap<String, String>,
    errs: &mut Errors,
) -> WebhookSettings {
    let k = |field: &str| format!("{prefix}.{field}");
    let set: Vec<&str> = [
        ("url", w.url.is_some()),
        ("url_file", w.url_file.is_some()),
        ("url_env", w.url_env.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.then_some(k))
    .collect();
    let (key, url) = match (set.len(), w.url, w.url_file, w.url_env) {
        (0, ..) => {
            errs.push(
                k("url"),
                "is missing; set `url_file` (a file holding the robot URL) or `url_env` (the environment variable holding it), or `url`",
            );
            (k("url"), String::new())
        }
        (1, Some(u), _, _) => (k("url"), u.trim().to_owned()),
        (1, _, Some(f), _) => {
            let key = k("url_file");
            let s = secret(errs, &key, Some(f), "", base_dir, env);
            (key, s.expose().to_owned())
        }
        (1, _, _, Some(name)) => {
            let v = env
                .get(name)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default();
            if v.is_empty() {
                errs.push(
                    k("url_env"),
                    format!("the environment variable `{name}` is not set or empty; set it to the webhook URL, or use `url_file`"),
                );
            }
            (k("url_env"), v)
        }
        _ => {
            errs.push(
                k(set[1]),
                format!(
                    "is set together with `{}`; give the URL one way: url, url_file or url_env",
                    set[0]
                ),
            );
            (k("url"), String::new())
        }
    };
    if !url.is_empty() {
        let shown = if key == k("url") {
            format!("`{}`", super::check::redact_url(&url))
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
    let format = match w.format {
        "json" => WebhookFormat::Json,
        "text" => WebhookFormat::Text,
        other => {
            errs.push(
                k("format"),
                format!("`{other}` is not a webhook format; valid: json (the alarm event), text (WeCom/DingTalk robot text message)"),
            );
            WebhookFormat::Json
        }
    };
    let timeout = errs.duration(&k("timeout"), w.timeout);
    if timeout.is_zero() && !errs.has_key(&k("timeout")) {
        errs.push(k("timeout"), "must be more than 0 (default 5s)");
    }
    let retry_max = errs.duration(&k("retry_max"), w.retry_max);
    if retry_max.is_zero() && !errs.has_key(&k("retry_max")) {
        errs.push(k("retry_max"), "must be more than 0 (default 60s)");
    }
    WebhookSettings {
        url: SecretUrl::new(url),
        format,
        severities: Vec::new(),
        timeout,
        retries: w.retries,
        retry_max,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::{assert_has, errors, load_text, messages, DEVICES};
    use super::*;
    use crate::config::HeatingSettings;
    use crate::core::season::Season;
    use crate::model::rules::{Clear, Trigger};
    use crate::model::Value;

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

    /// DESIGN §4 repair targets: entrapment freed ≤ 30 min, 急修 (urgent, fire) ≤ 24 h, 零修
    /// (minor) ≤ 72 h.
    #[test]
    fn default_repair_targets_per_class() {
        let cfg = load_text("[gateway]\nsite = \"a\"\n", &[], &[]).expect("valid");
        let c = &cfg.alarms.classes;
        let repair = |n: &str| c[n].repair_target_ms;
        assert_eq!(repair("entrapment"), Some(30 * 60_000));
        assert_eq!(repair("urgent"), Some(24 * 3_600_000));
        assert_eq!(repair("fire"), Some(24 * 3_600_000));
        assert_eq!(repair("minor"), Some(72 * 3_600_000));
        assert!(c["minor"].source.contains("72 h"), "{}", c["minor"].source);
        assert!(cfg.alarms.three_minute_promise.is_empty());
    }

    #[test]
    fn repair_target_is_parsed_or_none() {
        let cfg = load_text(
            r#"
[gateway]
site = "a"
[alarms.classes.urgent]
repair_target = "2h"
[alarms.classes.minor]
repair_target = "none"
[alarms.classes.lift_rescue]
ack_target = "2m"
repair_target = "45m"
"#,
            &[],
            &[],
        )
        .expect("valid");
        let c = &cfg.alarms.classes;
        assert_eq!(c["urgent"].repair_target_ms, Some(2 * 3_600_000));
        // The other targets of an overridden class keep their defaults.
        assert_eq!(
            (c["urgent"].ack_target_ms, c["urgent"].on_site_target_ms),
            (180_000, Some(1_800_000))
        );
        assert!(c["urgent"].source.starts_with("set in "));
        assert_eq!(c["minor"].repair_target_ms, None);
        assert_eq!(c["lift_rescue"].repair_target_ms, Some(45 * 60_000));
        // A new class without one has no repair target (not graded for repair).
        let cfg = load_text(
            "[alarms.classes.lift_rescue]\nack_target = \"2m\"\n",
            &[],
            &[],
        )
        .expect("valid");
        assert_eq!(cfg.alarms.classes["lift_rescue"].repair_target_ms, None);

        let all = errors(
            "[alarms.classes.urgent]\nrepair_target = \"0s\"\n[alarms.classes.minor]\nrepair_target = \"soon\"\n",
            &[],
            &[],
        );
        assert_has(
            &all,
            &[
                "alarms.classes.urgent.repair_target: must be more than 0",
                "alarms.classes.minor.repair_target: `soon` is not a duration",
            ],
        );
    }

    /// `three_minute_promise` (三分钟服务承诺) for every site and per site: the classes it names
    /// (the engine sets their on-site target to 180 s).
    #[test]
    fn three_minute_promise_for_all_sites_and_per_site() {
        let cfg = load_text(
            r#"
[gateway]
site = "a"
[alarms]
three_minute_promise = ["urgent", "entrapment"]
[alarms.sites.jinxiu]
three_minute_promise = ["fire"]
[alarms.sites.huafu]
three_minute_promise = []
"#,
            &[],
            &[],
        )
        .expect("valid");
        let p = &cfg.alarms.three_minute_promise;
        assert_eq!(p[""], ["urgent", "entrapment"]);
        assert_eq!(p["jinxiu"], ["fire"]);
        // An empty list is no entry: the site follows the all-sites list.
        assert!(!p.contains_key("huafu"), "{p:?}");
        assert_eq!(p.len(), 2);
        // The classes themselves are unchanged: the promise is applied per site.
        assert_eq!(
            cfg.alarms.classes["urgent"].on_site_target_ms,
            Some(1_800_000)
        );
    }

    #[test]
    fn an_unknown_class_in_three_minute_promise_names_its_key() {
        let all = errors(
            "[alarms]\nthree_minute_promise = [\"urgnet\"]\n[alarms.sites.jinxiu]\nthree_minute_promise = [\"lift\", \"fire\"]\n",
            &[],
            &[],
        );
        assert_has(
            &all,
            &[
                "alarms.three_minute_promise[0]: `urgnet` is not a response class; known: entrapment, fire, minor, urgent",
                "alarms.sites.jinxiu.three_minute_promise[0]: `lift` is not a response class; known: entrapment, fire, minor, urgent",
            ],
        );
        assert_eq!(all.lines().count(), 2, "{all}");
        // A class defined in the same file may be promised.
        let cfg = load_text(
            "[alarms]\nthree_minute_promise = [\"lift_rescue\"]\n[alarms.classes.lift_rescue]\nack_target = \"1m\"\n",
            &[],
            &[],
        )
        .expect("valid");
        assert_eq!(cfg.alarms.three_minute_promise[""], ["lift_rescue"]);
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
        assert_eq!(w.url.expose(), url);
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
        assert_eq!(
            w.url.expose(),
            "https://oapi.dingtalk.com/robot/send?access_token=t"
        );
        assert_eq!(
            (w.format, w.severities.as_slice()),
            (WebhookFormat::Json, &[Severity::Critical][..])
        );
    }

    /// The README's example chain for entrapment: named robots beside the one
    /// `[alarms.webhook]` (which keeps working), an MQTT step, the default message.
    #[test]
    fn escalation_chains_and_named_webhooks() {
        let cfg = load_text(
            r#"
[gateway]
site = "a"
[mqtt]
[alarms.webhook]
url = "https://robot.example/send?key=main"
[alarms.webhooks.duty_manager]
url_env = "DUTY"
format = "text"
[alarms.webhooks.company]
url = "https://oapi.dingtalk.com/robot/send?access_token=c"
retries = 2
[[alarms.classes.entrapment.escalation]]
after = "60s"
notify = "webhook:duty_manager"
message = "{name}（{building}）困人已 {elapsed} 未确认"
[[alarms.classes.entrapment.escalation]]
after = "15m"
until = "on_site"
notify = "webhook:company"
[[alarms.classes.fire.escalation]]
after = "2m"
notify = "mqtt:estate/a/escalations"
"#,
            &[],
            &[(
                "DUTY",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=d",
            )],
        )
        .expect("valid");
        let a = &cfg.alarms;
        assert_eq!(
            a.webhook.as_ref().map(|w| w.severities.clone()),
            Some(vec![Severity::Critical])
        );
        let duty = &a.webhooks["duty_manager"];
        assert_eq!(
            (duty.url.expose(), duty.format, duty.severities.len()),
            (
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=d",
                WebhookFormat::Text,
                0
            )
        );
        assert_eq!(
            (a.webhooks["company"].format, a.webhooks["company"].retries),
            (WebhookFormat::Json, 2)
        );
        let e = &a.escalation["entrapment"];
        assert_eq!(
            e[0],
            Step {
                after_ms: 60_000,
                until: Until::Ack,
                notify: Target::Webhook("duty_manager".into()),
                message: "{name}（{building}）困人已 {elapsed} 未确认".into(),
            }
        );
        assert_eq!(
            (e[1].after_ms, e[1].until, &e[1].notify),
            (900_000, Until::OnSite, &Target::Webhook("company".into()))
        );
        assert_eq!(e[1].message, crate::core::escalation::DEFAULT_MESSAGE);
        assert_eq!(
            a.escalation["fire"][0].notify,
            Target::Mqtt("estate/a/escalations".into())
        );
        assert_eq!(a.escalation.len(), 2);
        // The class keeps its targets and their source.
        assert_eq!(a.classes["entrapment"], default_classes()["entrapment"]);
    }

    /// Bad chains fail at start, all at once, each with its key and what would be valid.
    #[test]
    fn bad_escalation_chains_name_key_and_what_is_valid() {
        let all = errors(
            r#"
[alarms.webhooks.duty_manager]
url = "https://robot.example/send"
format = "markdown"
severities = ["critical"]
[alarms.webhooks.Boss]
url = "https://robot.example/boss"
[[alarms.classes.entrapment.escalation]]
after = "a minute"
notify = "webhook:duty_manger"
[[alarms.classes.entrapment.escalation]]
after = "15m"
until = "arrival"
notify = "email:boss@example.com"
message = "{device} 未到场"
[[alarms.classes.entrapment.escalation]]
notify = "mqtt:estate/+/escalations"
colour = "red"
[[alarms.classes.fire.escalation]]
after = "1m"
notify = "mqtt:estate/escalations"
message = "{name 困人"
[[alarms.classes.urgent.escalation]]
after = "1m"
"#,
            &[],
            &[],
        );
        assert_has(
            &all,
            &[
                "alarms.webhooks.duty_manager.format: `markdown` is not a webhook format; valid: json (the alarm event), text",
                "alarms.webhooks.duty_manager.severities: unknown key; valid keys here: url, url_file, url_env, format, timeout, retries, retry_max",
                "alarms.webhooks.Boss: `Boss` is not a valid webhook name",
                "alarms.classes.entrapment.escalation[0].after: `a minute` is not a duration",
                "alarms.classes.entrapment.escalation[0].notify: `webhook:duty_manger` names no [alarms.webhooks.duty_manger]; defined: Boss, duty_manager",
                "alarms.classes.entrapment.escalation[1].until: `arrival` is not a stop condition; valid: ack (stops once acknowledged), on_site (stops once someone is on site)",
                "alarms.classes.entrapment.escalation[1].notify: `email:boss@example.com` is not a target; write `webhook:<name>` (a [alarms.webhooks.<name>]) or `mqtt:<topic>`",
                "alarms.classes.entrapment.escalation[1].message: `{device}` is not a placeholder; valid: {name} {id} {building} {message} {alarm} {severity} {raised} {elapsed} {until} {step}",
                "alarms.classes.entrapment.escalation[2].after: is missing; write how long after the raise the step is due, e.g. after = \"60s\"",
                "alarms.classes.entrapment.escalation[2].notify: `mqtt:estate/+/escalations`: a topic to publish to has no wildcards",
                "alarms.classes.entrapment.escalation[2].colour: unknown key; valid keys here: after, until, notify, message",
                "alarms.classes.fire.escalation[0].notify: `mqtt:estate/escalations` needs [mqtt]",
                "alarms.classes.fire.escalation[0].message: `{name 困人` has a `{` without `}`",
                "alarms.classes.urgent.escalation[0].notify: is missing; write `webhook:<name>` (a [alarms.webhooks.<name>]) or `mqtt:<topic>`",
            ],
        );
        assert_eq!(all.lines().count(), 14, "{all}");
        // Without any named webhook, the error says so.
        let all = errors(
            "[[alarms.classes.entrapment.escalation]]\nafter = \"1m\"\nnotify = \"webhook:duty\"\n",
            &[],
            &[],
        );
        assert_has(
            &all,
            &["alarms.classes.entrapment.escalation[0].notify: `webhook:duty` names no [alarms.webhooks.duty]; none are defined"],
        );
    }

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
