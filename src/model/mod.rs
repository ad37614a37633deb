//! The gateway's vocabulary: devices and their category profiles, typed signal values, and the
//! `Reading` that every source produces and every later stage consumes (DESIGN §2, §3).
//!
//! These types are built once from configuration (see `crate::config`) and then shared
//! read-only (`Arc<Inventory>`) by all tasks; a `Reading` refers to its device by index so that
//! the hot path never hashes or clones device names.
//!
//! The model is the ground floor: every other layer may import it, and it imports nothing of
//! theirs (`tests/layers.rs` checks). Besides devices and readings it holds what several layers
//! share:
//! - `rules`: conditions, state rules, alarm rules, response classes, `Severity`;
//! - `event`: device states, alarms and the events the core emits, operator command errors,
//!   planned maintenance, `DeviceView`;
//! - `restore`: where the engine stood, as the journal keeps it for a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod ack;
mod command;
pub mod escalation;
pub mod event;
pub mod restore;
pub mod rules;
mod value;
pub use ack::{Ack, PendingAck};
pub use command::{OperatorCommand, OperatorCommandKind};
pub use value::{SignalType, Value};

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
    pub rules: Arc<rules::Rules>,
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
    /// The device is polled over Modbus (it has a binding in `ModbusSettings::bindings`): the
    /// poller, not the heartbeat timeout, decides when it is offline.
    pub polled: bool,
    /// The profile's rules with this device's overrides applied (the profile's own `Arc`
    /// when there are none).
    pub rules: Arc<rules::Rules>,
}

/// The site of device `id` when a caller may name one: `asked` if it has the device, else
/// `own` (the gateway's site) if it has it, else the only site that has it.
pub fn site_of(
    devices: &[Device],
    id: &str,
    own: &str,
    asked: Option<&str>,
) -> Result<String, SiteOf> {
    let mut sites: Vec<&str> = devices
        .iter()
        .filter(|d| d.id == id)
        .map(|d| d.site.as_str())
        .collect();
    sites.sort_unstable();
    sites.dedup();
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    match asked.filter(|s| !s.is_empty()) {
        Some(s) if sites.contains(&s) => Ok(s.to_owned()),
        Some(s) => Err(SiteOf::NotAt {
            site: s.to_owned(),
            sites: owned(&sites),
        }),
        None if sites.contains(&own) => Ok(own.to_owned()),
        None => match sites.as_slice() {
            [] => Err(SiteOf::Nowhere),
            [one] => Ok((*one).to_owned()),
            many => Err(SiteOf::Several(owned(many))),
        },
    }
}

/// Why `Inventory::site_of` found no one site for a device id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteOf {
    /// The asked site has no such device (`sites`: those that have it).
    NotAt { site: String, sites: Vec<String> },
    /// No site has it.
    Nowhere,
    /// Several sites have it and none was asked for.
    Several(Vec<String>),
}

/// Index of a device in its `Inventory`.
pub type DeviceIdx = u32;

/// All devices of this gateway, with lookup by (site, id).
#[derive(Debug, Default)]
pub struct Inventory {
    devices: Vec<Device>,
    /// site → id → index; nested so that lookups borrow the topic's `&str`s. Hashed with
    /// foldhash (randomly seeded): the keys come from the configuration, a topic only looks
    /// one up, and SipHash was a noticeable part of each reading's cost (twice per reading).
    by_site_id: Lookup<Lookup<DeviceIdx>>,
}

type Lookup<V> = HashMap<String, V, foldhash::fast::RandomState>;

impl Inventory {
    /// Builds the inventory. Ids must be unique per site (config validation guarantees it;
    /// a duplicate here keeps the first).
    pub fn new(devices: Vec<Device>) -> Self {
        let mut by_site_id: Lookup<Lookup<DeviceIdx>> = Lookup::default();
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

    /// The site of device `id` when a caller may name one (see `site_of`).
    pub fn site_of(&self, id: &str, own: &str, asked: Option<&str>) -> Result<String, SiteOf> {
        site_of(&self.devices, id, own, asked)
    }

    /// The sites that have devices, sorted, each once.
    pub fn sites(&self) -> Vec<&str> {
        let mut sites: Vec<&str> = self.devices.iter().map(|d| d.site.as_str()).collect();
        sites.sort_unstable();
        sites.dedup();
        sites
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
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
