//! What an operator asks of an alarm, as plain data: an acknowledgment or an on-site report.
//!
//! Sources that carry operator input (the MQTT `ack_topic` and `on_site_topic`) decode it into
//! an `OperatorCommand` and send it on a channel to the core stage, as they send readings; the
//! stage applies it to the engine in order with the readings (DESIGN §2: sources know nothing
//! of the core). The HTTP API, which waits for the answer, goes through `stage::CoreHandle`.

/// Which operator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorCommandKind {
    /// Someone has seen the alarm (`mqtt.ack_topic`).
    Ack,
    /// Someone is on site (`mqtt.on_site_topic`; acknowledges too, when nobody had).
    OnSite,
}

/// An acknowledgment or on-site report for one alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCommand {
    pub kind: OperatorCommandKind,
    /// The alarm's id.
    pub id: String,
    /// Who (operator name or id).
    pub by: String,
    /// The operator's own time (unix ms), when the app sent one (it may have been offline);
    /// `None`: the gateway's time when the stage applies it.
    pub ts_ms: Option<i64>,
}
