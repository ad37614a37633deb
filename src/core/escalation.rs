//! Escalation of unanswered alarms (issue 14), the pure part: which steps of a class's chain
//! are due for an alarm at a given `now_ms`, and the message each sends.
//!
//! A step is due when all of these hold:
//! - the alarm is active (not cleared: an alarm cleared before the step was due, or raised
//!   and cleared inside a backlog, never escalates);
//! - `now_ms` ≥ the alarm's raise time (event time) + the step's `after`;
//! - the alarm is still unanswered for the step's `until`: not acknowledged for `ack` (someone
//!   on site counts as acknowledged), nobody on site for `on_site`;
//! - the step has not fired for this alarm before (`fired`, which the journal keeps across
//!   restarts).
//!
//! Escalation is operational, not graded: the core stage asks on the gateway's clock every
//! tick; the event-time engine and its figures know nothing of it.

use jiff::tz::TimeZone;

use crate::model::escalation::{Escalation, Step, Until};
use crate::model::event::Alarm;
use crate::model::rules::Severity;
use crate::model::Device;

/// The placeholders of an escalation message, each with what it shows.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("name", "the device's name"),
    ("id", "the device's id"),
    ("building", "the device's building"),
    ("message", "the alarm's message"),
    ("alarm", "the alarm's id"),
    ("severity", "紧急, 重要 or 一般"),
    (
        "raised",
        "when the alarm was raised, in the site's time zone",
    ),
    ("elapsed", "how long ago it was raised, e.g. 1 分钟"),
    (
        "until",
        "what is missing: 确认 (until = ack) or 到场 (until = on_site)",
    ),
    ("step", "the step's number in its class's chain, from 1"),
];

/// The message of a step that gives none.
pub const DEFAULT_MESSAGE: &str =
    "【告警升级·第{step}级】{message}\n设备：{name}（{id}）{building}\n已 {elapsed} 未{until}\n告警号：{alarm}";

/// The positions (from 0) of the steps of `chain` due for `alarm` at `now_ms` (see the module
/// docs), in chain order; `fired` are the steps that already fired for it.
pub fn due(chain: &[Step], alarm: &Alarm, fired: &[Escalation], now_ms: i64) -> Vec<usize> {
    if !alarm.is_active() {
        return Vec::new();
    }
    let acknowledged = alarm.acknowledged.is_some() || alarm.on_site.is_some();
    let on_site = alarm.on_site.is_some();
    chain
        .iter()
        .enumerate()
        .filter(|(i, step)| {
            let answered = match step.until {
                Until::Ack => acknowledged,
                Until::OnSite => on_site,
            };
            !answered
                && now_ms >= alarm.raised_ms.saturating_add(step.after_ms)
                && !fired.iter().any(|f| f.step as usize == i + 1)
        })
        .map(|(i, _)| i)
        .collect()
}

/// The record of step `index` (from 0) of `chain` firing for `alarm` at `now_ms`, its message
/// rendered for `device` (times in `tz`).
pub fn fire(
    chain: &[Step],
    index: usize,
    alarm: &Alarm,
    device: &Device,
    now_ms: i64,
    tz: &TimeZone,
) -> Option<Escalation> {
    let step = chain.get(index)?;
    let number = index as u32 + 1;
    Some(Escalation {
        step: number,
        ts_ms: now_ms,
        due_ms: alarm.raised_ms.saturating_add(step.after_ms),
        until: step.until,
        notify: step.notify.clone(),
        message: render(&step.message, alarm, device, number, step.until, now_ms, tz),
    })
}

