//! Escalation of unanswered alarms (issue 14): per response class, a chain of steps
//! (`[[alarms.classes.<class>.escalation]]`), each sent once per alarm to a second channel when
//! the alarm is still unanswered `after` its raise. Escalation is operational, not graded: the
//! core stage decides it on the gateway's clock (`crate::core::escalation`), outside the
//! event-time engine, and journals every step it fires (`escalations` table).

use std::fmt;

/// When a step stops applying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Until {
    /// Once the alarm is acknowledged (someone on site counts as acknowledged).
    Ack,
    /// Once someone is on site (an acknowledgment alone does not stop it).
    OnSite,
}

impl Until {
    pub fn as_str(self) -> &'static str {
        match self {
            Until::Ack => "ack",
            Until::OnSite => "on_site",
        }
    }

    pub fn parse(s: &str) -> Option<Until> {
        Some(match s {
            "ack" => Until::Ack,
            "on_site" => Until::OnSite,
            _ => return None,
        })
    }

    /// What is still missing, for messages (`{until}`): 确认 or 到场.
    pub fn missing_zh(self) -> &'static str {
        match self {
            Until::Ack => "确认",
            Until::OnSite => "到场",
        }
    }
}

/// Where a step is sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A named webhook, `[alarms.webhooks.<name>]`.
    Webhook(String),
    /// An MQTT topic (QoS 1, not retained), on the gateway's event connection.
    Mqtt(String),
}

impl Target {
    /// `webhook:<name>` or `mqtt:<topic>`; `None` for anything else (the name or topic is not
    /// checked here).
    pub fn parse(s: &str) -> Option<Target> {
        let (kind, rest) = s.split_once(':')?;
        match kind.trim() {
            "webhook" => Some(Target::Webhook(rest.trim().to_owned())),
            "mqtt" => Some(Target::Mqtt(rest.trim().to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Webhook(n) => write!(f, "webhook:{n}"),
            Target::Mqtt(t) => write!(f, "mqtt:{t}"),
        }
    }
}

/// One configured step of a class's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Due at the alarm's raise time (event time) + this.
    pub after_ms: i64,
    pub until: Until,
    pub notify: Target,
    /// The message template (placeholders: `crate::core::escalation::PLACEHOLDERS`).
    pub message: String,
}

/// A step that fired for one alarm: what was sent, where and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    /// The step's position in its class's chain, from 1.
    pub step: u32,
    /// When it fired (the gateway's clock).
    pub ts_ms: i64,
    /// When it was due: the alarm's raise time + the step's `after`.
    pub due_ms: i64,
    pub until: Until,
    pub notify: Target,
    /// The rendered message.
    pub message: String,
}
