//! The gateway's vocabulary: devices and their category profiles, typed signal values, and the
//! `Reading` that every source produces and every later stage consumes (DESIGN §2, §3).
//!
//! These types are built once from configuration (see `crate::config`) and then shared
//! read-only (`Arc<Inventory>`) by all tasks; a `Reading` refers to its device by index so that
//! the hot path never hashes or clones device names.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod ack;
mod command;
pub use ack::{Ack, PendingAck};
pub use command::{OperatorCommand, OperatorCommandKind};

/// The type a signal's values must have. A JSON value of another type is rejected as
/// `wrong_type` (see `crate::source::decode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalType {
    /// 64-bit float; any finite JSON number is accepted.
    Float,
    /// 64-bit signed integer; a JSON integer, or a float with no fractional part.
    Int,
    /// `true`/`false`; the integers 0 and 1 are accepted too (PLC bridges often send them).
    Bool,
    /// Free text.
    String,
    /// One of a fixed set of strings (e.g. elevator `mode`).
    Enum(Vec<String>),
}

impl SignalType {
    /// The name used in profiles and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            SignalType::Float => "float",
            SignalType::Int => "int",
            SignalType::Bool => "bool",
            SignalType::String => "string",
            SignalType::Enum(_) => "enum",
        }
    }
}

/// One signal of a category (e.g. `supply_temp_c` of `heating_loop`).
#[derive(Debug, Clone)]
pub struct Signal {
    /// Field name in payloads and in the store; `[a-z][a-z0-9_]*`.
    pub name: String,
    pub ty: SignalType,
    /// Unit for people (`°C`, `MPa`), documentation only.
    pub unit: Option<String>,
    /// Chinese label for dashboards.
    pub label: Option<String>,
}

/// A category profile (`configs/profiles/<category>.toml`): the signals a device of this
/// category reports and how often it is expected to report.
#[derive(Debug, Clone)]
pub struct Profile {
    pub category: String,
    pub label: String,
    /// Expected reporting interval; a device's default heartbeat timeout is 3× this.
    pub interval: Duration,
    pub signals: Vec<Signal>,
    /// State and alarm rules (`[state]`, `[[alarms]]` in the profile file).
    pub rules: Arc<crate::core::rules::Rules>,
    /// Float signals whose hourly statistics are journaled (`hourly = [...]`).
    pub hourly: Vec<u16>,
    index: HashMap<String, u16>,
}

impl Profile {
    pub fn new(category: String, label: String, interval: Duration, signals: Vec<Signal>) -> Self {
        let index = signals
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i as u16))
            .collect();
        Profile {
            category,
            label,
            interval,
            signals,
            rules: Arc::default(),
            hourly: Vec::new(),
            index,
        }
    }

    /// The index of a signal by name, as carried in `Reading::values`.
    pub fn signal_index(&self, name: &str) -> Option<u16> {
        self.index.get(name).copied()
    }

    pub fn signal(&self, idx: u16) -> &Signal {
        &self.signals[idx as usize]
    }
}

/// One facility in the inventory (设备台账).
#[derive(Debug, Clone)]
pub struct Device {
    /// Unique per site.
    pub id: String,
    /// Name for people, Chinese allowed ("3号楼2单元客梯").
    pub name: String,
    pub site: String,
    pub building: String,
    pub category: String,
    pub profile: Arc<Profile>,
    /// Expected reporting interval (MQTT) or poll interval (Modbus).
    pub interval: Duration,
    /// No reading for this long makes an MQTT device `offline` (DESIGN §4).
    pub heartbeat_timeout: Duration,
    /// Set when the device is polled over Modbus.
    pub modbus: Option<crate::source::modbus::Binding>,
    /// The profile's rules with this device's overrides applied (the profile's own `Arc`
    /// when there are none).
    pub rules: Arc<crate::core::rules::Rules>,
}

/// Index of a device in its `Inventory`.
pub type DeviceIdx = u32;

/// All devices of this gateway, with lookup by (site, id).
#[derive(Debug, Default)]
pub struct Inventory {
    devices: Vec<Device>,
    /// site → id → index; nested so that lookups borrow the topic's `&str`s.
    by_site_id: HashMap<String, HashMap<String, DeviceIdx>>,
}

impl Inventory {
    /// Builds the inventory. Ids must be unique per site (config validation guarantees it;
    /// a duplicate here keeps the first).
    pub fn new(devices: Vec<Device>) -> Self {
        let mut by_site_id: HashMap<String, HashMap<String, DeviceIdx>> = HashMap::new();
        for (i, d) in devices.iter().enumerate() {
            by_site_id
                .entry(d.site.clone())
                .or_default()
                .entry(d.id.clone())
                .or_insert(i as DeviceIdx);
        }
        Inventory {
            devices,
            by_site_id,
        }
    }

    pub fn get(&self, idx: DeviceIdx) -> &Device {
        &self.devices[idx as usize]
    }

    pub fn lookup(&self, site: &str, id: &str) -> Option<DeviceIdx> {
        self.by_site_id.get(site)?.get(id).copied()
    }

    /// Lookup by id alone, for topic patterns without `{site}`: only valid when the id is
    /// unique across sites (config validation checks that such patterns are unambiguous).
    pub fn lookup_any_site(&self, id: &str) -> Option<DeviceIdx> {
        self.by_site_id.values().find_map(|m| m.get(id).copied())
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

/// A typed signal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Float(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// A device's own report of whether it is reachable (the MQTT status topic, later also the
/// Modbus poller's verdict after failed polls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Online,
    Offline,
}

/// What every source produces: some signal values of one device at one time.
#[derive(Debug)]
pub struct Reading {
    pub device: DeviceIdx,
    /// Event time, unix milliseconds: the device's `ts` when it sent one, else arrival time.
    pub ts_ms: i64,
    /// (signal index in the device's profile, value); only valid, typed values.
    pub values: Vec<(u16, Value)>,
    /// Set when this reading is a status report (`online` / `offline`).
    pub status: Option<Status>,
    /// Settles the source message once a sink has taken this reading (QoS 1 manual ack).
    pub ack: Ack,
}