/// Renders a message template (the placeholders of `PLACEHOLDERS`; anything else is kept as
/// written — `check_template` refuses it at start).
pub fn render(
    template: &str,
    alarm: &Alarm,
    device: &Device,
    step: u32,
    until: Until,
    now_ms: i64,
    tz: &TimeZone,
) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match name {
            "name" => out.push_str(&device.name),
            "id" => out.push_str(&device.id),
            "building" => out.push_str(&device.building),
            "message" => out.push_str(&alarm.message),
            "alarm" => out.push_str(&alarm.id),
            "severity" => out.push_str(severity_zh(alarm.severity)),
            "raised" => out.push_str(&local_time(alarm.raised_ms, tz)),
            "elapsed" => out.push_str(&elapsed(now_ms.saturating_sub(alarm.raised_ms))),
            "until" => out.push_str(until.missing_zh()),
            "step" => out.push_str(&step.to_string()),
            _ => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Checks a template: not empty, every `{` closed, only known placeholders. The error says
/// what is wrong and lists the valid placeholders.
pub fn check_template(template: &str) -> Result<(), String> {
    let valid = || {
        PLACEHOLDERS
            .iter()
            .map(|(p, _)| format!("{{{p}}}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if template.trim().is_empty() {
        return Err(format!(
            "is empty; write the message the target gets, e.g. \"{{name}}困人已 {{elapsed}} 未确认\" (placeholders: {})",
            valid()
        ));
    }
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!(
                "`{template}` has a `{{` without `}}`; placeholders: {}",
                valid()
            ));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.iter().any(|(p, _)| *p == name) {
            return Err(format!(
                "`{{{name}}}` is not a placeholder; valid: {}",
                valid()
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// A duration in Chinese, to the second: `45 秒`, `1 分钟`, `1 分 30 秒`, `2 小时`,
/// `1 小时 5 分钟` (seconds dropped from an hour on).
pub fn elapsed(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m, sec) {
        (0, 0, s) => format!("{s} 秒"),
        (0, m, 0) => format!("{m} 分钟"),
        (0, m, s) => format!("{m} 分 {s} 秒"),
        (h, 0, _) => format!("{h} 小时"),
        (h, m, _) => format!("{h} 小时 {m} 分钟"),
    }
}

fn severity_zh(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "紧急",
        Severity::Major => "重要",
        Severity::Minor => "一般",
    }
}

fn local_time(ms: i64, tz: &TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::model::escalation::Target;
    use crate::model::event::Stamp;

    /// 2026-12-01 00:00:00 +08:00.
    const T0: i64 = 1_796_054_400_000;
    const MIN: i64 = 60_000;

    fn step(after_ms: i64, until: Until, notify: &str) -> Step {
        Step {
            after_ms,
            until,
            notify: Target::parse(notify).expect("target"),
            message: "{name}困人已 {elapsed} 未{until}（第{step}级）".into(),
        }
    }

    /// The README's example: unacknowledged after 60 s → the duty manager; nobody on site
    /// after 15 min → the company.
    fn chain() -> Vec<Step> {
        vec![
            step(MIN, Until::Ack, "webhook:duty_manager"),
            step(15 * MIN, Until::OnSite, "webhook:company"),
        ]
    }

    fn alarm() -> Alarm {
        Alarm {
            id: "huafu-7".into(),
            device: 0,
            rule: "entrapment".into(),
            severity: Severity::Critical,
            class: "entrapment".into(),
            message: "1号楼客梯困人，请立即救援".into(),
            raised_ms: T0,
            acknowledged: None,
            on_site: None,
            cleared_ms: None,
            ack_target_ms: 180_000,
            on_site_target_ms: Some(1_800_000),
            repair_target_ms: None,
            escalations: Vec::new(),
        }
    }

    fn device() -> Device {
        let p = Arc::new(crate::model::Profile::new(
            "elevator".into(),
            "电梯".into(),
            Duration::from_secs(10),
            vec![],
        ));
        Device {
            id: "E-1".into(),
            name: "1号楼客梯".into(),
            site: "huafu".into(),
            building: "1号楼".into(),
            category: "elevator".into(),
            rules: p.rules.clone(),
            profile: p,
            interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
            polled: false,
        }
    }

    fn stamp(ts_ms: i64) -> Option<Stamp> {
        Some(Stamp {
            ts_ms,
            by: "张伟".into(),
        })
    }

    fn fired(steps: &[u32]) -> Vec<Escalation> {
        let c = chain();
        steps
            .iter()
            .map(|&s| {
                fire(
                    &c,
                    s as usize - 1,
                    &alarm(),
                    &device(),
                    T0 + 20 * MIN,
                    &TimeZone::UTC,
                )
                .expect("step")
            })
            .collect()
    }

    #[test]
    fn a_step_is_due_exactly_at_raise_plus_after_not_before() {
        let (c, a) = (chain(), alarm());
        assert_eq!(due(&c, &a, &[], T0), Vec::<usize>::new());
        assert_eq!(due(&c, &a, &[], T0 + MIN - 1), Vec::<usize>::new());
        assert_eq!(due(&c, &a, &[], T0 + MIN), [0]);
        assert_eq!(due(&c, &a, &[], T0 + 15 * MIN - 1), [0]);
        // Both at once when the gateway looks only later (a restart, a backlog).
        assert_eq!(due(&c, &a, &[], T0 + 15 * MIN), [0, 1]);
    }

    #[test]
    fn each_step_fires_once() {
        let (c, a) = (chain(), alarm());
        assert_eq!(due(&c, &a, &fired(&[1]), T0 + MIN), Vec::<usize>::new());
        assert_eq!(due(&c, &a, &fired(&[1]), T0 + 15 * MIN), [1]);
        assert_eq!(
            due(&c, &a, &fired(&[1, 2]), T0 + 60 * MIN),
            Vec::<usize>::new()
        );
        // Which steps fired is by position, whatever order they fired in.
        assert_eq!(due(&c, &a, &fired(&[2]), T0 + 15 * MIN), [0]);
    }

    #[test]
    fn an_acknowledgment_stops_ack_steps_but_not_on_site_steps() {
        let c = chain();
        let mut a = alarm();
        a.acknowledged = stamp(T0 + 30_000);
        assert_eq!(due(&c, &a, &[], T0 + MIN), Vec::<usize>::new());
        // until = "on_site" keeps going after the acknowledgment.
        assert_eq!(due(&c, &a, &[], T0 + 15 * MIN), [1]);
        // Someone on site stops both.
        a.on_site = stamp(T0 + 14 * MIN);
        assert_eq!(due(&c, &a, &[], T0 + 15 * MIN), Vec::<usize>::new());
    }

    #[test]
    fn on_site_counts_as_acknowledged() {
        let c = chain();
        let mut a = alarm();
        // An on-site report without an acknowledgment (the engine fills both; this checks
        // the rule on its own).
        a.on_site = stamp(T0 + 30_000);
        assert_eq!(due(&c, &a, &[], T0 + 60 * MIN), Vec::<usize>::new());
    }

    #[test]
    fn a_cleared_alarm_never_escalates() {
        let c = chain();
        let mut a = alarm();
        // Cleared before the first step was due.
        a.cleared_ms = Some(T0 + 30_000);
        assert_eq!(due(&c, &a, &[], T0 + MIN), Vec::<usize>::new());
        // Cleared after the first step fired: the second does not follow.
        assert_eq!(
            due(&c, &a, &fired(&[1]), T0 + 15 * MIN),
            Vec::<usize>::new()
        );
    }

    /// A backlog alarm (raised and cleared while nobody could see it: `"backlog": true`)
    /// reaches the gateway already cleared, long after its raise: nothing is due however late.
    #[test]
    fn a_backlog_alarm_never_escalates() {
        let c = chain();
        let mut a = alarm();
        a.cleared_ms = Some(T0 + 5 * MIN);
        for now in [T0 + MIN, T0 + 15 * MIN, T0 + 24 * 60 * MIN] {
            assert_eq!(due(&c, &a, &[], now), Vec::<usize>::new(), "{now}");
        }
    }

    #[test]
    fn the_message_is_rendered_with_every_placeholder() {
        let c = chain();
        let tz = TimeZone::get("Asia/Shanghai").expect("tz");
        let e = fire(&c, 0, &alarm(), &device(), T0 + MIN, &tz).expect("step");
        assert_eq!(e.step, 1);
        assert_eq!((e.ts_ms, e.due_ms), (T0 + MIN, T0 + MIN));
        assert_eq!(e.notify, Target::Webhook("duty_manager".into()));
        assert_eq!(e.message, "1号楼客梯困人已 1 分钟 未确认（第1级）");
        let all =
            "{name}|{id}|{building}|{message}|{alarm}|{severity}|{raised}|{elapsed}|{until}|{step}";
        let text = render(
            all,
            &alarm(),
            &device(),
            2,
            Until::OnSite,
            T0 + 15 * MIN + 30_000,
            &tz,
        );
        assert_eq!(
            text,
            "1号楼客梯|E-1|1号楼|1号楼客梯困人，请立即救援|huafu-7|紧急|2026-12-01 00:00:00|15 分 30 秒|到场|2"
        );
        let text = render(
            DEFAULT_MESSAGE,
            &alarm(),
            &device(),
            1,
            Until::Ack,
            T0 + MIN,
            &tz,
        );
        assert_eq!(
            text,
            "【告警升级·第1级】1号楼客梯困人，请立即救援\n设备：1号楼客梯（E-1）1号楼\n已 1 分钟 未确认\n告警号：huafu-7"
        );
        assert!(fire(&c, 2, &alarm(), &device(), T0, &tz).is_none());
    }

    #[test]
    fn elapsed_reads_as_people_say_it() {
        assert_eq!(elapsed(0), "0 秒");
        assert_eq!(elapsed(45_999), "45 秒");
        assert_eq!(elapsed(60_000), "1 分钟");
        assert_eq!(elapsed(90_000), "1 分 30 秒");
        assert_eq!(elapsed(15 * MIN), "15 分钟");
        assert_eq!(elapsed(120 * MIN + 59_000), "2 小时");
        assert_eq!(elapsed(65 * MIN), "1 小时 5 分钟");
        assert_eq!(elapsed(-5), "0 秒");
    }

    #[test]
    fn templates_are_checked() {
        assert_eq!(check_template(DEFAULT_MESSAGE), Ok(()));
        assert_eq!(check_template("{name}困人 {elapsed}"), Ok(()));
        let e = check_template("{device} 困人").expect_err("unknown");
        assert!(e.starts_with("`{device}` is not a placeholder; valid: {name} {id} {building} {message} {alarm} {severity} {raised} {elapsed} {until} {step}"), "{e}");
        let e = check_template("{name 困人").expect_err("unclosed");
        assert!(e.contains("has a `{` without `}`"), "{e}");
        let e = check_template("  ").expect_err("empty");
        assert!(e.starts_with("is empty"), "{e}");
    }
}
